//! `wheelslim split`: read → inspect → plan → apply → write → verify → commit.
//!
//! Every output is written to a temporary file in its target folder; all of them are checked
//! (sizes, RECORD, upload rules, link resolution over the whole output set) before any is renamed
//! into place, so a failure leaves nothing behind.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

mod advice;
mod companions;
mod devcode;
mod hook;
mod runtime;

pub use advice::{WheelAdvice, companion_advice};
pub use companions::{CompanionMove, PlacedCompanion, render as render_companions};

use runtime::{
    LicenseCopy, RuntimeWheel, license_files, preload_module, runtime_metadata, runtime_wheel_file,
};

use crate::apply;
use crate::apply::trim::{MemberTrim, TrimError, TrimSettings};
use crate::budget::Budget;
use crate::diagnostic::{Diagnostic, Severity};
use crate::elf::{ElfInfo, Inspected};
use crate::error::Error;
use crate::facts::{self, InspectOptions, Kept, MemberFacts, WheelFacts, looks_like_shared_object};
use crate::output::{
    self, Command, Finish, LinkCheck, OutMember, Output, OutputKind, OutputSpec, Source,
    check_distinct, check_input, elf_facts, order_dist_info_last, plain_facts, same_file,
    sha2_digest,
};
use crate::plan::pack::pack;
use crate::plan::{MemberAction, SplitPlan, SplitSettings, plan_split};
use crate::profile::{ProfileSet, detect_cuda_major};
use crate::progress::{SharedProgress, Tick};
use crate::verify::VerifyReport;
use crate::wheel::deflate::{self, Compressed};
use crate::wheel::writer::{ZipTime, normalized_mode};
use crate::wheel::{Limits, Wheel, normalize_name};

pub const SCHEMA: &str = "wheelslim.split/1";

/// Room kept free in each runtime wheel for headers, `__init__.py` and `.dist-info`.
use crate::checks::RUNTIME_OVERHEAD;

#[derive(Debug, Clone)]
pub struct SplitOptions {
    pub settings: SplitSettings,
    pub wheel_dir: PathBuf,
    pub runtime_dir: PathBuf,
    pub max_size: u64,
    pub limits: Limits,
    pub memory_budget: u64,
    pub time: ZipTime,
    pub dry_run: bool,
    /// Re-deflate runtime-wheel members with wheelslim's own deterministic deflate, so runtime
    /// wheels do not depend on how the inputs compressed them.
    pub canonical_runtime: bool,
    /// Device-code trimming applied to every member that carries device code (`--sm`, `--gfx`).
    pub trim: TrimSettings,
    /// Also empty the non-allocated debug sections of every ELF object, in the main wheels and
    /// the runtime wheels alike ([`crate::elf::strip::strip_debug`], as `trim --strip-debug`).
    pub strip_debug: bool,
    /// Make each main package load its runtime wheels' libraries itself, from any `sys.path`
    /// entry, before its extension modules load (`--preload-hook`; see `split::hook`).
    pub preload_hook: bool,
    /// A library too big for one wheel even alone (after the trim and strip) has its device
    /// code moved into companion shared objects (see [`crate::plan::companions`]) instead of
    /// being refused; the CLI's default (`--no-companions` turns it off). The dry run shows
    /// the plan.
    pub companions: bool,
    /// Counts bytes inspected, rewritten and written, phase by phase (its message names the
    /// phase); [`crate::progress::none`] unless the caller draws it.
    pub progress: SharedProgress,
    /// Which large libraries are described from their parts, and which the rewrite reads
    /// without their CUDA sections ([`facts::read_apart`]); the default outside tests, which
    /// take those paths with small fixtures.
    pub sparse: facts::Sparse,
}

#[derive(Debug, Clone, Serialize)]
pub struct SplitReport {
    pub schema: &'static str,
    pub dry_run: bool,
    pub plan: SplitPlan,
    pub outputs: Vec<Output>,
    /// Members whose device code was trimmed (`--sm`, `--gfx`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trimmed: Vec<MemberTrim>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyReport>,
    /// In a dry run with `--sm`/`--gfx`/`--strip-debug`: the compressed size each output
    /// would have, estimated from what the trim and the strip remove (the real run checks the
    /// exact sizes once written).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub size_estimates: Vec<SizeEstimate>,
    /// The device-code companions of each runtime library too big for one wheel even alone,
    /// and the wheels they go into (planned in a dry run; as written in a real run).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub companions: Vec<CompanionMove>,
    pub notes: Vec<Diagnostic>,
    /// Rewritten members whose bytes the inspect pass did not keep, so they were inflated a
    /// second time: the guess of what will be rewritten was wrong, or `--memory` had no room
    /// to keep them beside the largest member still to be inspected (0 on ordinary wheels).
    #[serde(skip)]
    pub members_read_twice: usize,
    /// Uncompressed bytes of rewritten members whose compressed blocks were copied from the
    /// input instead of deflated again (see [`crate::wheel::splice`]).
    #[serde(skip)]
    pub reused_bytes: u64,
}

/// The compressed size an output of a dry run would have.
#[derive(Debug, Clone, Serialize)]
pub struct SizeEstimate {
    /// The main wheel's file name, or the runtime set's name.
    pub output: String,
    /// `main` or `runtime`.
    pub kind: OutputKind,
    /// Compressed bytes of its members, after the trim and the strip (estimated).
    pub bytes: u64,
    /// Bytes before the trim and the strip.
    pub bytes_before: u64,
    /// How many wheels a runtime set would need under the limit (1 for a main wheel).
    pub wheels: usize,
    pub fits: bool,
}

/// Estimated compressed size of a member after `removed` of its `size` installed bytes go:
/// the compressed bytes shrink in proportion. An estimate: device code and debug sections do
/// not compress like the rest.
fn estimate_after(compressed: u64, size: u64, removed: u64) -> u64 {
    if size == 0 {
        return compressed;
    }
    let kept = size.saturating_sub(removed) as u128;
    (compressed as u128 * kept / size as u128) as u64
}

/// The bytes a trim removes from a member of `size` bytes (all of them when it goes): the
/// same count in the dry run's estimate and the real run's plan after the trim.
fn trim_gone(size: u64, report: &MemberTrim, removed: bool) -> u64 {
    if removed {
        return size;
    }
    let dropped: u64 = report.archs.iter().map(|a| a.dropped_bytes).sum();
    report
        .bytes_before
        .saturating_sub(report.bytes_after)
        .max(dropped)
}

/// One member's new bytes (or its removal, for a loose device file the trim drops).
struct Rewritten {
    compressed: Compressed,
    sha256: [u8; 32],
    info: Option<ElfInfo>,
    removed: bool,
    /// Bytes covered by reused input blocks.
    reused: u64,
    /// The companions its device code moved into, beside it.
    companions: Vec<companions::CompanionOut>,
    /// Why the moved containers were only zeroed in the host, when they were.
    zeroed: Option<String>,
    /// The plan of those companions when the rewrite stage made it (a library still too big
    /// after the trim or strip).
    planned: Option<CompanionMove>,
}

/// Runs `split`: open and inspect, plan, guard, rewrite, pack, assemble, finish.
pub fn split(
    paths: &[PathBuf],
    profiles: &ProfileSet,
    opts: &SplitOptions,
) -> Result<SplitReport, Error> {
    crate::input::check_output_dir(&opts.wheel_dir, "-w")?;
    crate::input::check_output_dir(&opts.runtime_dir, "--runtime-dir")?;
    let budget = Budget::new(opts.memory_budget);
    // `--move` names libraries as a profile would: they are read, kept and checked like those.
    let profiles = &opts.settings.ad_hoc.profiles(profiles);
    let (inputs, mut kept) = open_keeping(paths, profiles, opts, &budget)?;
    let run = SplitRun::new(opts, &budget, inputs);
    let refs = run.refs();
    let mut plan = plan_split(&refs, profiles, &opts.settings)?;
    // What the inputs already violated (links that did not resolve, a tag that claims too
    // old a glibc, an object for another CPU) is reported, but is not the split's doing.
    let baseline = crate::verify::baseline(&refs, None, profiles, opts.max_size, true);
    let mut notes = baseline.findings.clone();
    notes.extend(plan.notes.iter().cloned());
    let set_licenses = run.licenses(&plan, &mut notes);
    let hooks = run.hooks(&plan, &mut notes)?;

    let dry = if opts.dry_run && (run.trimming() || opts.strip_debug) {
        run.estimate(&mut kept)?
    } else {
        DryTrim::default()
    };
    let (mut companions, with_companions) = run.guard_libraries(&plan, &dry)?;
    let (mut size_estimates, own) = run.guard_mains(&plan, &dry)?;
    companions.extend(own);
    companions::apply_estimates(&mut size_estimates, &with_companions);
    if opts.dry_run {
        run.place_own(&mut companions);
        notes.extend(run.companion_notes(&companions));
        drop(kept);
        return Ok(SplitReport {
            schema: SCHEMA,
            dry_run: true,
            plan,
            outputs: Vec::new(),
            trimmed: dry.trims.into_iter().map(|(_, t)| t).collect(),
            verify: None,
            size_estimates,
            companions,
            notes,
            members_read_twice: 0,
            reused_bytes: 0,
        });
    }
    guard_targets(paths, opts, &plan)?;

    let jobs = run.jobs(&plan, &companions);
    let rewrites = run.rewrite(&jobs, kept)?;
    let canonical = run.canonical(&plan, &rewrites.members)?;
    // The plan's sizes of rewritten runtime libraries become the written ones.
    for set in &mut plan.runtime_sets {
        for l in &mut set.libraries {
            if let Some(r) = rewrites.members.get(&(l.input, l.member.clone())) {
                l.size = r.compressed.size;
                l.compressed_size = r.compressed.stored_len();
            }
        }
    }
    let runtime_wheels = run.pack(&plan, &rewrites.members, &canonical)?;
    let mut companions = run.written(companions, &rewrites.members, &runtime_wheels);
    let devcode = run.pack_devcode(&plan, &mut companions, &rewrites.members)?;
    notes.extend(run.companion_notes(&companions));

    let built = Built {
        rewritten: &rewrites.members,
        canonical: &canonical,
        licenses: &set_licenses,
    };
    let generated = run.generate(&plan, &hooks, &runtime_wheels, &devcode, &built);
    let mut outputs_spec = Vec::new();
    for (mi, m) in plan.mains.iter().enumerate() {
        let members = run.main_members(m, &hooks[mi], &generated, &generated.mains[mi], &built)?;
        outputs_spec.push(OutputSpec {
            target: opts.wheel_dir.join(&m.file_name),
            kind: OutputKind::Main,
            members,
        });
    }
    for (ri, rw) in runtime_wheels.iter().enumerate() {
        let gens = &generated.runtimes[ri];
        let (file, members) = run.runtime_members(rw, &generated, gens, &built)?;
        outputs_spec.push(OutputSpec {
            target: opts.runtime_dir.join(file),
            kind: OutputKind::Runtime,
            members,
        });
    }
    for (di, dw) in devcode.iter().enumerate() {
        let members = run.devcode_members(dw, &generated, &generated.devcode[di], &built)?;
        outputs_spec.push(OutputSpec {
            target: opts.runtime_dir.join(dw.file_name()),
            kind: OutputKind::Companion,
            members,
        });
    }

    // Write everything to temporary files, check them, then rename them into place.
    let (outputs, report) = output::finish(
        outputs_spec,
        &Finish {
            profiles,
            max_size: opts.max_size,
            limits: &opts.limits,
            time: opts.time,
            progress: Some(&*opts.progress),
            links: LinkCheck::WholeSet,
            what: Command::Split,
            sets: Some(install_sets(&plan, &runtime_wheels, &devcode)),
            known_unresolved: baseline.unresolved,
            known_violations: baseline.violations,
        },
    )?;
    Ok(SplitReport {
        schema: SCHEMA,
        dry_run: false,
        plan,
        outputs,
        trimmed: rewrites.trimmed,
        verify: Some(report),
        size_estimates: Vec::new(),
        companions,
        notes,
        members_read_twice: rewrites.members_read_twice,
        reused_bytes: rewrites.reused_bytes,
    })
}

