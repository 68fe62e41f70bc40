//! `wheelslim trim`: keep only the device code the chosen GPUs need, inside shared objects and
//! in loose device files, and really shrink the files.
//!
//! Each member is inflated once: it is described and, while its bytes are in memory, trimmed
//! and deflated (see [`facts::inspect_wheel_with`]). Untouched members are copied raw.

mod member;

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Serialize;

pub use member::{ArchChange, MemberTrim, TrimError, TrimSettings, Trimmed, trim_member};

use crate::budget::Budget;
use crate::elf::Inspected;
use crate::error::Error;
use crate::facts::{self, InspectOptions, Kept, MemberFacts};
use crate::output::{
    self, Finish, OutMember, Output, Source, check_distinct, check_input, elf_facts,
    order_dist_info_last, same_file, sha2_digest,
};
use crate::profile::ProfileSet;
use crate::wheel::deflate::{self, Compressed};
use crate::wheel::writer::{ZipTime, normalized_mode};
use crate::wheel::{Limits, Wheel};

pub const SCHEMA: &str = "wheelslim.trim/1";

#[derive(Debug, Clone)]
pub struct TrimOptions {
    pub settings: TrimSettings,
    pub wheel_dir: PathBuf,
    pub max_size: u64,
    pub limits: Limits,
    pub memory_budget: u64,
    pub time: ZipTime,
    pub dry_run: bool,
    /// Counts bytes inspected (and trimmed) and written; hidden unless the caller draws it.
    pub progress: indicatif::ProgressBar,
}

