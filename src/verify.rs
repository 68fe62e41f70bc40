//! `wheelslim verify`: proves that a set of wheels, installed together into one site-packages,
//! is consistent — RECORD matches every member, PyPI's upload rules hold, and every NEEDED of
//! every ELF object resolves inside the set (the way ld.so will), or is a manylinux system
//! library, or is supplied by the machine (driver), or comes from an upstream wheel that the set
//! requires.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;

use serde::Serialize;

use crate::budget::Budget;
use crate::checks::{Violation, platform_checks, upload_checks};
use crate::diagnostic::Diagnostic;
use crate::facts::{self, InspectOptions, RecordCheck, WheelFacts};
use crate::links::{self, Resolution, Tree, expand_entry, parent_dir};
use crate::profile::provided_by_machine;
use crate::profile::{ProfileSet, detect_cuda_major, unhash};
use crate::progress::SharedProgress;
use crate::wheel::{Limits, Scheme, Wheel, normalize_name};

pub const SCHEMA: &str = "wheelslim.verify/1";

#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub max_size: u64,
    pub limits: Limits,
    pub memory_budget: u64,
    /// The wheels the checked ones were made from (`--baseline`): what these inputs already
    /// violated is reported as inherited and does not fail the check, exactly as `split` and
    /// `trim` judge their outputs. Size rules are never inherited.
    pub baseline: Vec<PathBuf>,
    /// Counts bytes inspected; hidden unless the caller draws it.
    pub progress: SharedProgress,
}

