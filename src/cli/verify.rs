//! `wheelslim verify`.

use anyhow::Result;

use super::args::VerifyArgs;
use super::audit::{limits, profiles};
use super::{Outcome, Printer, render};
use crate::verify::{VerifyOptions, verify};

pub fn run(args: &VerifyArgs, printer: &Printer) -> Result<Outcome> {
    let profiles = profiles(&args.profiles)?;
    let wheels = crate::input::expand_folders(&args.wheels).map_err(crate::Error::from)?;
    let bar = printer.bytes_progress();
    bar.set_message("inspecting");
    let opts = VerifyOptions {
        max_size: args.max_size,
        limits: limits(&args.archive),
        memory_budget: args.archive.memory,
        baseline: args.baseline.clone(),
        progress: std::sync::Arc::new(bar.clone()),
    };
    let report = verify(&wheels, &profiles, &opts);
    bar.finish_and_clear();
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
