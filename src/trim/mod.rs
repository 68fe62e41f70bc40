//! `wheelslim trim`: keep only the device code the chosen GPUs need, inside shared objects and
//! in loose device files, and really shrink the files.
//!
//! Each member is inflated once: it is described and, while its bytes are in memory, trimmed
//! and deflated (see [`facts::inspect_wheel_with`]). Untouched members are copied raw.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use crate::apply::trim::{
    ArchChange, HeldTrim, HeldTrimError, LoosePlan, Loss, MemberTrim, TrimError, TrimSettings,
    Trimmed, check_losses, loose_file, loose_members, plan_loose, trim_held, trim_member,
};

use crate::budget::Budget;
use crate::elf::Inspected;
use crate::error::Error;
use crate::facts::{self, InspectOptions, Kept, MemberFacts, WheelFacts};
use crate::fatbin::loose;
use crate::output::{
    self, Command, Finish, LinkCheck, OutMember, Output, OutputKind, OutputSpec, Source,
    check_distinct, check_input, elf_facts, order_dist_info_last, same_file,
};
use crate::profile::ProfileSet;
use crate::progress::SharedProgress;
use crate::wheel::deflate::Compressed;
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
    /// Also empty the non-allocated debug sections of every ELF object
    /// ([`crate::elf::strip::strip_debug`]).
    pub strip_debug: bool,
    /// Counts bytes inspected (and trimmed) and written; hidden unless the caller draws it.
    pub progress: SharedProgress,
    /// Which members that do not fit `memory_budget` whole are described from their parts
    /// (the default outside tests, which take that path with small fixtures).
    pub sparse: facts::Sparse,
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
    /// Groups of loose cubins, PTX files and code objects (see
    /// [`crate::fatbin::loose::group_key`]), and those in which nothing matched the targets
    /// (kept whole unless `--unmatched drop`).
    pub loose_groups: usize,
    pub loose_groups_unmatched: usize,
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

/// Applies `--strip-debug` to a member after its device-code trim (if any): the trimmed bytes,
/// or the input's when the trim changed nothing.
fn strip_debug_of(
    f: &MemberFacts,
    input: &[u8],
    trimmed: Option<Trimmed>,
) -> Result<Option<Trimmed>, String> {
    let base: &[u8] = match &trimmed {
        Some(Trimmed { data: Some(d), .. }) => d,
        _ => input,
    };
    let Some(s) = crate::elf::strip::strip_debug(base)? else {
        return Ok(trimmed);
    };
    let note = s.note();
    let report = match trimmed {
        Some(Trimmed { mut report, .. }) => {
            report.method = format!("{}+strip-debug", report.method);
            report.notes.push(note);
            report
        }
        None => MemberTrim {
            member: f.name.clone(),
            method: "strip-debug".into(),
            reason: None,
            bytes_before: f.size,
            bytes_after: s.data.len() as u64,
            zip_before: f.compressed_size,
            zip_after: 0,
            archs: Vec::new(),
            unmatched_containers: 0,
            notes: vec![note],
            group: None,
            lost: Vec::new(),
        },
    };
    Ok(Some(Trimmed {
        data: Some(s.data),
        report,
    }))
}

