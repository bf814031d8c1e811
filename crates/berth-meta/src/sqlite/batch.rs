//! The writes on every push path, the manifest PUT and the blob link, as
//! whole transactions for the writer thread ([`super::thread`]); and the
//! upload sessions' bookkeeping writes, which that thread runs without
//! waiting for the disk.
//!
//! Each is a list of statements, prepared once per connection. Reads that
//! decide the outcome (missing references, tags that move, the immutability
//! rules that may protect them) come back as rows tagged with what they are,
//! and the transaction commits or rolls back on them. Parameters are named and
//! shared by all the statements (lists as JSON arrays). Every write joins the
//! repository by name, so against a repository that does not exist yet the
//! statements change nothing and say so; the repository is then created and
//! they run again.

use berth_core::{Digest, RepoName, Tag};
use rusqlite::ToSql;
use rusqlite::types::Value;

use crate::immutability;
use crate::registry_sql::parse_digest;
use crate::{
    EventActor, EventDraft, EventKind, GcKind, MetaError, NewManifest, NewUpload, UploadProgress, now_ms, now_unix,
};

/// The events of a change (`$.events`: rows in column order), once the
/// repository exists.
const INSERT_EVENTS: &str = "
INSERT INTO events (type, at_ms, actor, ip, repository, digest, tag, media_type, size, detail)
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4,
       value ->> 5, value ->> 6, value ->> 7, value ->> 8, value ->> 9
  FROM json_each(:events)
 WHERE EXISTS (SELECT 1 FROM repositories WHERE name = :repo)
 ORDER BY key";

/// The manifest PUT.
const PUT_MANIFEST: &[&str] = &[
    "
UPDATE repositories SET push_count = push_count + (:pushes) WHERE name = :repo
RETURNING 'repo', id, NULL",
    "
SELECT 'missing', j.value, NULL FROM json_each(:blobs) j
 WHERE :require AND NOT EXISTS
       (SELECT 1 FROM repository_blobs b
         WHERE b.repo_id = (SELECT id FROM repositories WHERE name = :repo) AND b.digest = j.value)
UNION ALL
SELECT 'missing', j.value, NULL FROM json_each(:children) j
 WHERE :require AND NOT EXISTS
       (SELECT 1 FROM manifests c
         WHERE c.repo_id = (SELECT id FROM repositories WHERE name = :repo) AND c.digest = j.value)",
    "
INSERT INTO manifests
  (repo_id, digest, media_type, artifact_type, subject_digest, annotations, size, payload, created_at)
SELECT id, :digest, :media_type, :artifact_type, :subject,
       :annotations, length(:payload), :payload, :now
  FROM repositories WHERE name = :repo
ON CONFLICT(repo_id, digest) DO NOTHING",
    // A manifest's references live and die with it: for one already here they
    // are here too, and this changes nothing.
    "
INSERT INTO manifest_refs (repo_id, manifest_digest, child_digest, kind)
SELECT * FROM (SELECT r.id, :digest, j.value, 'blob'
                 FROM repositories r, json_each(:blobs) j WHERE r.name = :repo
               UNION ALL
               SELECT r.id, :digest, j.value, 'manifest'
                 FROM repositories r, json_each(:children) j WHERE r.name = :repo)
WHERE true ON CONFLICT DO NOTHING",
    // Tags that move to this manifest, and (only then) the rules that may protect them.
    "
SELECT 'moving', name, manifest_digest FROM tags
 WHERE repo_id = (SELECT id FROM repositories WHERE name = :repo)
   AND name IN (SELECT value FROM json_each(:tags)) AND manifest_digest <> :digest
 ORDER BY name",
    "
SELECT 'rule', repository, pattern FROM immutable_tag_rules
 WHERE project = :project
   AND EXISTS (SELECT 1 FROM tags
                WHERE repo_id = (SELECT id FROM repositories WHERE name = :repo)
                  AND name IN (SELECT value FROM json_each(:tags))
                  AND manifest_digest <> :digest)",
    // What the moving tags pointed at (and those manifests' subjects) may be
    // garbage once they move. A protected tag rolls all of this back.
    "
INSERT INTO gc_queue (kind, repo_id, digest, queued_at)
SELECT :manifest_kind, repo_id, digest, :queued_at FROM (
  SELECT t.repo_id, t.manifest_digest AS digest FROM tags t
   WHERE t.repo_id = (SELECT id FROM repositories WHERE name = :repo)
     AND t.name IN (SELECT value FROM json_each(:tags)) AND t.manifest_digest <> :digest
  UNION
  SELECT m.repo_id, m.subject_digest FROM tags t
    JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.manifest_digest
   WHERE t.repo_id = (SELECT id FROM repositories WHERE name = :repo)
     AND t.name IN (SELECT value FROM json_each(:tags)) AND t.manifest_digest <> :digest
     AND m.subject_digest IS NOT NULL)
WHERE true
ON CONFLICT (kind, repo_id, digest) DO UPDATE SET queued_at = excluded.queued_at",
    "
INSERT INTO tags (repo_id, name, manifest_digest, updated_at, push_count)
SELECT r.id, j.value, :digest, :now, :pushes
  FROM repositories r, json_each(:tags) j WHERE r.name = :repo ORDER BY j.value
ON CONFLICT(repo_id, name) DO UPDATE SET manifest_digest = excluded.manifest_digest,
                                         updated_at = excluded.updated_at,
                                         push_count = tags.push_count + excluded.push_count",
    "
INSERT INTO gc_queue (kind, repo_id, digest, queued_at)
SELECT :manifest_kind, id, :digest, :queued_at
  FROM repositories WHERE name = :repo AND :queue
ON CONFLICT (kind, repo_id, digest) DO UPDATE SET queued_at = excluded.queued_at",
    INSERT_EVENTS,
];

