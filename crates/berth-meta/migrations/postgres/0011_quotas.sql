-- Project quotas (docs/operations/quotas.md): what each project uses, kept exact
-- by triggers in the same transaction as every change (pushes, mounts, deletes,
-- garbage collection, cascades), and the limits that refuse changes past them.

-- Usage per project. Logical bytes count a blob once per repository that links
-- it; physical bytes once per project (deduplicated). Blob bytes only: manifests
-- live in the database.
CREATE TABLE project_usage (
    project        TEXT    PRIMARY KEY,
    logical_bytes  BIGINT  NOT NULL DEFAULT 0,
    physical_bytes BIGINT  NOT NULL DEFAULT 0,
    repositories   BIGINT  NOT NULL DEFAULT 0,
    tags           BIGINT  NOT NULL DEFAULT 0
);

-- Limits per project; NULL means none. Hard limits refuse; the soft one warns.
CREATE TABLE project_quotas (
    project          TEXT    PRIMARY KEY,
    storage_bytes    BIGINT,
    storage_soft     BIGINT,
    repositories     BIGINT,
    tags             BIGINT,
    -- When usage last crossed the soft limit (cleared once back under it).
    soft_warned_at   BIGINT,
    updated_at       BIGINT  NOT NULL
);

INSERT INTO project_usage (project, repositories, tags, logical_bytes, physical_bytes)
SELECT r.project,
       COUNT(*),
       (SELECT COUNT(*) FROM tags t JOIN repositories r2 ON r2.id = t.repo_id WHERE r2.project = r.project),
       (SELECT COALESCE(SUM(b.size), 0) FROM repository_blobs l JOIN blobs b ON b.digest = l.digest
                                          JOIN repositories r2 ON r2.id = l.repo_id WHERE r2.project = r.project),
       (SELECT COALESCE(SUM(b.size), 0) FROM blobs b WHERE b.digest IN
            (SELECT l.digest FROM repository_blobs l JOIN repositories r2 ON r2.id = l.repo_id
             WHERE r2.project = r.project))
FROM repositories r GROUP BY r.project;

-- Limits, checked before the row goes in. An upsert whose row exists is not new.
CREATE FUNCTION berth_quota_repositories() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM repositories WHERE name = NEW.name)
       AND (SELECT q.repositories FROM project_quotas q WHERE q.project = NEW.project)
           <= COALESCE((SELECT u.repositories FROM project_usage u WHERE u.project = NEW.project), 0) THEN
        RAISE EXCEPTION 'berth-quota:repositories';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER quota_repositories BEFORE INSERT ON repositories
    FOR EACH ROW EXECUTE FUNCTION berth_quota_repositories();

CREATE FUNCTION berth_quota_tags() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    p TEXT := (SELECT project FROM repositories WHERE id = NEW.repo_id);
BEGIN
    IF EXISTS (SELECT 1 FROM tags WHERE repo_id = NEW.repo_id AND name = NEW.name)
       OR NOT EXISTS (SELECT 1 FROM project_quotas q WHERE q.project = p AND q.tags IS NOT NULL) THEN
        RETURN NEW;
    END IF;
    -- Locked first: concurrent tag pushes then count one after the other.
    PERFORM 1 FROM project_usage WHERE project = p FOR UPDATE;
    IF (SELECT q.tags FROM project_quotas q WHERE q.project = p)
           <= COALESCE((SELECT u.tags FROM project_usage u WHERE u.project = p), 0) THEN
        RAISE EXCEPTION 'berth-quota:tags';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER quota_tags BEFORE INSERT ON tags FOR EACH ROW EXECUTE FUNCTION berth_quota_tags();

-- A link adds physical bytes only when no other repository of the project links the blob.
CREATE FUNCTION berth_quota_storage() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    p TEXT := (SELECT project FROM repositories WHERE id = NEW.repo_id);
BEGIN
    IF NOT EXISTS (SELECT 1 FROM project_quotas q WHERE q.project = p AND q.storage_bytes IS NOT NULL) THEN
        RETURN NEW;
    END IF;
    -- Locked first, so the checks below see every link committed before (READ COMMITTED).
    PERFORM 1 FROM project_usage WHERE project = p FOR UPDATE;
    IF NOT EXISTS (SELECT 1 FROM repository_blobs l JOIN repositories r ON r.id = l.repo_id
                   WHERE l.digest = NEW.digest AND r.project = p)
       AND (SELECT q.storage_bytes FROM project_quotas q WHERE q.project = p)
           < COALESCE((SELECT u.physical_bytes FROM project_usage u WHERE u.project = p), 0)
             + (SELECT size FROM blobs WHERE digest = NEW.digest) THEN
        RAISE EXCEPTION 'berth-quota:storage';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER quota_storage BEFORE INSERT ON repository_blobs
    FOR EACH ROW EXECUTE FUNCTION berth_quota_storage();

