//! Offline administration: `berth user …`, `berth token …`, `berth audit verify`.
//!
//! These open the metadata database named by the configuration directly (like
//! `serve` would), so they work with the server running or stopped. Every
//! change is audited with the actor `cli`.

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::{Context, bail};
use berth_access::{password, secret};
use berth_meta::{AuditDraft, AuditFilter, Metadata, NewToken, NewUser, UserUpdate, chain_entry};

use crate::backends::open_metadata;
use crate::cli::{AuditCommand, ServeArgs, TokenCommand, UserCommand};
use crate::config::{Config, parse_duration};

/// Runs an admin command on a fresh runtime; 0 on success, 1 on failure.
pub fn run<F, Fut>(args: &ServeArgs, body: F) -> ExitCode
where
    F: FnOnce(std::sync::Arc<dyn Metadata>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let result = Config::load(args).and_then(|config| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async {
            let meta = open_metadata(&config.database_url(), &config).await?;
            let out = body(meta.as_dyn()).await;
            meta.close().await;
            out
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn cli_draft(event: &str, action: &str, resource: &str) -> AuditDraft {
    AuditDraft {
        level: "info",
        event: event.into(),
        action: action.into(),
        user_id: None,
        username: "cli".into(),
        ip_address: String::new(),
        resource: resource.into(),
        status: "success",
        detail: serde_json::json!({ "user_agent": "berth-cli" }),
    }
}

/// A password from stdin (one line) or a generated one (printed).
fn new_password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("cannot read the password from stdin")?;
        let password = line.trim_end_matches(['\r', '\n']).to_owned();
        password::check_password_policy(&password).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok((password, false))
    } else {
        Ok((password::generate_password(), true))
    }
}

pub async fn user(meta: std::sync::Arc<dyn Metadata>, command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add { username, role, email, password_stdin, .. } => {
            if !matches!(role.as_str(), "admin" | "user") {
                bail!("--role must be admin or user");
            }
            let (plain, generated) = new_password(password_stdin)?;
            let user = NewUser {
                username: username.clone(),
                email,
                password_hash: password::hash_password(&plain)?,
                role,
                must_change_password: generated,
            };
            let created =
                meta.create_user(&user, &cli_draft("user_created", "user.create", &format!("user:{username}"))).await?;
            println!("created user {} (id {})", created.username, created.id);
            if generated {
                println!("password: {plain}\n(must be changed at first login)");
            }
        }
        UserCommand::Passwd { username, password_stdin, .. } => {
            let user = meta.user_by_name(&username).await?.with_context(|| format!("no user {username:?}"))?;
            let (plain, generated) = new_password(password_stdin)?;
            let update = UserUpdate {
                password_hash: Some(password::hash_password(&plain)?),
                must_change_password: Some(generated),
                ..UserUpdate::default()
            };
            meta.update_user(
                user.id,
                &update,
                &cli_draft("user_updated", "user.password", &format!("user:{username}")),
            )
            .await?;
            println!("password of {username} changed; its sessions were ended");
            if generated {
                println!("password: {plain}\n(must be changed at first login)");
            }
        }
        UserCommand::Disable { username, enable, .. } => {
            let user = meta.user_by_name(&username).await?.with_context(|| format!("no user {username:?}"))?;
            let update = UserUpdate { is_active: Some(enable), ..UserUpdate::default() };
            let event = if enable { "user_enabled" } else { "user_disabled" };
            meta.update_user(user.id, &update, &cli_draft(event, "user.update", &format!("user:{username}"))).await?;
            println!("{username} {}", if enable { "enabled" } else { "disabled" });
        }
    }
    Ok(())
}

pub async fn token(meta: std::sync::Arc<dyn Metadata>, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { user, name, permissions, repositories, expires, .. } => {
            let owner = meta.user_by_name(&user).await?.with_context(|| format!("no user {user:?}"))?;
            let permissions: Vec<String> = permissions.split(',').map(|p| p.trim().to_owned()).collect();
            if permissions.iter().any(|p| !matches!(p.as_str(), "pull" | "push" | "delete")) {
                bail!("--permissions: a comma-separated list of pull, push, delete");
            }
            let repositories: Vec<String> = repositories
                .map(|r| r.split(',').map(|g| g.trim().to_owned()).filter(|g| !g.is_empty()).collect())
                .unwrap_or_default();
            let ttl = parse_duration(&expires).map_err(|e| anyhow::anyhow!("--expires: {e}"))?;
            let fresh = secret::generate_pat();
            let token = NewToken {
                user_id: owner.id,
                name,
                lookup: fresh.lookup.clone(),
                hash: fresh.hash.clone(),
                permissions,
                repositories,
                expires_at: Some(berth_meta::now_unix() + ttl.as_secs() as i64),
            };
            let record = meta.create_token(&token, &cli_draft("token_created", "token.create", "token")).await?;
            eprintln!("created token {} (id {}) for {user}; it is shown once:", record.name, record.id);
            println!("{}", fresh.token);
        }
        TokenCommand::Revoke { user, id, .. } => {
            let owner = meta.user_by_name(&user).await?.with_context(|| format!("no user {user:?}"))?;
            let draft = cli_draft("token_revoked", "token.revoke", &format!("token:{id}"));
            if meta.revoke_token(owner.id, id, &draft).await?.is_none() {
                bail!("{user} has no live token {id}");
            }
            println!("revoked token {id} of {user}");
        }
    }
    Ok(())
}

/// Recomputes the audit chain from the first entry and names the first broken one.
pub async fn audit(meta: std::sync::Arc<dyn Metadata>, command: AuditCommand) -> anyhow::Result<()> {
    let AuditCommand::Verify { .. } = command;
    let mut prev = berth_access::audit_chain::GENESIS_HASH.to_owned();
    let mut expected_id = 1;
    let mut after = 0;
    let filter = AuditFilter::default();
    loop {
        let batch = meta.audit_after(after, &filter, 1000).await?;
        let Some(last) = batch.last() else { break };
        after = last.id;
        for record in &batch {
            if record.id != expected_id {
                bail!("audit chain broken at entry {expected_id}: entry missing (next is {})", record.id);
            }
            if record.prev_hash != prev {
                bail!("audit chain broken at entry {}: prev_hash does not match entry {}", record.id, record.id - 1);
            }
            let computed = berth_access::audit_chain::chain_hash(&prev, &chain_entry(record).canonical_json());
            if !secret::constant_time_eq(computed.as_bytes(), record.hash.as_bytes()) {
                bail!("audit chain broken at entry {}: its content does not match its hash", record.id);
            }
            prev = record.hash.clone();
            expected_id += 1;
        }
    }
    let (head_id, head_hash) = meta.audit_head().await?;
    if head_id != expected_id - 1 || head_hash != prev {
        bail!("audit chain broken after entry {}: the chain head records {head_id} entries", expected_id - 1);
    }
    println!("audit chain intact: {} entries verified", expected_id - 1);
    Ok(())
}
