//! The `berth` binary: CLI, configuration, telemetry and the server lifecycle.

mod access;
mod admin;
mod backends;
mod cli;
mod config;
mod dirlock;
mod fsck;
mod gc;
mod import;
mod logformat;
mod logwriter;
mod migrate;
mod proxy;
mod serve;
mod telemetry;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    berth_malloc::tune_for_streaming();
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Serve(args) => serve::run(args),
        cli::Command::StorageMigrate(args) => migrate::run(migrate::Kind::Storage, args),
        cli::Command::MetaMigrate(args) => migrate::run(migrate::Kind::Meta, args),
        cli::Command::Import(args) => import::run(args),
        cli::Command::Fsck(args) => fsck::run(args),
        cli::Command::Gc(args) => gc::run(args),
        cli::Command::User { command } => {
            let args = command.serve_args().clone();
            admin::run(&args, |meta| admin::user(meta, command))
        }
        cli::Command::Token { command } => {
            let args = command.serve_args().clone();
            admin::run(&args, |meta| admin::token(meta, command))
        }
        cli::Command::Audit { command } => {
            let cli::AuditCommand::Verify { serve } = &command;
            let args = serve.clone();
            admin::run(&args, |meta| admin::audit(meta, command))
        }
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
