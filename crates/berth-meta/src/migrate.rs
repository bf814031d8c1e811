//! Embedded migrations, one folder per SQL dialect, run by sqlx's migrator.

use std::borrow::Cow;

use sqlx::SqlStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// A migrator over `(version, name, sql)` entries embedded with `include_str!`.
pub(crate) fn migrator(migrations: &'static [(i64, &'static str, &'static str)]) -> Migrator {
    let migrations = migrations
        .iter()
        .map(|(version, name, sql)| {
            Migration::new(*version, Cow::Borrowed(*name), MigrationType::Simple, SqlStr::from_static(sql), false)
        })
        .collect();
    Migrator::with_migrations(migrations)
}
