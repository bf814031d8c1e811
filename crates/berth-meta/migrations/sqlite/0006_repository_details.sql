-- Per-repository details (seed 004's Repository), usage counters, and the
-- indexes behind /api/images/search.

ALTER TABLE repositories ADD COLUMN description TEXT NOT NULL DEFAULT '';
-- NULL: the project's visibility applies; set, it overrides the project's.
ALTER TABLE repositories ADD COLUMN visibility TEXT CHECK (visibility IN ('public', 'private'));
-- Last change of description or visibility; NULL = never changed (created_at).
ALTER TABLE repositories ADD COLUMN updated_at INTEGER;
ALTER TABLE repositories ADD COLUMN pull_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE repositories ADD COLUMN push_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE repositories ADD COLUMN last_pulled_at INTEGER;

ALTER TABLE tags ADD COLUMN pull_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tags ADD COLUMN push_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tags ADD COLUMN last_pulled_at INTEGER;
CREATE INDEX tags_name ON tags(name);

-- Substring search over repository names: FTS5 trigram index kept by triggers
-- (names never change, so insert and delete are enough).
CREATE VIRTUAL TABLE repositories_fts USING fts5(name, content='repositories', content_rowid='id', tokenize='trigram');
INSERT INTO repositories_fts(repositories_fts) VALUES ('rebuild');
CREATE TRIGGER repositories_fts_insert AFTER INSERT ON repositories BEGIN
    INSERT INTO repositories_fts(rowid, name) VALUES (new.id, new.name);
END;
CREATE TRIGGER repositories_fts_delete AFTER DELETE ON repositories BEGIN
    INSERT INTO repositories_fts(repositories_fts, rowid, name) VALUES ('delete', old.id, old.name);
END;

-- Substring search over tags goes through the vocabulary of distinct tag names
-- (far fewer than tags: latest, v1.2.3, ...), then tags_name. Names stay once
-- seen; a name without tags matches nothing.
CREATE TABLE tag_names (
    id   INTEGER PRIMARY KEY,
    name TEXT    NOT NULL UNIQUE
);
CREATE INDEX tag_names_lower ON tag_names(lower(name));
INSERT INTO tag_names (name) SELECT DISTINCT name FROM tags;
CREATE TRIGGER tags_vocabulary AFTER INSERT ON tags BEGIN
    INSERT INTO tag_names (name) VALUES (new.name) ON CONFLICT(name) DO NOTHING;
END;
CREATE VIRTUAL TABLE tag_names_fts USING fts5(name, content='tag_names', content_rowid='id', tokenize='trigram');
INSERT INTO tag_names_fts(tag_names_fts) VALUES ('rebuild');
CREATE TRIGGER tag_names_fts_insert AFTER INSERT ON tag_names BEGIN
    INSERT INTO tag_names_fts(rowid, name) VALUES (new.id, new.name);
END;
