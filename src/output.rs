//! Writing output wheels: what each member is made from, writing them to temporary files,
//! checking what was written, and renaming everything into place at once.
//!
//! Shared by `split` and `trim`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::diagnostic::Severity;
use crate::elf::{ElfInfo, Inspected};
use crate::error::Error;
use crate::facts::{Content, MemberFacts, RecordCheck, WheelFacts};
use crate::profile::ProfileSet;
use crate::progress::Progress;
use crate::verify::{VerifyReport, install_sets, link_key, verify_sets};
use crate::wheel::deflate::{self, Compressed};
use crate::wheel::record::{Record, RecordEntry, sha256_field};
use crate::wheel::writer::{Existing, PendingFile, WheelWriter, ZipTime, commit, same_bytes};
use crate::wheel::{Limits, Wheel};

/// What an output wheel is; serialized (and shown) as `main`, `runtime` or `trimmed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// A split's main wheel: the input's package, without the moved libraries.
    Main,
    /// A split's runtime wheel: the moved libraries, shared by the main wheels.
    Runtime,
    /// A trimmed copy of an input wheel.
    Trimmed,
    /// A split's companion wheel: device code moved out of the project's own libraries,
    /// installed beside them (possibly shared by main wheels of several Python versions).
    Companion,
}

impl OutputKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputKind::Main => "main",
            OutputKind::Runtime => "runtime",
            OutputKind::Trimmed => "trimmed",
            OutputKind::Companion => "companion",
        }
    }
}

impl std::fmt::Display for OutputKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One wheel written.
#[derive(Debug, Clone, Serialize)]
pub struct Output {
    pub path: String,
    pub kind: OutputKind,
    pub size: u64,
    pub members: usize,
}

/// What an output member is made from.
pub enum Source<'a> {
    /// Raw copy of an input member.
    Copy { wheel: &'a Wheel, member: &'a str },
    /// Bytes we produced.
    New(&'a Compressed),
}

pub struct OutMember<'a> {
    pub name: String,
    pub source: Source<'a>,
    pub sha256: [u8; 32],
    pub size: u64,
    pub mode: u32,
    /// Facts for the self-check.
    pub facts: MemberFacts,
}

pub fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// Refuses inputs that cannot be rewritten cleanly: unreadable members, RECORD that does not
/// match, symlinks.
pub fn check_input(wheel: &Wheel, facts: &WheelFacts) -> Result<(), Error> {
    if let Some(d) = facts
        .diagnostics
        .iter()
        .find(|d| d.severity == Severity::Error)
    {
        return Err(Error::refused(
            format!("{}: {}", d.location, d.message),
            Some(d.hint.clone().unwrap_or_else(|| {
                "wheelslim only rewrites wheels it can read completely; run `wheelslim audit` on it"
                    .into()
            })),
        ));
    }
    if !facts.record.is_clean() {
        // Name the first member at fault (RECORD itself for a line naming no member).
        let r = &facts.record;
        let record = format!("{}/RECORD", wheel.dist_info);
        let (member, what) = if let Some(m) = r.mismatched.first() {
            (m.as_str(), "hash or size differs from RECORD".to_string())
        } else if let Some(m) = r.unlisted.first() {
            (m.as_str(), "member is not listed in RECORD".to_string())
        } else if let Some(m) = r.unhashed.first() {
            (
                m.as_str(),
                "RECORD lists the member without a hash".to_string(),
            )
        } else {
            let m = r.missing.first().map_or("", String::as_str);
            (
                record.as_str(),
                format!("RECORD lists `{m}`, which is not in the archive"),
            )
        };
        return Err(Error::refused(
            format!(
                "{}: RECORD does not match the archive: {what}",
                wheel.member_location(member)
            ),
            Some("the wheel was modified after it was built, or is corrupt; rebuild it".into()),
        ));
    }
    for m in wheel.archive.members() {
        if m.problem.is_none() && m.is_symlink {
            return Err(Error::refused(
                format!("{}: member is a symlink", wheel.member_location(&m.name)),
                Some("wheels cannot carry symlinks; rebuild it with real files".into()),
            ));
        }
    }
    Ok(())
}

/// Refuses the same input file given twice.
pub fn check_distinct(paths: &[PathBuf]) -> Result<(), Error> {
    let mut seen: Vec<&PathBuf> = Vec::new();
    for p in paths {
        if seen.iter().any(|q| same_file(q, p)) {
            return Err(Error::Usage(format!("`{}` is given twice", p.display())));
        }
        seen.push(p);
    }
    Ok(())
}

