//! Planning `wheelslim split`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::vendor::{AdHoc, Fate, LicensedFile, classify};
use crate::diagnostic::{Diagnostic, Severity};
use crate::elf::{ElfInfo, Machine};
use crate::error::Error;
use crate::facts::{MemberFacts, WheelFacts};
use crate::links::{expand_entry, parent_dir, relative_rpath};
use crate::profile::releases::{Range, Releases};
use crate::profile::{Action, LibraryRule, Match, ProfileSet, Upstream, detect_cuda_major, unhash};
use crate::wheel::filename::filename_safe_name;
use crate::wheel::{Scheme, Wheel, normalize_name};

/// Settings for `split` that shape the plan.
#[derive(Debug, Clone, Default)]
pub struct SplitSettings {
    /// Depend on upstream wheels for libraries whose profile entry names one.
    pub upstream: bool,
    /// Restore public sonames (`libcudart-80664282.so.12` → `libcudart.so.12`).
    pub unhash: bool,
    /// Move (or remove) matched libraries that no ELF object in the wheel links, too. By
    /// default they stay: something loads them by path (see [`super::vendor`]).
    pub move_unlinked: bool,
    /// `--move` and `--keep`: libraries to move or keep without a profile.
    pub ad_hoc: AdHoc,
}

/// Edits to one ELF object's dynamic section, in the planner's terms.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ElfEdit {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_soname: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rename_needed: Vec<(String, String)>,
    /// The complete new search path, when it changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search_path: Option<Vec<String>>,
    /// Entries of the old search path that were dropped (reported).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dropped_entries: Vec<String>,
}

impl ElfEdit {
    pub fn is_empty(&self) -> bool {
        self.set_soname.is_none() && self.rename_needed.is_empty() && self.search_path.is_none()
    }
}

/// What happens to one member of an input wheel in its main output wheel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum MemberAction {
    /// Copied as it is (compressed bytes reused).
    Copy { member: String },
    /// Rewritten ELF object.
    Edit { member: String, edit: ElfEdit },
    /// Leaves the main wheel (see `removed`).
    Remove { member: String },
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "to", rename_all = "kebab-case")]
pub enum RemovedLibrary {
    /// Moved into a runtime set.
    Runtime {
        member: String,
        set: String,
        file: String,
        /// Set when it moved only because a moved library needs it.
        #[serde(skip_serializing_if = "Option::is_none")]
        dependency_of: Option<String>,
        /// The `--move` glob that names it.
        #[serde(skip_serializing_if = "Option::is_none")]
        moved_by: Option<String>,
    },
    /// Provided by an upstream wheel instead.
    Upstream {
        member: String,
        package: String,
        folder: String,
        /// The `--move` glob that names it.
        #[serde(skip_serializing_if = "Option::is_none")]
        moved_by: Option<String>,
    },
    /// Must not be bundled; the machine provides it.
    Forbidden { member: String, rule: String },
}

/// A library a profile matches that stays in the main wheel, and why.
#[derive(Debug, Clone, Serialize)]
pub struct KeptLibrary {
    pub member: String,
    /// Profile rule that matched it (`cuda12/curand`).
    pub rule: String,
    #[serde(flatten)]
    pub fate: Fate,
}

#[derive(Debug, Clone, Serialize)]
pub struct MainPlan {
    /// Index of the input wheel.
    pub input: usize,
    pub input_path: String,
    /// File name of the output wheel (same as the input's).
    pub file_name: String,
    pub members: Vec<MemberAction>,
    pub removed: Vec<RemovedLibrary>,
    /// Libraries a profile matched that stay (the wheel's own, or loaded by path).
    pub kept: Vec<KeptLibrary>,
    /// Vendor programs and static archives (`[[file]]` rules): they stay, with their licence.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub licensed: Vec<crate::plan::vendor::LicensedFile>,
    /// Runtime sets (by key) this wheel requires exactly.
    pub runtime_sets: Vec<String>,
    /// Upstream requirements to add (`nvidia-cublas-cu12>=12,<13`).
    pub requirements: Vec<String>,
}

/// A library inside a runtime set.
#[derive(Debug, Clone, Serialize)]
pub struct LibraryPlan {
    /// Final file name inside the set's `lib/` folder.
    pub file: String,
    /// Where the bytes come from: input wheel index and member.
    pub input: usize,
    pub member: String,
    pub size: u64,
    pub compressed_size: u64,
    #[serde(skip)]
    pub sha256: [u8; 32],
    pub edit: ElfEdit,
    /// Its NEEDED entries under their final names.
    pub needed: Vec<String>,
    /// Profile rule that moved it (`cuda12/cudart`), or `dependency` when it moved with one.
    pub rule: String,
}

/// Libraries that go into shared runtime wheels: one set per project, profile, version and
/// platform. A set becomes one runtime wheel, or several if it does not fit the size limit.
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeSet {
    /// Stable key: `{project}-runtime-{profile}` plus version and platform.
    pub key: String,
    /// Distribution name (`slimdemo-runtime-cuda12`).
    pub name: String,
    pub version: String,
    /// The import package that holds `lib/` (`slimdemo_runtime_cuda12`).
    pub package: String,
    /// Platform tags (`manylinux_2_17_x86_64`, ...).
    pub platforms: Vec<String>,
    pub profile: String,
    pub libraries: Vec<LibraryPlan>,
    /// SPDX expressions of the libraries' licences.
    pub licenses: Vec<String>,
    pub license_notes: Vec<String>,
    /// Upstream requirements its libraries need.
    pub requirements: Vec<String>,
}

