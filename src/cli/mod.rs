//! The command line: clap types, one module per command, and the printer (the only place that
//! writes to the terminal).

mod args;
mod audit;
mod config;
mod printer;
mod profiles;
mod render;
mod split;
mod trim;
mod verify;

use std::io;
use std::process::ExitCode;

use clap::Parser;

pub use args::{Cli, Command};
pub use printer::Printer;
pub use render::size as render_size;

/// What a command concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// A check found something (`--check`, `verify`).
    Found,
    /// Something could not be done.
    Error,
}

impl Outcome {
    fn code(self) -> u8 {
        match self {
            Outcome::Ok => 0,
            Outcome::Found => 1,
            Outcome::Error => 2,
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

pub fn main() -> ExitCode {
    let args = match config::with_config(
        std::env::args_os().collect(),
        std::path::Path::new("pyproject.toml"),
    ) {
        Ok(a) => a,
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: {e:#}");
            }
            return ExitCode::from(2);
        }
    };
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let printer = Printer::new(&cli.global);
    if let Some(jobs) = cli.global.jobs {
        // Failing to size the pool only matters if it was already built; ignore.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(jobs)
            .build_global();
    }
    // The commands that write leave no unfinished output behind when interrupted.
    if matches!(cli.command, Command::Split(_) | Command::Trim(_))
        && let Err(e) = crate::wheel::temp::install_signal_handler()
    {
        printer.error(&anyhow::anyhow!("cannot install the signal handlers: {e}"));
        return ExitCode::from(2);
    }
    let result = match &cli.command {
        Command::Audit(a) => audit::run(a, &cli.global, &printer),
        Command::Split(a) => split::run(a, &cli.global, &printer),
        Command::Trim(a) => trim::run(a, &cli.global, &printer),
        Command::Verify(a) => verify::run(a, &cli.global, &printer),
        Command::Profiles(p) => profiles::run(p, &printer),
    };
    match result {
        Ok(outcome) => ExitCode::from(outcome.code()),
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            printer.error(&e);
            ExitCode::from(2)
        }
    }
}
