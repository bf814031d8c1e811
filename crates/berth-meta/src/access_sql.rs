//! One implementation of [`AccessStore`](crate::AccessStore) and
//! [`AuditLog`](crate::AuditLog) for both SQL dialects.
//!
//! The access tables are small and their SQL is portable: `$N` placeholders
//! work on SQLite too (sqlx binds `$N` to argument N), integers are 64-bit in
//! both schemas and booleans are stored as 0/1. So, unlike the registry tables
//! (where each dialect has its own tuned statements), the code is written once
//! and expanded per backend by [`access_impl!`].

use berth_access::audit_chain::{ChainEntry, chain_hash};

use crate::{AuditDraft, MetaError};

/// The chained fields of an entry about to be written as `id` after `prev_hash`.
pub(crate) fn chained(draft: &AuditDraft, id: i64, at: i64, prev_hash: &str) -> (String, String) {
    let entry = ChainEntry {
        id,
        timestamp: crate::rfc3339(at),
        level: draft.level.to_owned(),
        event: draft.event.clone(),
        action: draft.action.clone(),
        user_id: draft.user_id,
        username: draft.username.clone(),
        ip_address: draft.ip_address.clone(),
        resource: draft.resource.clone(),
        status: draft.status.to_owned(),
        detail: draft.detail.clone(),
    };
    let hash = chain_hash(prev_hash, &entry.canonical_json());
    (entry.timestamp, hash)
}

/// A stored list of strings, as a JSON array.
pub(crate) fn json_list(values: &[String]) -> String {
    serde_json::to_string(values).unwrap_or_else(|_| "[]".into())
}

pub(crate) fn parse_json_list(text: &str) -> Result<Vec<String>, MetaError> {
    serde_json::from_str(text).map_err(|e| MetaError::Corrupt(format!("bad JSON list {text:?}: {e}")))
}

/// SQL assembled from this module's constant fragments (never from input).
macro_rules! dyn_sql {
    ($($arg:tt)*) => {
        sqlx::AssertSqlSafe(format!($($arg)*))
    };
}
pub(crate) use dyn_sql;