#[derive(Debug, Clone, Serialize)]
pub struct WheelVerdict {
    pub path: String,
    pub record: RecordCheck,
    pub violations: Vec<Violation>,
    /// Violations the `--baseline` inputs already had (not counted against `ok`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inherited: Vec<Violation>,
    pub diagnostics: Vec<Diagnostic>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LinkProblem {
    /// `wheel!member` of the object.
    pub object: String,
    pub needed: String,
    /// The object loaded first (`dlopen`) when the problem showed.
    pub loading: String,
    pub searched: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LinkNote {
    pub object: String,
    pub needed: String,
    pub from_package: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub schema: &'static str,
    pub wheels: Vec<WheelVerdict>,
    pub unresolved: Vec<LinkProblem>,
    /// NEEDED entries that will come from upstream wheels the set requires.
    pub from_upstream: Vec<LinkNote>,
    /// Install paths written by more than one wheel.
    pub conflicts: Vec<String>,
    /// The sets of wheels checked as installed together.
    pub sets: Vec<Vec<String>>,
    pub objects_checked: usize,
    /// Unresolved links the `--baseline` inputs already had (not counted against `ok`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inherited_unresolved: Vec<LinkProblem>,
    /// The `--baseline` inputs, when given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub baseline: Vec<String>,
    pub ok: bool,
    pub failed: Vec<Diagnostic>,
}

impl VerifyReport {
    pub fn has_errors(&self) -> bool {
        !self.failed.is_empty()
            || crate::diagnostic::any_error(self.wheels.iter().flat_map(|w| &w.diagnostics))
    }
}

/// Opens and fully inspects each wheel (every member hashed), then checks the set.
pub fn verify(paths: &[PathBuf], profiles: &ProfileSet, opts: &VerifyOptions) -> VerifyReport {
    let budget = Budget::new(opts.memory_budget);
    let mut opened = Vec::new();
    let mut failed = Vec::new();
    for p in paths {
        match Wheel::open(p, &opts.limits) {
            Ok(w) => {
                opts.progress
                    .inc_length(w.archive.members().iter().map(|m| m.size).sum());
                let inspect = InspectOptions {
                    progress: Some(&*opts.progress),
                    ..InspectOptions::default()
                };
                let f = facts::inspect_wheel(&w, inspect, &budget);
                opened.push((w, f));
            }
            Err(e) => failed.push(Diagnostic::from_error(&e)),
        }
    }
    let refs: Vec<(&Wheel, &WheelFacts)> = opened.iter().map(|(w, f)| (w, f)).collect();
    let mut report = verify_facts(&refs, profiles, opts.max_size);
    if !opts.baseline.is_empty() {
        let mut inputs = Vec::new();
        for p in &opts.baseline {
            match Wheel::open(p, &opts.limits) {
                Ok(w) => {
                    let f = facts::inspect_wheel(&w, InspectOptions::default(), &budget);
                    inputs.push((w, f));
                }
                Err(e) => failed.push(Diagnostic::from_error(&e)),
            }
        }
        let refs: Vec<(&Wheel, &WheelFacts)> = inputs.iter().map(|(w, f)| (w, f)).collect();
        let known = baseline(&refs, None, profiles, opts.max_size, true);
        inherit(&mut report, &known);
        report.baseline = opts
            .baseline
            .iter()
            .map(|p| p.display().to_string())
            .collect();
    }
    report.ok = report.ok && failed.is_empty();
    report.failed = failed;
    report
}

/// Moves what the inputs already had (`known`, from [`baseline`]) out of the report's
/// failures into its `inherited` lists, with the keys `split` and `trim` use, and works `ok`
/// out again. Size rules stay: an output is judged on its size alone.
pub fn inherit(report: &mut VerifyReport, known: &Baseline) {
    for w in &mut report.wheels {
        let (inherited, fresh): (Vec<Violation>, Vec<Violation>) =
            std::mem::take(&mut w.violations)
                .into_iter()
                .partition(|v| {
                    !SIZE_RULES.contains(&v.rule) && known.violations.contains(&v.key())
                });
        w.violations = fresh;
        w.inherited.extend(inherited);
    }
    let (inherited, fresh): (Vec<LinkProblem>, Vec<LinkProblem>) =
        std::mem::take(&mut report.unresolved)
            .into_iter()
            .partition(|u| known.unresolved.contains(&link_key(&u.object, &u.needed)));
    report.unresolved = fresh;
    report.inherited_unresolved.extend(inherited);
    report.ok = report.unresolved.is_empty()
        && report.conflicts.is_empty()
        && report.wheels.iter().all(|v| v.violations.is_empty());
}

/// Checks wheels whose facts are already known, grouped into the sets that would be installed
/// together (see [`install_sets`]).
pub fn verify_facts(
    wheels: &[(&Wheel, &WheelFacts)],
    profiles: &ProfileSet,
    max_size: u64,
) -> VerifyReport {
    let sets = install_sets(wheels);
    verify_sets(wheels, &sets, profiles, max_size)
}

/// The sets of wheels that can be installed together. Several wheels of one project (its
/// cp310 … cp313 builds, or builds for several platforms) are alternatives, never installed
/// side by side: each of the project with the most alternatives starts a set, joined by every
/// wheel of the other projects whose platform tags it can share. With no alternatives, all
/// the wheels form one set.
pub fn install_sets(wheels: &[(&Wheel, &WheelFacts)]) -> Vec<Vec<usize>> {
    let mut by_project: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, (w, _)) in wheels.iter().enumerate() {
        by_project
            .entry(normalize_name(&w.project_name()))
            .or_default()
            .push(i);
    }
    let Some((main, alternatives)) = by_project
        .iter()
        .max_by_key(|(name, v)| (v.len(), std::cmp::Reverse((*name).clone())))
    else {
        return Vec::new();
    };
    if alternatives.len() <= 1 {
        return vec![(0..wheels.len()).collect()];
    }
    let compatible = |a: usize, b: usize| {
        let pa = &wheels[a].0.filename.platform;
        let pb = &wheels[b].0.filename.platform;
        pa.iter().any(|p| p == "any")
            || pb.iter().any(|p| p == "any")
            || pa.iter().any(|p| pb.contains(p))
    };
    alternatives
        .iter()
        .map(|&m| {
            let mut set = vec![m];
            for (name, members) in &by_project {
                if name == main {
                    continue;
                }
                if let Some(&other) = members.iter().find(|&&o| compatible(m, o)) {
                    set.push(other);
                }
            }
            set.sort_unstable();
            set
        })
        .collect()
}

/// Checks each wheel, then the links and file conflicts of each install set.
pub fn verify_sets(
    wheels: &[(&Wheel, &WheelFacts)],
    sets: &[Vec<usize>],
    profiles: &ProfileSet,
    max_size: u64,
) -> VerifyReport {
    let mut verdicts = Vec::new();
    for (wheel, facts) in wheels {
        let installed_size = facts.members.iter().map(|m| m.size).sum();
        let mut violations = upload_checks(wheel, installed_size, max_size);
        if !facts.record.is_clean() {
            violations.push(Violation::new(
                "record",
                false,
                "RECORD does not match the archive".into(),
            ));
        }
        violations.extend(platform_checks(wheel, &facts.members));
        verdicts.push(WheelVerdict {
            path: wheel.path.display().to_string(),
            record: facts.record.clone(),
            violations,
            inherited: Vec::new(),
            diagnostics: facts.diagnostics.clone(),
        });
    }
    let mut unresolved = Vec::new();
    let mut from_upstream = Vec::new();
    let mut conflicts = Vec::new();
    let mut objects_checked = 0;
    let mut seen = BTreeSet::new();
    for set in sets {
        let members: Vec<(&Wheel, &WheelFacts)> = set.iter().map(|&i| wheels[i]).collect();
        check_set(
            &members,
            profiles,
            &mut SetFindings {
                unresolved: &mut unresolved,
                from_upstream: &mut from_upstream,
                conflicts: &mut conflicts,
                objects_checked: &mut objects_checked,
                seen: &mut seen,
            },
        );
    }
    conflicts.sort();
    conflicts.dedup();
    let ok = unresolved.is_empty()
        && conflicts.is_empty()
        && verdicts.iter().all(|v| v.violations.is_empty());
    VerifyReport {
        schema: SCHEMA,
        sets: sets
            .iter()
            .map(|s| {
                s.iter()
                    .map(|&i| wheels[i].0.path.display().to_string())
                    .collect()
            })
            .collect(),
        objects_checked,
        wheels: verdicts,
        inherited_unresolved: Vec::new(),
        baseline: Vec::new(),
        unresolved,
        from_upstream,
        conflicts,
        ok,
        failed: Vec::new(),
    }
}

/// A wheel writing an install path, and the digest of what it writes there.
type Owner = (Option<[u8; 32]>, String);

struct SetFindings<'a> {
    unresolved: &'a mut Vec<LinkProblem>,
    from_upstream: &'a mut Vec<LinkNote>,
    conflicts: &'a mut Vec<String>,
    objects_checked: &'a mut usize,
    /// (object, needed) pairs already reported.
    seen: &'a mut BTreeSet<(String, String)>,
}