pub fn sha2_digest(data: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(data).into()
}

pub fn plain_facts(name: &str, size: u64, sha256: [u8; 32]) -> MemberFacts {
    MemberFacts {
        name: name.to_string(),
        size,
        compressed_size: 0,
        sha256: Some(sha256),
        content: Content::Other,
        device: None,
        block_marks: Vec::new(),
        access: None,
    }
}

pub fn elf_facts(
    name: &str,
    c: &Compressed,
    sha256: [u8; 32],
    info: Option<ElfInfo>,
) -> MemberFacts {
    MemberFacts {
        name: name.to_string(),
        size: c.size,
        compressed_size: c.stored_len(),
        sha256: Some(sha256),
        content: match info {
            Some(i) => Content::Elf {
                elf: Inspected::Host(Box::new(i)),
            },
            None => Content::Other,
        },
        device: None,
        block_marks: Vec::new(),
        access: None,
    }
}

/// `.dist-info` members go last, in their original order, and RECORD is written after them.
pub fn order_dist_info_last(members: &mut [OutMember], dist_info: &str) {
    let prefix = format!("{dist_info}/");
    members.sort_by_key(|m| m.name.starts_with(&prefix));
}

/// One output wheel to write: where, what kind, and its members in order (RECORD is added).
pub struct OutputSpec<'a> {
    pub target: PathBuf,
    pub kind: OutputKind,
    pub members: Vec<OutMember<'a>>,
}

impl OutputSpec<'_> {
    /// Uncompressed bytes of its members.
    fn size(&self) -> u64 {
        self.members.iter().map(|m| m.size).sum()
    }
}

/// An output in its temporary file: the file, its kind, and its members' facts (RECORD's
/// last).
pub struct Written {
    pub file: PendingFile,
    pub kind: OutputKind,
    pub facts: Vec<MemberFacts>,
}

pub fn write_output(
    spec: OutputSpec,
    time: ZipTime,
    progress: Option<&dyn Progress>,
) -> Result<Written, Error> {
    let OutputSpec {
        target,
        kind,
        members,
    } = spec;
    let mut w = WheelWriter::create(&target, time)?;
    let dist_info = members
        .iter()
        .find_map(|m| {
            m.name
                .split_once('/')
                .map(|(top, _)| top)
                .filter(|t| t.ends_with(".dist-info"))
        })
        .unwrap_or("")
        .to_string();
    let mut record = Record::default();
    let mut facts = Vec::with_capacity(members.len() + 1);
    for m in members {
        match &m.source {
            Source::Copy { wheel, member } => {
                let src = wheel.archive.member(member).ok_or_else(|| {
                    Error::internal(format_args!("{} vanished", wheel.member_location(member)))
                })?;
                w.add_raw(&m.name, &wheel.archive, src, m.mode)?;
            }
            Source::New(c) => w.add_compressed(&m.name, c, m.mode)?,
        }
        if let Some(p) = progress {
            p.inc(m.size);
        }
        record.entries.push(RecordEntry {
            path: m.name.clone(),
            hash: Some(sha256_field(&m.sha256)),
            size: Some(m.size),
        });
        facts.push(m.facts);
    }
    let record_name = format!("{dist_info}/RECORD");
    record.entries.push(RecordEntry {
        path: record_name.clone(),
        hash: None,
        size: None,
    });
    let text = record.to_text();
    let c = deflate::compress(text.as_bytes(), deflate::DEFAULT_LEVEL);
    w.add_compressed(&record_name, &c, 0o100644)?;
    facts.push(plain_facts(
        &record_name,
        text.len() as u64,
        sha2_digest(text.as_bytes()),
    ));
    Ok(Written {
        file: w.finish()?,
        kind,
        facts,
    })
}