impl RuntimeSet {
    pub fn lib_dir(&self) -> String {
        format!("{}/lib", self.package)
    }
}

/// The `--move` and `--keep` globs a plan was made with.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AdHocGlobs {
    #[serde(rename = "move", skip_serializing_if = "Vec::is_empty")]
    pub moves: Vec<String>,
    #[serde(rename = "keep", skip_serializing_if = "Vec::is_empty")]
    pub keeps: Vec<String>,
}

impl AdHocGlobs {
    pub fn is_empty(&self) -> bool {
        self.moves.is_empty() && self.keeps.is_empty()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SplitPlan {
    /// `--move` and `--keep` (absent when neither was given).
    #[serde(skip_serializing_if = "AdHocGlobs::is_empty")]
    pub ad_hoc: AdHocGlobs,
    pub mains: Vec<MainPlan>,
    pub runtime_sets: Vec<RuntimeSet>,
    pub notes: Vec<Diagnostic>,
}

/// Where a library ends up, for the purpose of rewiring the objects that need it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Destination {
    /// Into a runtime set's lib folder, under this file name.
    Runtime {
        set: String,
        dir: String,
        file: String,
    },
    Upstream {
        dir: String,
        file: String,
        requirement: String,
    },
    Forbidden,
}

struct Decision<'a> {
    member: &'a MemberFacts,
    dest: Destination,
    rule: String,
    license: Option<String>,
    license_note: Option<String>,
    dependency_of: Option<String>,
    /// The `--move` glob that names it.
    moved_by: Option<String>,
}

fn is_movable_object(info: &ElfInfo) -> bool {
    info.kind == "shared-object"
        && matches!(
            info.machine,
            Machine::X86_64 | Machine::Aarch64 | Machine::Ppc64le
        )
}

/// What the libraries of one upstream package ask of its version.
#[derive(Default)]
struct Pin {
    /// The profile's own specifier, when it gives one.
    fixed: Option<String>,
    ranges: Vec<Range>,
}

/// Plans the split of every input wheel. `inputs` pairs each opened wheel with its facts.
pub fn plan_split(
    inputs: &[(&Wheel, &WheelFacts)],
    profiles: &ProfileSet,
    settings: &SplitSettings,
) -> Result<SplitPlan, Error> {
    let ad_hoc = &settings.ad_hoc;
    let profiles = &ad_hoc.profiles(profiles);
    let mut out = Collected::default();
    let mut mains = Vec::new();
    for (input, (wheel, facts)) in inputs.iter().enumerate() {
        let origin = Origin {
            wheel,
            input,
            inputs,
        };
        let w = InputWheel::new(origin, facts);
        mains.push(plan_main(&w, profiles, settings, &mut out)?);
    }
    let runtime_sets = sorted_sets(out.sets);
    warn_unused_globs(ad_hoc, &out.globs_used, &mut out.notes);
    Ok(SplitPlan {
        ad_hoc: AdHocGlobs {
            moves: ad_hoc.moves.patterns().to_vec(),
            keeps: ad_hoc.keeps.patterns().to_vec(),
        },
        mains,
        runtime_sets,
        notes: out.notes,
    })
}

/// What planning the input wheels gathers across all of them.
#[derive(Default)]
struct Collected {
    notes: Vec<Diagnostic>,
    /// Runtime sets by key, filled by every input whose libraries move into them.
    sets: BTreeMap<String, RuntimeSet>,
    /// The `--move`/`--keep` globs that named some library, to warn about the others.
    globs_used: BTreeSet<String>,
}

/// One input wheel while it is planned: what every step asks of it.
struct InputWheel<'a> {
    origin: Origin<'a>,
    facts: &'a WheelFacts,
    /// The normalized project name.
    project: String,
    /// The CUDA major the wheel was built for, when its file names and NEEDED entries tell.
    cuda: Option<u32>,
}

impl<'a> InputWheel<'a> {
    fn new(origin: Origin<'a>, facts: &'a WheelFacts) -> InputWheel<'a> {
        let cuda = detect_cuda_major(
            facts.members.iter().map(|m| m.file_name()).chain(
                facts
                    .members
                    .iter()
                    .filter_map(|m| m.host_elf())
                    .flat_map(|e| e.needed.iter().map(String::as_str)),
            ),
        );
        InputWheel {
            project: normalize_name(&origin.wheel.project_name()),
            origin,
            facts,
            cuda,
        }
    }

    /// Where a member is installed, when that is site-packages (purelib or platlib).
    fn installed(&self, m: &MemberFacts) -> Option<String> {
        match self.origin.wheel.install_path(&m.name) {
            (Scheme::Purelib | Scheme::Platlib, p) => Some(p.to_string()),
            _ => None,
        }
    }

    /// A shared library split may move: ELF for a machine it handles, installed in
    /// site-packages.
    fn is_candidate(&self, m: &MemberFacts) -> bool {
        m.host_elf().is_some_and(is_movable_object) && self.installed(m).is_some()
    }
}

fn soname_of(m: &MemberFacts) -> Option<String> {
    m.host_elf().and_then(|e| e.soname.clone())
}

