//! The `berth` binary: CLI, configuration, telemetry and the server lifecycle.

mod backends;
mod cli;
mod config;
mod migrate;
mod serve;
mod telemetry;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Serve(args) => serve::run(args),
        cli::Command::StorageMigrate(args) => migrate::run(migrate::Kind::Storage, args),
        cli::Command::MetaMigrate(args) => migrate::run(migrate::Kind::Meta, args),
        cli::Command::Config { command: cli::ConfigCommand::PrintDefault } => {
            print!("{}", config::DEFAULT_CONFIG_TOML);
            ExitCode::SUCCESS
        }
        cli::Command::Config { command: cli::ConfigCommand::Check(args) } => match config::Config::load(&args) {
            Ok(config) => {
                println!("configuration is valid (listen {}, data dir {})", config.listen, config.data_dir.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("berth: invalid configuration: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}