/// A member of an input: (input index, member name).
type MemberKey = (usize, String);

/// The inputs' bytes kept by the inspect pass, by member.
type KeptMembers<'b> = HashMap<MemberKey, Kept<'b>>;

/// The opened inputs with the options, and what the stages ask of them.
struct SplitRun<'r> {
    opts: &'r SplitOptions,
    budget: &'r Budget,
    inputs: Vec<(Wheel, WheelFacts)>,
    /// Each input's loose cubins, PTX files and code objects, judged with the others of
    /// their group.
    loose: Vec<crate::apply::trim::LoosePlan>,
}

/// What a dry run works out of the trim and the strip.
#[derive(Default)]
struct DryTrim {
    estimates: Estimates,
    trims: Vec<(usize, MemberTrim)>,
    /// Libraries with device-code sections as the trim leaves them, for the companion plan.
    libraries: companions::Trimmed,
}

/// Estimated compressed sizes of the members a dry run's trim or strip changes.
#[derive(Default)]
struct Estimates(HashMap<MemberKey, u64>);

impl Estimates {
    /// The member's estimated compressed size, or `compressed` when nothing changes it.
    fn of(&self, input: usize, member: &str, compressed: u64) -> u64 {
        self.0
            .get(&(input, member.to_string()))
            .copied()
            .unwrap_or(compressed)
    }

    fn has(&self, input: usize, member: &str) -> bool {
        self.0.contains_key(&(input, member.to_string()))
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What the dry run's trim and strip do to one member: bytes removed, the trim's report, and
/// the library as the trim leaves it.
type MemberEstimate = (
    u64,
    Option<MemberTrim>,
    Option<crate::plan::companions::Library>,
);

/// One member to rewrite.
struct Job<'p> {
    input: usize,
    member: String,
    edit: Option<std::borrow::Cow<'p, crate::plan::ElfEdit>>,
    /// The plan whose device code moves out of this library (made before any work).
    companions: Option<&'p CompanionMove>,
    /// A library the trim or strip rewrites: whether it fits is known once its bytes are, so
    /// its companion plan (if it needs one) is made in the rewrite stage.
    after_trim: Option<companions::Home<'p>>,
    /// A library whose plan was made before any work (`companions`): where it lives, for the
    /// plan to be made again when the exact sizes show the estimate too low.
    planned_in: Option<companions::Home<'p>>,
    /// Compress from the bytes alone, never reusing the input's blocks (runtime libraries
    /// under `--canonical-runtime`).
    canonical: bool,
}

/// What the companion step made: the host's new bytes, its companions, and why the moved
/// containers were only zeroed in place when they were.
type MovedStep = (
    Option<Vec<u8>>,
    Vec<companions::CompanionOut>,
    Option<String>,
);

/// What the rewrite stage made.
struct Rewrites {
    members: HashMap<MemberKey, Rewritten>,
    /// Sorted by member, with the sizes that were written.
    trimmed: Vec<MemberTrim>,
    members_read_twice: usize,
    reused_bytes: u64,
}

/// What the trim did to one member being rewritten.
enum TrimStep {
    /// Nothing to trim.
    Unchanged,
    /// A loose device file with nothing left for the targets: it goes.
    Removed,
    /// Its bytes after the trim, the bytes the trim removed as the dry run counts them, and
    /// the CUDA sections still left out of the input (read apart, [`facts::Apart`]).
    Trimmed(Vec<u8>, u64, Vec<(u64, u64)>),
}

/// The new bytes the member lists refer to, besides the inputs.
struct Built<'b> {
    rewritten: &'b HashMap<MemberKey, Rewritten>,
    canonical: &'b HashMap<MemberKey, Compressed>,
    licenses: &'b HashMap<String, Vec<LicenseCopy>>,
}

impl<'b> Built<'b> {
    /// The licence files that travel into a runtime wheel.
    fn licenses_of(&self, rw: &RuntimeWheel) -> &'b [LicenseCopy] {
        self.licenses
            .get(rw.set.key.as_str())
            .map_or(&[], Vec::as_slice)
    }
}

/// A generated file (METADATA, WHEEL, `__init__.py`, a preload hook), compressed in
/// [`Generated::files`].
struct Gen {
    name: String,
    index: usize,
    sha256: [u8; 32],
    size: u64,
}

/// Every generated file, and which belong to each main, runtime and companion wheel.
struct Generated {
    files: Vec<Compressed>,
    mains: Vec<Vec<Gen>>,
    runtimes: Vec<Vec<Gen>>,
    devcode: Vec<Vec<Gen>>,
}

impl Generated {
    fn add(&mut self, name: &str, bytes: &[u8]) -> Gen {
        self.files
            .push(deflate::compress(bytes, deflate::DEFAULT_LEVEL));
        Gen {
            name: name.to_string(),
            index: self.files.len() - 1,
            sha256: sha2_digest(bytes),
            size: bytes.len() as u64,
        }
    }

    /// The output member of a generated file.
    fn member(&self, g: &Gen, mode: u32) -> OutMember<'_> {
        OutMember {
            name: g.name.clone(),
            source: Source::New(&self.files[g.index]),
            sha256: g.sha256,
            size: g.size,
            mode,
            facts: plain_facts(&g.name, g.size, g.sha256),
        }
    }
}

/// The error of a trim of the member at `location`.
/// Shifts at which a rewritten member's output may hold the input's bytes: a trim's cut
/// moves what follows the fatbin by its own amount, a move and the patch add their own.
fn output_shifts(trim: Option<i64>, current: Option<&[u8]>, input: &[u8], moved: bool) -> Vec<i64> {
    let mut shifts: Vec<i64> = trim.into_iter().collect();
    if let Some(t) = current {
        shifts.push(t.len() as i64 - input.len() as i64);
        // A companion move cuts the device code and adds a segment: what follows the cut
        // moves by neither change in length alone.
        if moved {
            shifts.extend(crate::elf::section_shifts(input, t, 4));
        }
    }
    shifts
}

fn held_trim_error(location: &crate::error::Location, e: crate::trim::HeldTrimError) -> Error {
    match e {
        crate::trim::HeldTrimError::Zip(err) => Error::Zip {
            location: location.clone(),
            err,
        },
        crate::trim::HeldTrimError::Trim(e) => trim_error(location, e),
    }
}

fn trim_error(location: &crate::error::Location, e: TrimError) -> Error {
    match e {
        TrimError::DeviceCode(err) => Error::DeviceCode {
            location: location.clone(),
            err,
        },
        TrimError::Elf(err) => Error::Elf {
            location: location.clone(),
            err,
        },
    }
}

/// Outputs must never replace inputs, and two outputs must not share a name. The output
/// folders exist from here on: large rewritten members are compressed into temporary files
/// there.
fn guard_targets(paths: &[PathBuf], opts: &SplitOptions, plan: &SplitPlan) -> Result<(), Error> {
    let mut targets: HashSet<PathBuf> = HashSet::new();
    for m in &plan.mains {
        let target = opts.wheel_dir.join(&m.file_name);
        if paths.iter().any(|p| same_file(p, &target)) {
            return Err(Error::refused(
                format!("`{}` would overwrite the input wheel", target.display()),
                Some("write the outputs to another folder with -w/--wheel-dir".into()),
            ));
        }
        if !targets.insert(target.clone()) {
            return Err(Error::refused(
                format!("two inputs would both be written to `{}`", target.display()),
                None,
            ));
        }
    }
    for dir in [&opts.wheel_dir, &opts.runtime_dir] {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create the folder", dir.clone(), e))?;
    }
    Ok(())
}

/// Each main wheel is installed with the runtime wheels of the sets it requires and its
/// companion wheels (indices into the outputs: the mains first, then the runtime wheels,
/// then the companion wheels).
fn install_sets(
    plan: &SplitPlan,
    runtime_wheels: &[RuntimeWheel],
    devcode: &[devcode::DevcodeWheel],
) -> Vec<Vec<usize>> {
    plan.mains
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut set = vec![i];
            for (k, rw) in runtime_wheels.iter().enumerate() {
                if m.runtime_sets.contains(&rw.set.key) {
                    set.push(plan.mains.len() + k);
                }
            }
            for (k, dw) in devcode.iter().enumerate() {
                if dw.mains.contains(&i) {
                    set.push(plan.mains.len() + runtime_wheels.len() + k);
                }
            }
            set
        })
        .collect()
}

/// The file name of a runtime wheel's `.dist-info`.
fn runtime_dist_info(rw: &RuntimeWheel) -> String {
    format!(
        "{}-{}.dist-info",
        crate::wheel::filename::filename_safe_name(&rw.name),
        rw.set.version
    )
}

/// Each runtime set's wheel names, in order.
fn runtime_names<'p>(runtime_wheels: &[RuntimeWheel<'p>]) -> BTreeMap<&'p str, Vec<String>> {
    let mut m: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for rw in runtime_wheels {
        m.entry(rw.set.key.as_str())
            .or_default()
            .push(rw.name.clone());
    }
    m
}

impl<'r> SplitRun<'r> {
    fn new(
        opts: &'r SplitOptions,
        budget: &'r Budget,
        inputs: Vec<(Wheel, WheelFacts)>,
    ) -> SplitRun<'r> {
        let loose = inputs
            .iter()
            .map(|(_, f)| {
                crate::apply::trim::plan_loose(crate::apply::trim::loose_members(f), &opts.trim)
            })
            .collect();
        SplitRun {
            opts,
            budget,
            inputs,
            loose,
        }
    }

    fn refs(&self) -> Vec<(&Wheel, &WheelFacts)> {
        self.inputs.iter().map(|(w, f)| (w, f)).collect()
    }

    /// How many buffers of a rewritten member's size are held at once ([`buffers_held`]).
    fn copies(&self) -> u64 {
        buffers_held(self.opts)
    }

    /// Members with device code are trimmed (`--sm`, `--gfx`) while they are rewritten anyway.
    fn trimming(&self) -> bool {
        self.opts.trim.is_active()
    }

    fn device_of(&self, input: usize, member: &str) -> Option<&MemberFacts> {
        self.inputs[input]
            .1
            .members
            .iter()
            .find(|f| f.name == member && f.device.is_some())
    }

    fn has_device(&self, input: usize, member: &str) -> bool {
        self.device_of(input, member).is_some()
    }

    /// The non-allocated debug bytes of an ELF member.
    fn debug_bytes(&self, input: usize, member: &str) -> u64 {
        self.inputs[input]
            .1
            .members
            .iter()
            .find(|f| f.name == member)
            .and_then(|f| f.host_elf())
            .map_or(0, crate::elf::strip::debug_bytes)
    }

    /// With --strip-debug, every ELF object with non-allocated debug sections is rewritten.
    fn debug_of(&self, input: usize, member: &str) -> u64 {
        if self.opts.strip_debug {
            self.debug_bytes(input, member)
        } else {
            0
        }
    }

    /// Debug bytes a size refusal can point at: those --strip-debug was not asked to remove.
    fn unstripped_debug(&self, input: usize, member: &str) -> u64 {
        if self.opts.strip_debug {
            0
        } else {
            self.debug_bytes(input, member)
        }
    }

    /// Whether the trim or the strip rewrites the member.
    fn changes(&self, input: usize, member: &str) -> bool {
        (self.trimming() && self.has_device(input, member)) || self.debug_of(input, member) > 0
    }

    /// The refusal of a library that cannot fit a runtime wheel alone.
    fn too_big(&self, input: usize, member: &str, bytes: u64) -> Error {
        self.too_big_after(input, member, bytes, None)
    }

    /// The licence files each set's libraries came with travel into every one of its
    /// wheels; a proprietary set without any is warned about.
    fn licenses(
        &self,
        plan: &SplitPlan,
        notes: &mut Vec<Diagnostic>,
    ) -> HashMap<String, Vec<LicenseCopy>> {
        let set_licenses: HashMap<String, Vec<LicenseCopy>> = plan
            .runtime_sets
            .iter()
            .map(|s| (s.key.clone(), license_files(s, &self.inputs)))
            .collect();
        for s in &plan.runtime_sets {
            let proprietary = s
                .licenses
                .iter()
                .any(|l| l.contains("LicenseRef-") || l.contains("Proprietary"));
            if !proprietary
                || set_licenses
                    .get(s.key.as_str())
                    .is_some_and(|v| !v.is_empty())
            {
                continue;
            }
            let Some(first) = s.libraries.first() else {
                continue;
            };
            let d = Diagnostic::new(
                Severity::Warning,
                &self.inputs[first.input].0.location(),
                format!(
                    "runtime wheel {} carries no licence text for its {} libraries: the input \
                     had no licence file next to them or in its .dist-info",
                    s.name,
                    s.licenses.join(", ")
                ),
            )
            .with_hint(
                s.license_notes
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "add the vendor's licence file to the input wheel".into()),
            );
            notes.push(d);
        }
        set_licenses
    }

    /// `--preload-hook`: which `__init__.py` of each main wheel gets the hook, decided (and
    /// refused) before any work, in the dry run too.
    fn hooks(
        &self,
        plan: &SplitPlan,
        notes: &mut Vec<Diagnostic>,
    ) -> Result<Vec<Vec<HookPatch>>, Error> {
        let hooks: Vec<Vec<HookPatch>> = if self.opts.preload_hook {
            plan.mains
                .iter()
                .map(|m| plan_hooks(m, &plan.runtime_sets, &self.inputs[m.input]))
                .collect::<Result<_, _>>()?
        } else {
            plan.mains.iter().map(|_| Vec::new()).collect()
        };
        for (m, h) in plan.mains.iter().zip(&hooks) {
            for p in h {
                notes.push(Diagnostic::new(
                    Severity::Note,
                    &self.inputs[m.input].0.member_location(&p.init),
                    format!(
                        "preload hook added: imports {} first, which loads the runtime wheels' \
                         libraries from any sys.path entry",
                        p.module
                    ),
                ));
            }
        }
        Ok(hooks)
    }
}

