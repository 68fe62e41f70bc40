//! `wheelslim completions SHELL` and the hidden `wheelslim man`: both generated from the clap
//! definitions in `args.rs`, so they cannot fall behind the real options.

use std::io::Write;

use anyhow::{Context, Result};
use clap::CommandFactory;

use super::{Cli, Outcome};

/// The completion script for `shell`.
pub fn completion_script(shell: clap_complete::Shell) -> Vec<u8> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "wheelslim", &mut out);
    out
}

/// The man page (roff) of the whole program, its commands as sections.
pub fn man_page() -> Result<Vec<u8>> {
    let cmd = Cli::command();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut out)
        .context("cannot render the man page")?;
    Ok(out)
}

pub fn write_stdout(bytes: &[u8]) -> Result<Outcome> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()?;
    Ok(Outcome::Ok)
}
