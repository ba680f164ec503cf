//! `databuild completions` and `databuild man`: shell completion scripts
//! (`clap_complete`) and the man page (`clap_mangen`), both generated from the clap
//! definitions, so they list every command and flag there is.

use anyhow::{Context as _, Result};
use clap::CommandFactory as _;
use databuild_core::ExitKind;

use crate::cli::{Cli, Shell};

/// Prints the completion script for `shell`.
pub fn completions(shell: Shell) -> Result<ExitKind> {
    let mut cmd = Cli::command();
    let mut out = std::io::stdout().lock();
    match shell {
        Shell::Bash => {
            clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, "databuild", &mut out)
        }
        Shell::Zsh => {
            clap_complete::generate(clap_complete::Shell::Zsh, &mut cmd, "databuild", &mut out)
        }
        Shell::Fish => {
            clap_complete::generate(clap_complete::Shell::Fish, &mut cmd, "databuild", &mut out)
        }
    }
    Ok(ExitKind::Success)
}

/// Prints the man page `databuild(1)` (roff), with a section per subcommand.
pub fn man() -> Result<ExitKind> {
    let cmd = Cli::command();
    let mut out = Vec::new();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    render_subcommands(&cmd, "databuild", &mut out)?;
    man.render_version_section(&mut out)?;
    use std::io::Write as _;
    std::io::stdout()
        .lock()
        .write_all(&out)
        .context("cannot write the man page to stdout")?;
    Ok(ExitKind::Success)
}

/// A `SUBCOMMANDS` section: each subcommand (recursively) with its synopsis, help and
/// options, so that one page documents the whole command line.
fn render_subcommands(cmd: &clap::Command, path: &str, out: &mut Vec<u8>) -> Result<()> {
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("{path} {}", sub.get_name());
        let page = clap_mangen::Man::new(
            sub.clone()
                .display_name(name.clone())
                .bin_name(name.clone()),
        );
        if path == "databuild" {
            out.extend_from_slice(b".SH \"");
        } else {
            out.extend_from_slice(b".SS \"");
        }
        out.extend_from_slice(name.to_uppercase().as_bytes());
        out.extend_from_slice(b"\"\n");
        let mut body = Vec::new();
        page.render_synopsis_section(&mut body)?;
        page.render_description_section(&mut body)?;
        page.render_options_section(&mut body)?;
        // The sub-page's own section headers become sub-headers of this section.
        let body = String::from_utf8_lossy(&body).replace(".SH ", ".SS ");
        out.extend_from_slice(body.as_bytes());
        render_subcommands(sub, &name, out)?;
    }
    Ok(())
}
