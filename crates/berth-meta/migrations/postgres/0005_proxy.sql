-- Pull-through cache: upstream registries, cached blobs (LRU bookkeeping) and
-- when each cached tag was last confirmed upstream.
CREATE TABLE upstreams (
    name            TEXT    PRIMARY KEY,
    url             TEXT    NOT NULL,
    priority        BIGINT  NOT NULL,
    enabled         BIGINT  NOT NULL,
    -- First path segment of the cache repositories (docker.io/library/nginx).
    namespace       TEXT    NOT NULL,
    -- Serves host-less /v2 paths (docker registry-mirrors, containerd hosts.toml).
    mirror          BIGINT  NOT NULL,
    -- Single-segment names mean library/<name> (Docker Hub's official images).
    library_prefix  BIGINT  NOT NULL,
    username        TEXT,
    -- Sealed with the secrets key (AES-256-GCM), never stored in clear.
    password_sealed TEXT,
    timeout_secs    BIGINT  NOT NULL,
    max_concurrent  BIGINT  NOT NULL,
    -- Bytes of cached blobs fetched through this upstream; 0 = no own limit.
    max_size        BIGINT  NOT NULL,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);
CREATE INDEX upstreams_namespace ON upstreams(namespace, priority);

CREATE TABLE cache_entries (
    digest       TEXT    PRIMARY KEY,
    upstream     TEXT    NOT NULL,
    size         BIGINT  NOT NULL,
    created_at   BIGINT  NOT NULL,
    last_access  BIGINT  NOT NULL,
    access_count BIGINT  NOT NULL,
    pinned       BIGINT  NOT NULL DEFAULT 0
);
CREATE INDEX cache_entries_lru ON cache_entries(last_access);
CREATE INDEX cache_entries_upstream ON cache_entries(upstream, last_access);

CREATE TABLE cached_tags (
    repo         TEXT    NOT NULL,
    tag          TEXT    NOT NULL,
    upstream     TEXT    NOT NULL,
    digest       TEXT    NOT NULL,
    validated_at BIGINT  NOT NULL,
    PRIMARY KEY (repo, tag)
);