/// The guard stage: a dry run's estimates, and the size refusals made before any work.
impl SplitRun<'_> {
    /// A dry run cannot know the exact sizes after a trim or strip; it estimates them: the
    /// trim is worked out in memory (as `trim --dry-run` does) and each member's compressed
    /// size shrinks in proportion to the bytes removed.
    fn estimate(&self, kept: &mut KeptMembers) -> Result<DryTrim, Error> {
        let mut dry = DryTrim::default();
        for (input, (_, facts)) in self.inputs.iter().enumerate() {
            for f in &facts.members {
                if !self.changes(input, &f.name) {
                    continue;
                }
                let Some((removed, trim, after)) = self.estimate_member(input, f, kept)? else {
                    continue;
                };
                dry.trims.extend(trim.map(|t| (input, t)));
                if let Some(lib) = after {
                    dry.libraries.insert((input, f.name.clone()), lib);
                }
                if removed > 0 {
                    dry.estimates.0.insert(
                        (input, f.name.clone()),
                        estimate_after(f.compressed_size, f.size, removed),
                    );
                }
            }
        }
        for (i, (w, f)) in self.inputs.iter().enumerate() {
            let mine: Vec<&MemberTrim> = dry
                .trims
                .iter()
                .filter(|(n, _)| *n == i)
                .map(|(_, t)| t)
                .collect();
            crate::apply::trim::check_losses(w, f, &mine, &self.opts.trim)?;
        }
        dry.trims.sort_by(|a, b| a.1.member.cmp(&b.1.member));
        Ok(dry)
    }

    /// The bytes the trim and the strip would remove from one member, the trim's report, and
    /// the library as the trim leaves it (for the companion plan); `None` for a member the
    /// archive does not hold.
    fn estimate_member(
        &self,
        input: usize,
        f: &MemberFacts,
        kept: &mut KeptMembers,
    ) -> Result<Option<MemberEstimate>, Error> {
        let mut removed = self.debug_of(input, &f.name);
        let Some(device) = f.device.as_ref().filter(|_| self.trimming()) else {
            return Ok(Some((removed, None, None)));
        };
        let wheel = &self.inputs[input].0;
        let loc = wheel.member_location(&f.name);
        let Some(m) = wheel.archive.member(&f.name) else {
            return Ok(None);
        };
        let (mut bytes, apart) = match kept.remove(&(input, f.name.clone())) {
            Some(mut k) => {
                let apart = k.apart.take();
                (k.into_parts().0, apart)
            }
            None => {
                let _r = self.budget.reserve(m.size);
                let b = wheel.archive.read(m).map_err(|err| Error::Zip {
                    location: loc.clone(),
                    err,
                })?;
                (b, None)
            }
        };
        let reader = apart.as_ref().map(|a| a.reader(wheel, m));
        let t = crate::trim::trim_held(
            &f.name,
            &mut bytes,
            f.compressed_size,
            f.host_elf(),
            device,
            &self.opts.trim,
            &self.loose[input],
            reader.as_ref(),
        )
        .map_err(|e| held_trim_error(&loc, e))?
        .trimmed;
        let Some(t) = t else {
            return Ok(Some((removed, None, None)));
        };
        removed = removed.saturating_add(trim_gone(f.size, &t.report, t.data.is_none()));
        let after = t.data.as_deref().and_then(|d| {
            let bytes = estimate_after(f.compressed_size, f.size, removed);
            companions::library_after_trim(&f.name, d, bytes)
        });
        Ok(Some((removed, Some(t.report), after)))
    }

    /// A library that cannot fit alone fails before any work is done, and the dry run fails
    /// the same way (checked again with exact sizes once rewritten members are compressed).
    /// A library the trim or strip changes is judged on its estimated size in a dry run, and
    /// on its exact size once rewritten in a real run. With `--companions`, one whose device
    /// code companions can take is planned instead (the plans are returned).
    fn guard_libraries(
        &self,
        plan: &SplitPlan,
        dry: &DryTrim,
    ) -> Result<(Vec<CompanionMove>, Vec<companions::SetWithCompanions>), Error> {
        let opts = self.opts;
        let est = &dry.estimates;
        let capacity = opts.max_size.saturating_sub(RUNTIME_OVERHEAD);
        let mut moves = Vec::new();
        for set in &plan.runtime_sets {
            for l in set
                .libraries
                .iter()
                .filter(|l| opts.dry_run || !self.changes(l.input, &l.member))
            {
                // An edit (a search path) changes a library's compressed size by a few bytes.
                // The packing counts its zip entry too.
                let bytes = est.of(l.input, &l.member, l.compressed_size);
                if bytes + devcode::entry_cost(&l.file) <= capacity {
                    continue;
                }
                let trimmed = dry.libraries.get(&(l.input, l.member.clone()));
                let home = companions::Home::Set(set, l);
                if let Some(m) = self.companion_move(&home, bytes, trimmed)? {
                    moves.push(m);
                    continue;
                }
                // Re-deflated (`--canonical-runtime`), its size is known only once packed:
                // the packing judges it then.
                if opts.canonical_runtime {
                    continue;
                }
                let e = self.too_big_after(l.input, &l.member, bytes, trimmed);
                return Err(if self.changes(l.input, &l.member) {
                    as_estimate(e)
                } else {
                    e
                });
            }
        }
        let size = |l: &crate::plan::LibraryPlan| est.of(l.input, &l.member, l.compressed_size);
        let sets = companions::place(plan, &mut moves, opts.max_size, &size);
        Ok((moves, sets))
    }

    /// A main wheel whose staying members alone are over the limit fails the same way in the
    /// real run and the dry run (without a trim, nothing makes those members smaller).
    /// With a trim or strip, the dry run judges the estimated sizes the same way, and reports
    /// them.
    ///
    /// The project's own libraries that leave their main wheel over the limit have their
    /// device code moved into companions of their own wheels instead ([`devcode`]), planned
    /// here (the real run's trimmed ones in the rewrite stage), and returned.
    fn guard_mains(
        &self,
        plan: &SplitPlan,
        dry: &DryTrim,
    ) -> Result<(Vec<SizeEstimate>, Vec<CompanionMove>), Error> {
        let opts = self.opts;
        let est = &dry.estimates;
        let mut size_estimates = Vec::new();
        let mut moves = Vec::new();
        if !opts.dry_run && (self.trimming() || opts.strip_debug) {
            for (mi, m) in plan.mains.iter().enumerate().filter(|_| opts.companions) {
                let staying = self.staying(m, est);
                moves.extend(self.own_plan(mi, m, &staying, dry, false).1);
            }
            return Ok((size_estimates, moves));
        }
        for (mi, m) in plan.mains.iter().enumerate() {
            moves.extend(self.guard_main(mi, m, dry, &mut size_estimates)?);
        }
        if opts.dry_run && !est.is_empty() {
            let capacity = opts.max_size.saturating_sub(RUNTIME_OVERHEAD);
            for set in &plan.runtime_sets {
                let items: Vec<(String, u64)> = set
                    .libraries
                    .iter()
                    .map(|l| {
                        (
                            l.file.clone(),
                            est.of(l.input, &l.member, l.compressed_size)
                                + 200
                                + 2 * l.file.len() as u64,
                        )
                    })
                    .collect();
                let wheels = pack(&items, capacity).map_or(0, |b| b.len());
                size_estimates.push(SizeEstimate {
                    output: set.name.clone(),
                    kind: OutputKind::Runtime,
                    bytes: items.iter().map(|(_, b)| b).sum(),
                    bytes_before: set.libraries.iter().map(|l| l.compressed_size).sum(),
                    wheels,
                    fits: wheels > 0,
                });
            }
        }
        Ok((size_estimates, moves))
    }

    /// The members that stay in a main wheel, at their (estimated) compressed sizes.
    fn staying(&self, m: &crate::plan::MainPlan, est: &Estimates) -> Vec<(String, u64)> {
        let facts = &self.inputs[m.input].1;
        m.members
            .iter()
            .filter_map(|a| match a {
                MemberAction::Copy { member } | MemberAction::Edit { member, .. } => {
                    facts.members.iter().find(|f| &f.name == member)
                }
                MemberAction::Remove { .. } => None,
            })
            .map(|f| (f.name.clone(), est.of(m.input, &f.name, f.compressed_size)))
            .collect()
    }

    /// The compressed bytes main wheel `m` has for `member` beside its other staying members
    /// (each at `size(name, compressed)`, its headers counted) and its own files.
    fn host_room(
        &self,
        m: &crate::plan::MainPlan,
        member: &str,
        size: &dyn Fn(&str, u64) -> u64,
    ) -> u64 {
        let facts = &self.inputs[m.input].1;
        let others: u64 = m
            .members
            .iter()
            .filter_map(|a| match a {
                MemberAction::Copy { member: n } | MemberAction::Edit { member: n, .. } => Some(n),
                MemberAction::Remove { .. } => None,
            })
            .filter(|n| n.as_str() != member)
            .filter_map(|n| facts.members.iter().find(|f| &f.name == n))
            .map(|f| size(&f.name, f.compressed_size) + devcode::entry_cost(&f.name))
            .sum();
        self.opts
            .max_size
            .saturating_sub(devcode::MAIN_MARGIN)
            .saturating_sub(devcode::entry_cost(member))
            .saturating_sub(others)
    }

    /// The companion plans of the main wheel's own libraries with device code that leave it
    /// over the limit, and its staying bytes afterwards (made whether or not companions are
    /// on: a refusal says what they would do).
    ///
    /// Without a trim or strip (planned before any work), the largest are chosen first, each
    /// counted at the smallest its host can get (every container moved), until the wheel would
    /// fit; then each is planned, largest first, for the room the others leave (those planned
    /// at their size after the move, those still to plan at that smallest size, the rest as
    /// they are). With one, a library's size is known only once it is trimmed, so each is
    /// judged alone, in the dry run and the real run alike: it moves when its size
    /// (estimated) is over the room the others leave at their sizes in the input. In the real
    /// run those the trim or strip rewrites are planned in the rewrite stage; `in_dry_run`
    /// says whether to plan them here.
    fn own_plan(
        &self,
        mi: usize,
        m: &crate::plan::MainPlan,
        staying: &[(String, u64)],
        dry: &DryTrim,
        in_dry_run: bool,
    ) -> (u64, Vec<CompanionMove>) {
        let opts = self.opts;
        let mut sizes: HashMap<&str, u64> = staying.iter().map(|(n, b)| (n.as_str(), *b)).collect();
        let mut moves = Vec::new();
        let alone = self.trimming() || opts.strip_debug;
        let mut order: Vec<(&str, u64, u64)> = staying
            .iter()
            .filter(|(n, _)| self.has_device(m.input, n))
            .filter(|(n, _)| in_dry_run || !self.changes(m.input, n))
            .filter_map(|(n, b)| Some((n.as_str(), *b, self.least_host(m, n, *b, dry)?)))
            .collect();
        order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        if !alone {
            // Those to move: the largest, until the wheel would fit with them at their least.
            let mut least: HashMap<&str, u64> = HashMap::new();
            for &(n, _, l) in &order {
                let room = self.host_room(m, n, &|o, b| least.get(o).copied().unwrap_or(b));
                if sizes.get(n).copied().unwrap_or(0) <= room {
                    break;
                }
                least.insert(n, l);
            }
            order.retain(|(n, _, _)| least.contains_key(n));
        }
        let mut pending: HashMap<&str, u64> = order.iter().map(|&(n, _, l)| (n, l)).collect();
        for &(name, bytes, _) in &order {
            pending.remove(name);
            let host_room = if alone {
                self.host_room(m, name, &|_, b| b)
            } else {
                let at = |o: &str, b: u64| pending.get(o).or(sizes.get(o)).copied().unwrap_or(b);
                self.host_room(m, name, &at)
            };
            if bytes <= host_room {
                continue;
            }
            let edit = m.members.iter().find_map(|a| match a {
                MemberAction::Edit { member, edit } if member == name => Some(edit),
                _ => None,
            });
            let home = companions::Home::Main {
                main: mi,
                plan: m,
                member: name,
                edit,
                host_room,
            };
            let trimmed = dry.libraries.get(&(m.input, name.to_string()));
            if let Some(mv) = self.plan_move(&home, bytes, trimmed) {
                sizes.insert(name, mv.host_after);
                moves.push(mv);
            }
        }
        (sizes.values().sum(), moves)
    }

    /// [`Self::guard_mains`] for one main wheel: the companion plans of its own libraries.
    fn guard_main(
        &self,
        mi: usize,
        m: &crate::plan::MainPlan,
        dry: &DryTrim,
        size_estimates: &mut Vec<SizeEstimate>,
    ) -> Result<Vec<CompanionMove>, Error> {
        let opts = self.opts;
        let est = &dry.estimates;
        let facts = &self.inputs[m.input].1;
        let staying_facts = || {
            m.members.iter().filter_map(|a| match a {
                MemberAction::Copy { member } | MemberAction::Edit { member, .. } => {
                    facts.members.iter().find(|f| &f.name == member)
                }
                MemberAction::Remove { .. } => None,
            })
        };
        let mut staying = self.staying(m, est);
        let mut total: u64 = staying.iter().map(|(_, b)| b).sum();
        let mut moves = Vec::new();
        let alone = self.trimming() || opts.strip_debug;
        if opts.companions && (total > opts.max_size || alone) {
            (total, moves) = self.own_plan(mi, m, &staying, dry, true);
        }
        let any_estimate = staying.iter().any(|(n, _)| est.has(m.input, n));
        if opts.dry_run && !est.is_empty() {
            size_estimates.push(SizeEstimate {
                output: m.file_name.clone(),
                kind: OutputKind::Main,
                bytes: total,
                bytes_before: staying_facts().map(|f| f.compressed_size).sum(),
                wheels: 1,
                fits: total <= opts.max_size,
            });
        }
        if total <= opts.max_size {
            return Ok(moves);
        }
        for mv in &moves {
            if let Some(s) = staying.iter_mut().find(|(n, _)| *n == mv.key.1) {
                s.1 = mv.host_after;
            }
        }
        staying.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let any_device = staying.iter().any(|(n, _)| self.has_device(m.input, n));
        // The largest members, as many as the excess needs to leave.
        let over = total - opts.max_size;
        let mut covered = 0u64;
        let wheel = &self.inputs[m.input].0;
        let largest: Vec<(String, u64)> = staying
            .iter()
            .take_while(|(_, b)| {
                let more = covered < over;
                covered += b;
                more
            })
            .map(|(n, b)| (wheel.member_location(n).to_string(), *b))
            .collect();
        // Debug sections --strip-debug would remove (none left when it is given).
        let debug: u64 = if opts.strip_debug {
            0
        } else {
            staying
                .iter()
                .filter_map(|(n, _)| facts.members.iter().find(|f| &f.name == n))
                .filter_map(|f| f.host_elf())
                .map(crate::elf::strip::debug_bytes)
                .sum()
        };
        let e = crate::checks::main_cannot_fit(
            &opts.wheel_dir.join(&m.file_name).display().to_string(),
            total,
            opts.max_size,
            &largest,
            any_device,
            debug,
        );
        let e = self.own_companion_hint(mi, m, &staying, dry, e);
        Err(if any_estimate { as_estimate(e) } else { e })
    }

    /// The smallest a library of main wheel `m` at `bytes` compressed can get with every one
    /// of its containers moved (with the plan's margin); `None` when it has none.
    fn least_host(
        &self,
        m: &crate::plan::MainPlan,
        name: &str,
        bytes: u64,
        dry: &DryTrim,
    ) -> Option<u64> {
        let key = (m.input, name.to_string());
        let lib = dry.libraries.get(&key).cloned().or_else(|| {
            let f = self.inputs[m.input]
                .1
                .members
                .iter()
                .find(|f| f.name == name)?;
            crate::plan::companions::library_of_member(f)
        })?;
        let least =
            lib.rest_compressed + crate::plan::companions::PER_BLOCK_COST * lib.blocks.len() as u64;
        // The plan keeps a margin of 1/64 for its estimates.
        Some((least + least / 63 + 1).min(bytes))
    }

    /// A main wheel's size refusal, with what companions would do: that they make it fit
    /// (when they are off), or why they cannot, for its largest library with device code.
    fn own_companion_hint(
        &self,
        mi: usize,
        m: &crate::plan::MainPlan,
        staying: &[(String, u64)],
        dry: &DryTrim,
        e: Error,
    ) -> Error {
        match self.own_verdict(mi, m, staying, dry) {
            OwnVerdict::Fits { after, moves } if !self.opts.companions => {
                let files: usize = moves.iter().map(|mv| mv.companions.len()).sum();
                let libs: Vec<&str> = moves.iter().map(|mv| mv.file.as_str()).collect();
                let sentence = format!(
                    "--companions would make it fit: the device code of {} ({}) moves into {files} companion file{} in wheels of their own ({}), leaving the main wheel at about {} compressed (they are the default: split without --no-companions; `split --dry-run` shows the plan)",
                    if libs.len() == 1 {
                        "one library"
                    } else {
                        "its libraries"
                    },
                    libs.join(", "),
                    if files == 1 { "" } else { "s" },
                    self.devcode_name(m.input),
                    crate::cli_size(after)
                );
                companions::with_hint_first(e, &sentence)
            }
            OwnVerdict::NoRoom => companions::with_note(
                e,
                &format!("companions cannot make it fit: {OTHERS_TAKE_ALL}"),
            ),
            OwnVerdict::Cannot(a) => companions::with_companion_hint(e, &a, self.opts.companions),
            OwnVerdict::Fits { .. } | OwnVerdict::Short { .. } | OwnVerdict::Nothing => e,
        }
    }

    /// The largest of `staying` (member, compressed bytes) with device code (ties by name).
    fn largest_with_device<'s>(
        &self,
        input: usize,
        staying: &'s [(String, u64)],
    ) -> Option<&'s (String, u64)> {
        staying
            .iter()
            .filter(|(n, _)| self.has_device(input, n))
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
    }

    /// What companions do for main wheel `m` over the limit ([`OwnVerdict`]): the plan of
    /// [`Self::own_plan`], and when it does not make the wheel fit, why not for its largest
    /// library with device code.
    fn own_verdict(
        &self,
        mi: usize,
        m: &crate::plan::MainPlan,
        staying: &[(String, u64)],
        dry: &DryTrim,
    ) -> OwnVerdict {
        let (after, moves) = self.own_plan(mi, m, staying, dry, true);
        if after <= self.opts.max_size && !moves.is_empty() {
            return OwnVerdict::Fits { after, moves };
        }
        let Some((name, bytes)) = self.largest_with_device(m.input, staying) else {
            return OwnVerdict::Nothing;
        };
        // Its room with all the other libraries' device code gone.
        let least: HashMap<&str, u64> = staying
            .iter()
            .filter(|(n, _)| n != name && self.has_device(m.input, n))
            .filter_map(|(n, b)| Some((n.as_str(), self.least_host(m, n, *b, dry)?)))
            .collect();
        let host_room = self.host_room(m, name, &|n, b| least.get(n).copied().unwrap_or(b));
        if host_room == 0 {
            return OwnVerdict::NoRoom;
        }
        let home = companions::Home::Main {
            main: mi,
            plan: m,
            member: name,
            edit: None,
            host_room,
        };
        let trimmed = dry.libraries.get(&(m.input, name.clone()));
        let Some((lib, v)) = self.companion_verdict(home.key(), *bytes, trimmed, self.rooms(&home))
        else {
            return OwnVerdict::Nothing;
        };
        match crate::plan::companions::CompanionAdvice::new(name, &lib, host_room, &v) {
            Some(a) if a.reason.is_some() => OwnVerdict::Cannot(a),
            _ => OwnVerdict::Short { after },
        }
    }
}