#[derive(Debug, Clone, Serialize)]
pub struct WheelTrim {
    pub input: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    pub members: Vec<MemberTrim>,
    pub size_before: u64,
    /// 0 in a dry run.
    pub size_after: u64,
    pub installed_before: u64,
    pub installed_after: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrimReport {
    pub schema: &'static str,
    pub dry_run: bool,
    pub sm: Vec<String>,
    pub gfx: Vec<String>,
    pub wheels: Vec<WheelTrim>,
    pub outputs: Vec<Output>,
    /// What the inputs already violated (checked before the trim; not held against the
    /// outputs).
    pub notes: Vec<crate::diagnostic::Diagnostic>,
}

/// A member's trimmed bytes, compressed and ready to write.
struct Done {
    report: MemberTrim,
    new: Option<(Compressed, [u8; 32], Option<crate::elf::ElfInfo>)>,
}

pub fn trim(
    paths: &[PathBuf],
    profiles: &ProfileSet,
    opts: &TrimOptions,
) -> Result<TrimReport, Error> {
    check_distinct(paths)?;
    if !opts.settings.is_active() {
        return Err(Error::Usage(
            "nothing to trim to: give --sm (CUDA) and/or --gfx (HIP) targets".into(),
        ));
    }
    let budget = Budget::new(opts.memory_budget);
    let spill = (!opts.dry_run).then_some(opts.wheel_dir.as_path());
    if let Some(dir) = spill {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io("create the folder", dir.to_path_buf(), e))?;
    }
    let mut wheels = Vec::new();
    let mut specs = Vec::new();
    let mut opened = Vec::new();
    for p in paths {
        let target = opts.wheel_dir.join(p.file_name().unwrap_or_default());
        if !opts.dry_run && same_file(p, &target) {
            return Err(Error::refused(
                format!("`{}` would overwrite the input wheel", target.display()),
                Some("write the outputs to another folder with -w/--wheel-dir".into()),
            ));
        }
        let wheel = Wheel::open(p, &opts.limits)?;
        let work = |f: &MemberFacts, mut kept: Kept| -> Option<Result<Done, Error>> {
            let device = f.device.as_ref()?;
            let info = f.host_elf();
            // The output is about as large as the input while both are held.
            kept.grow(kept.bytes.len() as u64);
            let loc = wheel.member_location(&f.name);
            let trimmed = trim_member(
                &f.name,
                &kept.bytes,
                f.compressed_size,
                info,
                device,
                &opts.settings,
            );
            // The input stays until the trimmed copy is compressed: the copy reuses the
            // input's compressed blocks where its bytes did not change (`wheel::splice`).
            let marks = std::mem::take(&mut kept.marks);
            let (input, _reserved) = kept.into_parts();
            match trimmed {
                Ok(None) => None,
                Ok(Some(Trimmed { data, report })) => {
                    let new = match data {
                        None => None,
                        Some(d) => {
                            let out_info = match crate::elf::inspect(&d) {
                                Ok(Inspected::Host(i)) => Some(*i),
                                _ => None,
                            };
                            // A library that read as a host object must still read as one:
                            // never write an object that its own audit could not describe.
                            if info.is_some() && out_info.is_none() {
                                let err = crate::elf::ElfError::OutputCheck(
                                    "the trimmed object does not read back as a host object".into(),
                                );
                                return Some(Err(Error::Elf { location: loc, err }));
                            }
                            // Large outputs are compressed into a temporary file in the
                            // output folder rather than held until the wheel is written.
                            let Some(member) = wheel.archive.member(&f.name) else {
                                let err = crate::elf::ElfError::OutputCheck(
                                    "internal: the member vanished".into(),
                                );
                                return Some(Err(Error::Elf { location: loc, err }));
                            };
                            let orig = crate::wheel::splice::Original {
                                archive: &wheel.archive,
                                member,
                                data: &input,
                                marks: &marks,
                            };
                            let splice = crate::wheel::splice::Splice::prepare(&d, &orig, &[]);
                            // Writing needs only the output and the input's compressed bytes.
                            drop(input);
                            let compressed =
                                match splice.compress(&d, deflate::DEFAULT_LEVEL, spill) {
                                    Ok((c, _)) => c,
                                    Err(e) => {
                                        let dir = spill
                                            .map(std::path::Path::to_path_buf)
                                            .unwrap_or_default();
                                        return Some(Err(Error::io(
                                            "write a temporary file in",
                                            dir,
                                            e,
                                        )));
                                    }
                                };
                            Some((compressed, sha2_digest(&d), out_info))
                        }
                    };
                    Some(Ok(Done { report, new }))
                }
                Err(TrimError::DeviceCode(err)) => {
                    Some(Err(Error::DeviceCode { location: loc, err }))
                }
                Err(TrimError::Elf(err)) => Some(Err(Error::Elf { location: loc, err })),
            }
        };
        opts.progress.set_message("inspecting and trimming");
        opts.progress
            .inc_length(wheel.archive.members().iter().map(|m| m.size).sum());
        let inspect = InspectOptions {
            progress: Some(&opts.progress),
            ..InspectOptions::default()
        };
        let (facts, done) = facts::inspect_wheel_with(&wheel, inspect, &budget, &work);
        check_input(&wheel, &facts)?;
        let done: Vec<Option<Done>> = done
            .into_iter()
            .map(|d| d.transpose())
            .collect::<Result<_, Error>>()?;
        opened.push((wheel, facts, done, target));
    }
    // Each trimmed wheel stands alone: trimming changes no links.
    let sets: Vec<Vec<usize>> = (0..opened.len()).map(|i| vec![i]).collect();
    let refs: Vec<(&Wheel, &crate::facts::WheelFacts)> =
        opened.iter().map(|(w, f, ..)| (w, f)).collect();
    let baseline = crate::verify::baseline(&refs, Some(&sets), profiles, opts.max_size, false);
    for (wheel, facts, done, target) in &opened {
        let mut members_report = Vec::new();
        let mut out = Vec::new();
        let mut installed_after = 0;
        let record = format!("{}/RECORD", wheel.dist_info);
        for (f, d) in facts.members.iter().zip(done) {
            if f.name.ends_with('/') || f.name == record {
                continue;
            }
            let Some(src) = wheel.archive.member(&f.name) else {
                continue;
            };
            let mode = normalized_mode(src.unix_mode);
            match d {
                Some(Done { report, new: None }) => members_report.push(report.clone()),
                Some(Done {
                    report,
                    new: Some((c, sha, info)),
                }) => {
                    let mut r = report.clone();
                    r.zip_after = c.stored_len();
                    members_report.push(r);
                    installed_after += c.size;
                    out.push(OutMember {
                        name: f.name.clone(),
                        source: Source::New(c),
                        sha256: *sha,
                        size: c.size,
                        mode,
                        facts: elf_facts(&f.name, c, *sha, info.clone()),
                    });
                }
                None => {
                    installed_after += f.size;
                    out.push(OutMember {
                        name: f.name.clone(),
                        source: Source::Copy {
                            wheel,
                            member: &f.name,
                        },
                        sha256: f.sha256.unwrap_or([0; 32]),
                        size: f.size,
                        mode,
                        facts: f.clone(),
                    });
                }
            }
        }
        order_dist_info_last(&mut out, &wheel.dist_info);
        wheels.push(WheelTrim {
            input: wheel.path.display().to_string(),
            output: (!opts.dry_run).then(|| target.display().to_string()),
            members: members_report,
            size_before: wheel.archive.file_len(),
            size_after: 0,
            installed_before: facts.members.iter().map(|m| m.size).sum(),
            installed_after,
        });
        specs.push((target.clone(), "trimmed", out));
    }
    let settings = &opts.settings;
    let mut report = TrimReport {
        schema: SCHEMA,
        dry_run: opts.dry_run,
        sm: settings
            .cuda
            .as_ref()
            .map(|s| s.targets.iter().map(|t| t.to_string()).collect())
            .unwrap_or_default(),
        gfx: settings
            .gfx
            .as_ref()
            .map(|g| g.targets.iter().map(|t| t.to_string()).collect())
            .unwrap_or_default(),
        wheels,
        outputs: Vec::new(),
        notes: baseline.findings.clone(),
    };
    if opts.dry_run {
        return Ok(report);
    }
    std::fs::create_dir_all(&opts.wheel_dir)
        .map_err(|e| Error::io("create the folder", opts.wheel_dir.clone(), e))?;
    let (outputs, _) = output::finish(
        specs,
        &Finish {
            profiles,
            max_size: opts.max_size,
            limits: &opts.limits,
            time: opts.time,
            progress: Some(&opts.progress),
            links: false,
            size_is_error: false,
            what: "trim",
            sets: Some(sets),
            known_unresolved: baseline.unresolved,
            known_violations: baseline.violations,
        },
    )?;
    let sizes: HashMap<&str, u64> = outputs.iter().map(|o| (o.path.as_str(), o.size)).collect();
    for w in &mut report.wheels {
        if let Some(o) = &w.output {
            w.size_after = sizes.get(o.as_str()).copied().unwrap_or(0);
        }
    }
    report.outputs = outputs;
    Ok(report)
}