/// Plans one input wheel: its main wheel, and what its moved libraries add to the runtime sets.
fn plan_main(
    w: &InputWheel,
    profiles: &ProfileSet,
    settings: &SplitSettings,
    out: &mut Collected,
) -> Result<MainPlan, Error> {
    let wheel = w.origin.wheel;
    // 1. Libraries matched by profiles, unless they stay (see `vendor`).
    let licensed = crate::plan::vendor::licensed_files(&w.facts.members, profiles);
    note_licensed(wheel, &licensed, &mut out.notes);
    let (mut decisions, mut kept) = decide_matched(w, profiles, settings, out)?;
    place_variants(&mut decisions, wheel, &mut out.notes);

    // 2. Bundled libraries that moved libraries need move with them (closure).
    move_dependencies(w, settings, &mut decisions, &mut kept, out);

    // Old file name → destination, for rewiring.
    let moved = moved_by_name(w, &decisions);
    // Folders (install paths) that hold files of this wheel after the split.
    let removed_names: BTreeSet<&str> = decisions.iter().map(|d| d.member.name.as_str()).collect();
    let remaining_files = remaining_files(w, &removed_names);
    let wheel_dirs = wheel_dirs(w);

    // 3. Rewire the objects that stay.
    let staying = Staying {
        removed_names: &removed_names,
        moved: &moved,
        remaining_files: &remaining_files,
        wheel_dirs: &wheel_dirs,
    };
    let installed = |m: &MemberFacts| w.installed(m);
    let (members, mut wanted_sets, mut requirements) =
        rewire_staying(wheel, w.facts, &installed, &staying, &mut out.notes);

    // 4. Runtime sets get the moved libraries, with their own rewiring.
    let removed = remove_decided(
        w,
        &decisions,
        &staying,
        &mut wanted_sets,
        &mut requirements,
        out,
    )?;
    Ok(MainPlan {
        input: w.origin.input,
        input_path: wheel.path.display().to_string(),
        file_name: wheel.filename.to_string(),
        members,
        removed,
        kept,
        licensed,
        runtime_sets: wanted_sets.into_iter().collect(),
        // A wheel never requires itself (its own libraries stay, see `vendor`).
        requirements: requirements
            .into_iter()
            .filter(|r| normalize_name(requirement_name(r)) != w.project)
            .collect(),
    })
}

/// Vendor programs and static archives stay where they are (a program is run by path, an
/// archive is looked for where the build expects it), with their licence said.
fn note_licensed(wheel: &Wheel, licensed: &[LicensedFile], notes: &mut Vec<Diagnostic>) {
    for f in licensed {
        notes.push(Diagnostic::new(
            Severity::Note,
            &wheel.member_location(&f.member),
            format!(
                "kept in place ({}/{}, {}): licence {}{}",
                f.profile,
                f.rule,
                f.kind.as_str(),
                f.license.as_deref().unwrap_or("not stated"),
                f.license_note
                    .as_deref()
                    .map(|n| format!("; {n}"))
                    .unwrap_or_default()
            ),
        ));
    }
}

/// Step 1 of [`plan_split`]: what becomes of each library a profile (or `--move`) matches.
/// Those that stay are returned as kept, with a note; the others as decisions, their upstream
/// requirements pinned.
fn decide_matched<'a>(
    w: &InputWheel<'a>,
    profiles: &'a ProfileSet,
    settings: &SplitSettings,
    out: &mut Collected,
) -> Result<(Vec<Decision<'a>>, Vec<KeptLibrary>), Error> {
    let wheel = w.origin.wheel;
    let ad_hoc = &settings.ad_hoc;
    let mut decisions: Vec<Decision> = Vec::new();
    let mut kept = Vec::new();
    let mut pins: BTreeMap<String, Pin> = BTreeMap::new();
    let classified = classify(
        &w.facts.members,
        |m| w.is_candidate(m),
        profiles,
        w.cuda,
        &w.project,
        settings.move_unlinked,
        ad_hoc,
    );
    for (vh, fate) in &classified {
        let (m, hit) = (vh.member, vh.hit);
        let rule = format!("{}/{}", hit.profile.name, hit.rule.name);
        let moved_by = ad_hoc
            .moves
            .matching(m.file_name(), soname_of(m).as_deref())
            .map(str::to_string);
        if let Fate::Kept { by } = fate {
            out.globs_used.insert(by.clone());
            if hit.rule.action == Action::Forbid {
                // Asked for, so done; but the wheel keeps what no machine should get from it.
                out.notes.push(
                    Diagnostic::new(
                        Severity::Warning,
                        &wheel.member_location(&m.name),
                        format!(
                            "--keep {by} keeps it in the main wheel, but {rule} forbids bundling it: {}; the wheel goes on carrying it (`audit` reports it as forbidden-library)",
                            hit.rule
                                .license_note
                                .as_deref()
                                .unwrap_or("the machine provides it")
                        ),
                    )
                    .with_hint("leave it out of --keep so split removes it, unless you know every machine that installs this wheel lacks it"),
                );
            }
        }
        if let Some(why) = fate.why_it_stays() {
            out.notes.push(Diagnostic::new(
                Severity::Note,
                &wheel.member_location(&m.name),
                format!("kept in place ({rule}): {why}"),
            ));
            kept.push(KeptLibrary {
                member: m.name.clone(),
                rule,
                fate: fate.clone(),
            });
            continue;
        }
        if let Fate::LeavesWith { library } = fate {
            out.notes.push(Diagnostic::new(
                Severity::Note,
                &wheel.member_location(&m.name),
                format!(
                    "no ELF object links it, but it goes with {library} ({rule}), which loads it from its own folder"
                ),
            ));
        }
        let upstream = upstream_package(w, m, hit.rule, &rule, settings, &mut out.notes)?;
        let dest = destination(w, m, hit, upstream, settings.unhash, &mut pins);
        decisions.push(Decision {
            member: m,
            dest,
            rule,
            license: hit.rule.license.clone(),
            license_note: hit.rule.license_note.clone(),
            dependency_of: None,
            moved_by: moved_by.inspect(|g| {
                out.globs_used.insert(g.clone());
            }),
        });
    }
    pin_requirements(&mut decisions, &pins, Releases::built_in());
    Ok((decisions, kept))
}

