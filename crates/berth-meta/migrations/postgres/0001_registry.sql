-- Registry core: repositories, blobs and their visibility, manifests, tags, uploads.
-- Names and digests use the "C" collation: listings are bytewise, like SQLite, and
-- keyset pagination (name > $last) agrees with ORDER BY.
CREATE TABLE repositories (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT    COLLATE "C" NOT NULL UNIQUE,
    project     TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL
);
CREATE INDEX repositories_project ON repositories(project);

-- Content-addressed, deduplicated across repositories.
CREATE TABLE blobs (
    digest        TEXT    PRIMARY KEY,
    size          BIGINT  NOT NULL,
    created_at    BIGINT  NOT NULL,
    last_accessed BIGINT
);

-- A blob is visible in a repository only once pushed, mounted or referenced there.
CREATE TABLE repository_blobs (
    repo_id    BIGINT  NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest     TEXT    NOT NULL REFERENCES blobs(digest),
    created_at BIGINT  NOT NULL,
    PRIMARY KEY (repo_id, digest)
);
CREATE INDEX repository_blobs_digest ON repository_blobs(digest);

-- Payload kept here (<= 4 MiB) so manifest GETs never touch the blob store.
CREATE TABLE manifests (
    repo_id        BIGINT  NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest         TEXT    NOT NULL,
    media_type     TEXT    NOT NULL,
    artifact_type  TEXT,
    subject_digest TEXT,
    annotations    TEXT,
    size           BIGINT  NOT NULL,
    payload        BYTEA   NOT NULL,
    created_at     BIGINT  NOT NULL,
    PRIMARY KEY (repo_id, digest)
);
CREATE INDEX manifests_subject ON manifests(repo_id, subject_digest) WHERE subject_digest IS NOT NULL;

-- What each manifest references: drives manifest validation, GC and referrers.
CREATE TABLE manifest_refs (
    repo_id         BIGINT  NOT NULL,
    manifest_digest TEXT    NOT NULL,
    child_digest    TEXT    NOT NULL,
    kind            TEXT    NOT NULL CHECK (kind IN ('blob', 'manifest')),
    PRIMARY KEY (repo_id, manifest_digest, child_digest, kind),
    FOREIGN KEY (repo_id, manifest_digest) REFERENCES manifests(repo_id, digest) ON DELETE CASCADE
);
CREATE INDEX manifest_refs_child ON manifest_refs(child_digest);

CREATE TABLE tags (
    repo_id         BIGINT  NOT NULL,
    name            TEXT    COLLATE "C" NOT NULL,
    manifest_digest TEXT    NOT NULL,
    updated_at      BIGINT  NOT NULL,
    PRIMARY KEY (repo_id, name),
    FOREIGN KEY (repo_id, manifest_digest) REFERENCES manifests(repo_id, digest) ON DELETE CASCADE
);
CREATE INDEX tags_manifest ON tags(repo_id, manifest_digest);

CREATE TABLE uploads (
    id         TEXT    PRIMARY KEY,
    repo_id    BIGINT  NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    received   BIGINT  NOT NULL,
    algorithm  TEXT    NOT NULL,
    started_at BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL
);
CREATE INDEX uploads_updated ON uploads(updated_at);
