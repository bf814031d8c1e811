//! Totals over the whole registry, for health and usage reports.
//!
//! One round trip per call: every figure comes from a single statement, the
//! same SQL in both dialects (`CAST … AS BIGINT` because PostgreSQL's `SUM`
//! of a `BIGINT` is a `NUMERIC`).

use async_trait::async_trait;

use crate::{MetaError, PostgresMeta, SqliteMeta};

/// How much the registry holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistryTotals {
    /// Repositories (every row of the catalog, cache repositories included).
    pub repositories: i64,
    /// `repository:tag` pairs.
    pub tags: i64,
    /// Stored manifests, counted once per repository holding them.
    pub manifests: i64,
    /// Distinct blobs visible in at least one repository.
    pub blobs: i64,
    /// Sum of the sizes of those blobs (each counted once).
    pub blob_bytes: i64,
}

/// Whole-registry totals.
#[async_trait]
pub trait StatsStore: Send + Sync {
    /// Counts repositories, tags, manifests and live blobs in one statement.
    async fn registry_totals(&self) -> Result<RegistryTotals, MetaError>;

    /// The cheapest statement that proves the database answers.
    async fn ping(&self) -> Result<(), MetaError>;
}

const TOTALS_SQL: &str = "SELECT
    (SELECT COUNT(*) FROM repositories),
    (SELECT COUNT(*) FROM tags),
    (SELECT COUNT(*) FROM manifests),
    (SELECT COUNT(*) FROM blobs b WHERE EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = b.digest)),
    (SELECT CAST(COALESCE(SUM(b.size), 0) AS BIGINT) FROM blobs b
        WHERE EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = b.digest))";

type TotalsRow = (i64, i64, i64, i64, i64);

fn totals((repositories, tags, manifests, blobs, blob_bytes): TotalsRow) -> RegistryTotals {
    RegistryTotals { repositories, tags, manifests, blobs, blob_bytes }
}

#[async_trait]
impl StatsStore for SqliteMeta {
    async fn registry_totals(&self) -> Result<RegistryTotals, MetaError> {
        let row: TotalsRow = sqlx::query_as(TOTALS_SQL).fetch_one(&mut *self.read_conn().await?).await?;
        Ok(totals(row))
    }

    async fn ping(&self) -> Result<(), MetaError> {
        let _: i64 = sqlx::query_scalar("SELECT 1").fetch_one(&mut *self.read_conn().await?).await?;
        Ok(())
    }
}

#[async_trait]
impl StatsStore for PostgresMeta {
    async fn registry_totals(&self) -> Result<RegistryTotals, MetaError> {
        let row: TotalsRow = sqlx::query_as(TOTALS_SQL).fetch_one(self.pool()).await?;
        Ok(totals(row))
    }

    async fn ping(&self) -> Result<(), MetaError> {
        let _: i32 = sqlx::query_scalar("SELECT 1").fetch_one(self.pool()).await?;
        Ok(())
    }
}
