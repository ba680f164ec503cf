//! One function per subcommand.

mod build;
mod catalog;
mod remote;
mod serve;

use std::{io::Read as _, path::Path};

use anyhow::{Context as _, Result};
use databuild_core::ExitKind;

use crate::cli::{Cli, Command};

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<ExitKind> {
    if let Some(client) = crate::context::remote(&cli)? {
        if let Some(kind) = remote::run(&cli, &client).await? {
            return Ok(kind);
        }
    }
    match &cli.command {
        Command::Build(args) => build::build(&cli, args).await,
        Command::Analyze {
            refs,
            from_file,
            format,
            force,
        } => {
            let refs = refs_and_file(refs, from_file.as_deref())?;
            build::analyze(&cli, &refs, *format, *force).await
        }
        Command::Lookup { refs, from_file } => {
            build::lookup(&cli, &refs_and_file(refs, from_file.as_deref())?).await
        }
        Command::Execute(args) => build::execute(&cli, args).await,
        Command::Partitions(cmd) => catalog::partitions(&cli, cmd).await,
        Command::Runs(cmd) => catalog::runs(&cli, cmd).await,
        Command::Events {
            refs,
            status,
            run,
            after,
            limit,
            follow,
        } => {
            let filter = catalog::EventFilter {
                refs,
                statuses: status,
                runs: run,
            };
            catalog::events(&cli, filter, *after, *limit, *follow).await
        }
        Command::Deps {
            partition_ref,
            depth,
            format,
        } => catalog::deps(&cli, partition_ref, *depth, *format).await,
        Command::Active { refs } => catalog::active(&cli, refs).await,
        Command::Request {
            partition_ref,
            client_id,
            no_delegation,
            timeout,
        } => {
            build::request(
                &cli,
                partition_ref,
                client_id.clone(),
                !no_delegation,
                *timeout,
            )
            .await
        }
        Command::Logs { job_run_id } => catalog::logs(&cli, job_run_id).await,
        Command::Serve(args) => serve::serve(&cli, args).await,
    }
}

/// The refs given as arguments followed by those listed in `from_file`, one per line
/// (`-`: stdin); blank lines are skipped.
fn refs_and_file(refs: &[String], from_file: Option<&Path>) -> Result<Vec<String>> {
    let Some(path) = from_file else {
        return Ok(refs.to_vec());
    };
    let text = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read refs from stdin (`--from-file -`)")?;
        text
    } else {
        std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read refs from `{}` (`--from-file`); give a readable text file with one partition ref per line",
                path.display()
            )
        })?
    };
    let mut all = refs.to_vec();
    all.extend(
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string),
    );
    Ok(all)
}
