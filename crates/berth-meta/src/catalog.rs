//! The management views of the registry tables: image listings and search
//! (seed 000 `/api/images`), repository details (seed 004 `Repository`) and
//! batched usage counters.
//!
//! Listings page with `LIMIT`/`OFFSET` in name, tag order and count their total
//! with `COUNT(*)` over the tags primary-key index (an index-only count: no
//! table rows are read, but it is linear in the number of tags; at 100k
//! repositories it stays in the low milliseconds). Search never scans:
//! substrings of three characters or more go through trigram indexes (SQLite
//! FTS5 `trigram`, PostgreSQL `pg_trgm` GIN), shorter queries match name
//! prefixes through byte-order B-tree indexes.

use async_trait::async_trait;

use crate::MetaError;

/// Whose view a listing is: everything, or what one user may pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    /// Authentication off, or an administrator.
    All,
    /// A signed-in user: repositories of public projects, public
    /// repositories, projects the user is a member of, and repositories of no
    /// project (pushed while authentication was off).
    User(i64),
}

impl Viewer {
    pub(crate) fn user_id(self) -> Option<i64> {
        match self {
            Viewer::All => None,
            Viewer::User(id) => Some(id),
        }
    }
}

/// One tag of one repository, as the image views show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRow {
    pub repo: String,
    pub tag: String,
    pub digest: String,
    pub media_type: String,
    /// The manifest's size plus the blobs it references (config, layers) and,
    /// for an index, its child manifests and their blobs. Blobs of a cached
    /// image count once they have been fetched.
    pub size: i64,
    /// When the tag was last pushed (moved).
    pub created_at: i64,
    pub pull_count: i64,
    pub push_count: i64,
    pub last_pulled_at: Option<i64>,
    /// The repository belongs to a pull-through cache namespace.
    pub cached: bool,
}

/// A page of images with the total across all pages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImagePage {
    pub images: Vec<ImageRow>,
    pub total: i64,
}

/// A repository with its details and totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryRecord {
    pub name: String,
    pub project: String,
    pub description: String,
    /// The repository's own visibility; `None` = its project's applies.
    pub visibility: Option<String>,
    /// The project's visibility (`None` when the repository has no project row).
    pub project_visibility: Option<String>,
    /// The username of the project's first owner.
    pub owner: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Manifests plus the distinct blobs they reference.
    pub size: i64,
    pub pull_count: i64,
    pub push_count: i64,
    pub last_pulled_at: Option<i64>,
}

impl RepositoryRecord {
    /// The visibility that applies: the repository's own, else its project's
    /// (`private` when neither is set).
    pub fn effective_visibility(&self) -> &str {
        self.visibility.as_deref().or(self.project_visibility.as_deref()).unwrap_or("private")
    }
}

/// Pulls recorded in memory and written in one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullTally {
    pub repo: String,
    /// The tag pulled, when the reference was one.
    pub tag: Option<String>,
    pub count: i64,
    /// The last pull's time.
    pub at: i64,
}

/// Read models for the management APIs and their counters.
#[async_trait]
pub trait CatalogStore: Send + Sync {
    /// Images the viewer may pull, ordered by repository then tag.
    async fn list_images(&self, viewer: Viewer, offset: i64, limit: i64) -> Result<ImagePage, MetaError>;

    /// Images whose repository name or tag contains `query` (case-insensitive;
    /// fewer than three characters: starts with it), in listing order.
    async fn search_images(&self, query: &str, viewer: Viewer, offset: i64, limit: i64)
    -> Result<ImagePage, MetaError>;

    /// Every tag of one repository, by tag.
    async fn repo_images(&self, repo: &str) -> Result<Vec<ImageRow>, MetaError>;

    /// One tag of one repository.
    async fn image(&self, repo: &str, tag: &str) -> Result<Option<ImageRow>, MetaError>;

    /// A repository's details, `None` when it does not exist.
    async fn repository(&self, repo: &str) -> Result<Option<RepositoryRecord>, MetaError>;

    /// The repository's own visibility (`Ok(None)`: none set, or no such repository).
    async fn repo_visibility(&self, repo: &str) -> Result<Option<String>, MetaError>;

    /// Sets description and/or visibility; false when the repository is missing.
    async fn update_repository(
        &self,
        repo: &str,
        description: Option<&str>,
        visibility: Option<&str>,
        at: i64,
        events: &[crate::EventDraft],
    ) -> Result<bool, MetaError>;

    /// Removes a repository with every tag, manifest, blob link and upload
    /// session in it (blobs themselves stay for garbage collection). False
    /// when it does not exist.
    async fn delete_repository(&self, repo: &str, events: &[crate::EventDraft]) -> Result<bool, MetaError>;

    /// Adds batched pulls to the repository and tag counters, in one transaction.
    async fn record_pulls(&self, pulls: &[PullTally]) -> Result<(), MetaError>;

    /// `(applied, known)`: the newest schema migration applied to the
    /// database and the newest this build knows. Proves the database answers.
    async fn schema_versions(&self) -> Result<(i64, i64), MetaError>;

    /// Indexes the names added since the last call where the backend indexes
    /// them in batches (SQLite's tag names, off the push path), returning how
    /// many. Searches find names not yet indexed all the same.
    async fn index_search_backlog(&self) -> Result<u64, MetaError>;

    /// The query plan of [`CatalogStore::search_images`] for `query` (one line
    /// per plan node), so tests can check that it uses the search indexes.
    async fn explain_search(&self, query: &str) -> Result<Vec<String>, MetaError>;
}

/// The search strings bound for `query`: the trigram form (a quoted FTS5
/// phrase or an escaped `ILIKE` pattern, by dialect) or, for short queries,
/// the lowercase prefix and its exclusive upper bound.
pub(crate) enum SearchArgs {
    Substring(String),
    Prefix(String, String),
}

impl SearchArgs {
    pub(crate) fn new(query: &str, trigram_form: fn(&str) -> String) -> SearchArgs {
        let lower = query.to_lowercase();
        if lower.chars().count() >= 3 {
            SearchArgs::Substring(trigram_form(&lower))
        } else {
            let upper = format!("{lower}\u{10FFFF}");
            SearchArgs::Prefix(lower, upper)
        }
    }
}

/// `query` as an FTS5 phrase: a trigram phrase matches as a substring.
pub(crate) fn fts5_phrase(query: &str) -> String {
    format!("\"{}\"", query.replace('"', "\"\""))
}

/// `query` as an `ILIKE` substring pattern with `\`, `%` and `_` escaped.
pub(crate) fn ilike_substring(query: &str) -> String {
    let mut out = String::with_capacity(query.len() + 2);
    out.push('%');
    for c in query.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}