/// Why companions cannot help a main wheel whose other members leave no room.
const OTHERS_TAKE_ALL: &str = "the main wheel's other members take all its room even with the device code of every library moved out";

/// What companions do for a main wheel over the limit because of its own libraries.
enum OwnVerdict {
    /// The plan makes it fit, at `after` compressed bytes.
    Fits {
        after: u64,
        moves: Vec<CompanionMove>,
    },
    /// The plan moves what it can, and the wheel is still over, at `after`.
    Short { after: u64 },
    /// The other members take all the room of its largest library with device code.
    NoRoom,
    /// Its largest library with device code cannot fit with companions, and why.
    Cannot(crate::plan::companions::CompanionAdvice),
    /// No library in it has device code the planner can move.
    Nothing,
}

/// The rewrite stage: the ELF objects that need it, in parallel, under the memory budget.
impl SplitRun<'_> {
    /// The members to rewrite: the plan's edits, and what the trim or the strip changes.
    fn jobs<'p>(&self, plan: &'p SplitPlan, moves: &'p [CompanionMove]) -> Vec<Job<'p>> {
        let mut jobs = Vec::new();
        for (mi, m) in plan.mains.iter().enumerate() {
            for a in &m.members {
                let (member, edit) = match a {
                    MemberAction::Edit { member, edit } => (member, Some(edit)),
                    MemberAction::Copy { member } => (member, None),
                    MemberAction::Remove { .. } => continue,
                };
                let key = (m.input, member.clone());
                let mv = moves.iter().find(|mv| mv.key == key);
                if mv.is_none() && edit.is_none() && !self.changes(m.input, member) {
                    continue;
                }
                let home = companions::Home::Main {
                    main: mi,
                    plan: m,
                    member,
                    edit,
                    host_room: mv
                        .map_or_else(|| self.host_room(m, member, &|_, b| b), |mv| mv.room),
                };
                // The project's own library too big for its main wheel once trimmed is planned
                // in the rewrite stage, like a runtime library.
                let after_trim = (mv.is_none()
                    && self.opts.companions
                    && self.changes(m.input, member)
                    && self.has_device(m.input, member))
                .then_some(home);
                let edit = match mv {
                    Some(_) => {
                        let plain = crate::plan::ElfEdit::default();
                        let base = edit.unwrap_or(&plain);
                        match companions::with_origin(base, self.host_info(m.input, member)) {
                            Some(e) => Some(std::borrow::Cow::Owned(e)),
                            None => edit.map(std::borrow::Cow::Borrowed),
                        }
                    }
                    None => edit.map(std::borrow::Cow::Borrowed),
                };
                jobs.push(Job {
                    input: m.input,
                    member: member.clone(),
                    edit,
                    companions: mv,
                    after_trim,
                    planned_in: mv.map(|_| home),
                    canonical: false,
                });
            }
        }
        let canonical = self.opts.canonical_runtime;
        for s in &plan.runtime_sets {
            for l in &s.libraries {
                let key = (l.input, l.member.clone());
                let mv = moves.iter().find(|m| m.key == key);
                let edit = if let Some(mv) = mv {
                    // Its companions sit beside it: its search path must hold `$ORIGIN`.
                    let info = self.inputs[mv.key.0]
                        .1
                        .members
                        .iter()
                        .find(|f| f.name == l.member)
                        .and_then(|f| f.host_elf());
                    match companions::with_origin(&l.edit, info) {
                        Some(e) => Some(std::borrow::Cow::Owned(e)),
                        None => (!l.edit.is_empty()).then_some(std::borrow::Cow::Borrowed(&l.edit)),
                    }
                } else if !l.edit.is_empty() {
                    Some(std::borrow::Cow::Borrowed(&l.edit))
                } else if self.changes(l.input, &l.member) {
                    None
                } else {
                    continue;
                };
                // Guarded on its exact size in the rewrite stage (`guard_libraries`): a
                // trimmed library, and an edited one (its search path changes its size).
                let home = companions::Home::Set(s, l);
                let after_trim = mv.is_none().then_some(home);
                jobs.push(Job {
                    input: l.input,
                    member: l.member.clone(),
                    edit,
                    companions: mv,
                    after_trim,
                    planned_in: mv.map(|_| home),
                    canonical,
                });
            }
        }
        jobs
    }

    /// Rewrites every job, largest first. Bytes kept by the inspect pass are taken by the job
    /// that rewrites them; what no job takes (a wrong guess) is dropped before the outputs
    /// are written.
    fn rewrite(&self, jobs: &[Job], kept: KeptMembers) -> Result<Rewrites, Error> {
        let trims: Mutex<Vec<(usize, MemberTrim)>> = Mutex::new(Vec::new());
        let kept: HashMap<MemberKey, Mutex<Option<Kept>>> = kept
            .into_iter()
            .map(|(k, v)| (k, Mutex::new(Some(v))))
            .collect();
        let take_kept = |job: &Job| -> Option<Kept> {
            kept.get(&(job.input, job.member.clone()))
                .and_then(|m| m.lock().unwrap_or_else(|p| p.into_inner()).take())
        };
        let reread = AtomicUsize::new(0);
        let job_sizes: Vec<u64> = jobs
            .iter()
            .map(|j| {
                let archive = &self.inputs[j.input].0.archive;
                archive.member(&j.member).map_or(0, |m| m.size)
            })
            .collect();
        let progress = &self.opts.progress;
        progress.set_message("rewriting");
        progress.set_position(0);
        progress.set_length(job_sizes.iter().sum());
        let rewritten: Vec<(MemberKey, Rewritten)> =
            crate::schedule::largest_first(&job_sizes, |j| {
                let tick = Tick::new(progress, job_sizes[j]);
                let job = &jobs[j];
                let run = || self.rewrite_member(job, take_kept(job), &reread, &trims, None);
                // The bar moves as the member is compressed, batch by batch; the rest of its
                // size counts when the job ends, however it ends.
                deflate::with_progress(tick.sink(), run)
                    .transpose()
                    .map(|r| r.map(|r| ((job.input, job.member.clone()), r)))
            })
            .into_iter()
            .flatten()
            .collect::<Result<_, Error>>()?;
        drop(kept);
        let members_read_twice = reread.into_inner();
        let reused_bytes = rewritten.iter().map(|(_, r)| r.reused).sum();
        let members: HashMap<MemberKey, Rewritten> = rewritten.into_iter().collect();
        let trimmed = trims.into_inner().unwrap_or_else(|p| p.into_inner());
        for (i, (w, f)) in self.inputs.iter().enumerate() {
            let mine: Vec<&MemberTrim> = trimmed
                .iter()
                .filter(|(n, _)| *n == i)
                .map(|(_, t)| t)
                .collect();
            crate::apply::trim::check_losses(w, f, &mine, &self.opts.trim)?;
        }
        // Sizes after the trim: what the summary and `--json` report is what was written.
        let mut trimmed: Vec<MemberTrim> = trimmed
            .into_iter()
            .map(|(i, mut t)| {
                if let Some(r) = members.get(&(i, t.member.clone())) {
                    t.zip_after = r.compressed.stored_len();
                }
                t
            })
            .collect();
        trimmed.sort_by(|a, b| a.member.cmp(&b.member));
        Ok(Rewrites {
            members,
            trimmed,
            members_read_twice,
            reused_bytes,
        })
    }

    /// The input bytes of a job's member and where its deflate blocks begin: kept by the
    /// inspect pass, or read again here (counted in `reread`) under a reservation of every
    /// buffer the rewrite will hold ([`buffers_held`]).
    fn hold_input<'s>(
        &'s self,
        job: &Job,
        m: &crate::wheel::zip::Member,
        loc: &crate::error::Location,
        kept: Option<Kept<'s>>,
        reread: &AtomicUsize,
    ) -> Result<HeldInput<'s>, Error> {
        if let Some(mut k) = kept {
            let marks = std::mem::take(&mut k.marks);
            let apart = k.apart.take();
            let (b, r) = k.into_parts();
            return Ok((b, marks, r, apart));
        }
        reread.fetch_add(1, Ordering::Relaxed);
        let r = self.budget.reserve(m.size.saturating_mul(self.copies()));
        let wheel = &self.inputs[job.input].0;
        let zip = |err| Error::Zip {
            location: loc.clone(),
            err,
        };
        // A large library the trim or a companion move rewrites is read without its CUDA
        // sections, which they read again a window at a time, holding only the containers
        // the trim keeps or the companion being written.
        let rewrites_device =
            self.trimming() || job.companions.is_some() || job.after_trim.is_some();
        if let Some(f) = self
            .device_of(job.input, &job.member)
            .filter(|_| rewrites_device && !self.opts.strip_debug)
            && let Some((b, marks, apart)) =
                facts::read_apart(wheel, m, f, self.opts.sparse.from).map_err(zip)?
        {
            return Ok((b, marks, Some(r), Some(apart)));
        }
        let (b, marks) = wheel.archive.read_marked(m).map_err(zip)?;
        Ok((b, marks, Some(r), None))
    }

    /// One job: trim, strip, move device code into companions, patch, then the shared tail
    /// ([`apply::rewrite::encode`]). `None` when nothing changed after all. `forced`: the
    /// companion plan made from its exact size, when a first pass found the estimate too low.
    fn rewrite_member(
        &self,
        job: &Job,
        kept: Option<Kept>,
        reread: &AtomicUsize,
        trims: &Mutex<Vec<(usize, MemberTrim)>>,
        forced: Option<&companions::Forced>,
    ) -> Result<Option<Rewritten>, Error> {
        let member = &job.member;
        let wheel = &self.inputs[job.input].0;
        let loc = wheel.member_location(member);
        let m = wheel
            .archive
            .member(member)
            .ok_or_else(|| Error::internal(format_args!("{loc} vanished")))?;
        // The input is held (kept by the inspect pass, or read again here), with a trimmed,
        // stripped or moved copy beside it when there is one; the patch edits the last of
        // them in place. Compressed output of large members is spilled. A copy's input stays
        // until the output knows which of its compressed blocks it reuses (`wheel::splice`).
        let (mut original, marks, held, apart) = self.hold_input(job, m, &loc, kept, reread)?;
        // CUDA sections the inspect pass left out of a large library (`cuda_apart`): the trim
        // reads them again, and whatever still needs them whole gets them first.
        let reader = apart.as_ref().map(|a| a.reader(wheel, m));
        let mut holes = reader
            .as_ref()
            .map(|r| r.holes().to_vec())
            .unwrap_or_default();
        let strip = self.debug_of(job.input, member) > 0;
        let mut current = None;
        // Bytes the trim removes, counted as the dry run counts them.
        let mut gone = 0;
        if let Some(f) = self
            .device_of(job.input, member)
            .filter(|_| self.trimming())
        {
            match self.trim_step(job, f, &mut original, reader.as_ref(), strip, trims)? {
                TrimStep::Trimmed(d, g, h) => ((current, gone), holes) = ((Some(d), g), h),
                TrimStep::Removed => return Ok(Some(Rewritten::removed())),
                TrimStep::Unchanged => {}
            }
        }
        let trim_shift = current
            .as_ref()
            .map(|t| t.len() as i64 - original.len() as i64);
        // Trim first, then move what is left if it still does not fit (issue 14): the plan
        // of a library still too big after the trim is made from what the trim leaves, at
        // the size the dry run estimates, so both show the same plan.
        let (after, planned) = match (job.after_trim, forced) {
            (_, Some(f)) => (Some(f.view.clone()), Some(f.mv.clone())),
            (Some(home), None) => self.plan_after_trim(&home, current.as_deref(), gone)?,
            (None, None) => (None, None),
        };
        // A plan made again from the exact sizes replaces the one made before any work.
        let mv = planned.as_ref().or(job.companions);
        let origin = self.origin_edit(job, planned.is_some());
        let edit = origin.as_ref().or(job.edit.as_deref());
        if current.is_none() && edit.is_none() && !strip && mv.is_none() {
            return Ok(None);
        }
        // A strip or the patch needs the input whole; a companion move does not (issue 14).
        let apart_move = mv.is_some() && !strip;
        let reader = reader.filter(|_| current.is_none());
        let reader =
            self.whole_unless_moved(job, &loc, reader, apart_move, &mut original, &mut holes)?;
        if strip {
            let base = current.as_deref().unwrap_or(&original);
            match self.strip_step(job, m, base, original.len() as u64, trims)? {
                Some(d) => current = Some(d),
                None if current.is_none() && edit.is_none() && mv.is_none() => return Ok(None),
                None => {}
            }
        }
        let (host, moved, zeroed) = self.companion_step(
            &loc,
            (current.as_mut(), &mut original),
            mv,
            (job.input, m, marks.as_slice()),
            reader.as_ref(),
        )?;
        drop(reader);
        current = host.or(current);
        let shifts = output_shifts(trim_shift, current.as_deref(), &original, mv.is_some());
        let mut changes = None;
        if let Some(edit) = edit {
            let target = current.as_mut().unwrap_or(&mut original);
            let c = apply::patch_elf_in_place(target, edit).map_err(|err| Error::Elf {
                location: loc.clone(),
                err,
            })?;
            changes = current.is_none().then_some(c);
        }
        // The output, and the input it was made from when they differ: held whole beside a
        // copy, or read back out of the output that was patched in its buffer.
        let (out, original) = match (current, changes) {
            (Some(c), _) => (c, Some(apply::rewrite::Held::holed(original, holes))),
            (None, Some(ch)) => (original, Some(apply::rewrite::Held::Edited(ch))),
            (None, None) => (original, None),
        };
        let input = original
            .filter(|_| !job.canonical)
            .map(|data| apply::rewrite::Input {
                archive: &wheel.archive,
                member: m,
                data,
                marks,
            });
        let inspect = |out: &[u8]| match crate::elf::inspect(out) {
            Ok(Inspected::Host(i)) => Ok(Some(*i)),
            Ok(_) => Ok(None),
            // A trimmed loose device file (fatbin, bundle) is no ELF object.
            Err(_) if edit.is_none() && !crate::elf::is_elf(out) => Ok(None),
            Err(err) => Err(Error::Elf {
                location: loc.clone(),
                err,
            }),
        };
        let spill = Some(self.opts.wheel_dir.as_path());
        let e = apply::rewrite::encode(&out, input, &shifts, spill, inspect)?;
        drop(out);
        drop(held);
        if let Some(target) = job.after_trim.or(job.planned_in) {
            // The exact sizes are the check: over the room, the plan is made again from them
            // and the member rewritten with it (or refused, saying why).
            let written: Vec<u64> = moved.iter().map(|c| c.compressed.stored_len()).collect();
            let sizes = (e.compressed.stored_len(), written.as_slice());
            let tries = forced.map_or(0, |f| f.tries);
            if let Some(next) = self.replan(&target, after, mv, sizes, tries)? {
                drop((e, moved));
                trims
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain(|(i, t)| !(*i == job.input && &t.member == member));
                return self.rewrite_member(job, None, reread, trims, Some(&next));
            }
        }
        Ok(Some(Rewritten {
            compressed: e.compressed,
            sha256: e.sha256,
            info: e.info,
            removed: false,
            reused: e.reused + moved.iter().map(|c| c.reused).sum::<u64>(),
            companions: moved,
            zeroed,
            planned,
        }))
    }

    /// Makes a library the inspect pass kept without its CUDA sections whole (the holes read
    /// back and the member checked against its CRC; `reader` is `None` for a trimmed copy,
    /// which stands on its own while the input keeps its holes for the splice), unless its device code is about to move
    /// into companions from it as it is (`apart_move`, with the device facts that need): then
    /// the reader is handed on for the move, which reads the containers back as it writes
    /// them, so a library of a GiB is never held whole (issue 14's cost target).
    fn whole_unless_moved<'r>(
        &self,
        job: &Job,
        loc: &crate::wheel::Location,
        reader: Option<facts::ApartReader<'r>>,
        apart_move: bool,
        original: &mut [u8],
        holes: &mut Vec<(u64, u64)>,
    ) -> Result<Option<facts::ApartReader<'r>>, Error> {
        let Some(r) = reader else {
            return Ok(None);
        };
        if apart_move && self.device_of(job.input, &job.member).is_some() {
            return Ok(Some(r));
        }
        if !holes.is_empty() {
            r.fill(original, &std::mem::take(holes))
                .and_then(|()| r.check(original))
                .map_err(|err| Error::Zip {
                    location: loc.clone(),
                    err,
                })?;
        }
        Ok(None)
    }

    /// The edit of a library whose companion plan was made after its trim (the plan's origin
    /// added to the job's edit); `None` otherwise.
    fn origin_edit(&self, job: &Job, planned: bool) -> Option<crate::plan::ElfEdit> {
        let home = job.after_trim.filter(|_| planned)?;
        let plain = crate::plan::ElfEdit::default();
        let edit = home.edit().unwrap_or(&plain);
        companions::with_origin(edit, self.host_info(job.input, &job.member))
    }

    /// Moves a host's device code into the companions of its plan (`--companions`); `None`
    /// without a plan. The host is `current` (a trimmed or stripped copy) or else `original`,
    /// the input member (input index, member, block marks in `input`), whose compressed
    /// blocks the companions then reuse; `reader`, when the input is held without its CUDA
    /// sections, reads them back for the move.
    fn companion_step(
        &self,
        loc: &crate::wheel::Location,
        (current, original): (Option<&mut Vec<u8>>, &mut Vec<u8>),
        mv: Option<&CompanionMove>,
        input: (
            usize,
            &crate::wheel::zip::Member,
            &[crate::wheel::zip::BlockMark],
        ),
        reader: Option<&facts::ApartReader<'_>>,
    ) -> Result<MovedStep, Error> {
        let Some(mv) = mv else {
            return Ok((None, Vec::new(), None));
        };
        // A host held without its CUDA sections: the move reads its containers back.
        let apart = reader
            .zip(self.device_of(input.0, &input.1.name))
            .and_then(|(reader, f)| {
                Some(companions::HeldApart {
                    reader,
                    device: f.device.as_ref()?,
                })
            });
        let files: Vec<_> = mv.companions.iter().map(|c| c.file.clone()).collect();
        let spill = Some(self.opts.wheel_dir.as_path());
        let (i, member, marks) = input;
        let from = current.is_none().then(|| companions::InputMember {
            archive: &self.inputs[i].0.archive,
            member,
            marks,
        });
        let host = current.unwrap_or(original);
        let h = companions::host_rewrite(loc, host, &files, spill, from, apart.as_ref())?;
        Ok((Some(h.host), h.companions, h.zeroed))
    }

    /// Trims a member's device code (`--sm`, `--gfx`), recording the trim; with the CUDA
    /// sections `reader` left out of `original`, also the sections still left out of it.
    fn trim_step(
        &self,
        job: &Job,
        f: &MemberFacts,
        original: &mut [u8],
        reader: Option<&facts::ApartReader>,
        strip: bool,
        trims: &Mutex<Vec<(usize, MemberTrim)>>,
    ) -> Result<TrimStep, Error> {
        let loc = self.inputs[job.input].0.member_location(&job.member);
        let held = crate::trim::trim_held(
            &job.member,
            original,
            f.compressed_size,
            f.host_elf(),
            f.device.as_ref().unwrap_or(&Default::default()),
            &self.opts.trim,
            &self.loose[job.input],
            reader,
        )
        .map_err(|e| held_trim_error(&loc, e))?;
        let Some(t) = held.trimmed else {
            return Ok(TrimStep::Unchanged);
        };
        let mut report = t.report;
        let gone = trim_gone(original.len() as u64, &report, t.data.is_none());
        if t.data.is_some() && strip {
            report.method = format!("{}+strip-debug", report.method);
        }
        trims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((job.input, report));
        Ok(match t.data {
            Some(d) => TrimStep::Trimmed(d, gone, held.holes),
            None => TrimStep::Removed,
        })
    }

    /// Empties the debug sections of `base` (`--strip-debug`), recording it beside the
    /// member's trim; `None` when there was nothing to strip.
    fn strip_step(
        &self,
        job: &Job,
        m: &crate::wheel::zip::Member,
        base: &[u8],
        bytes_before: u64,
        trims: &Mutex<Vec<(usize, MemberTrim)>>,
    ) -> Result<Option<Vec<u8>>, Error> {
        let loc = self.inputs[job.input].0.member_location(&job.member);
        let stripped = crate::elf::strip::strip_debug(base).map_err(|err| Error::Elf {
            location: loc,
            err: crate::elf::ElfError::OutputCheck(format!(
                "cannot strip its debug sections: {err} (run without --strip-debug)"
            )),
        })?;
        let Some(st) = stripped else {
            return Ok(None);
        };
        let note = st.note();
        let mut all = trims.lock().unwrap_or_else(|p| p.into_inner());
        match all
            .iter_mut()
            .find(|(i, t)| *i == job.input && t.member == job.member)
        {
            Some((_, t)) => {
                t.bytes_after = st.data.len() as u64;
                t.notes.push(note);
            }
            None => all.push((
                job.input,
                MemberTrim {
                    member: job.member.clone(),
                    method: "strip-debug".into(),
                    reason: None,
                    bytes_before,
                    bytes_after: st.data.len() as u64,
                    zip_before: m.compressed_size,
                    zip_after: 0,
                    archs: Vec::new(),
                    unmatched_containers: 0,
                    notes: vec![note],
                    group: None,
                    lost: Vec::new(),
                },
            )),
        }
        Ok(Some(st.data))
    }
}