/// Expands the access implementation for one backend type.
///
/// `$ty` is the backend (with `read_conn` and `write_conn`), `$db` its sqlx database
/// fields used for writes and reads.
macro_rules! access_impl {
    ($ty:ty, $db:ty) => {
        use async_trait::async_trait;
        use sqlx::Row;

        use $crate::access_sql::{chained, json_list, parse_json_list};
        use $crate::{
            AccessStore, AuditDraft, AuditFilter, AuditLog, AuditRecord, MetaError, NewToken, NewUser,
            ProjectRecord, SessionRecord, TokenRecord, UserRecord, UserUpdate, now_unix,
        };

        type Tx<'a> = sqlx::Transaction<'a, $db>;
        type DbRow = <$db as sqlx::Database>::Row;

        const USER_COLUMNS: &str = "id, username, email, password_hash, role, is_active, must_change_password, \
             totp_secret, totp_enabled, recovery_codes, created_at, updated_at, last_login";
        const TOKEN_COLUMNS: &str = "id, user_id, name, lookup, hash, permissions, repositories, created_at, \
             expires_at, last_used, revoked_at";
        const AUDIT_COLUMNS: &str = "id, timestamp, at, level, event, action, user_id, username, ip_address, \
             resource, status, detail, prev_hash, hash";
        // Every audit filter is optional: `$N IS NULL OR …` keeps one statement.
        const AUDIT_WHERE: &str = "($1 IS NULL OR event = $1) AND ($2 IS NULL OR action = $2) \
             AND ($3 IS NULL OR username = $3) AND ($4 IS NULL OR at >= $4) AND ($5 IS NULL OR at <= $5)";

        fn user_row(row: &DbRow) -> Result<UserRecord, MetaError> {
            Ok(UserRecord {
                id: row.try_get("id")?,
                username: row.try_get("username")?,
                email: row.try_get("email")?,
                password_hash: row.try_get("password_hash")?,
                role: row.try_get("role")?,
                is_active: row.try_get::<i64, _>("is_active")? != 0,
                must_change_password: row.try_get::<i64, _>("must_change_password")? != 0,
                totp_secret: row.try_get("totp_secret")?,
                totp_enabled: row.try_get::<i64, _>("totp_enabled")? != 0,
                recovery_codes: row.try_get("recovery_codes")?,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
                last_login: row.try_get("last_login")?,
            })
        }

        fn token_row(row: &DbRow) -> Result<TokenRecord, MetaError> {
            Ok(TokenRecord {
                id: row.try_get("id")?,
                user_id: row.try_get("user_id")?,
                name: row.try_get("name")?,
                lookup: row.try_get("lookup")?,
                hash: row.try_get("hash")?,
                permissions: parse_json_list(&row.try_get::<String, _>("permissions")?)?,
                repositories: parse_json_list(&row.try_get::<String, _>("repositories")?)?,
                created_at: row.try_get("created_at")?,
                expires_at: row.try_get("expires_at")?,
                last_used: row.try_get("last_used")?,
                revoked_at: row.try_get("revoked_at")?,
            })
        }

        fn audit_row(row: &DbRow) -> Result<AuditRecord, MetaError> {
            Ok(AuditRecord {
                id: row.try_get("id")?,
                timestamp: row.try_get("timestamp")?,
                at: row.try_get("at")?,
                level: row.try_get("level")?,
                event: row.try_get("event")?,
                action: row.try_get("action")?,
                user_id: row.try_get("user_id")?,
                username: row.try_get("username")?,
                ip_address: row.try_get("ip_address")?,
                resource: row.try_get("resource")?,
                status: row.try_get("status")?,
                detail: row.try_get("detail")?,
                prev_hash: row.try_get("prev_hash")?,
                hash: row.try_get("hash")?,
            })
        }

        fn session_row(row: &DbRow) -> Result<SessionRecord, MetaError> {
            Ok(SessionRecord {
                id: row.try_get("id")?,
                user_id: row.try_get("user_id")?,
                ip: row.try_get("ip")?,
                csrf_hash: row.try_get("csrf_hash")?,
                created_at: row.try_get("created_at")?,
                last_seen: row.try_get("last_seen")?,
                expires_at: row.try_get("expires_at")?,
                revoked_at: row.try_get("revoked_at")?,
            })
        }

        /// Chains and writes one audit entry inside `tx`. Updating the head row
        /// first takes its lock, so concurrent writers (other nodes too) chain in
        /// commit order and ids stay dense.
        pub(crate) async fn audit_in_tx(tx: &mut Tx<'_>, draft: &AuditDraft) -> Result<i64, MetaError> {
            let head = sqlx::query("UPDATE audit_head SET last_id = last_id + 1 WHERE one = 1 RETURNING last_id, hash")
                .fetch_one(&mut **tx)
                .await?;
            let id: i64 = head.try_get("last_id")?;
            let prev_hash: String = head.try_get("hash")?;
            let at = now_unix();
            let (timestamp, hash) = chained(draft, id, at, &prev_hash);
            sqlx::query(
                "INSERT INTO audit_log (id, timestamp, at, level, event, action, user_id, username, ip_address,
                     resource, status, detail, prev_hash, hash)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            )
            .bind(id)
            .bind(timestamp)
            .bind(at)
            .bind(draft.level)
            .bind(&draft.event)
            .bind(&draft.action)
            .bind(draft.user_id)
            .bind(&draft.username)
            .bind(&draft.ip_address)
            .bind(&draft.resource)
            .bind(draft.status)
            .bind(draft.detail.to_string())
            .bind(&prev_hash)
            .bind(&hash)
            .execute(&mut **tx)
            .await?;
            sqlx::query("UPDATE audit_head SET hash = $1 WHERE one = 1").bind(&hash).execute(&mut **tx).await?;
            // A management change is also an event, in the same transaction.
            if let Some(kind) = $crate::EventKind::from_audit_action(&draft.action).filter(|_| draft.status == "success")
            {
                let actor = $crate::EventActor::new(draft.username.clone(), draft.ip_address.clone());
                let mut event = $crate::EventDraft::new(kind, &actor);
                event.detail = serde_json::json!({ "resource": draft.resource, "audit_id": id });
                super::events::insert_events(tx, &[event]).await?;
            }
            Ok(id)
        }

        /// Active admins other than `id` (the last-admin invariant).
        async fn other_active_admins(tx: &mut Tx<'_>, id: i64) -> Result<i64, MetaError> {
            let n: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'admin' AND is_active = 1 AND id <> $1")
                    .bind(id)
                    .fetch_one(&mut **tx)
                    .await?;
            Ok(n)
        }

        fn is_unique_violation(e: &sqlx::Error) -> bool {
            matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
        }

        #[async_trait]
        impl AccessStore for $ty {
            async fn count_users(&self) -> Result<i64, MetaError> {
                Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&mut *self.read_conn().await?).await?)
            }

            async fn create_user(&self, user: &NewUser, audit: &AuditDraft) -> Result<UserRecord, MetaError> {
                let mut conn = self.write_conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let now = now_unix();
                let inserted = sqlx::query($crate::access_sql::dyn_sql!(
                    "INSERT INTO users (username, email, password_hash, role, must_change_password, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING {USER_COLUMNS}"
                ))
                .bind(&user.username)
                .bind(&user.email)
                .bind(&user.password_hash)
                .bind(&user.role)
                .bind(i64::from(user.must_change_password))
                .bind(now)
                .fetch_one(&mut *tx)
                .await;
                let row = match inserted {
                    Ok(row) => row,
                    Err(e) if is_unique_violation(&e) => {
                        return Err(MetaError::Conflict(format!("user {} exists", user.username)));
                    }
                    Err(e) => return Err(e.into()),
                };
                let record = user_row(&row)?;
                let mut audit = audit.clone();
                audit.resource = format!("user:{}", record.id);
                audit_in_tx(&mut tx, &audit).await?;
                tx.commit().await?;
                Ok(record)
            }

            async fn user_by_id(&self, id: i64) -> Result<Option<UserRecord>, MetaError> {
                let row = sqlx::query($crate::access_sql::dyn_sql!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&mut *self.read_conn().await?)
                    .await?;
                row.as_ref().map(user_row).transpose()
            }

            async fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>, MetaError> {
                let row = sqlx::query($crate::access_sql::dyn_sql!("SELECT {USER_COLUMNS} FROM users WHERE username = $1"))
                    .bind(username)
                    .fetch_optional(&mut *self.read_conn().await?)
                    .await?;
                row.as_ref().map(user_row).transpose()
            }

            async fn list_users(&self, offset: i64, limit: i64) -> Result<(Vec<UserRecord>, i64), MetaError> {
                let rows = sqlx::query($crate::access_sql::dyn_sql!("SELECT {USER_COLUMNS} FROM users ORDER BY id LIMIT $1 OFFSET $2"))
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(&mut *self.read_conn().await?)
                    .await?;
                let total = self.count_users().await?;
                Ok((rows.iter().map(user_row).collect::<Result<_, _>>()?, total))
            }

            async fn update_user(
                &self,
                id: i64,
                update: &UserUpdate,
                audit: &AuditDraft,
            ) -> Result<Option<UserRecord>, MetaError> {
                let mut conn = self.write_conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let Some(row) = sqlx::query($crate::access_sql::dyn_sql!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
                else {
                    return Ok(None);
                };
                let mut user = user_row(&row)?;
                if let Some(email) = &update.email {
                    user.email = email.clone();
                }
                if let Some(role) = &update.role {
                    user.role = role.clone();
                }
                if let Some(hash) = &update.password_hash {
                    user.password_hash = hash.clone();
                }
                if let Some(must) = update.must_change_password {
                    user.must_change_password = must;
                }
                if let Some(active) = update.is_active {
                    user.is_active = active;
                }
                if let Some((secret, enabled, codes)) = &update.totp {
                    user.totp_secret = secret.clone();
                    user.totp_enabled = *enabled;
                    user.recovery_codes = codes.clone();
                }
                let stays_admin = user.role == "admin" && user.is_active;
                if !stays_admin && other_active_admins(&mut tx, id).await? == 0 {
                    return Err(MetaError::Conflict("berth needs at least one active admin".into()));
                }
                user.updated_at = now_unix();
                sqlx::query(
                    "UPDATE users SET email = $2, role = $3, password_hash = $4, must_change_password = $5,
                         is_active = $6, totp_secret = $7, totp_enabled = $8, recovery_codes = $9, updated_at = $10
                     WHERE id = $1",
                )
                .bind(id)
                .bind(&user.email)
                .bind(&user.role)
                .bind(&user.password_hash)
                .bind(i64::from(user.must_change_password))
                .bind(i64::from(user.is_active))
                .bind(&user.totp_secret)
                .bind(i64::from(user.totp_enabled))
                .bind(&user.recovery_codes)
                .bind(user.updated_at)
                .execute(&mut *tx)
                .await?;
                if update.password_hash.is_some() || update.is_active == Some(false) {
                    // A new password or a disabled account ends every open session.
                    sqlx::query("UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL")
                        .bind(id)
                        .bind(user.updated_at)
                        .execute(&mut *tx)
                        .await?;
                }
                audit_in_tx(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(Some(user))
            }

            async fn delete_user(&self, id: i64, audit: &AuditDraft) -> Result<bool, MetaError> {
                let mut conn = self.write_conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let role: Option<(String, i64)> = sqlx::query_as("SELECT role, is_active FROM users WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some((role, active)) = role else { return Ok(false) };
                if role == "admin" && active != 0 && other_active_admins(&mut tx, id).await? == 0 {
                    return Err(MetaError::Conflict("berth needs at least one active admin".into()));
                }
                sqlx::query("DELETE FROM users WHERE id = $1").bind(id).execute(&mut *tx).await?;
                audit_in_tx(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn record_login(&self, id: i64, at: i64) -> Result<(), MetaError> {
                sqlx::query("UPDATE users SET last_login = $2 WHERE id = $1")
                    .bind(id)
                    .bind(at)
                    .execute(&mut *self.write_conn().await?)
                    .await?;
                Ok(())
            }

            async fn project(&self, name: &str) -> Result<Option<ProjectRecord>, MetaError> {
                let row: Option<(String, String, String, Option<i64>, i64)> = sqlx::query_as(
                    "SELECT name, visibility, description, created_by, created_at FROM projects WHERE name = $1",
                )
                .bind(name)
                .fetch_optional(&mut *self.read_conn().await?)
                .await?;
                Ok(row.map(|(name, visibility, description, created_by, created_at)| ProjectRecord {
                    name,
                    visibility,
                    description,
                    created_by,
                    created_at,
                }))
            }

            async fn project_access(
                &self,
                name: &str,
                user_id: Option<i64>,
            ) -> Result<Option<(String, Option<String>)>, MetaError> {
                let row: Option<(String, Option<String>)> = sqlx::query_as(
                    "SELECT p.visibility, m.role FROM projects p
                     LEFT JOIN project_members m ON m.project = p.name AND m.user_id = $2
                     WHERE p.name = $1",
                )
                .bind(name)
                .bind(user_id)
                .fetch_optional(&mut *self.read_conn().await?)
                .await?;
                Ok(row)
            }

            async fn ensure_project(
                &self,
                name: &str,
                owner: Option<i64>,
                audit: &AuditDraft,
            ) -> Result<bool, MetaError> {
                let mut conn = self.write_conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let created = sqlx::query(
                    "INSERT INTO projects (name, created_by, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .bind(owner)
                .bind(now_unix())
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    > 0;
                if !created {
                    return Ok(false);
                }
                if let Some(owner) = owner {
                    sqlx::query("INSERT INTO project_members (project, user_id, role) VALUES ($1, $2, 'owner')")
                        .bind(name)
                        .bind(owner)
                        .execute(&mut *tx)
                        .await?;
                }
                audit_in_tx(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn update_project(
                &self,
                name: &str,
                visibility: Option<&str>,
                description: Option<&str>,
                audit: &AuditDraft,
            ) -> Result<bool, MetaError> {
                let mut conn = self.write_conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let done = sqlx::query(
                    "UPDATE projects SET visibility = COALESCE($2, visibility), description = COALESCE($3, description)
                     WHERE name = $1",
                )
                .bind(name)
                .bind(visibility)
                .bind(description)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                audit_in_tx(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn set_member(
                &self,
                project: &str,
                user_id: i64,
                role: Option<&str>,
                audit: &AuditDraft,
            ) -> Result<bool, MetaError> {
                let mut conn = self.write_conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let exists: Option<String> = sqlx::query_scalar("SELECT name FROM projects WHERE name = $1")
                    .bind(project)
                    .fetch_optional(&mut *tx)
                    .await?;
                if exists.is_none() {
                    return Ok(false);
                }
                match role {
                    Some(role) => {
                        sqlx::query(
                            "INSERT INTO project_members (project, user_id, role) VALUES ($1, $2, $3)
                             ON CONFLICT (project, user_id) DO UPDATE SET role = excluded.role",
                        )
                        .bind(project)
                        .bind(user_id)
                        .bind(role)
                        .execute(&mut *tx)
                        .await?;
                    }
                    None => {
                        sqlx::query("DELETE FROM project_members WHERE project = $1 AND user_id = $2")
                            .bind(project)
                            .bind(user_id)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                audit_in_tx(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn list_members(&self, project: &str) -> Result<Vec<(i64, String, String)>, MetaError> {
                Ok(sqlx::query_as(
                    "SELECT m.user_id, u.username, m.role FROM project_members m JOIN users u ON u.id = m.user_id
                     WHERE m.project = $1 ORDER BY u.username",
                )
                .bind(project)
                .fetch_all(&mut *self.read_conn().await?)
                .await?)
            }

            async fn create_token(&self, token: &NewToken, audit: &AuditDraft) -> Result<TokenRecord, MetaError> {
                let mut conn = self.write_conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let row = sqlx::query($crate::access_sql::dyn_sql!(
                    "INSERT INTO tokens (user_id, name, lookup, hash, permissions, repositories, created_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {TOKEN_COLUMNS}"
                ))
                .bind(token.user_id)
                .bind(&token.name)
                .bind(&token.lookup)
                .bind(&token.hash)
                .bind(json_list(&token.permissions))
                .bind(json_list(&token.repositories))
                .bind(now_unix())
                .bind(token.expires_at)
                .fetch_one(&mut *tx)
                .await?;
                let record = token_row(&row)?;
                let mut audit = audit.clone();
                audit.resource = format!("token:{}", record.id);
                audit_in_tx(&mut tx, &audit).await?;
                tx.commit().await?;
                Ok(record)
            }

            async fn token_by_lookup(&self, lookup: &str) -> Result<Option<TokenRecord>, MetaError> {
                let row = sqlx::query($crate::access_sql::dyn_sql!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE lookup = $1"))
                    .bind(lookup)
                    .fetch_optional(&mut *self.read_conn().await?)
                    .await?;
                row.as_ref().map(token_row).transpose()
            }

            async fn list_tokens(
                &self,
                user_id: i64,
                offset: i64,
                limit: i64,
            ) -> Result<(Vec<TokenRecord>, i64), MetaError> {
                let rows = sqlx::query($crate::access_sql::dyn_sql!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens WHERE user_id = $1 AND revoked_at IS NULL
                     ORDER BY id LIMIT $2 OFFSET $3"
                ))
                .bind(user_id)
                .bind(limit)
                .bind(offset)
                .fetch_all(&mut *self.read_conn().await?)
                .await?;
                let total: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM tokens WHERE user_id = $1 AND revoked_at IS NULL")
                        .bind(user_id)
                        .fetch_one(&mut *self.read_conn().await?)
                        .await?;
                Ok((rows.iter().map(token_row).collect::<Result<_, _>>()?, total))
            }

            async fn revoke_token(
                &self,
                user_id: i64,
                id: i64,
                audit: &AuditDraft,
            ) -> Result<Option<String>, MetaError> {
                let mut conn = self.write_conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let lookup: Option<String> = sqlx::query_scalar(
                    "UPDATE tokens SET revoked_at = $3 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL
                     RETURNING lookup",
                )
                .bind(id)
                .bind(user_id)
                .bind(now_unix())
                .fetch_optional(&mut *tx)
                .await?;
                if lookup.is_none() {
                    return Ok(None);
                }
                audit_in_tx(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(lookup)
            }

            async fn touch_token(&self, id: i64, at: i64) -> Result<(), MetaError> {
                sqlx::query("UPDATE tokens SET last_used = $2 WHERE id = $1")
                    .bind(id)
                    .bind(at)
                    .execute(&mut *self.write_conn().await?)
                    .await?;
                Ok(())
            }

            async fn create_session(&self, s: &SessionRecord) -> Result<(), MetaError> {
                sqlx::query(
                    "INSERT INTO sessions (id, user_id, ip, csrf_hash, created_at, last_seen, expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&s.id)
                .bind(s.user_id)
                .bind(&s.ip)
                .bind(&s.csrf_hash)
                .bind(s.created_at)
                .bind(s.last_seen)
                .bind(s.expires_at)
                .execute(&mut *self.write_conn().await?)
                .await?;
                Ok(())
            }

            async fn session(&self, id: &str) -> Result<Option<SessionRecord>, MetaError> {
                let row = sqlx::query(
                    "SELECT id, user_id, ip, csrf_hash, created_at, last_seen, expires_at, revoked_at
                     FROM sessions WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&mut *self.read_conn().await?)
                .await?;
                row.as_ref().map(session_row).transpose()
            }

            async fn touch_session(&self, id: &str, at: i64) -> Result<(), MetaError> {
                sqlx::query("UPDATE sessions SET last_seen = $2 WHERE id = $1")
                    .bind(id)
                    .bind(at)
                    .execute(&mut *self.write_conn().await?)
                    .await?;
                Ok(())
            }

            async fn revoke_session(&self, id: &str, at: i64) -> Result<bool, MetaError> {
                let done = sqlx::query("UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                    .bind(id)
                    .bind(at)
                    .execute(&mut *self.write_conn().await?)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn setting(&self, name: &str) -> Result<Option<String>, MetaError> {
                Ok(sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&mut *self.read_conn().await?)
                    .await?)
            }

            async fn put_setting(&self, name: &str, value: &str, audit: Option<&AuditDraft>) -> Result<(), MetaError> {
                let mut conn = self.write_conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                sqlx::query(
                    "INSERT INTO settings (name, value, updated_at) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                )
                .bind(name)
                .bind(value)
                .bind(now_unix())
                .execute(&mut *tx)
                .await?;
                if let Some(audit) = audit {
                    audit_in_tx(&mut tx, audit).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn put_setting_if_absent(&self, name: &str, value: &str) -> Result<bool, MetaError> {
                let done = sqlx::query(
                    "INSERT INTO settings (name, value, updated_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .bind(value)
                .bind(now_unix())
                .execute(&mut *self.write_conn().await?)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn take_setting(&self, name: &str) -> Result<Option<String>, MetaError> {
                Ok(sqlx::query_scalar("DELETE FROM settings WHERE name = $1 RETURNING value")
                    .bind(name)
                    .fetch_optional(&mut *self.write_conn().await?)
                    .await?)
            }

            async fn purge_settings(&self, prefix: &str, before: i64) -> Result<u64, MetaError> {
                // A range on the name instead of LIKE: the prefix may hold `%` or `_`.
                let done = sqlx::query(
                    "DELETE FROM settings WHERE name >= $1 AND substr(name, 1, $2) = $1 AND updated_at < $3",
                )
                .bind(prefix)
                .bind(i32::try_from(prefix.chars().count()).unwrap_or(i32::MAX))
                .bind(before)
                .execute(&mut *self.write_conn().await?)
                .await?;
                Ok(done.rows_affected())
            }

            async fn advance_setting(&self, name: &str, value: i64) -> Result<bool, MetaError> {
                let done = sqlx::query(
                    "INSERT INTO settings (name, value, updated_at) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
                     WHERE CAST(settings.value AS BIGINT) < CAST(excluded.value AS BIGINT)",
                )
                .bind(name)
                .bind(value.to_string())
                .bind(now_unix())
                .execute(&mut *self.write_conn().await?)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn replace_recovery_codes(
                &self,
                id: i64,
                expected: &str,
                codes: &str,
                audit: &AuditDraft,
            ) -> Result<bool, MetaError> {
                let mut conn = self.write_conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let done = sqlx::query(
                    "UPDATE users SET recovery_codes = $3, updated_at = $4 WHERE id = $1 AND recovery_codes = $2",
                )
                .bind(id)
                .bind(expected)
                .bind(codes)
                .bind(now_unix())
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                audit_in_tx(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn record_login_failure(&self, username: &str, ip: &str, at: i64) -> Result<(), MetaError> {
                sqlx::query("INSERT INTO login_failures (username, ip, at) VALUES ($1, $2, $3)")
                    .bind(username)
                    .bind(ip)
                    .bind(at)
                    .execute(&mut *self.write_conn().await?)
                    .await?;
                // Keep the table small: a day of history is more than any window needs.
                sqlx::query("DELETE FROM login_failures WHERE at < $1")
                    .bind(at - 86_400)
                    .execute(&mut *self.write_conn().await?)
                    .await?;
                Ok(())
            }

            async fn login_failures(&self, username: &str, ip: &str, since: i64) -> Result<(i64, i64), MetaError> {
                let counts: (i64, i64) = sqlx::query_as(
                    "SELECT (SELECT COUNT(*) FROM login_failures WHERE username = $1 AND at >= $3),
                            (SELECT COUNT(*) FROM login_failures WHERE ip = $2 AND at >= $3)",
                )
                .bind(username)
                .bind(ip)
                .bind(since)
                .fetch_one(&mut *self.read_conn().await?)
                .await?;
                Ok(counts)
            }

            async fn clear_login_failures(&self, username: &str) -> Result<(), MetaError> {
                sqlx::query("DELETE FROM login_failures WHERE username = $1")
                    .bind(username)
                    .execute(&mut *self.write_conn().await?)
                    .await?;
                Ok(())
            }
        }

        #[async_trait]
        impl AuditLog for $ty {
            async fn append_audit(&self, draft: &AuditDraft) -> Result<i64, MetaError> {
                let mut conn = self.write_conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let id = audit_in_tx(&mut tx, draft).await?;
                tx.commit().await?;
                Ok(id)
            }

            async fn list_audit(
                &self,
                filter: &AuditFilter,
                offset: i64,
                limit: i64,
            ) -> Result<(Vec<AuditRecord>, i64), MetaError> {
                let rows = sqlx::query($crate::access_sql::dyn_sql!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE {AUDIT_WHERE} ORDER BY id DESC LIMIT $6 OFFSET $7"
                ))
                .bind(&filter.event)
                .bind(&filter.action)
                .bind(&filter.username)
                .bind(filter.from)
                .bind(filter.to)
                .bind(limit)
                .bind(offset)
                .fetch_all(&mut *self.read_conn().await?)
                .await?;
                let total: i64 = sqlx::query_scalar($crate::access_sql::dyn_sql!("SELECT COUNT(*) FROM audit_log WHERE {AUDIT_WHERE}"))
                    .bind(&filter.event)
                    .bind(&filter.action)
                    .bind(&filter.username)
                    .bind(filter.from)
                    .bind(filter.to)
                    .fetch_one(&mut *self.read_conn().await?)
                    .await?;
                Ok((rows.iter().map(audit_row).collect::<Result<_, _>>()?, total))
            }

            async fn audit_head(&self) -> Result<(i64, String), MetaError> {
                Ok(sqlx::query_as("SELECT last_id, hash FROM audit_head WHERE one = 1").fetch_one(&mut *self.read_conn().await?).await?)
            }

            async fn audit_after(
                &self,
                after_id: i64,
                filter: &AuditFilter,
                limit: i64,
            ) -> Result<Vec<AuditRecord>, MetaError> {
                let rows = sqlx::query($crate::access_sql::dyn_sql!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE {AUDIT_WHERE} AND id > $6 ORDER BY id LIMIT $7"
                ))
                .bind(&filter.event)
                .bind(&filter.action)
                .bind(&filter.username)
                .bind(filter.from)
                .bind(filter.to)
                .bind(after_id)
                .bind(limit)
                .fetch_all(&mut *self.read_conn().await?)
                .await?;
                rows.iter().map(audit_row).collect()
            }
        }
    };
}

pub(crate) use access_impl;
