-- Per-repository details (seed 004's Repository), usage counters, and the
-- indexes behind /api/images/search.

ALTER TABLE repositories ADD COLUMN description TEXT NOT NULL DEFAULT '';
-- NULL: the project's visibility applies; set, it overrides the project's.
ALTER TABLE repositories ADD COLUMN visibility TEXT CHECK (visibility IN ('public', 'private'));
-- Last change of description or visibility; NULL = never changed (created_at).
ALTER TABLE repositories ADD COLUMN updated_at BIGINT;
ALTER TABLE repositories ADD COLUMN pull_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE repositories ADD COLUMN push_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE repositories ADD COLUMN last_pulled_at BIGINT;

ALTER TABLE tags ADD COLUMN pull_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tags ADD COLUMN push_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tags ADD COLUMN last_pulled_at BIGINT;
CREATE INDEX tags_name ON tags(name);

-- Substring search (ILIKE '%q%') uses pg_trgm GIN indexes; queries shorter
-- than a trigram use the byte-order prefix indexes instead. pg_trgm ships in
-- PostgreSQL's contrib (Debian: postgresql-15) and is a trusted extension.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX repositories_name_trgm ON repositories USING gin (name gin_trgm_ops);
CREATE INDEX repositories_name_bytes ON repositories ((name COLLATE "C"));

-- Tags are searched through the vocabulary of distinct tag names (far fewer
-- than tags), then tags_name. Names stay once seen; a name without tags
-- matches nothing.
CREATE TABLE tag_names (
    id   BIGSERIAL PRIMARY KEY,
    name TEXT      NOT NULL UNIQUE
);
INSERT INTO tag_names (name) SELECT DISTINCT name FROM tags;
CREATE INDEX tag_names_trgm ON tag_names USING gin (name gin_trgm_ops);
CREATE INDEX tag_names_lower_bytes ON tag_names ((lower(name) COLLATE "C"));
CREATE FUNCTION berth_tag_vocabulary() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tag_names (name) VALUES (NEW.name) ON CONFLICT (name) DO NOTHING;
    RETURN NEW;
END
$$;
CREATE TRIGGER tags_vocabulary AFTER INSERT ON tags FOR EACH ROW EXECUTE FUNCTION berth_tag_vocabulary();