impl Rewritten {
    /// A loose device file the trim drops.
    fn removed() -> Rewritten {
        Rewritten {
            compressed: deflate::compress(&[], deflate::DEFAULT_LEVEL),
            sha256: sha2_digest(&[]),
            info: None,
            removed: true,
            reused: 0,
            companions: Vec::new(),
            zeroed: None,
            planned: None,
        }
    }
}

/// The pack stage: runtime libraries re-deflated, then packed into wheels under the limit.
impl SplitRun<'_> {
    /// Runtime members re-deflated canonically, when asked. These are the one exception to
    /// "inflated once": keeping every moving library from the inspect pass would hold most of
    /// the wheel in memory, so they are read again here, largest first, and large ones are
    /// compressed into spill files in the runtime folder.
    fn canonical(
        &self,
        plan: &SplitPlan,
        rewritten: &HashMap<MemberKey, Rewritten>,
    ) -> Result<HashMap<MemberKey, Compressed>, Error> {
        if !self.opts.canonical_runtime {
            return Ok(HashMap::new());
        }
        let libs: Vec<&crate::plan::LibraryPlan> = plan
            .runtime_sets
            .iter()
            .flat_map(|s| s.libraries.iter())
            .filter(|l| !rewritten.contains_key(&(l.input, l.member.clone())))
            .collect();
        let sizes: Vec<u64> = libs.iter().map(|l| l.size).collect();
        crate::schedule::largest_first(&sizes, |i| {
            let l = libs[i];
            let wheel = &self.inputs[l.input].0;
            let loc = wheel.member_location(&l.member);
            let m = wheel
                .archive
                .member(&l.member)
                .ok_or_else(|| Error::internal(format_args!("{loc} vanished")))?;
            let _r = self.budget.reserve(m.size);
            let bytes = wheel
                .archive
                .read(m)
                .map_err(|err| Error::Zip { location: loc, err })?;
            let dir = &self.opts.runtime_dir;
            let c = deflate::compress_spilled(&bytes, deflate::DEFAULT_LEVEL, dir)
                .map_err(|e| Error::io("write a temporary file in", dir.clone(), e))?;
            Ok(((l.input, l.member.clone()), c))
        })
        .into_iter()
        .collect()
    }

    /// Packs each runtime set into wheels under the limit (`-partN` after the first).
    fn pack<'p>(
        &self,
        plan: &'p SplitPlan,
        rewritten: &HashMap<MemberKey, Rewritten>,
        canonical: &HashMap<MemberKey, Compressed>,
    ) -> Result<Vec<RuntimeWheel<'p>>, Error> {
        let capacity = self.opts.max_size.saturating_sub(RUNTIME_OVERHEAD);
        let mut runtime_wheels = Vec::new();
        for set in &plan.runtime_sets {
            let stored = |l: &crate::plan::LibraryPlan| -> u64 {
                let key = (l.input, l.member.clone());
                rewritten
                    .get(&key)
                    .map(|r| r.compressed.stored_len())
                    .or_else(|| canonical.get(&key).map(|c| c.stored_len()))
                    .unwrap_or(l.compressed_size)
            };
            let mut items: Vec<(String, u64)> = set
                .libraries
                .iter()
                .map(|l| (l.file.clone(), stored(l) + 200 + 2 * l.file.len() as u64))
                .collect();
            // Companions are packed with their set, beside their hosts (items after the
            // libraries, in host order, then companion order: deterministic).
            let mut owners: Vec<(usize, usize)> = Vec::new();
            for (li, l) in set.libraries.iter().enumerate() {
                let Some(r) = rewritten.get(&(l.input, l.member.clone())) else {
                    continue;
                };
                for (k, c) in r.companions.iter().enumerate() {
                    let bytes = c.compressed.stored_len() + 200 + 2 * c.soname.len() as u64;
                    items.push((c.soname.clone(), bytes));
                    owners.push((li, k));
                }
            }
            let n_libs = set.libraries.len();
            let bins = pack(&items, capacity).map_err(|i| {
                let l = &set.libraries[owners.get(i.wrapping_sub(n_libs)).map_or(i, |o| o.0)];
                if i >= n_libs {
                    return Error::refused(
                        format!(
                            "{}: its companion {} is {} bytes compressed, over the {} byte limit",
                            self.inputs[l.input].0.member_location(&l.member),
                            items[i].0,
                            items[i].1,
                            self.opts.max_size
                        ),
                        Some("the plan's estimate was too low: split again with a larger --max-size or trim the device code with --sm/--gfx".into()),
                    );
                }
                self.too_big(l.input, &l.member, items[i].1)
            })?;
            let n = bins.len();
            for (k, bin) in bins.into_iter().enumerate() {
                let (libraries, extra): (Vec<usize>, Vec<usize>) =
                    bin.into_iter().partition(|&i| i < n_libs);
                let name = if k == 0 {
                    set.name.clone()
                } else {
                    format!("{}-part{}", set.name, k + 1)
                };
                runtime_wheels.push(RuntimeWheel {
                    set,
                    name,
                    part: k,
                    parts: n,
                    libraries,
                    companions: extra.into_iter().map(|i| owners[i - n_libs]).collect(),
                });
            }
        }
        Ok(runtime_wheels)
    }
}

