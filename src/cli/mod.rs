//! The command line: clap types, one module per command, and the printer (the only place that
//! writes to the terminal).

mod args;
mod audit;
mod completions;
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

/// `-j N` beyond twice the cores only costs time (thousands of threads took half a minute to
/// start): the number of workers to run, and what to say when it is not `asked`.
fn clamp_jobs(asked: usize, cores: usize) -> (usize, Option<String>) {
    let most = cores.max(1) * 2;
    if asked > most {
        let said =
            format!("-j {asked} is more than twice the {cores} core(s) here; using {most} workers");
        (most, Some(said))
    } else {
        (asked, None)
    }
}

pub fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let configured = match std::env::current_dir() {
        Ok(cwd) => config::with_config(args, &cwd),
        // Without a current folder there is no project to configure.
        Err(_) => Ok((args, config::Lookup::NotSearched)),
    };
    let (args, lookup) = match configured {
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
    if let Some(said) = lookup.describe() {
        printer.detail(&said);
    }
    // Decompressed device code counts against --memory like members do (issue 11).
    // Only the commands that read archives take --memory.
    let memory = match &cli.command {
        Command::Audit(a) => Some(a.archive.memory),
        Command::Split(a) => Some(a.archive.memory),
        Command::Trim(a) => Some(a.archive.memory),
        Command::Verify(a) => Some(a.archive.memory),
        _ => None,
    };
    if let Some(memory) = memory {
        crate::fatbin::limit_decompression(memory);
    }
    if let Some(jobs) = cli.global.jobs {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let jobs = match clamp_jobs(jobs, cores) {
            (jobs, Some(said)) => {
                printer.warning(&said);
                jobs
            }
            (jobs, None) => jobs,
        };
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
        Command::Split(a) => split::run(a, &printer),
        Command::Trim(a) => trim::run(a, &printer),
        Command::Verify(a) => verify::run(a, &printer),
        Command::Profiles(p) => profiles::run(p, &printer),
        Command::Completions { shell } => {
            completions::write_stdout(&completions::completion_script(*shell))
        }
        Command::Man => completions::man_page().and_then(|m| completions::write_stdout(&m)),
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

#[cfg(test)]
mod tests {
    #[test]
    fn jobs_are_clamped_to_twice_the_cores() {
        assert_eq!(super::clamp_jobs(4, 2), (4, None));
        assert_eq!(super::clamp_jobs(0, 2), (0, None));
        let (n, said) = super::clamp_jobs(5000, 16);
        assert_eq!(n, 32);
        assert!(said.unwrap().contains("-j 5000"));
        assert_eq!(super::clamp_jobs(3, 0).0, 2);
    }
}
