//! `wheelslim trim`.

use anyhow::{Context, Result};

use super::args::{DeviceArgs, TrimArgs};
use super::audit::limits;
use super::{Outcome, Printer, render};
use crate::fatbin::select::{GfxSelection, Selection};
use crate::profile::ProfileSet;
use crate::trim::{TrimOptions, TrimSettings, trim};
use crate::wheel::writer::ZipTime;

/// Turns the device-code options into trim settings.
pub fn settings(d: &DeviceArgs) -> Result<TrimSettings> {
    let cuda =
        d.sm.as_deref()
            .map(|list| {
                Selection::parse_targets(list)
                    .map(|s| s.with_ptx(d.ptx).with_unmatched(d.unmatched))
                    .with_context(|| format!("--sm {list}"))
            })
            .transpose()?;
    let gfx = d
        .gfx
        .as_deref()
        .map(|list| {
            GfxSelection::parse(list)
                .map(|g| g.with_unmatched(d.unmatched))
                .with_context(|| format!("--gfx {list}"))
        })
        .transpose()?;
    Ok(TrimSettings {
        cuda,
        gfx,
        allow_cut: !d.zero_only,
        allow_no_device_code: d.allow_no_device_code,
    })
}

pub fn run(args: &TrimArgs, printer: &Printer) -> Result<Outcome> {
    let settings = settings(&args.device)?;
    let bar = printer.bytes_progress();
    let opts = TrimOptions {
        settings,
        wheel_dir: args.wheel_dir.clone(),
        max_size: args.max_size,
        limits: limits(&args.archive),
        memory_budget: args.archive.memory,
        time: ZipTime::from_env().map_err(crate::Error::from)?,
        dry_run: args.dry_run,
        strip_debug: args.strip_debug,
        progress: std::sync::Arc::new(bar.clone()),
        sparse: crate::facts::Sparse::default(),
    };
    let wheels = crate::input::expand_folders(&args.wheels).map_err(crate::Error::from)?;
    let report = trim(&wheels, &ProfileSet::built_in(), &opts);
    bar.finish_and_clear();
    let report = report?;
    if printer.json {
        printer.json_value(&report)?;
    } else {
        printer.result(&render::trim(&report, printer.verbose()))?;
    }
    for d in &report.notes {
        printer.diagnostic(d);
    }
    Ok(Outcome::Ok)
}
