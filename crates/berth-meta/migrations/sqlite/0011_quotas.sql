-- Project quotas (docs/operations/quotas.md): what each project uses, kept exact
-- by triggers in the same transaction as every change (pushes, mounts, deletes,
-- garbage collection, cascades), and the limits that refuse changes past them.

-- Usage per project. Logical bytes count a blob once per repository that links
-- it; physical bytes once per project (deduplicated). Blob bytes only: manifests
-- live in the database.
CREATE TABLE project_usage (
    project        TEXT    PRIMARY KEY,
    logical_bytes  INTEGER NOT NULL DEFAULT 0,
    physical_bytes INTEGER NOT NULL DEFAULT 0,
    repositories   INTEGER NOT NULL DEFAULT 0,
    tags           INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Limits per project; NULL means none. Hard limits refuse; the soft one warns.
CREATE TABLE project_quotas (
    project          TEXT    PRIMARY KEY,
    storage_bytes    INTEGER,
    storage_soft     INTEGER,
    repositories     INTEGER,
    tags             INTEGER,
    -- When usage last crossed the soft limit (cleared once back under it).
    soft_warned_at   INTEGER,
    updated_at       INTEGER NOT NULL
) WITHOUT ROWID;

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
CREATE TRIGGER quota_repositories BEFORE INSERT ON repositories
WHEN NOT EXISTS (SELECT 1 FROM repositories WHERE name = new.name)
BEGIN
    SELECT RAISE(ABORT, 'berth-quota:repositories')
    WHERE (SELECT q.repositories FROM project_quotas q WHERE q.project = new.project)
          <= COALESCE((SELECT u.repositories FROM project_usage u WHERE u.project = new.project), 0);
END;

CREATE TRIGGER quota_tags BEFORE INSERT ON tags
WHEN NOT EXISTS (SELECT 1 FROM tags WHERE repo_id = new.repo_id AND name = new.name)
BEGIN
    SELECT RAISE(ABORT, 'berth-quota:tags')
    WHERE (SELECT q.tags FROM project_quotas q JOIN repositories r ON r.project = q.project WHERE r.id = new.repo_id)
          <= COALESCE((SELECT u.tags FROM project_usage u JOIN repositories r ON r.project = u.project
                       WHERE r.id = new.repo_id), 0);
END;

-- A link adds physical bytes only when no other repository of the project links the blob.
CREATE TRIGGER quota_storage BEFORE INSERT ON repository_blobs
WHEN NOT EXISTS (SELECT 1 FROM repository_blobs WHERE repo_id = new.repo_id AND digest = new.digest)
 AND NOT EXISTS (SELECT 1 FROM repository_blobs l JOIN repositories r ON r.id = l.repo_id
                 WHERE l.digest = new.digest
                   AND r.project = (SELECT project FROM repositories WHERE id = new.repo_id))
BEGIN
    SELECT RAISE(ABORT, 'berth-quota:storage')
    WHERE (SELECT q.storage_bytes FROM project_quotas q JOIN repositories r ON r.project = q.project
           WHERE r.id = new.repo_id)
          < COALESCE((SELECT u.physical_bytes FROM project_usage u JOIN repositories r ON r.project = u.project
                      WHERE r.id = new.repo_id), 0)
            + (SELECT size FROM blobs WHERE digest = new.digest);
END;

-- Usage. Rows deleted by a repository's cascade find no repository (its BEFORE
-- DELETE trigger already took them off), so their triggers change nothing.
CREATE TRIGGER usage_repository_insert AFTER INSERT ON repositories BEGIN
    INSERT INTO project_usage (project, repositories) VALUES (new.project, 1)
    ON CONFLICT (project) DO UPDATE SET repositories = repositories + 1;
END;

CREATE TRIGGER usage_repository_delete BEFORE DELETE ON repositories BEGIN
    UPDATE project_usage SET
        repositories = repositories - 1,
        tags = tags - (SELECT COUNT(*) FROM tags WHERE repo_id = old.id),
        logical_bytes = logical_bytes - (SELECT COALESCE(SUM(b.size), 0) FROM repository_blobs l
                                         JOIN blobs b ON b.digest = l.digest WHERE l.repo_id = old.id),
        physical_bytes = physical_bytes - (SELECT COALESCE(SUM(b.size), 0) FROM repository_blobs l
                                           JOIN blobs b ON b.digest = l.digest
                                           WHERE l.repo_id = old.id
                                             AND NOT EXISTS (SELECT 1 FROM repository_blobs l2
                                                             JOIN repositories r2 ON r2.id = l2.repo_id
                                                             WHERE l2.digest = l.digest AND l2.repo_id <> old.id
                                                               AND r2.project = old.project))
    WHERE project = old.project;
END;

CREATE TRIGGER usage_tag_insert AFTER INSERT ON tags BEGIN
    UPDATE project_usage SET tags = tags + 1
    WHERE project = (SELECT project FROM repositories WHERE id = new.repo_id);
END;

CREATE TRIGGER usage_tag_delete AFTER DELETE ON tags BEGIN
    UPDATE project_usage SET tags = tags - 1
    WHERE project = (SELECT project FROM repositories WHERE id = old.repo_id);
END;

CREATE TRIGGER usage_link_insert AFTER INSERT ON repository_blobs BEGIN
    UPDATE project_usage SET
        logical_bytes = logical_bytes + (SELECT size FROM blobs WHERE digest = new.digest),
        physical_bytes = physical_bytes + CASE
            WHEN EXISTS (SELECT 1 FROM repository_blobs l JOIN repositories r ON r.id = l.repo_id
                         WHERE l.digest = new.digest AND l.repo_id <> new.repo_id AND r.project = project_usage.project)
            THEN 0 ELSE (SELECT size FROM blobs WHERE digest = new.digest) END
    WHERE project = (SELECT project FROM repositories WHERE id = new.repo_id);
END;

CREATE TRIGGER usage_link_delete AFTER DELETE ON repository_blobs BEGIN
    UPDATE project_usage SET
        logical_bytes = logical_bytes - (SELECT size FROM blobs WHERE digest = old.digest),
        physical_bytes = physical_bytes - CASE
            WHEN EXISTS (SELECT 1 FROM repository_blobs l JOIN repositories r ON r.id = l.repo_id
                         WHERE l.digest = old.digest AND r.project = project_usage.project)
            THEN 0 ELSE (SELECT size FROM blobs WHERE digest = old.digest) END
    WHERE project = (SELECT project FROM repositories WHERE id = old.repo_id);
END;
