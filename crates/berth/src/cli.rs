//! Command-line interface. Flags override the config file and environment.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Version string: crate version and the git commit it was built from.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("BERTH_GIT_COMMIT"), ")");

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
