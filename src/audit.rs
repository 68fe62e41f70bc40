//! `wheelslim audit`: what a set of wheels holds and what PyPI would say about them.
//!
//! The report is plain data (serialized as the versioned `--json` schema); the command line
//! renders it for people.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::Serialize;

use crate::budget::Budget;
use crate::device::{self, DeviceReport};
use crate::diagnostic::Diagnostic;
use crate::elf::Inspected;
use crate::facts::{self, InspectOptions, RecordCheck, WheelFacts};
use crate::links::{self, Resolution, Tree};
use crate::profile::{Action, ProfileSet, detect_cuda_major};
use crate::progress::SharedProgress;
use crate::wheel::{Limits, Scheme, Wheel};

/// Version of the `--json` schema; bumped on any incompatible change.
pub const SCHEMA: &str = "wheelslim.audit/1";

pub use crate::checks::{PYPI_MAX_FILESIZE, Violation};
/// Duplicate payloads smaller than this are not worth reporting.
const DUPLICATE_MIN_SIZE: u64 = 4096;

#[derive(Debug, Clone)]
pub struct AuditOptions {
    pub max_size: u64,
    pub limits: Limits,
    pub memory_budget: u64,
    /// How many of the largest members to list.
    pub largest: usize,
    /// Counts bytes inspected; [`crate::progress::none`] unless the caller draws it.
    pub progress: SharedProgress,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            max_size: PYPI_MAX_FILESIZE,
            limits: Limits::default(),
            memory_budget: 1 << 30,
            largest: 10,
            progress: crate::progress::none(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberSize {
    pub name: String,
    pub size: u64,
    pub compressed_size: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SectionSize {
    pub name: String,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct NeededReport {
    pub name: String,
    pub resolution: Resolution,
}

#[derive(Debug, Clone, Serialize)]
pub struct ElfReport {
    pub member: String,
    pub machine: String,
    pub kind: String,
    pub soname: Option<String>,
    pub needed: Vec<NeededReport>,
    pub rpath: Vec<String>,
    pub runpath: Vec<String>,
    pub glibc: Option<String>,
    pub glibcxx: Option<String>,
    pub cxxabi: Option<String>,
    pub load_align: u64,
    pub stripped: bool,
    /// Bytes of non-allocated debug sections (`.debug_*`, `.zdebug_*`): never loaded, so
    /// removing them changes nothing at run time.
    pub debug_bytes: u64,
    pub sections: Vec<SectionSize>,
    /// Set for objects wheelslim lists but does not inspect (32-bit, big-endian).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsupported: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VendorLibrary {
    pub member: String,
    pub profile: String,
    pub library: String,
    pub action: Action,
    pub license: Option<String>,
    pub license_note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_package: Option<String>,
    pub size: u64,
    pub compressed_size: u64,
    /// True when another ELF object in the wheel names it in `DT_NEEDED`.
    pub linked: bool,
    /// What `wheelslim split` (without `--move-unlinked`) does with it.
    pub split: crate::plan::vendor::Fate,
}

#[derive(Debug, Clone, Serialize)]
pub struct DuplicateGroup {
    pub sha256: String,
    pub size: u64,
    /// `wheel!member` for each copy.
    pub copies: Vec<String>,
    /// Bytes that one shared copy would save (installed).
    pub wasted: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FitAdvice {
    /// Bytes over the limit.
    pub over_by: u64,
    /// Compressed bytes `wheelslim split` would move out (profile-matched libraries).
    pub split_moves_out: u64,
    pub fits_after_split: bool,
    /// Further members (largest first) that would also have to leave.
    pub also_remove: Vec<MemberSize>,
    /// Installed bytes a device-code trim to the single most common architecture would drop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trim_could_drop: Option<u64>,
    /// Libraries split would move that are too big for a runtime wheel even alone (split
    /// refuses them; the same rule as `split`, [`crate::checks::cannot_fit_alone`]).
    pub too_big_alone: Vec<MemberSize>,
    /// Compressed bytes of libraries a runtime wheel under the limit can hold.
    pub runtime_room: u64,
    /// The smallest per-file limit (whole MiB) under which `split` without a trim would
    /// succeed: what to ask the index for when trimming cannot help.
    pub limit_without_trim_mib: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct WheelAudit {
    pub path: String,
    pub name: String,
    pub version: String,
    pub tags: Vec<String>,
    pub compressed_size: u64,
    pub installed_size: u64,
    pub members: usize,
    pub largest: Vec<MemberSize>,
    pub elf_objects: Vec<ElfReport>,
    pub vendor_libraries: Vec<VendorLibrary>,
    /// Vendor programs and static archives (`ptxas`, `libcudart_static.a`) and their licence;
    /// `split` leaves them in place.
    pub licensed_files: Vec<crate::plan::vendor::LicensedFile>,
    pub device_code: Vec<DeviceReport>,
    pub duplicates: Vec<DuplicateGroup>,
    pub violations: Vec<Violation>,
    pub pypi_ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_fit: Option<FitAdvice>,
    /// Libraries with device code too big for one wheel: whether device-code companions
    /// (`split --companions`) would make each fit, and in how many files
    /// ([`crate::plan::companions::advise`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub companions: Vec<crate::plan::companions::CompanionAdvice>,
    pub record: RecordCheck,
    pub diagnostics: Vec<Diagnostic>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub schema: &'static str,
    pub max_size: u64,
    pub wheels: Vec<WheelAudit>,
    /// Identical payloads found in more than one of the given wheels.
    pub shared_across_wheels: Vec<DuplicateGroup>,
    /// Wheels that could not be opened at all.
    pub failed: Vec<Diagnostic>,
}

impl AuditReport {
    pub fn has_errors(&self) -> bool {
        !self.failed.is_empty()
            || crate::diagnostic::any_error(self.wheels.iter().flat_map(|w| &w.diagnostics))
    }

    pub fn has_violations(&self) -> bool {
        self.wheels.iter().any(|w| !w.violations.is_empty())
    }
}

fn hex(d: &[u8; 32]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Audits wheels. A wheel that cannot be opened is reported in `failed`; the others are audited.
pub fn audit(paths: &[PathBuf], profiles: &ProfileSet, opts: &AuditOptions) -> AuditReport {
    let budget = Budget::new(opts.memory_budget);
    let mut wheels = Vec::new();
    let mut failed = Vec::new();
    let mut all_hashes: Vec<(String, u64, [u8; 32])> = Vec::new();
    for path in paths {
        match Wheel::open(path, &opts.limits) {
            Ok(wheel) => {
                opts.progress
                    .inc_length(wheel.archive.members().iter().map(|m| m.size).sum());
                let inspect = InspectOptions {
                    progress: Some(&*opts.progress),
                    ..InspectOptions::default()
                };
                let facts = facts::inspect_wheel(&wheel, inspect, &budget);
                let device = facts.device_reports();
                for f in &facts.members {
                    if let Some(h) = f.sha256
                        && f.size >= DUPLICATE_MIN_SIZE
                    {
                        all_hashes.push((wheel.member_location(&f.name).to_string(), f.size, h));
                    }
                }
                // What split would do: vendor libraries judged alone by a runtime wheel's
                // room, the project's own together by the main wheel's.
                let (wheel, facts, advice) =
                    crate::split::companion_advice(wheel, facts, profiles, opts.max_size);
                let mut companions: Vec<_> = crate::plan::companions::advise(
                    &facts.members,
                    crate::checks::room_for_libraries(opts.max_size),
                )
                .into_iter()
                .filter(|a| advice.moved.as_ref().is_none_or(|m| m.contains(&a.member)))
                .collect();
                companions.extend(advice.own);
                companions.sort_by(|a, b| a.member.cmp(&b.member));
                let mut report = audit_wheel(&wheel, facts, device, profiles, opts);
                report.companions = companions;
                wheels.push(report);
            }
            Err(e) => failed.push(Diagnostic::from_error(&e)),
        }
    }
    let shared_across_wheels = if paths.len() > 1 {
        group_duplicates(all_hashes, true)
    } else {
        Vec::new()
    };
    AuditReport {
        schema: SCHEMA,
        max_size: opts.max_size,
        wheels,
        shared_across_wheels,
        failed,
    }
}

/// Groups copies by content. With `across`, only groups spanning several wheels are kept.
fn group_duplicates(items: Vec<(String, u64, [u8; 32])>, across: bool) -> Vec<DuplicateGroup> {
    let mut groups: BTreeMap<[u8; 32], (u64, Vec<String>)> = BTreeMap::new();
    for (loc, size, h) in items {
        groups.entry(h).or_insert((size, Vec::new())).1.push(loc);
    }
    let mut out: Vec<DuplicateGroup> = groups
        .into_iter()
        .filter(|(_, (_, copies))| copies.len() > 1)
        .filter(|(_, (_, copies))| {
            !across || {
                let wheel_of = |c: &String| c.split('!').next().unwrap_or("").to_string();
                copies.iter().any(|c| wheel_of(c) != wheel_of(&copies[0]))
            }
        })
        .map(|(h, (size, mut copies))| {
            copies.sort();
            DuplicateGroup {
                sha256: hex(&h),
                size,
                wasted: size * (copies.len() as u64 - 1),
                copies,
            }
        })
        .collect();
    out.sort_by(|a, b| b.wasted.cmp(&a.wasted).then(a.sha256.cmp(&b.sha256)));
    out
}

fn audit_wheel(
    wheel: &Wheel,
    facts: WheelFacts,
    device_code: Vec<DeviceReport>,
    profiles: &ProfileSet,
    opts: &AuditOptions,
) -> WheelAudit {
    let mut diagnostics = facts.diagnostics.clone();
    let members = &facts.members;
    let installed_size: u64 = members.iter().map(|m| m.size).sum();
    let compressed_size = wheel.archive.file_len();

    let largest = largest_members(members, opts);

    // Vendor libraries.
    let cuda = detect_cuda_major(
        members.iter().map(|m| m.file_name()).chain(
            members
                .iter()
                .filter_map(|m| m.host_elf())
                .flat_map(|e| e.needed.iter().map(String::as_str)),
        ),
    );
    purelib_without_binaries(wheel, members, &mut diagnostics);
    let vendor_libraries = vendor_libraries(wheel, members, profiles, cuda, &mut diagnostics);

    let licensed_files = crate::plan::vendor::licensed_files(members, profiles);

    // ELF objects and their links, resolved inside this wheel as installed.
    let resolutions = link_resolutions(wheel, members, profiles, cuda);
    let elf_objects = elf_reports(wheel, members, resolutions);

    // Duplicates inside this wheel.
    let duplicates = group_duplicates(
        members
            .iter()
            .filter(|m| m.size >= DUPLICATE_MIN_SIZE)
            .filter_map(|m| {
                m.sha256
                    .map(|h| (wheel.member_location(&m.name).to_string(), m.size, h))
            })
            .collect(),
        false,
    );

    // Checks.
    let violations = wheel_violations(wheel, &facts, installed_size, opts, &vendor_libraries);
    let pypi_ok = violations.iter().all(|x| !x.pypi);

    let to_fit = fit_advice(
        wheel,
        members,
        compressed_size,
        opts,
        &vendor_libraries,
        &device_code,
    );

    WheelAudit {
        path: wheel.path.display().to_string(),
        name: wheel.project_name(),
        version: wheel.filename.version.clone(),
        tags: wheel.filename.tags(),
        compressed_size,
        installed_size,
        members: members.len(),
        largest,
        elf_objects,
        vendor_libraries,
        licensed_files,
        device_code,
        duplicates,
        violations,
        pypi_ok,
        to_fit,
        companions: Vec::new(),
        record: facts.record,
        diagnostics,
    }
}

/// The `opts.largest` largest files of the wheel, by installed size.
fn largest_members(members: &[facts::MemberFacts], opts: &AuditOptions) -> Vec<MemberSize> {
    let mut largest: Vec<MemberSize> = members
        .iter()
        .filter(|m| !m.name.ends_with('/'))
        .map(|m| MemberSize {
            name: m.name.clone(),
            size: m.size,
            compressed_size: m.compressed_size,
        })
        .collect();
    largest.sort_by(|a, b| b.size.cmp(&a.size).then(a.name.cmp(&b.name)));
    largest.truncate(opts.largest);
    largest
}

/// A note when WHEEL says platlib but nothing in the wheel is platform-specific.
fn purelib_without_binaries(
    wheel: &Wheel,
    members: &[facts::MemberFacts],
    diagnostics: &mut Vec<Diagnostic>,
) {
    // The other contradiction of Root-Is-Purelib (true with binaries is a violation, in
    // checks.rs) is harmless, so it is only a note: platlib without anything platform-specific.
    if !wheel.root_is_purelib()
        && !members
            .iter()
            .any(|m| m.host_elf().is_some() || m.device.is_some())
        && !members
            .iter()
            .any(|m| facts::looks_like_shared_object(&m.name))
    {
        diagnostics.push(Diagnostic::new(
            crate::diagnostic::Severity::Note,
            &crate::error::Location::wheel(&wheel.path),
            "WHEEL says `Root-Is-Purelib: false` but the wheel holds no binaries: it installs \
             into platlib; `true` would be the usual choice for pure-Python contents"
                .to_string(),
        ));
    }
}

/// The vendor libraries the profiles recognise, with a note for each that `split` keeps.
fn vendor_libraries(
    wheel: &Wheel,
    members: &[facts::MemberFacts],
    profiles: &ProfileSet,
    cuda: Option<u32>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<VendorLibrary> {
    let project = wheel.project_name();
    let classified = crate::plan::vendor::classify(
        members,
        |m| m.host_elf().is_some() || facts::looks_like_shared_object(&m.name),
        profiles,
        cuda,
        &project,
        false,
        &crate::plan::vendor::AdHoc::default(),
    );
    let mut vendor_libraries = Vec::new();
    for (vh, fate) in classified {
        let (m, hit) = (vh.member, vh.hit);
        if let Some(why) = fate.why_it_stays() {
            diagnostics.push(Diagnostic::new(
                crate::diagnostic::Severity::Note,
                &wheel.member_location(&m.name),
                format!(
                    "`wheelslim split` keeps it ({}/{}): {why}",
                    hit.profile.name, hit.rule.name
                ),
            ));
        }
        vendor_libraries.push(VendorLibrary {
            member: m.name.clone(),
            profile: hit.profile.name.clone(),
            library: hit.rule.name.clone(),
            action: hit.rule.action,
            license: hit.rule.license.clone(),
            license_note: hit.rule.license_note.clone(),
            upstream_package: hit.rule.upstream.as_ref().and_then(|u| u.package_for(cuda)),
            size: m.size,
            compressed_size: m.compressed_size,
            linked: vh.linked,
            split: fate,
        });
    }
    vendor_libraries
}

/// Each installed ELF object's own NEEDED entries resolved as the loader would,
/// keyed by its location (`wheel!member`).
fn link_resolutions(
    wheel: &Wheel,
    members: &[facts::MemberFacts],
    profiles: &ProfileSet,
    cuda: Option<u32>,
) -> HashMap<String, Vec<NeededReport>> {
    let mut objects = Vec::new();
    for m in members {
        if let Some(info) = m.host_elf() {
            let (scheme, inner) = wheel.install_path(&m.name);
            if matches!(scheme, Scheme::Purelib | Scheme::Platlib) {
                objects.push(links::Object {
                    path: inner.to_string(),
                    origin: wheel.member_location(&m.name).to_string(),
                    elf: info,
                });
            }
        }
    }
    let system = crate::policy::SystemLibraries::for_platforms(
        wheel.filename.platform.iter().map(String::as_str),
    );
    let tree = Tree::with_system(objects, system);
    let provided = crate::profile::provided_by_machine(profiles, cuda);
    let mut resolutions: HashMap<String, Vec<NeededReport>> = HashMap::new();
    for (i, obj) in tree.objects().iter().enumerate() {
        let links = tree.load(i, &provided);
        let own: Vec<NeededReport> = links
            .into_iter()
            .filter(|l| l.from == obj.path)
            .map(|l| NeededReport {
                name: l.needed,
                resolution: l.resolution,
            })
            .collect();
        resolutions.insert(obj.origin.clone(), own);
    }
    resolutions
}

/// One report per ELF member (host objects with their resolved links, and the
/// unsupported ones with the reason).
fn elf_reports(
    wheel: &Wheel,
    members: &[facts::MemberFacts],
    mut resolutions: HashMap<String, Vec<NeededReport>>,
) -> Vec<ElfReport> {
    let mut elf_objects = Vec::new();
    for m in members {
        let loc = wheel.member_location(&m.name).to_string();
        match m.elf() {
            Some(Inspected::Host(info)) => {
                let needed = resolutions.remove(&loc).unwrap_or_else(|| {
                    info.needed
                        .iter()
                        .map(|n| NeededReport {
                            name: n.clone(),
                            resolution: Resolution::Missing {
                                searched: vec!["(not installed into site-packages)".into()],
                            },
                        })
                        .collect()
                });
                let mut sections: Vec<SectionSize> = info
                    .sections
                    .iter()
                    .filter(|s| s.in_file && s.size > 0)
                    .map(|s| SectionSize {
                        name: s.name.clone(),
                        size: s.size,
                    })
                    .collect();
                sections.sort_by(|a, b| b.size.cmp(&a.size).then(a.name.cmp(&b.name)));
                elf_objects.push(ElfReport {
                    member: m.name.clone(),
                    machine: info.machine.to_string(),
                    kind: info.kind.to_string(),
                    soname: info.soname.clone(),
                    needed,
                    rpath: info.rpath.clone(),
                    runpath: info.runpath.clone(),
                    glibc: info.glibc.clone(),
                    glibcxx: info.glibcxx.clone(),
                    cxxabi: info.cxxabi.clone(),
                    load_align: info.load_align,
                    stripped: !info.has_symtab,
                    debug_bytes: crate::elf::strip::debug_bytes(info),
                    sections,
                    unsupported: None,
                });
            }
            Some(Inspected::Unsupported(u)) => elf_objects.push(ElfReport {
                member: m.name.clone(),
                machine: u.machine.to_string(),
                kind: format!(
                    "{}-bit{}",
                    u.class,
                    if u.big_endian { " big-endian" } else { "" }
                ),
                soname: None,
                needed: Vec::new(),
                rpath: Vec::new(),
                runpath: Vec::new(),
                glibc: None,
                glibcxx: None,
                cxxabi: None,
                load_align: 0,
                stripped: false,
                debug_bytes: 0,
                sections: Vec::new(),
                unsupported: Some(u.reason.clone()),
            }),
            _ => {}
        }
    }
    elf_objects
}

/// The upload, RECORD, forbidden-library and platform checks.
fn wheel_violations(
    wheel: &Wheel,
    facts: &WheelFacts,
    installed_size: u64,
    opts: &AuditOptions,
    vendor_libraries: &[VendorLibrary],
) -> Vec<Violation> {
    let members = &facts.members;
    let mut violations = crate::checks::upload_checks(wheel, installed_size, opts.max_size);
    if !facts.record.is_clean() {
        let r = &facts.record;
        violations.push(Violation {
            rule: "record",
            pypi: false,
            message: format!(
                "RECORD does not match the archive: {} mismatched, {} unlisted, {} missing, {} without hash",
                r.mismatched.len(),
                r.unlisted.len(),
                r.missing.len(),
                r.unhashed.len()
            ),
            member: None,
        });
    }
    for lib in vendor_libraries
        .iter()
        .filter(|l| l.action == Action::Forbid)
    {
        violations.push(Violation {
            rule: "forbidden-library",
            pypi: false,
            message: format!(
                "`{}` is {} ({}) and must not be bundled: {}",
                lib.member,
                lib.library,
                lib.profile,
                lib.license_note
                    .as_deref()
                    .unwrap_or("the machine provides it")
            ),
            member: Some(lib.member.clone()),
        });
    }
    violations.extend(crate::checks::platform_checks(wheel, members));
    violations
}

/// For a wheel over `opts.max_size`, what `split` would move out and what else it would take.
fn fit_advice(
    wheel: &Wheel,
    members: &[facts::MemberFacts],
    compressed_size: u64,
    opts: &AuditOptions,
    vendor_libraries: &[VendorLibrary],
    device_code: &[DeviceReport],
) -> Option<FitAdvice> {
    (compressed_size > opts.max_size).then(|| {
        let over_by = compressed_size - opts.max_size;
        let moving: Vec<&VendorLibrary> = vendor_libraries
            .iter()
            .filter(|l| l.action != Action::Forbid && l.split.leaves())
            .collect();
        let split_moves_out: u64 = moving.iter().map(|l| l.compressed_size).sum();
        // The same rule `split` applies: a moving library must fit in a runtime wheel alone.
        let runtime_room = crate::checks::room_for_libraries(opts.max_size);
        let too_big_alone: Vec<MemberSize> = moving
            .iter()
            .filter(|l| l.compressed_size > runtime_room)
            .filter_map(|l| members.iter().find(|m| m.name == l.member))
            .map(|m| MemberSize {
                name: m.name.clone(),
                size: m.size,
                compressed_size: m.compressed_size,
            })
            .collect();
        let largest_moving = moving.iter().map(|l| l.compressed_size).max().unwrap_or(0);
        let main_after = compressed_size.saturating_sub(split_moves_out);
        let limit_without_trim_mib =
            crate::checks::limit_to_ask_mib(largest_moving).max(main_after.div_ceil(1024 * 1024));
        let fits_after_split = split_moves_out >= over_by && too_big_alone.is_empty();
        let mut also_remove = Vec::new();
        if split_moves_out < over_by {
            let mut need = over_by - split_moves_out;
            let mut rest: Vec<&facts::MemberFacts> = members
                .iter()
                .filter(|m| !moving.iter().any(|l| l.member == m.name))
                .filter(|m| !m.name.starts_with(&wheel.dist_info))
                .collect();
            rest.sort_by(|a, b| {
                b.compressed_size
                    .cmp(&a.compressed_size)
                    .then(a.name.cmp(&b.name))
            });
            for m in rest {
                if need == 0 {
                    break;
                }
                need = need.saturating_sub(m.compressed_size);
                also_remove.push(MemberSize {
                    name: m.name.clone(),
                    size: m.size,
                    compressed_size: m.compressed_size,
                });
            }
        }
        let trim_could_drop = device::best_single_arch_saving(device_code);
        FitAdvice {
            over_by,
            split_moves_out,
            fits_after_split,
            also_remove,
            trim_could_drop,
            too_big_alone,
            runtime_room,
            limit_without_trim_mib,
        }
    })
}