/// The assemble stage: every output's member list.
impl SplitRun<'_> {
    /// The generated files: each main wheel's METADATA (with the runtime wheels it now
    /// requires) and preload hooks; each runtime wheel's `__init__.py`, METADATA and WHEEL.
    fn generate(
        &self,
        plan: &SplitPlan,
        hooks: &[Vec<HookPatch>],
        runtime_wheels: &[RuntimeWheel],
        devcode: &[devcode::DevcodeWheel],
        built: &Built,
    ) -> Generated {
        let runtime_names = runtime_names(runtime_wheels);
        let mut g = Generated {
            files: Vec::new(),
            mains: Vec::new(),
            runtimes: Vec::new(),
            devcode: Vec::new(),
        };
        for (mi, m) in plan.mains.iter().enumerate() {
            let wheel = &self.inputs[m.input].0;
            let mut meta = wheel.metadata.clone();
            let existing: HashSet<String> = meta
                .get_all("Requires-Dist")
                .map(crate::wheel::requirement_name)
                .collect();
            for key in &m.runtime_sets {
                let version = plan
                    .runtime_sets
                    .iter()
                    .find(|s| &s.key == key)
                    .map(|s| s.version.clone())
                    .unwrap_or_default();
                for name in runtime_names.get(key.as_str()).into_iter().flatten() {
                    if !existing.contains(&normalize_name(name)) {
                        meta.add("Requires-Dist", &format!("{name}=={version}"));
                    }
                }
            }
            for r in &m.requirements {
                if !existing.contains(&crate::wheel::requirement_name(r)) {
                    meta.add("Requires-Dist", r);
                }
            }
            let mut own: Vec<&devcode::DevcodeWheel> =
                devcode.iter().filter(|d| d.mains.contains(&mi)).collect();
            own.sort_by(|a, b| a.name.cmp(&b.name));
            own.dedup_by(|a, b| a.name == b.name);
            for d in own {
                if !existing.contains(&normalize_name(&d.name)) {
                    meta.add("Requires-Dist", &format!("{}=={}", d.name, d.version));
                }
            }
            let name = format!("{}/METADATA", wheel.dist_info);
            let mut gens = vec![g.add(&name, meta.to_text().as_bytes())];
            for h in &hooks[mi] {
                gens.push(g.add(&h.init, &h.patched));
                gens.push(g.add(&h.module, h.module_text.as_bytes()));
            }
            g.mains.push(gens);
        }
        for rw in runtime_wheels {
            let set = rw.set;
            let dist_info = runtime_dist_info(rw);
            let mut gens = Vec::new();
            if rw.part == 0 {
                let init = format!("{}/__init__.py", set.package);
                gens.push(g.add(&init, preload_module(set).as_bytes()));
            }
            let metadata = runtime_metadata(rw, &runtime_names, built.licenses_of(rw));
            gens.push(g.add(&format!("{dist_info}/METADATA"), metadata.as_bytes()));
            let wheel_file = runtime_wheel_file(set);
            gens.push(g.add(&format!("{dist_info}/WHEEL"), wheel_file.as_bytes()));
            g.runtimes.push(gens);
        }
        for dw in devcode {
            let gens = self.devcode_generated(dw, &mut g);
            g.devcode.push(gens);
        }
        g
    }

    /// A main wheel's members: the input's, less those that moved, with the rewritten and
    /// generated ones in their place, and the hook modules beside them.
    fn main_members<'o>(
        &'o self,
        m: &'o crate::plan::MainPlan,
        hooks: &[HookPatch],
        generated: &'o Generated,
        gens: &[Gen],
        built: &Built<'o>,
    ) -> Result<Vec<OutMember<'o>>, Error> {
        let (wheel, facts) = &self.inputs[m.input];
        let by_name: HashMap<&str, &MemberFacts> =
            facts.members.iter().map(|f| (f.name.as_str(), f)).collect();
        let record_name = format!("{}/RECORD", wheel.dist_info);
        let mut members = Vec::new();
        for a in &m.members {
            let name = match a {
                MemberAction::Remove { .. } => continue,
                MemberAction::Copy { member } | MemberAction::Edit { member, .. } => member,
            };
            let new = built.rewritten.get(&(m.input, name.clone()));
            if new.is_some_and(|r| r.removed) || *name == record_name || name.ends_with('/') {
                continue;
            }
            let Some(src) = wheel.archive.member(name) else {
                continue;
            };
            let mode = normalized_mode(src.unix_mode);
            if let Some(g) = gens.iter().find(|g| &g.name == name) {
                members.push(generated.member(g, mode));
            } else if let Some(r) = new {
                members.push(OutMember {
                    name: name.clone(),
                    source: Source::New(&r.compressed),
                    sha256: r.sha256,
                    size: r.compressed.size,
                    mode,
                    facts: elf_facts(name, &r.compressed, r.sha256, r.info.clone()),
                });
            } else {
                let f = by_name
                    .get(name.as_str())
                    .copied()
                    .ok_or_else(|| Error::internal(format_args!("no facts for {name}")))?;
                members.push(OutMember {
                    name: name.clone(),
                    source: Source::Copy {
                        wheel,
                        member: name,
                    },
                    sha256: f.sha256.unwrap_or([0; 32]),
                    size: f.size,
                    mode,
                    facts: f.clone(),
                });
            }
        }
        // The hook modules are new members, beside the `__init__.py` that imports them.
        for h in hooks {
            if let Some(g) = gens.iter().find(|g| g.name == h.module) {
                members.push(generated.member(g, 0o100644));
            }
        }
        order_dist_info_last(&mut members, &wheel.dist_info);
        Ok(members)
    }

    /// A runtime wheel's file name and members: its generated files, its libraries (rewritten,
    /// re-deflated or copied) and the licence files of its set.
    fn runtime_members<'o>(
        &'o self,
        rw: &RuntimeWheel<'o>,
        generated: &'o Generated,
        gens: &[Gen],
        built: &Built<'o>,
    ) -> Result<(String, Vec<OutMember<'o>>), Error> {
        let set = rw.set;
        let mut members: Vec<OutMember> =
            gens.iter().map(|g| generated.member(g, 0o100644)).collect();
        for &li in &rw.libraries {
            let l = &set.libraries[li];
            let name = format!("{}/{}", set.lib_dir(), l.file);
            let (wheel, facts) = &self.inputs[l.input];
            let key = (l.input, l.member.clone());
            if let Some(r) = built.rewritten.get(&key) {
                members.push(OutMember {
                    facts: elf_facts(&name, &r.compressed, r.sha256, r.info.clone()),
                    name,
                    source: Source::New(&r.compressed),
                    sha256: r.sha256,
                    size: r.compressed.size,
                    mode: 0o100755,
                });
                continue;
            }
            let f = facts
                .members
                .iter()
                .find(|f| f.name == l.member)
                .ok_or_else(|| Error::internal(format_args!("no facts for {}", l.member)))?;
            let mut mf = f.clone();
            mf.name = name.clone();
            let source = match built.canonical.get(&key) {
                Some(c) => Source::New(c),
                None => Source::Copy {
                    wheel,
                    member: &l.member,
                },
            };
            members.push(OutMember {
                name,
                source,
                sha256: l.sha256,
                size: l.size,
                mode: 0o100755,
                facts: mf,
            });
        }
        for &(li, k) in &rw.companions {
            let l = &set.libraries[li];
            let Some(c) = built
                .rewritten
                .get(&(l.input, l.member.clone()))
                .and_then(|r| r.companions.get(k))
            else {
                continue;
            };
            // Beside its host, in the same folder: the host's `$ORIGIN` finds it.
            let name = format!("{}/{}", set.lib_dir(), c.soname);
            members.push(OutMember {
                facts: elf_facts(&name, &c.compressed, c.sha256, c.info.clone()),
                name,
                source: Source::New(&c.compressed),
                sha256: c.sha256,
                size: c.compressed.size,
                mode: 0o100755,
            });
        }
        let dist_info = runtime_dist_info(rw);
        members.extend(self.license_members(&dist_info, built.licenses_of(rw)));
        members.sort_by(|a, b| a.name.cmp(&b.name));
        order_dist_info_last(&mut members, &dist_info);
        let file = format!(
            "{}-{}-py3-none-{}.whl",
            crate::wheel::filename::filename_safe_name(&rw.name),
            set.version,
            set.platforms.join(".")
        );
        // The name comes from the input's metadata: it must stay a file name in runtime_dir.
        if file.contains(['/', '\\', '\0']) || file.starts_with('.') {
            return Err(Error::refused(
                format!("the runtime wheel name `{file}` is not a plain file name"),
                Some(
                    "the project name in METADATA is not a valid project name; rebuild the wheel"
                        .into(),
                ),
            ));
        }
        Ok((file, members))
    }
}