/// The blob link: the blob's row, its link into the repository, the link's
/// place in the GC queue (garbage once the grace period ends, until a manifest
/// references it) and the events.
const LINK_BLOB: &[&str] = &[
    "SELECT 'repo', id, NULL FROM repositories WHERE name = :repo",
    "
INSERT INTO blobs (digest, size, created_at)
SELECT :digest, :size, :now
 WHERE EXISTS (SELECT 1 FROM repositories WHERE name = :repo)
ON CONFLICT(digest) DO NOTHING",
    "
INSERT INTO repository_blobs (repo_id, digest, created_at)
SELECT id, :digest, :now FROM repositories WHERE name = :repo
ON CONFLICT(repo_id, digest) DO NOTHING",
    "
INSERT INTO gc_queue (kind, repo_id, digest, queued_at)
SELECT :queue_kind, id, :digest, :queued_at FROM repositories WHERE name = :repo
ON CONFLICT (kind, repo_id, digest) DO UPDATE SET queued_at = excluded.queued_at",
    INSERT_EVENTS,
];

/// A row a batch returns: what it is (`repo`, `missing`, `moving`, `rule`) and two values.
struct Tagged {
    kind: String,
    first: Value,
    second: Value,
}

/// Named parameters of a batch: each statement binds the ones it uses.
type Params<'a> = [(&'static str, &'a dyn ToSql)];

/// Runs `statements` with `params`, collecting the rows they return.
fn run(tx: &rusqlite::Transaction<'_>, statements: &[&str], params: &Params<'_>) -> Result<Vec<Tagged>, MetaError> {
    let mut rows = Vec::new();
    for sql in statements {
        let mut statement = tx.prepare_cached(sql)?;
        for (name, value) in params {
            if let Some(index) = statement.parameter_index(name)? {
                statement.raw_bind_parameter(index, value)?;
            }
        }
        let returns = statement.column_count() > 0;
        let mut out = statement.raw_query();
        while let Some(row) = out.next()? {
            if returns {
                rows.push(Tagged { kind: row.get(0)?, first: row.get(1)?, second: row.get(2)? });
            }
        }
    }
    Ok(rows)
}

/// Creates a repository (known not to exist). A new repository gets a
/// `repository.create` event by `actor` (none without one).
fn create_repo(tx: &rusqlite::Transaction<'_>, repo: &RepoName, actor: Option<&EventActor>) -> Result<(), MetaError> {
    tx.prepare_cached("INSERT INTO repositories (name, project, created_at) VALUES (?1, ?2, ?3)")?.execute((
        repo.as_str(),
        repo.project(),
        now_unix(),
    ))?;
    if let Some(actor) = actor {
        let create = EventDraft::new(EventKind::RepositoryCreate, actor).repository(repo.as_str());
        let events = events_json(&[create]);
        run(tx, &[INSERT_EVENTS], &[(":repo", &repo.as_str()), (":events", &events)])?;
    }
    Ok(())
}

/// The error for a repository that a batch did not find right after it was created.
fn vanished(repo: &RepoName) -> MetaError {
    MetaError::Corrupt(format!("repository {repo} vanished"))
}

