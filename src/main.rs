//! The `wicket` binary: parse, initialise logging, run, and turn failure into a clear
//! message and exit code. Everything else lives in the library.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use wicket::cli::{Cli, Command};
use wicket::{app, check, demo, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = telemetry::init(&cli.log_level, cli.log_format) {
        eprintln!("wicket: {e}");
        return ExitCode::from(2);
    }
    match run(cli.command, cli.worker_threads) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wicket: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command, workers: usize) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check(args) => {
            let checked = check::check(&args.dir, &args.controller.settings(), args.json)?;
            print!("{}", checked.output);
            Ok(if checked.has_problems {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Demo(args) => {
            runtime(workers)?.block_on(demo::run(&args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => {
            let Some(dir) = args.manifests.clone() else {
                anyhow::bail!(
                    "cluster mode is not available in this version; \
                     serve a directory of manifests with `wicket run --manifests DIR`"
                );
            };
            let config = app::Config {
                http_addr: args.http_addr,
                https_addr: args.https_addr,
                admin_addr: args.admin_addr,
                settings: args.controller.settings(),
                proxy: args.proxy.settings(),
                max_connections: args.proxy.max_connections,
                shutdown_delay: args.proxy.shutdown_delay,
                shutdown_timeout: args.proxy.shutdown_timeout,
            };
            runtime(workers)?.block_on(app::run(config, app::Source::Manifests(dir)))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One worker: a single-threaded runtime (no work-stealing machinery to pay for on one
/// CPU). More: the multi-threaded one with that many workers.
fn runtime(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let workers = match workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
