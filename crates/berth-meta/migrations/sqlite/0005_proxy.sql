-- Pull-through cache: upstream registries, cached blobs (LRU bookkeeping) and
-- when each cached tag was last confirmed upstream.
CREATE TABLE upstreams (
    name            TEXT    PRIMARY KEY,
    url             TEXT    NOT NULL,
    priority        INTEGER NOT NULL,
    enabled         INTEGER NOT NULL,
    -- First path segment of the cache repositories (docker.io/library/nginx).
    namespace       TEXT    NOT NULL,
    -- Serves host-less /v2 paths (docker registry-mirrors, containerd hosts.toml).
    mirror          INTEGER NOT NULL,
    -- Single-segment names mean library/<name> (Docker Hub's official images).
    library_prefix  INTEGER NOT NULL,
    username        TEXT,
    -- Sealed with the secrets key (AES-256-GCM), never stored in clear.
    password_sealed TEXT,
    timeout_secs    INTEGER NOT NULL,
    max_concurrent  INTEGER NOT NULL,
    -- Bytes of cached blobs fetched through this upstream; 0 = no own limit.
    max_size        INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX upstreams_namespace ON upstreams(namespace, priority);

CREATE TABLE cache_entries (
    digest       TEXT    PRIMARY KEY,
    upstream     TEXT    NOT NULL,
    size         INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    last_access  INTEGER NOT NULL,
    access_count INTEGER NOT NULL,
    pinned       INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX cache_entries_lru ON cache_entries(last_access);
CREATE INDEX cache_entries_upstream ON cache_entries(upstream, last_access);

CREATE TABLE cached_tags (
    repo         TEXT    NOT NULL,
    tag          TEXT    NOT NULL,
    upstream     TEXT    NOT NULL,
    digest       TEXT    NOT NULL,
    validated_at INTEGER NOT NULL,
    PRIMARY KEY (repo, tag)
) WITHOUT ROWID;