pub fn trim(
    paths: &[PathBuf],
    profiles: &ProfileSet,
    opts: &TrimOptions,
) -> Result<TrimReport, Error> {
    check_args(paths, opts)?;
    // Members get their share of --memory; decompressed device code has the rest (issue 11).
    let shares = crate::budget::Shares::of(opts.memory_budget, opts.settings.is_active());
    let budget = Budget::new(shares.members);
    let spill = (!opts.dry_run).then_some(opts.wheel_dir.as_path());
    if let Some(dir) = spill {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io("create the folder", dir.to_path_buf(), e))?;
    }
    let opened: Vec<Opened> = paths
        .iter()
        .map(|p| open_and_trim(p, opts, &budget, spill))
        .collect::<Result<_, _>>()?;
    // Each trimmed wheel stands alone: trimming changes no links.
    let sets: Vec<Vec<usize>> = (0..opened.len()).map(|i| vec![i]).collect();
    let refs: Vec<(&Wheel, &crate::facts::WheelFacts)> =
        opened.iter().map(|o| (&o.wheel, &o.facts)).collect();
    let baseline = crate::verify::baseline(&refs, Some(&sets), profiles, opts.max_size, false);
    let mut wheels = Vec::new();
    let mut specs = Vec::new();
    for o in &opened {
        let (summary, out) = trimmed_wheel(o, opts);
        wheels.push(summary);
        specs.push(OutputSpec {
            target: o.target.clone(),
            kind: OutputKind::Trimmed,
            members: out,
        });
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
            progress: Some(&*opts.progress),
            links: LinkCheck::Unchanged,
            what: Command::Trim,
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

/// The refusals made before any input is opened: outputs that would share a name, and no
/// targets at all.
fn check_args(paths: &[PathBuf], opts: &TrimOptions) -> Result<(), Error> {
    crate::input::check_output_dir(&opts.wheel_dir, "-w")?;
    check_distinct(paths)?;
    // Each output is named after its input: two inputs of one name would write one file.
    let mut names: HashMap<&std::ffi::OsStr, &PathBuf> = HashMap::new();
    for p in paths {
        let name = p.file_name().unwrap_or_default();
        if let Some(first) = names.insert(name, p) {
            return Err(Error::Usage(format!(
                "`{}` and `{}` would both be written to `{}`: trim them into separate folders (-w)",
                first.display(),
                p.display(),
                opts.wheel_dir.join(name).display()
            )));
        }
    }
    if !opts.settings.is_active() && !opts.strip_debug {
        return Err(Error::Usage(
            "nothing to trim to: give --sm (CUDA) and/or --gfx (HIP) targets, or --strip-debug"
                .into(),
        ));
    }
    Ok(())
}

/// One input, inspected and trimmed, waiting to be written.
struct Opened {
    wheel: Wheel,
    facts: WheelFacts,
    done: Vec<Option<Done>>,
    target: PathBuf,
    plan: LoosePlan,
}

/// Opens one input, inspects it and trims its members in the same pass, then judges its loose
/// device files by group and checks that no target lost its code.
fn open_and_trim(
    p: &Path,
    opts: &TrimOptions,
    budget: &Budget,
    spill: Option<&Path>,
) -> Result<Opened, Error> {
    let targets = opts.settings.is_active();
    let target = opts.wheel_dir.join(p.file_name().unwrap_or_default());
    if !opts.dry_run && same_file(p, &target) {
        return Err(Error::refused(
            format!("`{}` would overwrite the input wheel", target.display()),
            Some("write the outputs to another folder with -w/--wheel-dir".into()),
        ));
    }
    let wheel = Wheel::open(p, &opts.limits)?;
    opts.progress.set_message("inspecting and trimming");
    opts.progress
        .inc_length(wheel.archive.members().iter().map(|m| m.size).sum());
    // A kept member is reserved with room for its trimmed copy (about as large, held while
    // both are compressed and compared): counted before it is admitted, not after.
    // A large member described from its parts is read whole again only when the trim may
    // change it: it has device code, or debug sections to strip.
    let may_change = |f: &MemberFacts| {
        f.device.is_some()
            || (opts.strip_debug
                && f.host_elf()
                    .is_some_and(|i| crate::elf::strip::debug_bytes(i) > 0))
    };
    // A large member's CUDA sections are read again by the trim a window at a time, so
    // that only the containers it keeps are held beside the rest (not with --strip-debug,
    // which needs the member whole even where the trim changes nothing).
    let inspect = InspectOptions {
        progress: Some(&*opts.progress),
        copies: 2,
        whole: facts::Whole::When(&may_change),
        cuda_apart: !opts.strip_debug,
        sparse: opts.sparse,
        ..InspectOptions::default()
    };
    let work = |f: &MemberFacts, kept: Kept| trim_kept(&wheel, f, kept, opts, spill);
    let (facts, done) = facts::inspect_wheel_with(&wheel, inspect, budget, &work);
    check_input(&wheel, &facts)?;
    let mut done: Vec<Option<Done>> = done
        .into_iter()
        .map(|d| d.transpose())
        .collect::<Result<_, Error>>()?;
    // Without targets (only --strip-debug) loose device files are not judged at all.
    let plan = if targets {
        plan_loose(loose_members(&facts), &opts.settings)
    } else {
        LoosePlan::default()
    };
    for (f, d) in facts.members.iter().zip(done.iter_mut()) {
        let Some(l) = f.device.as_ref().and_then(|d| d.loose.as_ref()) else {
            continue;
        };
        if loose::group_key(&f.name, l.kind).is_some()
            && let Some(t) = loose_file(&f.name, l, f.compressed_size, &opts.settings, &plan)
        {
            *d = Some(Done {
                report: t.report,
                new: None,
            });
        }
    }
    let reports: Vec<&MemberTrim> = done.iter().flatten().map(|d| &d.report).collect();
    check_losses(&wheel, &facts, &reports, &opts.settings)?;
    Ok(Opened {
        wheel,
        facts,
        done,
        target,
        plan,
    })
}

/// Trims (and with `--strip-debug`, strips) one member while the inspect pass holds its
/// bytes, and compresses the result; `None` for a member left as it is.
fn trim_kept(
    wheel: &Wheel,
    f: &MemberFacts,
    mut kept: Kept,
    opts: &TrimOptions,
    spill: Option<&Path>,
) -> Option<Result<Done, Error>> {
    let targets = opts.settings.is_active();
    let no_plan = LoosePlan::default();
    let info = f.host_elf();
    let strip = opts.strip_debug && info.is_some();
    let device = match f.device.as_ref() {
        Some(d) => Some(d),
        None if strip => None,
        None => return None,
    };
    // Loose cubins, PTX files and code objects are judged with the rest of their
    // group once every member is known (below); they need no bytes.
    if device.is_some_and(|d| {
        d.loose
            .as_ref()
            .is_some_and(|l| loose::group_key(&f.name, l.kind).is_some())
    }) {
        return None;
    }
    // The output is about as large as the input while both are held: the inspect pass
    // reserved room for both (`InspectOptions::copies`).
    let loc = wheel.member_location(&f.name);
    let Some(member) = wheel.archive.member(&f.name) else {
        let err = Error::internal(format_args!("{loc}: the member vanished"));
        return Some(Err(err));
    };
    let reader = kept.apart.as_ref().map(|a| a.reader(wheel, member));
    // Sections left out that the trim does not rewrite are read into the bytes before it
    // writes them; those it rewrites stay out.
    let held = match device {
        Some(device) if targets => trim_held(
            &f.name,
            &mut kept.bytes,
            f.compressed_size,
            info,
            device,
            &opts.settings,
            &no_plan,
            reader.as_ref(),
        ),
        _ => Ok(HeldTrim {
            trimmed: None,
            holes: Vec::new(),
        }),
    };
    let (trimmed, holes) = match held {
        Ok(h) => (Ok(h.trimmed), h.holes),
        Err(HeldTrimError::Zip(err)) => return Some(Err(Error::Zip { location: loc, err })),
        Err(HeldTrimError::Trim(e)) => (Err(e), Vec::new()),
    };
    let trimmed = match trimmed {
        Ok(t) if strip => strip_debug_of(f, &kept.bytes, t).map_err(|err| {
            TrimError::Elf(crate::elf::ElfError::OutputCheck(format!(
                "cannot strip its debug sections: {err} (run without --strip-debug)"
            )))
        }),
        other => other,
    };
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
                    // Large outputs are compressed into a temporary file in the
                    // output folder rather than held until the wheel is written.
                    let data = crate::apply::rewrite::Held::holed(input, holes);
                    let input = crate::apply::rewrite::Input {
                        archive: &wheel.archive,
                        member,
                        data,
                        marks,
                    };
                    // A library that read as a host object must still read as one:
                    // never write an object that its own audit could not describe.
                    let inspect = |d: &[u8]| match crate::elf::inspect(d) {
                        Ok(Inspected::Host(i)) => Ok(Some(*i)),
                        _ if info.is_some() => Err(Error::Elf {
                            location: loc.clone(),
                            err: crate::elf::ElfError::OutputCheck(
                                "the trimmed object does not read back as a host object".into(),
                            ),
                        }),
                        _ => Ok(None),
                    };
                    match crate::apply::rewrite::encode(&d, Some(input), &[], spill, inspect) {
                        Ok(e) => Some((e.compressed, e.sha256, e.info)),
                        Err(e) => return Some(Err(e)),
                    }
                }
            };
            Some(Ok(Done { report, new }))
        }
        Err(TrimError::DeviceCode(err)) => Some(Err(Error::DeviceCode { location: loc, err })),
        Err(TrimError::Elf(err)) => Some(Err(Error::Elf { location: loc, err })),
    }
}

/// One trimmed wheel's summary and member list: the trimmed members in their new form, the
/// rest copied raw.
fn trimmed_wheel<'o>(o: &'o Opened, opts: &TrimOptions) -> (WheelTrim, Vec<OutMember<'o>>) {
    let Opened {
        wheel,
        facts,
        done,
        target,
        plan,
    } = o;
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
    let summary = WheelTrim {
        input: wheel.path.display().to_string(),
        output: (!opts.dry_run).then(|| target.display().to_string()),
        members: members_report,
        size_before: wheel.archive.file_len(),
        size_after: 0,
        installed_before: facts.members.iter().map(|m| m.size).sum(),
        installed_after,
        loose_groups: plan.groups,
        loose_groups_unmatched: plan.unmatched_groups,
    };
    (summary, out)
}
