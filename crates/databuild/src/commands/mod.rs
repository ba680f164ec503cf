//! One function per subcommand.

mod auth;
mod backfill;
mod build;
mod catalog;
mod generate;
mod init;
mod remote;
mod runs;
mod serve;
mod wants;

use std::{io::Read as _, path::Path};

use anyhow::{Context as _, Result};
use databuild_core::ExitKind;

use crate::cli::{Cli, Command, RefSyntax};

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
            syntax,
            format,
            force,
            estimate,
            jobs,
        } => {
            let refs = refs_and_file(refs, from_file.as_deref(), *syntax)?;
            if *estimate {
                let parallelism =
                    jobs.unwrap_or(databuild_core::BuildOptions::default().parallelism);
                return build::estimate(&cli, &refs, *force, parallelism).await;
            }
            build::analyze(&cli, &refs, *format, *force).await
        }
        Command::Lookup {
            refs,
            from_file,
            syntax,
        } => build::lookup(&cli, &refs_and_file(refs, from_file.as_deref(), *syntax)?).await,
        Command::Check => build::check(&cli),
        Command::Execute(args) => build::execute(&cli, args).await,
        Command::Partitions(cmd) => catalog::partitions(&cli, cmd).await,
        Command::Runs(cmd) => runs::runs(&cli, cmd).await,
        Command::Events {
            refs,
            status,
            run,
            after,
            limit,
            follow,
        } => {
            let statuses = status
                .iter()
                .map(|s| databuild_proto::PartitionStatus::parse_name(s))
                .collect::<Result<Vec<_>, _>>()?;
            let filter =
                databuild_core::catalog::EventFilter::new(refs.clone(), statuses, run.clone())?;
            catalog::events(&cli, &filter, *after, *limit, *follow).await
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
        Command::Init { dir, python } => init::init(dir, *python),
        Command::Completions { shell } => generate::completions(*shell),
        Command::Man => generate::man(),
        Command::Auth(cmd) => auth::auth(cmd),
        Command::Want {
            refs,
            from_file,
            syntax,
            ttl,
            sla,
        } => {
            let refs = refs_and_file(refs, from_file.as_deref(), *syntax)?;
            wants::want(&cli, &refs, *ttl, *sla).await
        }
        Command::Unwant { wants: ids } => wants::unwant(&cli, ids).await,
        Command::Wants(cmd) => wants::wants(&cli, cmd).await,
        Command::Backfill(cmd) => backfill::backfill(&cli, cmd).await,
        Command::Reconcile {
            once,
            dry_run,
            retries,
            retry_backoff,
            keep_outdated,
            exec,
        } => {
            let how = wants::How {
                once: *once,
                dry_run: *dry_run,
                retries: *retries,
                retry_backoff: *retry_backoff,
                keep_outdated: *keep_outdated,
            };
            wants::reconcile(&cli, how, exec).await
        }
    }
}

/// The refs given as arguments followed by those listed in `from_file`, one per line
/// (`-`: stdin); blank lines are skipped. Ranges and lists are expanded unless
/// `--literal`.
fn refs_and_file(
    refs: &[String],
    from_file: Option<&Path>,
    syntax: RefSyntax,
) -> Result<Vec<String>> {
    let all = read_refs(refs, from_file)?;
    // Most refs have nothing to expand: keep them without copying.
    if syntax.literal || !all.iter().any(|r| r.contains(['[', ']', '{', '}'])) {
        return Ok(all);
    }
    Ok(databuild_core::ranges::expand_refs(&all)?)
}

/// The refs given as arguments followed by those listed in `from_file`, as written.
pub(super) fn read_refs(refs: &[String], from_file: Option<&Path>) -> Result<Vec<String>> {
    let Some(path) = from_file else {
        return Ok(refs.to_vec());
    };
    let (bytes, name) = if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read refs from stdin (`--from-file -`)")?;
        (bytes, "stdin".to_string())
    } else {
        let bytes = std::fs::read(path).with_context(|| {
            format!(
                "cannot read refs from `{}` (`--from-file`); give a readable text file with one partition ref per line",
                path.display()
            )
        })?;
        (bytes, format!("`{}`", path.display()))
    };
    let mut all = refs.to_vec();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = std::str::from_utf8(line).map_err(|_| {
            anyhow::anyhow!(
                "line {} of {name} (`--from-file`) is not valid UTF-8; partition refs are UTF-8 text, one per line",
                i + 1
            )
        })?;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if !line.trim().is_empty() {
            all.push(line.to_string());
        }
    }
    Ok(all)
}