impl SplitRun<'_> {
    /// The members of licence files copied from the inputs into `{dist_info}/licenses/`.
    fn license_members<'o>(
        &'o self,
        dist_info: &str,
        licenses: &'o [LicenseCopy],
    ) -> Vec<OutMember<'o>> {
        let mut members = Vec::new();
        for c in licenses {
            let (wheel, facts) = &self.inputs[c.input];
            let Some(f) = facts.members.iter().find(|f| f.name == c.member) else {
                continue;
            };
            let name = format!("{dist_info}/licenses/{}", c.dest);
            let mut mf = f.clone();
            mf.name = name.clone();
            members.push(OutMember {
                name,
                source: Source::Copy {
                    wheel,
                    member: &c.member,
                },
                sha256: c.sha256,
                size: f.size,
                mode: 0o100644,
                facts: mf,
            });
        }
        members
    }
}

/// Which members `split` will probably rewrite, guessed before the plan exists so that the
/// inspect pass can keep their bytes instead of inflating them again later. The planner stays
/// a pure function of the facts: the guess only decides what is cached. A wrong guess costs
/// memory until the plan is known (kept, not rewritten) or a second inflate (rewritten, not
/// kept; counted in [`SplitReport::members_read_twice`]). What is kept is bounded by the
/// memory budget (`--memory`), with room left for the largest member the pass has still to
/// inflate (so the two are never held at once past it): past it, a rewritten member is
/// inflated again instead.
///
/// The libraries that move, and the profile (so the runtime wheel) each moves to, are known
/// from the archive's file names alone: profiles match auditwheel's hashed names. A library
/// that stays is rewritten when it needs one that moves (its search path changes). A library
/// that moves keeps working through `$ORIGIN` next to the ones moving with it, so it is
/// rewritten only when it needs one that goes elsewhere, has another search path, or is
/// renamed. With `--sm`/`--gfx`, everything with device code is rewritten. With companions
/// on, so is a library with device code likely to need them: a moving one over a runtime
/// wheel's room, or any staying one when what stays is over the limit.
struct RewriteGuess {
    /// File name → profile, for the libraries profiles move.
    moving: HashMap<String, String>,
    unhash: bool,
    trimming: bool,
    strip_debug: bool,
    /// With companions on: the compressed bytes a runtime wheel has for one library, and
    /// whether the members that stay come to more than the limit.
    companions: Option<(u64, bool)>,
}