/// What the manifest batch found, for the caller to act on before committing.
#[derive(Debug, Default)]
struct PutOutcome {
    /// Required references that are not in the repository.
    missing: Vec<String>,
    /// Tags that moved to the new manifest.
    moved: Vec<String>,
    /// Immutability rules of the project, read only when a tag moved.
    rules: Vec<(String, String)>,
}

/// The transaction of a manifest PUT: `m` stored in `repo` and tagged `tags`,
/// creating the repository on its first push.
pub(super) fn put_manifest(
    conn: &mut rusqlite::Connection,
    repo: &RepoName,
    m: &NewManifest,
    tags: &[Tag],
) -> Result<(), MetaError> {
    let mut tag_names: Vec<&str> = tags.iter().map(Tag::as_str).collect();
    tag_names.sort_unstable();
    let (blobs, children) = (digests_json(&m.blob_refs), digests_json(&m.manifest_refs));
    let tag_names = serde_json::to_string(&tag_names).expect("strings serialise");
    let events = events_json(&m.events);
    // Pushes count; manifests stored by the pull-through cache do not.
    let pushes = i64::from(m.require_references);
    // A manifest pushed without a tag is garbage unless an index or a tagged
    // referrer comes to hold it.
    let queue = tags.is_empty() && m.require_references;
    let params: &Params<'_> = &[
        (":repo", &repo.as_str()),
        (":project", &repo.project()),
        (":pushes", &pushes),
        (":require", &m.require_references),
        (":blobs", &blobs),
        (":children", &children),
        (":digest", &m.digest.as_str()),
        (":media_type", &m.media_type),
        (":artifact_type", &m.artifact_type),
        (":subject", &m.subject.as_ref().map(Digest::as_str)),
        (":annotations", &m.annotations_json),
        (":payload", &m.payload),
        (":now", &now_unix()),
        (":tags", &tag_names),
        (":queue", &queue),
        (":manifest_kind", &GcKind::Manifest.as_str()),
        (":queued_at", &now_ms()),
        (":events", &events),
    ];
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut rows = run(&tx, PUT_MANIFEST, params)?;
    if !rows.iter().any(|r| r.kind == "repo") {
        // The first push into the repository: the batch wrote nothing.
        create_repo(&tx, repo, m.events.first().map(|e| &e.actor))?;
        rows = run(&tx, PUT_MANIFEST, params)?;
        if !rows.iter().any(|r| r.kind == "repo") {
            return Err(vanished(repo));
        }
    }
    let mut outcome = PutOutcome::default();
    for row in rows {
        match (row.kind.as_str(), row.first, row.second) {
            ("repo", _, _) => {}
            ("missing", Value::Text(digest), _) => outcome.missing.push(digest),
            ("moving", Value::Text(tag), _) => outcome.moved.push(tag),
            ("rule", Value::Text(repository), Value::Text(pattern)) => outcome.rules.push((repository, pattern)),
            (other, ..) => return Err(MetaError::Corrupt(format!("unexpected row {other:?} from the manifest PUT"))),
        }
    }
    // Returning drops `tx`, which rolls the whole PUT back.
    if !outcome.missing.is_empty() {
        return Err(MetaError::MissingReferences(
            outcome.missing.iter().map(|d| parse_digest(d)).collect::<Result<_, _>>()?,
        ));
    }
    // A protected tag is written once, and again only with the same manifest.
    if let Some(tag) = immutability::protected(&outcome.rules, repo.as_str(), outcome.moved.iter().map(String::as_str))
    {
        return Err(MetaError::ImmutableTag(tag));
    }
    tx.commit()?;
    Ok(())
}

/// The transaction of a blob link: blob `digest` (`size` bytes) linked into
/// `repo`, creating the repository on its first push.
pub(super) fn link_blob(
    conn: &mut rusqlite::Connection,
    repo: &RepoName,
    digest: &Digest,
    size: u64,
    events: &[EventDraft],
    finished_upload: Option<&str>,
) -> Result<(), MetaError> {
    let events_rows = events_json(events);
    let size = i64::try_from(size).map_err(|_| MetaError::Corrupt(format!("blob size {size} out of range")))?;
    let params: &Params<'_> = &[
        (":repo", &repo.as_str()),
        (":digest", &digest.as_str()),
        (":size", &size),
        (":now", &now_unix()),
        (":queue_kind", &GcKind::Link.as_str()),
        (":queued_at", &now_ms()),
        (":events", &events_rows),
    ];
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    if run(&tx, LINK_BLOB, params)?.is_empty() {
        // The first push into the repository: the batch wrote nothing.
        create_repo(&tx, repo, events.first().map(|e| &e.actor))?;
        if run(&tx, LINK_BLOB, params)?.is_empty() {
            return Err(vanished(repo));
        }
    }
    if let Some(upload) = finished_upload {
        tx.prepare_cached("DELETE FROM uploads WHERE id = ?1")?.execute([upload])?;
    }
    tx.commit()?;
    Ok(())
}

