-- Tag immutability: a tag of a matching repository whose name matches `pattern`
-- (a regular expression) cannot be moved or deleted once it exists.
CREATE TABLE immutable_tag_rules (
    id          BIGSERIAL PRIMARY KEY,
    project     TEXT    NOT NULL,
    -- Repository glob inside the project (`*` crosses `/`), matched against the full name.
    repository  TEXT    NOT NULL,
    pattern     TEXT    NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX immutable_tag_rules_project ON immutable_tag_rules(project);