/// The upstream package a library's rule (`rule` names it) sends it to, when `--upstream` is
/// given and a package exists for the wheel's CUDA version; without one it moves into a
/// runtime wheel instead, with a note.
fn upstream_package<'r>(
    w: &InputWheel,
    m: &MemberFacts,
    library: &'r LibraryRule,
    rule: &str,
    settings: &SplitSettings,
    notes: &mut Vec<Diagnostic>,
) -> Result<Option<(String, &'r Upstream)>, Error> {
    let wheel = w.origin.wheel;
    let up = match (&library.upstream, library.action) {
        (Some(up), Action::Upstream) if settings.upstream => up,
        _ => return Ok(None),
    };
    if up.package.contains("{cuda}") && w.cuda.is_none() {
        return Err(Error::refused(
            format!(
                "{}: cannot tell which CUDA version `{}` was built for, so the upstream package `{}` is ambiguous",
                wheel.member_location(&m.name),
                m.name,
                up.package
            ),
            Some("bundle libcudart or pass a profile file whose upstream package names the CUDA version".into()),
        ));
    }
    let package = up.package_for(w.cuda);
    if package.is_none() {
        notes.push(Diagnostic::new(
            Severity::Note,
            &wheel.member_location(&m.name),
            format!(
                "no upstream wheel `{}` exists for CUDA {}: {rule} moves into a runtime wheel instead",
                up.package,
                w.cuda.map_or("?".into(), |c| c.to_string())
            ),
        ));
    }
    Ok(package.map(|p| (p, up)))
}

/// Where a library that leaves the main wheel goes: nowhere (forbidden), to its upstream
/// package (what the library asks of the package's version goes into `pins`), or into the
/// runtime set of the profile that matched it.
fn destination(
    w: &InputWheel,
    m: &MemberFacts,
    hit: Match,
    upstream: Option<(String, &Upstream)>,
    unhash: bool,
    pins: &mut BTreeMap<String, Pin>,
) -> Destination {
    let public = hit.rule.public_name(m.file_name());
    match (hit.rule.action, upstream) {
        (Action::Forbid, _) => Destination::Forbidden,
        (_, Some((package, up))) => {
            // The version part is filled in by `pin_requirements`, once per package.
            let pin = pins.entry(package.clone()).or_default();
            match &up.version {
                Some(v) => pin.fixed = Some(v.clone()),
                None => pin.ranges.extend(Releases::built_in().library_range(
                    &package,
                    m.file_name(),
                    soname_of(m).as_deref(),
                    m.sha256.as_ref(),
                )),
            }
            Destination::Upstream {
                dir: up.folder.trim_end_matches('/').to_string(),
                file: public,
                requirement: package,
            }
        }
        _ => {
            let project = &w.project;
            let version = &w.origin.wheel.filename.version;
            let platform_key = w.origin.wheel.filename.platform.join(".");
            let key = format!(
                "{project}-runtime-{}@{version}@{platform_key}",
                hit.profile.name
            );
            let package = format!(
                "{}_runtime_{}",
                filename_safe_name(project),
                filename_safe_name(&hit.profile.name)
            );
            let file = if unhash {
                public
            } else {
                m.file_name().to_string()
            };
            Destination::Runtime {
                set: key,
                dir: format!("{package}/lib"),
                file,
            }
        }
    }
}

/// Step 2 of [`plan_split`]: the bundled libraries a library moving into a runtime set needs
/// move with it into the same set, and so on for what they need, unless they stay already or
/// `--keep` names them.
fn move_dependencies<'a>(
    w: &InputWheel<'a>,
    settings: &SplitSettings,
    decisions: &mut Vec<Decision<'a>>,
    kept: &mut Vec<KeptLibrary>,
    out: &mut Collected,
) {
    let facts: &'a WheelFacts = w.facts;
    let by_file: HashMap<&str, &'a MemberFacts> = facts
        .members
        .iter()
        .filter(|m| w.is_candidate(m))
        .map(|m| (m.file_name(), m))
        .collect();
    // `decisions` grows while it is walked: what a dependency needs is looked at in its turn.
    let mut i = 0;
    while i < decisions.len() {
        let (set, dir) = match &decisions[i].dest {
            Destination::Runtime { set, dir, .. } => (set.clone(), dir.clone()),
            _ => {
                i += 1;
                continue;
            }
        };
        let needs: Vec<String> = decisions[i]
            .member
            .host_elf()
            .map(|e| e.needed.clone())
            .unwrap_or_default();
        let parent_name = decisions[i].member.name.clone();
        for n in needs {
            let Some(dep) = by_file.get(n.as_str()) else {
                continue;
            };
            keep_named_dependency(w, dep, &parent_name, &settings.ad_hoc, kept, out);
            if !decisions.iter().any(|d| d.member.name == dep.name)
                && !kept.iter().any(|k: &KeptLibrary| k.member == dep.name)
            {
                let file = if settings.unhash {
                    unhash(dep.file_name())
                } else {
                    dep.file_name().to_string()
                };
                decisions.push(Decision {
                    member: dep,
                    dest: Destination::Runtime {
                        set: set.clone(),
                        dir: dir.clone(),
                        file,
                    },
                    rule: "dependency".into(),
                    license: None,
                    license_note: None,
                    dependency_of: Some(parent_name.clone()),
                    moved_by: None,
                });
            }
        }
        i += 1;
    }
}