/// RECORD as written against the member list and our hashes.
pub fn check_written_record(w: &Wheel, facts: &[MemberFacts]) -> RecordCheck {
    let mut check = RecordCheck::default();
    let by: HashMap<&str, &MemberFacts> = facts.iter().map(|f| (f.name.as_str(), f)).collect();
    // Indexed once: looking each member up in the list made this quadratic (60,000 members
    // took seconds).
    let lines: HashMap<&str, &RecordEntry> = w
        .record
        .entries
        .iter()
        .map(|e| (e.path.as_str(), e))
        .collect();
    let record = format!("{}/RECORD", w.dist_info);
    for m in w.archive.members() {
        if m.name == record {
            continue;
        }
        match (lines.get(m.name.as_str()).copied(), by.get(m.name.as_str())) {
            (None, _) => check.unlisted.push(m.name.clone()),
            (Some(e), Some(f)) => {
                let ok = e.size == Some(m.size)
                    && f.size == m.size
                    && e.hash == f.sha256.map(|h| sha256_field(&h));
                if !ok {
                    check.mismatched.push(m.name.clone());
                }
            }
            (Some(_), None) => check.mismatched.push(m.name.clone()),
        }
    }
    for e in &w.record.entries {
        if w.archive.member(&e.path).is_none() {
            check.missing.push(e.path.clone());
        }
    }
    check
}

/// The command that writes the outputs: named in messages, and its own advice when an output
/// is too large.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Split,
    Trim,
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Split => "split",
            Command::Trim => "trim",
        })
    }
}

/// Whether [`finish`] refuses outputs whose links do not resolve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkCheck {
    /// Every NEEDED must resolve inside the written set (split moves libraries between
    /// wheels).
    WholeSet,
    /// Links are not checked: the rewrite changes none (trim).
    Unchanged,
}

/// How [`finish`] judges what was written. An output over `max_size` is always refused.
pub struct Finish<'a> {
    pub profiles: &'a ProfileSet,
    pub max_size: u64,
    pub limits: &'a Limits,
    pub time: ZipTime,
    /// Advanced by each member's uncompressed size as it is written.
    pub progress: Option<&'a dyn Progress>,
    /// Whether every NEEDED must resolve inside the written set.
    pub links: LinkCheck,
    /// The command, for messages.
    pub what: Command,
    /// Which outputs are installed together (indices into the outputs); `None`: work it out
    /// from the wheels' names and tags.
    pub sets: Option<Vec<Vec<usize>>>,
    /// Links that were already unresolved in the inputs (see [`crate::verify::link_key`]): not the outputs'
    /// fault, so not a reason to refuse them.
    pub known_unresolved: std::collections::HashSet<(String, String)>,
    /// Violations the inputs already had (see [`crate::checks::Violation::key`]): reported
    /// before the work, not a reason to refuse the outputs.
    pub known_violations: std::collections::HashSet<(String, String)>,
}

/// Writes every output to a temporary file next to its target, checks what was written
/// (sizes, RECORD against our own hashes, upload rules, optionally links over the whole set),
/// and renames everything into place only if all of it passed.
pub fn finish(
    outputs_spec: Vec<OutputSpec>,
    f: &Finish,
) -> Result<(Vec<Output>, VerifyReport), Error> {
    let (written, origins) = write_all(outputs_spec, f)?;
    // Check what was written before anything is renamed into place.
    let mut outputs = check_sizes(&written, f)?;
    let report = check_written(&written, &mut outputs, f)?;
    commit_outputs(written, &origins, f)?;
    Ok((outputs, report))
}

/// Where each of a runtime wheel's copied members comes from: its name → the input member's
/// location (`dist/x.whl!pkg/lib.so`); empty for the other outputs.
type Origins = HashMap<String, String>;

/// Writes every output to its temporary file, the largest first, and says where each runtime
/// wheel's copied members come from (to name them if it conflicts with one already there).
fn write_all(
    outputs_spec: Vec<OutputSpec>,
    f: &Finish,
) -> Result<(Vec<Written>, Vec<Origins>), Error> {
    // Write everything to temporary files, the largest outputs first.
    if let Some(p) = f.progress {
        p.set_message("writing");
        p.set_position(0);
        p.set_length(outputs_spec.iter().map(OutputSpec::size).sum());
    }
    let sizes: Vec<u64> = outputs_spec.iter().map(OutputSpec::size).collect();
    // Where each runtime wheel's members come from, to name them if the runtime wheel
    // conflicts with one already there.
    let origins: Vec<Origins> = outputs_spec
        .iter()
        .map(|spec| {
            spec.members
                .iter()
                .filter(|_| matches!(spec.kind, OutputKind::Runtime | OutputKind::Companion))
                .filter_map(|m| match &m.source {
                    Source::Copy { wheel, member } => {
                        Some((m.name.clone(), wheel.member_location(member).to_string()))
                    }
                    Source::New(_) => None,
                })
                .collect()
        })
        .collect();
    // Each worker takes its output's member list out of its slot.
    type Slot<'m> = std::sync::Mutex<Option<OutputSpec<'m>>>;
    let specs: Vec<Slot> = outputs_spec
        .into_iter()
        .map(|s| std::sync::Mutex::new(Some(s)))
        .collect();
    let written: Vec<Written> = crate::schedule::largest_first(&sizes, |i| {
        let taken = specs[i].lock().unwrap_or_else(|p| p.into_inner()).take();
        let spec = taken.ok_or_else(|| Error::internal("output written twice"))?;
        write_output(spec, f.time, f.progress)
    })
    .into_iter()
    .collect::<Result<_, Error>>()?;
    Ok((written, origins))
}

