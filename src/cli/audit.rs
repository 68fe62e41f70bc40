//! `wheelslim audit`.

use anyhow::Result;

use super::args::{ArchiveArgs, AuditArgs, GlobalArgs};
use super::{Outcome, Printer, render};
use crate::audit::{AuditOptions, audit};
use crate::profile::ProfileSet;
use crate::wheel::Limits;

pub fn limits(g: &ArchiveArgs) -> Limits {
    Limits {
        max_members: g.max_members,
        max_total_size: g.max_inflated,
        ..Limits::default()
    }
}

pub fn profiles(specs: &[String]) -> Result<ProfileSet> {
    Ok(if specs.is_empty() {
        ProfileSet::built_in()
    } else {
        ProfileSet::load(specs)?
    })
}

pub fn run(args: &AuditArgs, g: &GlobalArgs, printer: &Printer) -> Result<Outcome> {
    let profiles = profiles(&args.profiles)?;
    let wheels = crate::input::expand_folders(&args.wheels).map_err(crate::Error::from)?;
    let bar = printer.bytes_progress();
    let opts = AuditOptions {
        max_size: args.max_size,
        limits: limits(&args.archive),
        memory_budget: args.archive.memory,
        largest: args.largest,
        progress: std::sync::Arc::new(bar.clone()),
    };
    bar.set_message("inspecting");
    let report = audit(&wheels, &profiles, &opts);
    bar.finish_and_clear();
    if printer.json {
        printer.json_value(&report)?;
    } else {
        printer.result(&render::audit(&report, g.verbose))?;
    }
    // Wheels that could not be read: errors, so stderr, in both modes.
    for d in report.failed.iter() {
        printer.diagnostic(d);
    }
    Ok(if report.has_errors() {
        Outcome::Error
    } else if args.check && report.has_violations() {
        Outcome::Found
    } else {
        Outcome::Ok
    })
}