/// A dependency of the moving library `parent_name` that `--keep` names and no profile matched
/// stays where it is (once), with a note: the moved library finds it there.
fn keep_named_dependency(
    w: &InputWheel,
    dep: &MemberFacts,
    parent_name: &str,
    ad_hoc: &AdHoc,
    kept: &mut Vec<KeptLibrary>,
    out: &mut Collected,
) {
    if let Some(by) = ad_hoc
        .keeps
        .matching(dep.file_name(), soname_of(dep).as_deref())
        && !kept.iter().any(|k: &KeptLibrary| k.member == dep.name)
    {
        out.globs_used.insert(by.to_string());
        kept.push(KeptLibrary {
            member: dep.name.clone(),
            rule: "dependency".into(),
            fate: Fate::Kept { by: by.to_string() },
        });
        out.notes.push(Diagnostic::new(
            Severity::Note,
            &w.origin.wheel.member_location(&dep.name),
            format!(
                "kept in place: {parent_name} moves and needs it, but --keep {by} keeps it; the moved library finds it here"
            ),
        ));
    }
}

/// The moved libraries by old file name, each with the folder it was installed in.
fn moved_by_name<'d>(w: &InputWheel, decisions: &'d [Decision]) -> Moved<'d> {
    let mut moved = Moved::default();
    for d in decisions {
        let dir = w
            .installed(d.member)
            .map_or(String::new(), |p| parent_dir(&p).to_string());
        moved
            .by_name
            .entry(d.member.file_name())
            .or_default()
            .push((dir, &d.dest));
    }
    moved
}

/// Install paths of the wheel's files that stay.
fn remaining_files(w: &InputWheel, removed_names: &BTreeSet<&str>) -> BTreeSet<String> {
    w.facts
        .members
        .iter()
        .filter(|m| !removed_names.contains(m.name.as_str()))
        .filter_map(|m| w.installed(m))
        .collect()
}

/// The folders (install paths) that hold files of the wheel.
fn wheel_dirs(w: &InputWheel) -> BTreeSet<String> {
    w.facts
        .members
        .iter()
        .filter_map(|m| w.installed(m))
        .map(|p| parent_dir(&p).to_string())
        .collect()
}

/// Step 4 of [`plan_split`]: what leaves the main wheel and where to. A forbidden library is
/// removed with a warning, an upstream one becomes a requirement, the others join their
/// runtime set (see [`add_to_set`]).
fn remove_decided(
    w: &InputWheel,
    decisions: &[Decision],
    staying: &Staying,
    wanted_sets: &mut BTreeSet<String>,
    requirements: &mut BTreeSet<String>,
    out: &mut Collected,
) -> Result<Vec<RemovedLibrary>, Error> {
    let mut removed = Vec::new();
    for d in decisions {
        match &d.dest {
            Destination::Forbidden => {
                removed.push(RemovedLibrary::Forbidden {
                    member: d.member.name.clone(),
                    rule: d.rule.clone(),
                });
                out.notes.push(Diagnostic::new(
                    Severity::Warning,
                    &w.origin.wheel.member_location(&d.member.name),
                    format!(
                        "removed: {} must not be bundled; the machine provides it",
                        d.rule
                    ),
                ));
            }
            Destination::Upstream {
                dir, requirement, ..
            } => {
                let package = requirement_name(requirement).to_string();
                requirements.insert(requirement.clone());
                removed.push(RemovedLibrary::Upstream {
                    member: d.member.name.clone(),
                    package,
                    folder: dir.clone(),
                    moved_by: d.moved_by.clone(),
                });
            }
            Destination::Runtime { set, dir, file } => {
                wanted_sets.insert(set.clone());
                removed.push(RemovedLibrary::Runtime {
                    member: d.member.name.clone(),
                    set: set.clone(),
                    file: file.clone(),
                    dependency_of: d.dependency_of.clone(),
                    moved_by: d.moved_by.clone(),
                });
                let old_path = w.installed(d.member).unwrap_or_default();
                let dest = SetPlace { set, dir, file };
                add_to_set(
                    d,
                    &dest,
                    &old_path,
                    staying,
                    &w.origin,
                    &mut out.sets,
                    &mut out.notes,
                )?;
            }
        }
    }
    Ok(removed)
}

/// The runtime sets in key order, the lists inside each sorted.
fn sorted_sets(sets: BTreeMap<String, RuntimeSet>) -> Vec<RuntimeSet> {
    let mut runtime_sets: Vec<RuntimeSet> = sets.into_values().collect();
    for s in &mut runtime_sets {
        s.libraries.sort_by(|a, b| a.file.cmp(&b.file));
        s.licenses.sort();
        s.license_notes.sort();
        s.requirements.sort();
    }
    runtime_sets
}