/// Refuses an output over the size limit; otherwise lists them.
fn check_sizes(written: &[Written], f: &Finish) -> Result<Vec<Output>, Error> {
    let mut outputs = Vec::new();
    for Written { file: p, kind, .. } in written {
        if p.size > f.max_size {
            return Err(Error::refused(
                format!(
                    "`{}` would be {} ({} bytes), {} over the {} limit; nothing was written",
                    p.target.display(),
                    crate::checks::mib_text(p.size),
                    p.size,
                    crate::checks::mib_text(p.size - f.max_size),
                    crate::checks::mib_text(f.max_size),
                ),
                Some(if f.what == Command::Trim {
                    // trim always has targets: never suggest the option just given.
                    "name fewer targets, add --unmatched drop if code for targets you did not name remains, move vendor libraries out with `wheelslim split`, or raise --max-size to a limit your index allows".into()
                } else {
                    "trim device code (--sm/--gfx), move more libraries out with --profile, or raise --max-size".into()
                }),
            ));
        }
        outputs.push(Output {
            path: p.target.display().to_string(),
            kind: *kind,
            size: p.size,
            members: 0,
        });
    }
    Ok(outputs)
}

/// Re-opens what was written and checks it as it will be installed: RECORD, the upload
/// rules and, for split, every link; only what the rewrite changed counts. Fills in each
/// output's member count.
fn check_written(
    written: &[Written],
    outputs: &mut [Output],
    f: &Finish,
) -> Result<VerifyReport, Error> {
    let mut reopened = Vec::new();
    for Written {
        file: p,
        facts: member_facts,
        ..
    } in written
    {
        let w = Wheel::open_as(p.temp_path(), &p.target, f.limits)?;
        let f = WheelFacts {
            members: member_facts.clone(),
            record: check_written_record(&w, member_facts),
            diagnostics: Vec::new(),
        };
        reopened.push((w, f));
    }
    for (o, (w, _)) in outputs.iter_mut().zip(&reopened) {
        o.members = w.archive.members().len();
    }
    let refs: Vec<(&Wheel, &WheelFacts)> = reopened.iter().map(|(w, f)| (w, f)).collect();
    let sets = f.sets.clone().unwrap_or_else(|| install_sets(&refs));
    let report = verify_sets(&refs, &sets, f.profiles, f.max_size);
    let new_links: Vec<&crate::verify::LinkProblem> = report
        .unresolved
        .iter()
        .filter(|u| !f.known_unresolved.contains(&link_key(&u.object, &u.needed)))
        .collect();
    // Only what the rewrite changed counts: what the inputs already violated was reported
    // before the work (`verify::baseline`).
    let new_violations: Vec<(&str, &crate::checks::Violation)> = report
        .wheels
        .iter()
        .flat_map(|w| w.violations.iter().map(move |v| (w.path.as_str(), v)))
        .filter(|(_, v)| !f.known_violations.contains(&v.key()))
        .collect();
    let links = f.links == LinkCheck::WholeSet;
    let failed = !report.conflicts.is_empty()
        || (links && !new_links.is_empty())
        || !new_violations.is_empty();
    if failed {
        let mut lines: Vec<String> = new_links
            .iter()
            .filter(|_| links)
            .map(|u| {
                format!(
                    "{} needs {} (searched {})",
                    u.object,
                    u.needed,
                    u.searched.join(", ")
                )
            })
            .collect();
        for (path, v) in &new_violations {
            lines.push(format!("{path}: [{}] {}", v.rule, v.message));
        }
        lines.extend(report.conflicts.iter().map(|c| format!("conflict: {c}")));
        return Err(Error::refused(
            format!("the {} outputs failed their own check; nothing was written:\n  {}", f.what, lines.join("\n  ")),
            Some("this is a wheelslim bug or an unusual input; please report it with `wheelslim audit --json` of the inputs".into()),
        ));
    }
    Ok(report)
}

