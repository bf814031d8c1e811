-- New tag names reach the trigram index in batches, off the push path: the
-- FTS5 insert wrote about six more WAL pages into every tag PUT that brought a
-- new name. Names after the watermark are searched directly (a primary-key
-- range that the next batch empties), so a search still sees every name at once.
DROP TRIGGER tag_names_fts_insert;

CREATE TABLE search_backlog (
    -- The FTS5 table a watermark belongs to.
    name    TEXT    PRIMARY KEY,
    -- Rows of its content table with an id up to this one are indexed.
    indexed INTEGER NOT NULL
);
INSERT INTO search_backlog (name, indexed) VALUES ('tag_names_fts', COALESCE((SELECT MAX(id) FROM tag_names), 0));