/// Links and conflicts of one install set.
fn check_set(wheels: &[(&Wheel, &WheelFacts)], profiles: &ProfileSet, out: &mut SetFindings) {
    let mut objects = Vec::new();
    // Install path → (content digest, wheel) of every wheel that writes it.
    let mut owners: BTreeMap<String, Vec<Owner>> = BTreeMap::new();
    let mut required: BTreeSet<String> = BTreeSet::new();
    for (wheel, facts) in wheels {
        for r in wheel.metadata.get_all("Requires-Dist") {
            if r.contains("extra ==") || r.contains("extra==") {
                continue;
            }
            required.insert(crate::wheel::requirement_name(r));
        }
        for m in &facts.members {
            let (scheme, path) = wheel.install_path(&m.name);
            if !matches!(scheme, Scheme::Purelib | Scheme::Platlib) || m.name.ends_with('/') {
                continue;
            }
            // RECORD files and the like are per-wheel; only real files can collide.
            if !path.contains(".dist-info/") {
                owners
                    .entry(path.to_string())
                    .or_default()
                    .push((m.sha256, wheel.path.display().to_string()));
            }
            if let Some(info) = m.host_elf() {
                objects.push(links::Object {
                    path: path.to_string(),
                    origin: wheel.member_location(&m.name).to_string(),
                    elf: info,
                });
            }
        }
    }
    // Several wheels may write the same file with the same bytes (NVIDIA's wheels all ship
    // an empty `nvidia/__init__.py`); different bytes mean one silently replaces the other.
    out.conflicts.extend(
        owners
            .into_iter()
            .filter(|(_, o)| o.len() > 1 && o.iter().any(|(h, _)| *h != o[0].0 || h.is_none()))
            .map(|(p, o)| {
                let who: Vec<&str> = o.iter().map(|(_, w)| w.as_str()).collect();
                format!("{p} ({})", who.join(", "))
            }),
    );
    let cuda = detect_cuda_major(objects.iter().flat_map(|o| {
        o.elf
            .needed
            .iter()
            .map(String::as_str)
            .chain(o.path.rsplit('/').next())
    }));
    // The set installs on what every wheel's platform tag allows.
    let system = crate::policy::SystemLibraries::for_platforms(
        wheels
            .iter()
            .flat_map(|(w, _)| w.filename.platform.iter().map(String::as_str)),
    );
    let tree = Tree::with_system(objects, system);
    *out.objects_checked += tree.objects().len();
    let provided = provided_by_machine(profiles, cuda);
    for (i, root) in tree.objects().iter().enumerate() {
        for link in tree.load(i, &provided) {
            let Resolution::Missing { searched } = &link.resolution else {
                continue;
            };
            let from = tree.objects().iter().find(|o| o.path == link.from);
            let object = from.map_or(link.from.clone(), |o| o.origin.clone());
            if !out.seen.insert((object.clone(), link.needed.clone())) {
                continue;
            }
            // An upstream wheel the set requires, in a folder the object searches?
            let upstream = from.and_then(|o| {
                let hit = profiles.match_library(&unhash(&link.needed), None, cuda)?;
                let up = hit.rule.upstream.as_ref()?;
                let package = up.package_for(cuda)?;
                let origin = parent_dir(&o.path);
                let searches = o
                    .elf
                    .rpath
                    .iter()
                    .chain(o.elf.runpath.iter())
                    .filter_map(|e| expand_entry(e, origin))
                    .any(|d| d == up.folder.trim_end_matches('/'));
                (searches && required.contains(&normalize_name(&package))).then_some(package)
            });
            match upstream {
                Some(package) => out.from_upstream.push(LinkNote {
                    object,
                    needed: link.needed.clone(),
                    from_package: package,
                }),
                None => out.unresolved.push(LinkProblem {
                    object,
                    needed: link.needed.clone(),
                    loading: root.origin.clone(),
                    searched: searched.clone(),
                }),
            }
        }
    }
}