/// A `--move` or `--keep` glob that named nothing in any input is most likely a typo: say so
/// (the split still runs).
fn warn_unused_globs(ad_hoc: &AdHoc, used: &BTreeSet<String>, notes: &mut Vec<Diagnostic>) {
    for (option, globs) in [("--move", &ad_hoc.moves), ("--keep", &ad_hoc.keeps)] {
        for g in globs.patterns().iter().filter(|g| !used.contains(*g)) {
            notes.push(Diagnostic {
                severity: Severity::Warning,
                location: String::new(),
                message: format!(
                    "{option} {g} names no library that split would move or keep in any input wheel"
                ),
                hint: Some(
                    "globs match the file name or SONAME of a bundled shared library (`wheelslim audit -v` lists them)".into(),
                ),
            });
        }
    }
}

/// Completes each upstream requirement with the version its pins allow.
fn pin_requirements(decisions: &mut [Decision], pins: &BTreeMap<String, Pin>, releases: &Releases) {
    // One requirement line per upstream package, satisfied by a release the index has.
    for d in decisions.iter_mut() {
        if let Destination::Upstream { requirement, .. } = &mut d.dest
            && let Some(pin) = pins.get(requirement.as_str())
        {
            let spec = match &pin.fixed {
                Some(v) => v.clone(),
                None => releases
                    .merge(requirement, &pin.ranges)
                    .map(|r| r.spec())
                    .unwrap_or_default(),
            };
            requirement.push_str(&spec);
        }
    }
}

/// Gives each of several different libraries of one name in one runtime set a folder of its
/// own inside the set's lib folder, with a note each.
fn place_variants(decisions: &mut [Decision], wheel: &Wheel, notes: &mut Vec<Diagnostic>) {
    // Variants: one file name in several folders with other bytes (a framework's
    // per-CUDA-version `gpu11.1/libnccl.so.2` and `gpu11.6/libnccl.so.2`). Each keeps its
    // own folder inside the runtime set's lib folder; each consumer is pointed at the copy it
    // found before (see `Moved::find`). Identical copies still become one file.
    let mut same_name: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for (i, d) in decisions.iter().enumerate() {
        if let Destination::Runtime { set, file, .. } = &d.dest {
            same_name
                .entry((set.clone(), file.clone()))
                .or_default()
                .push(i);
        }
    }
    for idxs in same_name.values() {
        let contents: BTreeSet<(Option<[u8; 32]>, u64)> = idxs
            .iter()
            .map(|&i| (decisions[i].member.sha256, decisions[i].member.size))
            .collect();
        if contents.len() < 2 {
            continue;
        }
        let folders: Vec<String> = idxs
            .iter()
            .map(|&i| parent_dir(&decisions[i].member.name).to_string())
            .collect();
        let last = |f: &str| f.rsplit('/').next().unwrap_or(f).to_string();
        let short: BTreeSet<String> = folders.iter().map(|f| last(f)).collect();
        let unique = short.len() == folders.len() && !short.contains("");
        for (&i, folder) in idxs.iter().zip(&folders) {
            let variant = if unique {
                last(folder)
            } else if folder.is_empty() {
                "_root".to_string()
            } else {
                folder.replace('/', "-")
            };
            if let Destination::Runtime { dir, .. } = &mut decisions[i].dest {
                dir.push('/');
                dir.push_str(&variant);
            }
            notes.push(Diagnostic::new(
            Severity::Note,
            &wheel.member_location(&decisions[i].member.name),
            format!(
                "one of {} different libraries named `{}`: it moves into its own folder `{variant}` of the runtime wheel, and what linked it is pointed there",
                idxs.len(),
                decisions[i].member.file_name()
            ),
        ));
        }
    }
}

/// What the objects that stay are rewired against.
struct Staying<'s, 'a> {
    /// Members that leave the wheel.
    removed_names: &'s BTreeSet<&'s str>,
    moved: &'s Moved<'a>,
    /// Install paths of the files that stay, and the folders that hold files of the wheel.
    remaining_files: &'s BTreeSet<String>,
    wheel_dirs: &'s BTreeSet<String>,
}

/// Step 3 of [`plan_split`]: the main wheel's member actions (remove what moved, rewire the
/// objects that stay), with the runtime sets and requirements the rewired objects now need.
fn rewire_staying(
    wheel: &Wheel,
    facts: &WheelFacts,
    installed: &impl Fn(&MemberFacts) -> Option<String>,
    s: &Staying,
    notes: &mut Vec<Diagnostic>,
) -> (Vec<MemberAction>, BTreeSet<String>, BTreeSet<String>) {
    let mut members = Vec::new();
    let mut wanted_sets = BTreeSet::new();
    let mut requirements = BTreeSet::new();
    for m in &facts.members {
        if s.removed_names.contains(m.name.as_str()) {
            members.push(MemberAction::Remove {
                member: m.name.clone(),
            });
            continue;
        }
        let edit = match (m.host_elf(), installed(m)) {
            (Some(info), Some(path)) if is_movable_object(info) || info.kind == "executable" => {
                rewire(
                    info,
                    &path,
                    &path,
                    s.moved,
                    s.remaining_files,
                    s.wheel_dirs,
                    &mut wanted_sets,
                    &mut requirements,
                )
            }
            _ => ElfEdit::default(),
        };
        if edit.is_empty() {
            members.push(MemberAction::Copy {
                member: m.name.clone(),
            });
        } else {
            for d in &edit.dropped_entries {
                notes.push(Diagnostic::new(
                    Severity::Note,
                    &wheel.member_location(&m.name),
                    format!("search path entry `{d}` dropped: nothing it needs is there any more"),
                ));
            }
            members.push(MemberAction::Edit {
                member: m.name.clone(),
                edit,
            });
        }
    }
    (members, wanted_sets, requirements)
}