-- Usage. Rows deleted by a repository's cascade find no repository (its BEFORE
-- DELETE trigger already took them off), so their triggers change nothing.
CREATE FUNCTION berth_usage_repository_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO project_usage (project, repositories) VALUES (NEW.project, 1)
    ON CONFLICT (project) DO UPDATE SET repositories = project_usage.repositories + 1;
    RETURN NULL;
END $$;
CREATE TRIGGER usage_repository_insert AFTER INSERT ON repositories
    FOR EACH ROW EXECUTE FUNCTION berth_usage_repository_insert();

CREATE FUNCTION berth_usage_repository_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE project_usage SET
        repositories = repositories - 1,
        tags = tags - (SELECT COUNT(*) FROM tags WHERE repo_id = OLD.id),
        logical_bytes = logical_bytes - (SELECT COALESCE(SUM(b.size), 0) FROM repository_blobs l
                                         JOIN blobs b ON b.digest = l.digest WHERE l.repo_id = OLD.id),
        physical_bytes = physical_bytes - (SELECT COALESCE(SUM(b.size), 0) FROM repository_blobs l
                                           JOIN blobs b ON b.digest = l.digest
                                           WHERE l.repo_id = OLD.id
                                             AND NOT EXISTS (SELECT 1 FROM repository_blobs l2
                                                             JOIN repositories r2 ON r2.id = l2.repo_id
                                                             WHERE l2.digest = l.digest AND l2.repo_id <> OLD.id
                                                               AND r2.project = OLD.project))
    WHERE project = OLD.project;
    RETURN OLD;
END $$;
CREATE TRIGGER usage_repository_delete BEFORE DELETE ON repositories
    FOR EACH ROW EXECUTE FUNCTION berth_usage_repository_delete();

CREATE FUNCTION berth_usage_tag() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE project_usage SET tags = tags + 1
        WHERE project = (SELECT project FROM repositories WHERE id = NEW.repo_id);
    ELSE
        UPDATE project_usage SET tags = tags - 1
        WHERE project = (SELECT project FROM repositories WHERE id = OLD.repo_id);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER usage_tag AFTER INSERT OR DELETE ON tags FOR EACH ROW EXECUTE FUNCTION berth_usage_tag();

CREATE FUNCTION berth_usage_link() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    row_repo BIGINT := CASE WHEN TG_OP = 'INSERT' THEN NEW.repo_id ELSE OLD.repo_id END;
    row_digest TEXT := CASE WHEN TG_OP = 'INSERT' THEN NEW.digest ELSE OLD.digest END;
    p TEXT := (SELECT project FROM repositories WHERE id = row_repo);
    blob_size BIGINT := (SELECT size FROM blobs WHERE digest = row_digest);
    sign BIGINT := CASE WHEN TG_OP = 'INSERT' THEN 1 ELSE -1 END;
    shared BOOLEAN;
BEGIN
    IF p IS NULL THEN
        RETURN NULL;
    END IF;
    -- Locked first: a concurrent link of the same blob elsewhere in the project
    -- has committed by the time the check below runs, so it is counted once.
    PERFORM 1 FROM project_usage WHERE project = p FOR UPDATE;
    shared := EXISTS (SELECT 1 FROM repository_blobs l JOIN repositories r ON r.id = l.repo_id
                      WHERE l.digest = row_digest AND l.repo_id <> row_repo AND r.project = p);
    UPDATE project_usage SET
        logical_bytes = logical_bytes + sign * blob_size,
        physical_bytes = physical_bytes + CASE WHEN shared THEN 0 ELSE sign * blob_size END
    WHERE project = p;
    RETURN NULL;
END $$;
CREATE TRIGGER usage_link AFTER INSERT OR DELETE ON repository_blobs
    FOR EACH ROW EXECUTE FUNCTION berth_usage_link();
