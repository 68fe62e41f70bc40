//! `wheelslim verify`.

use anyhow::Result;

use super::args::VerifyArgs;
use super::audit::{limits, profiles};
use super::{Outcome, Printer, render};
use crate::verify::{VerifyOptions, verify};

pub fn run(args: &VerifyArgs, printer: &Printer) -> Result<Outcome> {
    let profiles = profiles(&args.profiles)?;
    let wheels = crate::input::expand_folders(&args.wheels).map_err(crate::Error::from)?;
    let opts = VerifyOptions {
        max_size: args.max_size,
        limits: limits(&args.archive),
        memory_budget: args.archive.memory,
        baseline: args.baseline.clone(),
        progress: printer.bytes_progress(),
    };
    opts.progress.set_message("inspecting");
    let report = verify(&wheels, &profiles, &opts);
    opts.progress.finish_and_clear();
    if printer.json {
        printer.json_value(&report)?;
    } else {
        printer.result(&render::verify(&report))?;
    }
    // Wheels that could not be read: errors, so stderr, in both modes.
    for d in report.failed.iter() {
        printer.diagnostic(d);
    }
    Ok(if report.has_errors() {
        Outcome::Error
    } else if report.ok {
        Outcome::Ok
    } else {
        Outcome::Found
    })
}
