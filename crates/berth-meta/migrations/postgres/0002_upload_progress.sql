-- Upload progress that lets any node (or a restarted one) continue a session
-- without re-reading its bytes: the serialized hash state and the blob store's
-- opaque cursor (e.g. an S3 multipart upload id and its parts).
ALTER TABLE uploads ADD COLUMN hash_state BYTEA;
ALTER TABLE uploads ADD COLUMN cursor TEXT NOT NULL DEFAULT '';
