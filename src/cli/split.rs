//! `wheelslim split`.

use anyhow::Result;

use super::args::SplitArgs;
use super::audit::{limits, profiles};
use super::{Outcome, Printer, render};
use crate::plan::SplitSettings;
use crate::plan::vendor::AdHoc;
use crate::split::{SplitOptions, split};
use crate::wheel::writer::ZipTime;

pub fn run(args: &SplitArgs, printer: &Printer) -> Result<Outcome> {
    let profiles = profiles(&args.profiles)?;
    let ad_hoc = AdHoc::new(&args.moves, &args.keeps).map_err(crate::Error::Usage)?;
    let trim = super::trim::settings(&args.device)?;
    // Members get their share of --memory; with --sm/--gfx, decompressed device code has the
    // other half (issue 11: each had all of it, so the worst case was twice --memory).
    let memory_budget = crate::budget::Shares::of(args.archive.memory, trim.is_active()).members;
    let bar = printer.bytes_progress();
    let opts = SplitOptions {
        settings: SplitSettings {
            upstream: args.upstream,
            unhash: args.unhash,
            move_unlinked: args.move_unlinked,
            ad_hoc,
        },
        wheel_dir: args.wheel_dir.clone(),
        runtime_dir: args
            .runtime_dir
            .clone()
            .unwrap_or_else(|| args.wheel_dir.clone()),
        max_size: args.max_size,
        limits: limits(&args.archive),
        memory_budget,
        time: ZipTime::from_env().map_err(crate::Error::from)?,
        dry_run: args.dry_run,
        canonical_runtime: args.canonical_runtime,
        trim,
        strip_debug: args.strip_debug,
        preload_hook: args.preload_hook,
        // On by default; --companions is its explicit form (undoing a configured --no-companions).
        companions: !args.no_companions,
        progress: std::sync::Arc::new(bar.clone()),
        sparse: crate::facts::Sparse::default(),
    };
    let report = crate::input::expand_folders(&args.wheels)
        .map_err(crate::Error::from)
        .and_then(|w| split(&w, &profiles, &opts));
    bar.finish_and_clear();
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            // `--json` readers get a document on failure too (the exit code stays 2).
            if printer.json {
                let doc = serde_json::json!({
                    "schema": crate::split::SCHEMA,
                    "ok": false,
                    "dry_run": args.dry_run,
                    "error": { "message": e.to_string(), "hint": e.hint() },
                });
                printer.json_value(&doc)?;
            }
            return Err(e.into());
        }
    };
    if printer.json {
        printer.json_value(&report)?;
    } else {
        printer.result(&render::split(&report, printer.verbose()))?;
    }
    for d in &report.notes {
        printer.diagnostic(d);
    }
    Ok(Outcome::Ok)
}