impl RewriteGuess {
    fn new(wheel: &Wheel, profiles: &ProfileSet, opts: &SplitOptions) -> RewriteGuess {
        let names: Vec<&str> = wheel
            .archive
            .members()
            .iter()
            .map(|m| m.name.rsplit('/').next().unwrap_or(&m.name))
            .collect();
        let cuda = detect_cuda_major(names.iter().copied());
        let moving: HashMap<String, String> = names
            .iter()
            .filter(|n| looks_like_shared_object(n))
            .filter_map(|n| {
                let hit = profiles.match_library(n, None, cuda)?;
                Some((n.to_string(), hit.profile.name.clone()))
            })
            .collect();
        let staying: u64 = wheel
            .archive
            .members()
            .iter()
            .filter(|m| !moving.contains_key(m.name.rsplit('/').next().unwrap_or(&m.name)))
            .map(|m| m.compressed_size)
            .sum();
        let companions = opts.companions.then(|| {
            (
                crate::checks::room_for_libraries(opts.max_size),
                staying > opts.max_size,
            )
        });
        RewriteGuess {
            moving,
            unhash: opts.settings.unhash,
            trimming: opts.trim.is_active(),
            strip_debug: opts.strip_debug,
            companions,
        }
    }

    /// Whether the member could be rewritten into a copy beside it (a trim, a debug strip or
    /// a companion move), judged from its name and sizes before it is read: `rewrites` says
    /// yes to it for such a reason if it has device code or debug sections.
    fn may_copy(&self, m: &crate::wheel::zip::Member) -> bool {
        if self.trimming || self.strip_debug {
            return true;
        }
        let Some((room, main_over)) = self.companions else {
            return false;
        };
        let file = m.name.rsplit('/').next().unwrap_or(&m.name);
        let moves = self.moving.contains_key(file);
        (moves && m.compressed_size > room) || (!moves && main_over)
    }

    fn rewrites(&self, f: &MemberFacts) -> bool {
        if self.trimming && f.device.is_some() {
            return true;
        }
        if let Some((room, main_over)) = self.companions
            && f.device.is_some()
        {
            let moves = self.moving.contains_key(f.file_name());
            if (moves && f.compressed_size > room) || (!moves && main_over) {
                return true;
            }
        }
        let Some(info) = f.host_elf() else {
            return false;
        };
        if self.strip_debug && crate::elf::strip::debug_bytes(info) > 0 {
            return true;
        }
        let needs = || info.needed.iter().filter_map(|n| self.moving.get(n));
        let Some(own) = self.moving.get(f.file_name()) else {
            return needs().next().is_some();
        };
        let search = if info.runpath.is_empty() {
            &info.rpath
        } else {
            &info.runpath
        };
        let beside = search.len() == 1 && search[0] == "$ORIGIN";
        self.unhash
            || needs().any(|p| p != own)
            || (!search.is_empty() && !beside)
            || (needs().next().is_some() && search.is_empty())
    }
}

/// A job's input bytes, where their deflate blocks begin, and the reservation that holds them.
type HeldInput<'s> = (
    Vec<u8>,
    Vec<crate::wheel::zip::BlockMark>,
    Option<crate::budget::Reservation<'s>>,
    Option<facts::Apart>,
);

/// How many buffers of a rewritten member's size one worker holds at once, reserved before the
/// member is admitted (a reservation that grows afterwards cannot wait for room, so it could
/// take the budget past `--memory`; issue 11): the input, which the patch edits in its own
/// buffer; a copy beside it when a trim, a debug strip or a companion move makes one; and a
/// third when two of those run on one member (the second copy is made from the first). The
/// patch itself makes no copy, and the splice reads the input back out of the patched bytes.
/// (A member under the spill size, 16 MiB, also holds its compressed output until it is
/// written, as it always has.)
fn buffers_held(opts: &SplitOptions) -> u64 {
    let copies = [opts.trim.is_active(), opts.strip_debug, opts.companions]
        .into_iter()
        .filter(|&on| on)
        .count() as u64;
    1 + copies.min(2)
}

/// Opens and inspects the inputs, refusing any that cannot be rewritten cleanly (as
/// [`output::open_inputs`] does), and keeps the bytes of the members [`RewriteGuess`] expects
/// to be rewritten: every member is inflated once.
#[allow(clippy::type_complexity)]
fn open_keeping<'b>(
    paths: &[PathBuf],
    profiles: &ProfileSet,
    opts: &SplitOptions,
    budget: &'b Budget,
) -> Result<(Vec<(Wheel, WheelFacts)>, HashMap<(usize, String), Kept<'b>>), Error> {
    check_distinct(paths)?;
    let mut out = Vec::new();
    let mut kept = HashMap::new();
    for (input, p) in paths.iter().enumerate() {
        let wheel = Wheel::open(p, &opts.limits)?;
        let guess = RewriteGuess::new(&wheel, profiles, opts);
        let work = |f: &MemberFacts, k: Kept<'b>| guess.rewrites(f).then(|| k.retain()).flatten();
        let rewrites = |f: &MemberFacts| guess.rewrites(f);
        // A large library that no trim, strip or companion move can need is rewritten only to
        // edit its search path or NEEDED, if at all: it is described from its parts and made
        // whole only then, so one left alone never costs its size.
        let parts_first = |m: &crate::wheel::zip::Member| !guess.may_copy(m);
        opts.progress.set_message("inspecting");
        opts.progress
            .inc_length(wheel.archive.members().iter().map(|m| m.size).sum());
        let inspect = InspectOptions {
            progress: Some(&*opts.progress),
            copies: buffers_held(opts),
            whole: facts::Whole::Retained(&rewrites),
            parts_first: Some(facts::MemberTest(&parts_first)),
            // A large library the trim or a companion move rewrites is kept without its CUDA
            // sections, which they read again a window at a time (not with --strip-debug,
            // which needs the library whole even where the trim changes nothing). One that is
            // only patched is made whole before its patch.
            cuda_apart: (opts.trim.is_active() || opts.companions) && !opts.strip_debug,
            sparse: opts.sparse,
            ..InspectOptions::default()
        };
        let (facts, held) = facts::inspect_wheel_with(&wheel, inspect, budget, &work);
        check_input(&wheel, &facts)?;
        for (f, h) in facts.members.iter().zip(held) {
            if let Some(h) = h {
                kept.insert((input, f.name.clone()), h);
            }
        }
        out.push((wheel, facts));
    }
    Ok((out, kept))
}

/// Marks a size refusal of a dry run as resting on estimated sizes.
fn as_estimate(e: Error) -> Error {
    match e {
        Error::Refused { message, hint } => Error::Refused {
            message: format!(
                "{message} (estimated: the size after the trim/strip is worked out from what they remove; the real run checks the exact size)"
            ),
            hint,
        },
        other => other,
    }
}

fn too_big(
    wheel: &Wheel,
    member: &str,
    bytes: u64,
    max_size: u64,
    has_device: bool,
    trimming: bool,
    debug: u64,
) -> Error {
    crate::checks::cannot_fit_alone(
        &wheel.member_location(member).to_string(),
        bytes,
        max_size,
        RUNTIME_OVERHEAD,
        has_device,
        trimming,
        debug,
    )
}

/// One `__init__.py` of a main wheel that `--preload-hook` patches, and the module it imports.
struct HookPatch {
    /// Member names in the wheel.
    init: String,
    module: String,
    patched: Vec<u8>,
    module_text: String,
}

/// The hook patches of one main wheel (none when nothing of it moved into a runtime wheel).
fn plan_hooks(
    m: &crate::plan::MainPlan,
    sets: &[crate::plan::RuntimeSet],
    (wheel, facts): &(Wheel, WheelFacts),
) -> Result<Vec<HookPatch>, Error> {
    use crate::wheel::Scheme;
    let mine: Vec<&crate::plan::RuntimeSet> = sets
        .iter()
        .filter(|s| m.runtime_sets.contains(&s.key))
        .collect();
    let libraries = hook::load_order(&mine);
    if libraries.is_empty() {
        return Ok(Vec::new());
    }
    let staying: HashSet<&str> = m
        .members
        .iter()
        .filter_map(|a| match a {
            MemberAction::Copy { member } | MemberAction::Edit { member, .. } => {
                Some(member.as_str())
            }
            MemberAction::Remove { .. } => None,
        })
        .collect();
    // Installed path → member name, for what installs into site-packages.
    let mut installed: HashMap<&str, &str> = HashMap::new();
    for name in &staying {
        if let (Scheme::Purelib | Scheme::Platlib, path) = wheel.install_path(name) {
            installed.insert(path, name);
        }
    }
    let inits: HashSet<&str> = installed
        .keys()
        .copied()
        .filter(|p| p.ends_with("/__init__.py"))
        .collect();
    let modules = extension_modules(wheel, facts, &staying);
    let runtimes: Vec<String> = mine.iter().map(|s| s.name.clone()).collect();
    let hint = |what: &str| {
        format!(
            "{what}; without --preload-hook, import {} and call its preload() before importing the \
             project when the runtime wheel is installed elsewhere",
            mine.first()
                .map_or("the runtime package", |s| s.package.as_str())
        )
    };
    let chosen = hook::hooked_inits(&modules, &inits).map_err(|module| {
        let member = installed.get(module).copied().unwrap_or(module);
        Error::refused(
            format!(
                "{}: --preload-hook needs an __init__.py in a package above this extension \
                 module, and there is none (a top-level module or a namespace package)",
                wheel.member_location(member)
            ),
            Some(hint(
                "wheelslim never adds an __init__.py, which would take a namespace package \
                 from every other distribution sharing it",
            )),
        )
    })?;
    if chosen.is_empty() {
        return Err(Error::refused(
            format!(
                "{}: --preload-hook found no extension module in a package to hook",
                wheel.location()
            ),
            Some(hint("drop --preload-hook for this wheel")),
        ));
    }
    let mut out = Vec::new();
    for init_path in chosen {
        let init = installed[init_path.as_str()].to_string();
        let module = format!(
            "{}{}.py",
            init.strip_suffix("__init__.py").unwrap_or(&init),
            hook::HOOK_MODULE
        );
        let loc = wheel.member_location(&init);
        if wheel.archive.member(&module).is_some() {
            return Err(Error::refused(
                format!(
                    "{}: --preload-hook would write {module}, which the wheel already has",
                    wheel.location()
                ),
                Some("split the wheel it was built from, not an already hooked one".into()),
            ));
        }
        let member = wheel
            .archive
            .member(&init)
            .ok_or_else(|| Error::internal(format_args!("{loc} vanished")))?;
        let src = wheel.archive.read(member).map_err(|err| Error::Zip {
            location: loc.clone(),
            err,
        })?;
        let patched = hook::patch_init(&src).ok_or_else(|| {
            Error::refused(
                format!(
                    "{loc}: --preload-hook cannot tell where this file's docstring and \
                     `from __future__` imports end, so it cannot add its import safely"
                ),
                Some(hint(
                    "write each `from __future__` import on its own line, without `;` or `\\`",
                )),
            )
        })?;
        let depth = init_path.matches('/').count();
        out.push(HookPatch {
            init,
            module,
            patched,
            module_text: hook::hook_module(&libraries, depth, &runtimes),
        });
    }
    Ok(out)
}

/// The staying extension modules of a main wheel that install into site-packages (outside
/// `.libs` and `.dist-info` folders), by installed path, sorted: what `--preload-hook` hooks.
fn extension_modules<'f>(
    wheel: &Wheel,
    facts: &'f WheelFacts,
    staying: &HashSet<&str>,
) -> Vec<&'f str> {
    use crate::wheel::Scheme;
    let mut modules: Vec<&str> = facts
        .members
        .iter()
        .filter(|f| staying.contains(f.name.as_str()) && f.host_elf().is_some())
        .filter(|f| hook::is_extension_module(f.file_name()))
        .filter_map(|f| match wheel.install_path(&f.name) {
            (Scheme::Purelib | Scheme::Platlib, path) => Some(path),
            _ => None,
        })
        .filter(|p| {
            let top = p.split('/').next().unwrap_or("");
            !top.ends_with(".libs") && !top.ends_with(".dist-info")
        })
        .collect();
    modules.sort_unstable();
    modules
}