/// Where a library moves in its runtime set.
struct SetPlace<'d> {
    set: &'d String,
    dir: &'d String,
    file: &'d String,
}

/// The input a library comes from.
struct Origin<'i> {
    wheel: &'i Wheel,
    input: usize,
    inputs: &'i [(&'i Wheel, &'i WheelFacts)],
}

/// Step 4 of [`plan_split`] for one library moving to a runtime set: its own rewiring, then
/// its place in the set (created on first use).
fn add_to_set(
    d: &Decision,
    place: &SetPlace,
    old_path: &str,
    staying: &Staying,
    origin: &Origin,
    sets: &mut BTreeMap<String, RuntimeSet>,
    notes: &mut Vec<Diagnostic>,
) -> Result<(), Error> {
    let SetPlace { set, dir, file } = *place;
    let Origin {
        wheel,
        input,
        inputs,
    } = *origin;
    // PANIC SAFETY: only ELF members become decisions.
    let info = d
        .member
        .host_elf()
        .ok_or_else(|| Error::internal("moved member is not ELF"))?;
    let new_path = format!("{dir}/{file}");
    let mut set_reqs = BTreeSet::new();
    let mut set_wanted = BTreeSet::new();
    let mut edit = rewire(
        info,
        old_path,
        &new_path,
        staying.moved,
        staying.remaining_files,
        staying.wheel_dirs,
        &mut set_wanted,
        &mut set_reqs,
    );
    for e in &edit.dropped_entries {
        notes.push(Diagnostic::new(
            Severity::Note,
            &wheel.member_location(&d.member.name),
            format!(
                "search path entry `{e}` dropped: the library moves to `{dir}`, and nothing it needs is left where that entry pointed"
            ),
        ));
    }
    // Its own old folder no longer exists for it; keep $ORIGIN-style siblings.
    if *file != d.member.file_name() {
        edit.set_soname = Some(file.clone());
    }
    let (name, package) = set_names(set);
    let entry = sets.entry(set.clone()).or_insert_with(|| RuntimeSet {
        key: set.clone(),
        name,
        version: wheel.filename.version.clone(),
        package,
        platforms: wheel.filename.platform.clone(),
        profile: d.rule.split('/').next().unwrap_or("").to_string(),
        libraries: Vec::new(),
        licenses: Vec::new(),
        license_notes: Vec::new(),
        requirements: Vec::new(),
    });
    if entry.profile == "dependency" {
        entry.profile = d.rule.split('/').next().unwrap_or("").to_string();
    }
    for r in set_reqs {
        if !entry.requirements.contains(&r) {
            entry.requirements.push(r);
        }
    }
    if let Some(l) = &d.license
        && !entry.licenses.contains(l)
    {
        entry.licenses.push(l.clone());
    }
    if let Some(n) = &d.license_note
        && !entry.license_notes.contains(n)
    {
        entry.license_notes.push(n.clone());
    }
    let needed = info
        .needed
        .iter()
        .map(|n| {
            edit.rename_needed
                .iter()
                .find(|(old, _)| old == n)
                .map_or(n.clone(), |(_, new)| new.clone())
        })
        .collect();
    // A variant sits in its own folder under the set's lib folder.
    let lib_file = match dir.strip_prefix(&format!("{}/", entry.lib_dir())) {
        Some(variant) => format!("{variant}/{file}"),
        None => file.clone(),
    };
    let lib = LibraryPlan {
        needed,
        file: lib_file,
        input,
        member: d.member.name.clone(),
        size: d.member.size,
        compressed_size: d.member.compressed_size,
        sha256: d.member.sha256.unwrap_or([0; 32]),
        edit,
        rule: d.rule.clone(),
    };
    merge_library(entry, lib, inputs)
}

/// The distribution name of a requirement line (`nvidia-cublas-cu12>=12,<13` → `nvidia-cublas-cu12`).
fn requirement_name(req: &str) -> &str {
    req.split(|c: char| "<>=!~ ;[(".contains(c))
        .next()
        .unwrap_or(req)
}

/// `{project}-runtime-{profile}@...` → (distribution name, import package).
fn set_names(key: &str) -> (String, String) {
    let name = key.split('@').next().unwrap_or(key).to_string();
    let package = filename_safe_name(&name);
    (name, package)
}

