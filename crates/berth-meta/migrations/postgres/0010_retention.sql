-- Retention policies (docs/operations/retention.md): per project, rules that
-- say which tags to keep; every other tag of a repository a rule matches is
-- deleted, on a schedule or on demand. (0009 is garbage collection's.)
CREATE TABLE retention_policies (
    project        TEXT    PRIMARY KEY,
    -- 1: evaluated by the scheduler; 0: only by an explicit run.
    enabled        BIGINT NOT NULL,
    -- Untagged manifests older than this many hours are deleted too (NULL: kept).
    untagged_hours BIGINT,
    updated_at     BIGINT NOT NULL
);

CREATE TABLE retention_rules (
    id                      BIGSERIAL PRIMARY KEY,
    project                 TEXT    NOT NULL REFERENCES retention_policies(project) ON DELETE CASCADE,
    -- Repository glob inside the project (`*` crosses `/`), matched against the full name.
    repository              TEXT    NOT NULL,
    -- Keep the newest N tags by push time.
    keep_last               BIGINT,
    -- Keep tags whose name matches this regular expression.
    keep_tags               TEXT,
    -- Keep tags that are semantic versions (a leading `v` allowed) within this range.
    keep_semver             TEXT,
    -- Keep tags pulled (or pushed) within this many days.
    keep_pulled_within_days BIGINT,
    created_at              BIGINT NOT NULL
);
CREATE INDEX retention_rules_project ON retention_rules(project);

-- Evaluation reads one repository's tags newest first.
CREATE INDEX tags_pushed ON tags(repo_id, updated_at);