/// Puts every output in place at once, or none.
fn commit_outputs(written: Vec<Written>, origins: &[Origins], f: &Finish) -> Result<(), Error> {
    // Runtime wheels are shared: several builds (one per Python version, in the usual
    // cibuildwheel recipe) write theirs into one --runtime-dir, and the main wheels each build
    // wrote need the runtime wheel that was there when they were split. One of the same name
    // with other bytes must therefore never replace it; with the same bytes it is left as it
    // is. Main and trimmed wheels belong to their own input alone: a rerun after a change
    // replaces them, as any build tool replaces its outputs.
    let mut pending: Vec<PendingFile> = Vec::new();
    for (i, w) in written.into_iter().enumerate() {
        let Written {
            file: mut p,
            kind,
            facts: member_facts,
        } = w;
        if matches!(kind, OutputKind::Runtime | OutputKind::Companion) {
            p.existing = Existing::MustMatch;
            if std::fs::metadata(&p.target).is_ok_and(|m| m.is_file()) {
                if same_bytes(p.temp_path(), &p.target).unwrap_or(false) {
                    continue; // already there: the temporary file deletes itself
                }
                return Err(runtime_conflict(&p, &member_facts, &origins[i], f.limits));
            }
        }
        pending.push(p);
    }
    commit(pending)?;
    Ok(())
}

/// The error for a runtime wheel that would replace one of the same name with other content:
/// names the existing file, what differs and where this run's members come from.
fn runtime_conflict(
    p: &PendingFile,
    facts: &[MemberFacts],
    origins: &Origins,
    limits: &Limits,
) -> Error {
    let target = p.target.display();
    let short = |h: &str| {
        h.trim_start_matches("sha256=")
            .chars()
            .take(12)
            .collect::<String>()
    };
    let mut lines = Vec::new();
    match Wheel::open(&p.target, limits) {
        Ok(old) => {
            let theirs: HashMap<&str, Option<&str>> = old
                .record
                .entries
                .iter()
                .map(|e| (e.path.as_str(), e.hash.as_deref()))
                .collect();
            let record = format!("{}/RECORD", old.dist_info);
            for m in facts.iter().filter(|m| m.name != record) {
                let ours = m.sha256.map(|h| sha256_field(&h));
                let from = origins
                    .get(&m.name)
                    .map_or_else(String::new, |o| format!(", this run's from `{o}`"));
                match theirs.get(m.name.as_str()) {
                    None => lines.push(format!("{}: not in the existing wheel{from}", m.name)),
                    Some(t) if *t != ours.as_deref() => lines.push(format!(
                        "{}: differs (sha256 {}… there, {}… now{from})",
                        m.name,
                        t.map(short).unwrap_or_default(),
                        ours.as_deref().map(short).unwrap_or_default()
                    )),
                    Some(_) => {}
                }
            }
            let ours: std::collections::HashSet<&str> =
                facts.iter().map(|m| m.name.as_str()).collect();
            for e in &old.record.entries {
                if !ours.contains(e.path.as_str()) {
                    lines.push(format!("{}: only in the existing wheel", e.path));
                }
            }
            if lines.is_empty() {
                lines.push(
                    "every member is the same; the archives differ in timestamps or order \
                     (another SOURCE_DATE_EPOCH?)"
                        .into(),
                );
            }
        }
        Err(e) => lines.push(format!("the existing file cannot be read as a wheel: {e}")),
    }
    let more = lines.len().saturating_sub(8);
    lines.truncate(8);
    if more > 0 {
        lines.push(format!("and {more} more"));
    }
    Error::refused(
        format!(
            "runtime wheel `{target}` already exists with other content than the one this run \
             would write in its place ({} bytes now):\n  {}\nnothing was written",
            p.size,
            lines.join("\n  ")
        ),
        Some(
            "main wheels split earlier need the runtime wheel that is there, so it is never \
             replaced. Split every build against the same copy of the vendor libraries, or \
             give this build its own --runtime-dir (and publish each main wheel with the \
             runtime wheel it was split with); remove the existing file only if no main wheel \
             needs it"
                .into(),
        ),
    )
}