/// The transaction that starts upload session `upload`, creating its
/// repository on the first push into it.
pub(super) fn create_upload(conn: &mut rusqlite::Connection, upload: &NewUpload) -> Result<(), MetaError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let repo_id = match repo_id(&tx, &upload.repo)? {
        Some(id) => id,
        None => {
            create_repo(&tx, &upload.repo, Some(&upload.actor))?;
            repo_id(&tx, &upload.repo)?.ok_or_else(|| vanished(&upload.repo))?
        }
    };
    let now = now_unix();
    tx.prepare_cached(
        "INSERT INTO uploads (id, repo_id, received, algorithm, started_at, updated_at, cursor)
         VALUES (?1, ?2, 0, ?3, ?4, ?4, ?5)",
    )?
    .execute((&upload.id, repo_id, upload.algorithm.as_str(), now, &upload.cursor))?;
    tx.commit()?;
    Ok(())
}

/// Records the progress of upload `id`, if it still stands at
/// `expected_received` bytes (false otherwise, or when it is gone).
pub(super) fn save_upload_progress(
    conn: &mut rusqlite::Connection,
    id: &str,
    expected_received: u64,
    progress: &UploadProgress,
) -> Result<bool, MetaError> {
    let received = |bytes: u64| i64::try_from(bytes).map_err(|_| MetaError::Corrupt(format!("upload offset {bytes}")));
    let changed = conn
        .prepare_cached(
            "UPDATE uploads SET received = ?1, hash_state = ?2, cursor = ?3, updated_at = ?4
              WHERE id = ?5 AND received = ?6",
        )?
        .execute((
            received(progress.received)?,
            &progress.hash_state,
            &progress.cursor,
            now_unix(),
            id,
            received(expected_received)?,
        ))?;
    Ok(changed > 0)
}

/// Deletes upload session `id` (false if it was gone).
pub(super) fn delete_upload(conn: &mut rusqlite::Connection, id: &str) -> Result<bool, MetaError> {
    Ok(conn.prepare_cached("DELETE FROM uploads WHERE id = ?1")?.execute([id])? > 0)
}

/// Marks upload `upload_id` as committing `digest` before its bytes are put
/// in place, unless the collector is deleting that digest's bytes (false).
pub(super) fn mark_upload_committing(
    conn: &mut rusqlite::Connection,
    upload_id: &str,
    digest: &str,
) -> Result<bool, MetaError> {
    use rusqlite::OptionalExtension;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let deleting: Option<Option<i64>> = tx
        .prepare_cached("SELECT deleting_since FROM blobs WHERE digest = ?1")?
        .query_row([digest], |row| row.get(0))
        .optional()?;
    if matches!(deleting, Some(Some(_))) {
        return Ok(false);
    }
    tx.prepare_cached("UPDATE uploads SET committing = ?1 WHERE id = ?2")?.execute([digest, upload_id])?;
    tx.commit()?;
    Ok(true)
}

/// The id of repository `repo`, if it exists.
fn repo_id(tx: &rusqlite::Transaction<'_>, repo: &RepoName) -> Result<Option<i64>, MetaError> {
    use rusqlite::OptionalExtension;
    Ok(tx
        .prepare_cached("SELECT id FROM repositories WHERE name = ?1")?
        .query_row([repo.as_str()], |row| row.get(0))
        .optional()?)
}

/// `digests` as a JSON array.
fn digests_json(digests: &[Digest]) -> String {
    serde_json::to_string(&digests.iter().map(Digest::as_str).collect::<Vec<_>>()).expect("strings serialise")
}

/// `events` as a JSON array of rows in the column order of `events`.
fn events_json(events: &[EventDraft]) -> String {
    let rows: Vec<serde_json::Value> = events
        .iter()
        .map(|e| {
            serde_json::json!([
                e.kind.as_str(),
                e.at_ms,
                e.actor.name,
                e.actor.ip,
                e.repository,
                e.digest,
                e.tag,
                e.media_type,
                e.size,
                e.detail.to_string(),
            ])
        })
        .collect();
    serde_json::Value::from(rows).to_string()
}