/// Adds a library to a set. The same library from several inputs (cp310 … cp313 builds) is
/// stored once: the copy chosen does not depend on the order of the inputs.
fn merge_library(
    set: &mut RuntimeSet,
    lib: LibraryPlan,
    inputs: &[(&Wheel, &WheelFacts)],
) -> Result<(), Error> {
    let lib_dir = set.lib_dir();
    let Some(existing) = set.libraries.iter_mut().find(|l| l.file == lib.file) else {
        set.libraries.push(lib);
        return Ok(());
    };
    let loc = |l: &LibraryPlan| inputs[l.input].0.member_location(&l.member).to_string();
    if existing.sha256 != lib.sha256 || existing.size != lib.size {
        return Err(Error::refused(
            format!(
                "two different libraries would both become `{}/{}`: {} and {}",
                lib_dir,
                lib.file,
                loc(existing),
                loc(&lib)
            ),
            Some(
                "build every wheel against the same vendor library, or split them in separate runs"
                    .into(),
            ),
        ));
    }
    // Prefer the smaller stored copy; break ties by wheel file name, never by argument order.
    let name = |l: &LibraryPlan| inputs[l.input].0.filename.to_string();
    if (lib.compressed_size, name(&lib)) < (existing.compressed_size, name(existing)) {
        *existing = lib;
    }
    Ok(())
}

/// Works out how an object that was installed at `old_path` and will be at `new_path` (the same
/// for objects that stay) finds what it needs after the move.
#[allow(clippy::too_many_arguments)]
fn rewire(
    info: &ElfInfo,
    old_path: &str,
    new_path: &str,
    moved: &Moved<'_>,
    remaining_files: &BTreeSet<String>,
    wheel_dirs: &BTreeSet<String>,
    wanted_sets: &mut BTreeSet<String>,
    requirements: &mut BTreeSet<String>,
) -> ElfEdit {
    let old_origin = parent_dir(old_path);
    let new_origin = parent_dir(new_path);
    let relocated = old_origin != new_origin;
    let mut edit = ElfEdit::default();
    let mut new_dirs: Vec<String> = Vec::new();
    let mut needs_moved = false;
    for n in &info.needed {
        let Some(dest) = moved.find(n, info, old_path) else {
            continue;
        };
        match dest {
            Destination::Runtime { set, dir, file } => {
                needs_moved = true;
                wanted_sets.insert(set.clone());
                if file != n {
                    edit.rename_needed.push((n.clone(), file.clone()));
                }
                if !new_dirs.contains(dir) {
                    new_dirs.push(dir.clone());
                }
            }
            Destination::Upstream {
                dir,
                file,
                requirement,
            } => {
                needs_moved = true;
                requirements.insert(requirement.clone());
                if file != n {
                    edit.rename_needed.push((n.clone(), file.clone()));
                }
                if !new_dirs.contains(dir) {
                    new_dirs.push(dir.clone());
                }
            }
            // The name stays; the machine supplies it.
            Destination::Forbidden => {}
        }
    }
    if !needs_moved && !relocated {
        return edit;
    }
    let old: Vec<String> = if info.runpath.is_empty() {
        info.rpath.clone()
    } else {
        info.runpath.clone()
    };
    let needed_after: BTreeSet<&str> = info
        .needed
        .iter()
        .map(String::as_str)
        .filter(|n| !moved.by_name.contains_key(n))
        .collect();
    let mut entries: Vec<String> = Vec::new();
    let push = |entries: &mut Vec<String>, e: String| {
        if !entries.contains(&e) {
            entries.push(e);
        }
    };
    for e in &old {
        match expand_entry(e, old_origin) {
            // Absolute, or leaving site-packages: not ours to judge.
            None => push(&mut entries, e.clone()),
            Some(dir) if wheel_dirs.contains(&dir) => {
                // One of this wheel's folders: keep it while it still holds something needed.
                if needed_after
                    .iter()
                    .any(|n| remaining_files.contains(&join(&dir, n)))
                {
                    let e = if relocated {
                        relative_rpath(new_origin, &dir)
                    } else {
                        e.clone()
                    };
                    push(&mut entries, e);
                } else {
                    edit.dropped_entries.push(e.clone());
                }
            }
            // Another package's folder (an upstream wheel): keep, re-expressed if we moved.
            Some(dir) => {
                let e = if relocated {
                    relative_rpath(new_origin, &dir)
                } else {
                    e.clone()
                };
                push(&mut entries, e);
            }
        }
    }
    for d in &new_dirs {
        let already = entries
            .iter()
            .any(|e| expand_entry(e, new_origin).as_deref() == Some(d.as_str()));
        if !already {
            push(&mut entries, relative_rpath(new_origin, d));
        }
    }
    edit.dropped_entries.retain(|d| !entries.contains(d));
    if entries != old {
        edit.search_path = Some(entries);
    }
    edit
}

/// Moved libraries by file name, with the folder each was installed in.
#[derive(Default)]
struct Moved<'a> {
    by_name: HashMap<&'a str, Vec<(String, &'a Destination)>>,
}

impl Moved<'_> {
    /// Where the library an object installed at `old_path` found as `needed` went. With several
    /// libraries of that name (variants), the one the loader found: the first folder of the
    /// object's search path that held one, else the object's own folder.
    fn find(&self, needed: &str, info: &ElfInfo, old_path: &str) -> Option<&Destination> {
        let all = self.by_name.get(needed)?;
        if let [(_, only)] = all.as_slice() {
            return Some(*only);
        }
        let origin = parent_dir(old_path);
        let search = if info.runpath.is_empty() {
            &info.rpath
        } else {
            &info.runpath
        };
        search
            .iter()
            .filter_map(|e| expand_entry(e, origin))
            .chain(std::iter::once(origin.to_string()))
            .find_map(|dir| all.iter().find(|(d, _)| *d == dir).map(|(_, dest)| *dest))
            .or(all.first().map(|(_, d)| *d))
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}
