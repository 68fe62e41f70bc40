//! The `wheelslim` command: parse arguments, run the library, map the outcome to an exit code
//! (0 ok, 1 a check found something, 2 error).

use std::process::ExitCode;

fn main() -> ExitCode {
    wheelslim::cli::main()
}
