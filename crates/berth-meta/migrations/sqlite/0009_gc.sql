-- Online garbage collection.
--
-- Every change that may leave something unreferenced (a tag moved or deleted, a
-- manifest deleted, a blob pushed or unlinked, a repository deleted, a cache
-- entry evicted) queues it here in the same transaction. The collector takes
-- entries older than the grace period, re-checks them under lock and deletes
-- what nothing references; the queue is its checkpoint.
CREATE TABLE gc_queue (
    kind      TEXT    NOT NULL CHECK (kind IN ('manifest', 'link', 'blob')),
    -- The repository for 'manifest' and 'link' (a blob's visibility in it); 0 for 'blob'.
    repo_id   INTEGER NOT NULL,
    digest    TEXT    NOT NULL,
    -- Unix milliseconds of the last time it was queued.
    queued_at INTEGER NOT NULL,
    PRIMARY KEY (kind, repo_id, digest)
) WITHOUT ROWID;
CREATE INDEX gc_queue_due ON gc_queue(kind, queued_at);

-- Set while the collector deletes a blob's bytes: uploads of that digest wait,
-- mounts refuse it. A run interrupted half-way finishes these first.
ALTER TABLE blobs ADD COLUMN deleting_since INTEGER;
CREATE INDEX blobs_deleting ON blobs(deleting_since) WHERE deleting_since IS NOT NULL;

-- The digest an upload is committing: its bytes may already be in place before
-- the blob row links them, so the collector must leave that digest alone.
ALTER TABLE uploads ADD COLUMN committing TEXT;
CREATE INDEX uploads_committing ON uploads(committing) WHERE committing IS NOT NULL;

-- Which manifests of a repository reference a digest (link checks).
CREATE INDEX manifest_refs_repo_child ON manifest_refs(repo_id, child_digest, kind);

-- One row per collection run, updated as it goes (progress and status on any node).
CREATE TABLE gc_runs (
    id                INTEGER PRIMARY KEY,
    node              TEXT    NOT NULL,
    trigger           TEXT    NOT NULL,
    dry_run           INTEGER NOT NULL,
    grace_secs        INTEGER NOT NULL,
    state             TEXT    NOT NULL CHECK (state IN ('running', 'finished', 'failed')),
    started_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    finished_at       INTEGER,
    examined          INTEGER NOT NULL DEFAULT 0,
    manifests_deleted INTEGER NOT NULL DEFAULT 0,
    links_deleted     INTEGER NOT NULL DEFAULT 0,
    blobs_deleted     INTEGER NOT NULL DEFAULT 0,
    bytes_reclaimed   INTEGER NOT NULL DEFAULT 0,
    error             TEXT
);
