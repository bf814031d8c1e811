//! Command-line interface. Flags override the config file and environment.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Version string: crate version and the git commit it was built from.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("BERTH_GIT_COMMIT"), ")");

/// Seed 000's `full_version`: `0.1.0 (<commit> @ <commit date>)`.
pub const FULL_VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (", env!("BERTH_GIT_COMMIT"), " @ ", env!("BERTH_COMMIT_DATE"), ")");

/// berth: a self-hosted OCI container image registry.
#[derive(Debug, Parser)]
#[command(name = "berth", version = VERSION, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the registry server.
    Serve(ServeArgs),
    /// Copy every blob from one blob store to another (e.g. fs → s3), verifying
    /// each digest and skipping blobs already there, so it can be re-run.
    StorageMigrate(MigrateArgs),
    /// Copy all metadata from SQLite into PostgreSQL; re-runnable (upserts).
    MetaMigrate(MigrateArgs),
    /// Import a CNCF distribution (registry:2) storage directory: repositories,
    /// blobs (every digest verified), manifests and tags. Re-runnable: what is
    /// already imported is skipped.
    Import(ImportArgs),
    /// Check the blob store against the metadata: blobs missing or corrupt
    /// (with --verify-digests), stale rows, orphaned bytes. Changes nothing;
    /// exits 1 when a linked blob is missing or corrupt.
    Fsck(FsckArgs),
    /// Collect garbage once: delete manifests, blob links and blobs nothing
    /// references, once their grace period has passed. Safe while servers run.
    Gc(GcArgs),
    /// Manage users (works with the server running or stopped).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage personal access tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Check the tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Inspect configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print a commented default configuration file.
    PrintDefault,
    /// Load the configuration (file, environment, flags) and report problems.
    Check(ServeArgs),
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user. Without --password-stdin a password is generated, printed,
    /// and must be changed at first login.
    Add {
        username: String,
        /// `admin` or `user`.
        #[arg(long, default_value = "user")]
        role: String,
        #[arg(long)]
        email: Option<String>,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Set a user's password (ends their sessions).
    Passwd {
        username: String,
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Disable a user (their tokens and sessions stop working); --enable reverses it.
    Disable {
        username: String,
        #[arg(long)]
        enable: bool,
        #[command(flatten)]
        serve: ServeArgs,
    },
}

impl UserCommand {
    pub fn serve_args(&self) -> &ServeArgs {
        match self {
            UserCommand::Add { serve, .. } | UserCommand::Passwd { serve, .. } | UserCommand::Disable { serve, .. } => {
                serve
            }
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a personal access token for a user; prints it once on stdout.
    Create {
        #[arg(long)]
        user: String,
        #[arg(long)]
        name: String,
        /// Comma-separated: pull, push, delete.
        #[arg(long, default_value = "pull")]
        permissions: String,
        /// Comma-separated repository globs (`*` crosses `/`); default: all the user can reach.
        #[arg(long)]
        repositories: Option<String>,
        /// Lifetime (`90d`, `12h`).
        #[arg(long, default_value = "90d")]
        expires: String,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Revoke a user's token by id.
    Revoke {
        #[arg(long)]
        user: String,
        id: i64,
        #[command(flatten)]
        serve: ServeArgs,
    },
}

impl TokenCommand {
    pub fn serve_args(&self) -> &ServeArgs {
        match self {
            TokenCommand::Create { serve, .. } | TokenCommand::Revoke { serve, .. } => serve,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain; exit 1 naming the first broken entry.
    Verify {
        #[command(flatten)]
        serve: ServeArgs,
    },
}

/// Settings shared by every command that opens berth's data.
#[derive(Debug, Args, Default, Clone)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on (default 0.0.0.0:8080).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Directory holding blobs and the SQLite database (default ./berth-data).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Metadata database: sqlite:///path/berth.db or postgres://user:pass@host:port/db.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Blob storage: fs:///path or s3://bucket/prefix?endpoint=…&region=…&path_style=true.
    #[arg(long, value_name = "URL")]
    pub storage: Option<String>,
}

/// What `berth fsck` checks.
#[derive(Debug, Args)]
pub struct FsckArgs {
    /// Re-hash every blob (reads all the bytes) instead of comparing sizes only.
    #[arg(long)]
    pub verify_digests: bool,
    /// Hand orphaned bytes to the garbage collector, which deletes them on its
    /// next run unless something links them by then.
    #[arg(long)]
    pub reclaim_orphans: bool,
    /// The berth to check (the same settings as `serve`).
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// `berth gc` options.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// List what a run would delete now, changing nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Override the configured grace period (`0` collects everything unreferenced now).
    #[arg(long, value_name = "DURATION")]
    pub grace: Option<String>,
    /// First queue everything unreferenced, from a pass over the database.
    #[arg(long)]
    pub full: bool,
    /// The berth to collect (the same settings as `serve`).
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// What `berth import` reads and where it writes.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// distribution's storage root (its `rootdirectory`, e.g. /var/lib/registry),
    /// or the `docker/registry/v2` directory in it.
    #[arg(long, value_name = "DIR")]
    pub from: PathBuf,
    /// The berth to import into (the same settings as `serve`).
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Source and destination of a migration.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Source URL (fs:///path, s3://…, sqlite:///path/berth.db).
    #[arg(long, value_name = "URL")]
    pub from: String,
    /// Destination URL (s3://…, fs:///path, postgres://…).
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// Config file for credentials and storage settings (S3 keys, fsync).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}
