//! The `databuild` command line: argument parsing and output formatting over
//! `databuild-core` and `databuild-bel`.

mod cli;
mod commands;
mod context;
mod output;
mod render;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let args = cli::Cli::parse();
    let filter = match args.verbose {
        0 => "warn",
        1 => "info,databuild=debug",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match runtime_for(&args.command).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(commands::run(args)) {
        Ok(kind) => ExitCode::from(kind as u8),
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            let kind = e
                .downcast_ref::<databuild_core::CoreError>()
                .map_or(databuild_core::ExitKind::Usage, |c| c.exit_kind());
            ExitCode::from(kind as u8)
        }
    }
}

/// The async runtime for `command`: the service answers many clients at once, on every
/// CPU; everything else (a build's jobs, their pipes and pidfds, the event log) runs on
/// one thread, which spares a build the wake-ups of handing each job's events between
/// threads.
fn runtime_for(command: &cli::Command) -> tokio::runtime::Builder {
    match command {
        cli::Command::Serve(_) => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    }
}

/// `databuild events | head` closes stdout early: stop quietly instead of panicking.
/// (SIGPIPE stays ignored: a job that exits before reading its stdin must not kill us.)
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if payload.contains("failed printing to stdout") && payload.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}
