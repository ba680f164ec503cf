//! `auth add|list|revoke`: the access-token file of `databuild serve --auth`.

use anyhow::Result;
use databuild_core::ExitKind;
use databuild_service::security::{tokens::TokenFile, Role};

use crate::cli::{AuthCmd, RoleArg};

/// Plain lines only: the token is the one thing `add` prints on stdout.
pub fn auth(cmd: &AuthCmd) -> Result<ExitKind> {
    match cmd {
        AuthCmd::Add { name, role, file } => {
            let role = match role {
                RoleArg::Read => Role::Read,
                RoleArg::Build => Role::Build,
                RoleArg::Admin => Role::Admin,
            };
            let mut tokens = TokenFile::load(file)?;
            let token = tokens.add(file, name, role)?;
            tokens.save(file)?;
            println!("{token}");
            eprintln!(
                "added principal `{name}` (role {role}) to `{}`; the token above is shown only now: keep it secret (clients send it with DATABUILD_TOKEN or --token-file)",
                file.display()
            );
        }
        AuthCmd::List { file } => {
            let tokens = TokenFile::load(file)?;
            for p in &tokens.principal {
                println!("{}\t{}", p.name, p.role);
            }
        }
        AuthCmd::Revoke { name, file } => {
            let mut tokens = TokenFile::load(file)?;
            tokens.revoke(file, name)?;
            tokens.save(file)?;
            eprintln!(
                "revoked principal `{name}` in `{}`; a service using the file refuses its token from now on",
                file.display()
            );
        }
    }
    Ok(ExitKind::Success)
}