/// What the inputs of `split` or `trim` already violated, found before any work: it is
/// reported, and an output is not refused for having it still (only for what the rewrite
/// changed).
#[derive(Debug, Clone, Default)]
pub struct Baseline {
    /// Unresolved links of the inputs, as [`link_key`]s.
    pub unresolved: HashSet<(String, String)>,
    /// Violations of the inputs, as [`Violation::key`]s (never the size rules `max-size` and
    /// `compression-ratio`: fitting is what the rewrite is for, judged on the outputs alone).
    pub violations: HashSet<(String, String)>,
    /// One warning per violation and per input with unresolved links, for the summary.
    pub findings: Vec<Diagnostic>,
}

/// PyPI's size rules: making a wheel fit is what `split` and `trim` are for, so their
/// outputs are judged on these alone, whatever the input was.
const SIZE_RULES: &[&str] = &["max-size", "compression-ratio"];

/// Links shown by name in an input's "already unresolved" warning; the rest are counted.
const BASELINE_LINKS_SHOWN: usize = 5;

/// Checks the inputs the way their outputs will be checked (each of `sets` installed
/// together; `None`: work the sets out from the names and tags). Unresolved links are
/// reported only when `links` (the outputs' links will be judged: `split`; `trim` changes
/// none).
pub fn baseline(
    wheels: &[(&Wheel, &WheelFacts)],
    sets: Option<&[Vec<usize>]>,
    profiles: &ProfileSet,
    max_size: u64,
    links: bool,
) -> Baseline {
    let report = match sets {
        Some(s) => verify_sets(wheels, s, profiles, max_size),
        None => verify_facts(wheels, profiles, max_size),
    };
    let mut out = Baseline::default();
    for ((wheel, _), verdict) in wheels.iter().zip(&report.wheels) {
        // One warning per rule: an Ascend wheel can carry dozens of objects for another CPU.
        let mut by_rule: BTreeMap<&str, Vec<&Violation>> = BTreeMap::new();
        for v in verdict
            .violations
            .iter()
            .filter(|v| !SIZE_RULES.contains(&v.rule))
        {
            out.violations.insert(v.key());
            by_rule.entry(v.rule).or_default().push(v);
        }
        for (rule, vs) in by_rule {
            let first = vs[0];
            let mut members: Vec<&str> = vs.iter().filter_map(|v| v.member.as_deref()).collect();
            members.dedup();
            let location = match (members.as_slice(), vs.iter().all(|v| v.member.is_some())) {
                ([one], true) => wheel.member_location(one).to_string(),
                _ => verdict.path.clone(),
            };
            let mut more = String::new();
            if vs.len() > 1 {
                let mut others: Vec<&str> =
                    vs[1..].iter().filter_map(|v| v.member.as_deref()).collect();
                others.dedup();
                let named = others.len().min(BASELINE_LINKS_SHOWN);
                more = format!(" (and {} more", vs.len() - 1);
                if named > 0 {
                    more.push_str(&format!(", for {}", others[..named].join(", ")));
                }
                if others.len() > named {
                    more.push_str(&format!(
                        " and {} other members; `wheelslim audit --json` lists them",
                        others.len() - named
                    ));
                }
                more.push(')');
            }
            out.findings.push(Diagnostic {
                severity: crate::diagnostic::Severity::Warning,
                location,
                message: format!(
                    "the input already fails [{rule}]{}: {}{more}; the outputs keep this, and are judged only on what wheelslim changed",
                    if first.pypi { " (PyPI)" } else { "" },
                    first.message
                ),
                hint: Some(baseline_hint(rule).into()),
            });
        }
    }
    if !links {
        return out;
    }
    let mut by_wheel: BTreeMap<String, Vec<&LinkProblem>> = BTreeMap::new();
    for u in &report.unresolved {
        out.unresolved.insert(link_key(&u.object, &u.needed));
        let wheel = u
            .object
            .split_once('!')
            .map_or(u.object.as_str(), |(w, _)| w);
        by_wheel.entry(wheel.to_string()).or_default().push(u);
    }
    for (wheel, links) in by_wheel {
        let mut shown: Vec<String> = links
            .iter()
            .take(BASELINE_LINKS_SHOWN)
            .map(|u| {
                let object = u
                    .object
                    .split_once('!')
                    .map_or(u.object.as_str(), |(_, m)| m);
                format!("{object} needs {}", u.needed)
            })
            .collect();
        if links.len() > BASELINE_LINKS_SHOWN {
            shown.push(format!("and {} more", links.len() - BASELINE_LINKS_SHOWN));
        }
        out.findings.push(Diagnostic {
            severity: crate::diagnostic::Severity::Warning,
            location: wheel,
            message: format!(
                "{} NEEDED entr{} already unresolved in the input ({}); the outputs are not held to them",
                links.len(),
                if links.len() == 1 { "y is" } else { "ies are" },
                shown.join(", ")
            ),
            hint: Some("`wheelslim verify --json` of the input lists each with the folders searched; bundle the libraries, or require the wheels that provide them".into()),
        });
    }
    out
}

/// A key for an unresolved link that survives the split: the object's file name and the
/// library it needs, both without auditwheel's hash (moved and unhashed libraries keep it).
pub fn link_key(object: &str, needed: &str) -> (String, String) {
    let file = object.rsplit(['!', '/']).next().unwrap_or(object);
    (crate::profile::unhash(file), crate::profile::unhash(needed))
}

fn baseline_hint(rule: &str) -> &'static str {
    match rule {
        "platform-tag" => {
            "PyPI refuses the outputs as it would the input: run `auditwheel repair` on the input first, then wheelslim on what it writes"
        }
        "manylinux-glibc" | "manylinux-symbol-version" => {
            "the wheel's tag claims an older system than the object needs: retag it for the platform it needs (`auditwheel show` names it) or rebuild it on an older one"
        }
        "wrong-architecture" => {
            "an object for another CPU cannot load on the tagged platform: remove it from the wheel, or ship it in a wheel tagged for its CPU"
        }
        _ => "run `wheelslim audit` on the input for details",
    }
}
