//! Editing the dynamic section of a shared library (or executable) without patchelf: set
//! RPATH/RUNPATH, rename DT_NEEDED entries together with the matching `.gnu.version_r` file
//! names, and set SONAME.
//!
//! The edit changes as few bytes as possible (`docs/elf.md`): strings are reused, overwritten
//! in place when nothing else shares their bytes, or appended to `.dynstr`; new dynamic entries go
//! into DT_NULL slack; only when that is not enough does `.dynstr` and/or `.dynamic` move into a
//! new PT_LOAD (see the `layout` module for the placement rules). Every output is re-checked
//! ([`super::check`]) and re-parsed with goblin ([`super::inspect`]) before it is returned, so a
//! caller gets either a verified file or an error that says why not.
//!
//! Supported: 64-bit little-endian shared objects and executables for x86_64, aarch64 and
//! ppc64le. Everything else is refused with [`ElfError::Unsupported`].

use serde::Serialize;

use super::ElfError;
use super::check::check;
use super::dynview::DynView;
use super::inspect::{Inspected, inspect};
use crate::changes::Changes;
use crate::elf::consts::{EM_AARCH64, EM_PPC64, EM_X86_64, SHT_GNU_VERDEF, SHT_GNU_VERNEED};
mod layout;
mod slide;
mod strings;

use self::layout::Edited;
pub use self::layout::Method;
use self::strings::{Placed, Site, StrPool};
use super::file::{DynEntry, Elf64};
use super::raw::{bytes, u32_at};
use crate::elf::consts::{
    DT_NEEDED, DT_RPATH, DT_RUNPATH, DT_SONAME, ET_DYN, ET_EXEC, PN_XNUM, SHT_DYNAMIC, SHT_DYNSYM,
    STRING_TAGS, SYM_SIZE,
};

/// Which dynamic tag carries the library search path.
///
/// `ld.so` searches DT_RPATH *before* `LD_LIBRARY_PATH` (and the RPATH of the loading
/// executable applies to its dependencies too), DT_RUNPATH *after* it and only for the object's
/// own DT_NEEDED entries; an object with a DT_RUNPATH has its DT_RPATH ignored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PathKind {
    /// The kind the object already has: DT_RUNPATH if it has one (it is the one `ld.so` obeys),
    /// else DT_RPATH. An object with neither gets **DT_RPATH**, as auditwheel
    /// (`patchelf --force-rpath`) and PyTorch's wheels do, so that a library folder inside the
    /// installed wheels wins over `LD_LIBRARY_PATH` and a system CUDA toolkit.
    #[default]
    Keep,
    Rpath,
    Runpath,
}

/// The edits to make. Renames match the original names only (`a→b` and `b→c` together rename
/// the original `a` to `b` and the original `b` to `c`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynamicEdits {
    /// New DT_SONAME (added when the object has none).
    pub soname: Option<String>,
    /// DT_NEEDED `old → new`; every `.gnu.version_r` entry whose file is `old` is renamed too.
    /// An `old` that is not a DT_NEEDED entry is an error ([`ElfError::NeededNotFound`]).
    pub replace_needed: Vec<(String, String)>,
    /// The new complete search path (joined with `:`). `Some(vec![])` removes DT_RPATH and
    /// DT_RUNPATH; `None` leaves them alone. The result is a single entry of `path_kind`: any
    /// entry of the other kind is removed.
    pub search_path: Option<Vec<String>>,
    pub path_kind: PathKind,
}

/// A rewritten object: the new bytes, how they were laid out, and what moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchOutcome {
    pub data: Vec<u8>,
    pub method: Method,
    /// One line per decision, e.g. "moved `.dynstr` ... into a new PT_LOAD at 0x5010 ...".
    pub notes: Vec<String>,
}

fn validate_name(what: &str, s: &str) -> Result<(), ElfError> {
    if s.is_empty() || s.contains('\0') {
        return Err(ElfError::InvalidEdit(format!(
            "{what} must be non-empty and free of NUL bytes (got {s:?})"
        )));
    }
    Ok(())
}

fn validate(edits: &DynamicEdits) -> Result<(), ElfError> {
    if let Some(s) = &edits.soname {
        validate_name("SONAME", s)?;
    }
    for (i, (old, new)) in edits.replace_needed.iter().enumerate() {
        validate_name("a DT_NEEDED name", old)?;
        validate_name("a DT_NEEDED name", new)?;
        if edits.replace_needed.iter().take(i).any(|(o, _)| o == old) {
            return Err(ElfError::InvalidEdit(format!("`{old}` is renamed twice")));
        }
    }
    for p in edits.search_path.iter().flatten() {
        if p.is_empty() || p.contains(':') || p.contains('\0') {
            return Err(ElfError::InvalidEdit(format!(
                "search path entry {p:?} is empty or contains `:` or NUL \
                 (an empty entry would mean the current directory)"
            )));
        }
    }
    Ok(())
}

/// The reader takes counts from section 0 (extended numbering); the rewriter writes them back
/// as header fields, so it refuses such files (they are the ones with 65535+ headers).
fn plain_numbering(elf: &Elf64) -> Result<(), ElfError> {
    if elf.header.e_phnum == PN_XNUM {
        return Err(ElfError::Unsupported(
            "extended program header numbering (e_phnum = PN_XNUM)".into(),
        ));
    }
    if elf.header.e_shoff != 0 && elf.header.e_shnum == 0 {
        return Err(ElfError::Unsupported(
            "extended section numbering (e_shnum = 0 with a section header table)".into(),
        ));
    }
    Ok(())
}

fn supported_target(elf: &Elf64) -> Result<(), ElfError> {
    if !matches!(elf.header.e_type, ET_DYN | ET_EXEC) {
        return Err(ElfError::Unsupported(format!(
            "e_type {} is not a shared object or executable",
            elf.header.e_type
        )));
    }
    match elf.header.e_machine {
        EM_X86_64 | EM_AARCH64 | EM_PPC64 => Ok(()),
        190 | 224 => Err(ElfError::Unsupported(
            "GPU code objects (EM_CUDA, EM_AMDGPU) have no dynamic section to rewrite".into(),
        )),
        m => Err(ElfError::Unsupported(format!(
            "e_machine {m}: only x86_64, aarch64 and ppc64le objects are rewritten"
        ))),
    }
}

/// Where a dynamic entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Old,
    New,
}

struct StringEdit {
    label: String,
    value: Vec<u8>,
    sites: Vec<Site>,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The index after the last entry whose tag is one of `tags` (0 when there is none).
fn after_last(entries: &[(DynEntry, Origin)], tags: &[u64]) -> usize {
    entries
        .iter()
        .rposition(|(e, _)| tags.contains(&e.tag))
        .map_or(0, |i| i + 1)
}

fn path_tag(kind: PathKind, entries: &[(DynEntry, Origin)]) -> u64 {
    let has = |tag| entries.iter().any(|(e, _)| e.tag == tag);
    match kind {
        PathKind::Rpath => DT_RPATH,
        PathKind::Runpath => DT_RUNPATH,
        PathKind::Keep if has(DT_RUNPATH) => DT_RUNPATH,
        PathKind::Keep => DT_RPATH,
    }
}

/// Applies the structural part of the edits (entries added, removed, retagged) and returns the
/// string edits to place, with the tag used for the search path.
fn restructure(
    view: &DynView,
    edits: &DynamicEdits,
    entries: &mut Vec<(DynEntry, Origin)>,
    notes: &mut Vec<String>,
) -> Result<(Vec<StringEdit>, Option<u64>), ElfError> {
    let mut string_edits = Vec::new();
    if let Some(soname) = &edits.soname {
        if !entries.iter().any(|(e, _)| e.tag == DT_SONAME) {
            let at = after_last(entries, &[DT_NEEDED]);
            entries.insert(
                at,
                (
                    DynEntry {
                        tag: DT_SONAME,
                        val: 0,
                    },
                    Origin::New,
                ),
            );
            notes.push("added a DT_SONAME entry".into());
        }
        string_edits.push((format!("SONAME `{soname}`"), soname.clone(), DT_SONAME));
    }
    let mut path_tag_used = None;
    if let Some(list) = &edits.search_path {
        let tag = path_tag(edits.path_kind, entries);
        let is_path = |e: &DynEntry| e.tag == DT_RPATH || e.tag == DT_RUNPATH;
        let before = entries.iter().filter(|(e, _)| is_path(e)).count();
        if list.is_empty() {
            entries.retain(|(e, _)| !is_path(e));
            if before > 0 {
                notes.push(format!(
                    "removed {before} DT_RPATH/DT_RUNPATH entr{}",
                    if before == 1 { "y" } else { "ies" }
                ));
            }
        } else {
            match entries.iter().position(|(e, _)| is_path(e)) {
                Some(first) => {
                    let mut i = 0;
                    entries.retain(|(e, _)| {
                        let keep = !is_path(e) || i == first;
                        i += 1;
                        keep
                    });
                    if let Some((e, _)) = entries.get_mut(first) {
                        e.tag = tag;
                    }
                    if before > 1 {
                        notes.push(format!("merged {before} search-path entries into one"));
                    }
                }
                None => {
                    let at = after_last(entries, &[DT_NEEDED, DT_SONAME]);
                    entries.insert(at, (DynEntry { tag, val: 0 }, Origin::New));
                    notes.push(format!(
                        "added a {} entry",
                        if tag == DT_RPATH {
                            "DT_RPATH"
                        } else {
                            "DT_RUNPATH"
                        }
                    ));
                }
            }
            let kind = if tag == DT_RPATH { "RPATH" } else { "RUNPATH" };
            string_edits.push((format!("{kind} `{}`", list.join(":")), list.join(":"), tag));
            path_tag_used = Some(tag);
        }
    }
    let mut out: Vec<StringEdit> = string_edits
        .into_iter()
        .map(|(label, value, tag)| StringEdit {
            label,
            value: value.into_bytes(),
            sites: entries
                .iter()
                .enumerate()
                .filter(|(_, (e, _))| e.tag == tag)
                .map(|(i, _)| Site::Dyn(i))
                .collect(),
        })
        .collect();
    for (old, new) in &edits.replace_needed {
        let mut sites = Vec::new();
        for (i, (e, origin)) in entries.iter().enumerate() {
            if e.tag == DT_NEEDED && *origin == Origin::Old && view.string(e.val)? == old.as_bytes()
            {
                sites.push(Site::Dyn(i));
            }
        }
        if sites.is_empty() {
            return Err(ElfError::NeededNotFound(old.clone()));
        }
        for (k, vn) in view.verneed.iter().enumerate() {
            if view.string(u64::from(vn.file))? == old.as_bytes() {
                sites.push(Site::VnFile(k));
            }
        }
        out.push(StringEdit {
            label: format!("NEEDED `{old}` → `{new}`"),
            value: new.clone().into_bytes(),
            sites,
        });
    }
    Ok((out, path_tag_used))
}

/// Records every reference into the string table that the edits must not clobber.
fn collect_refs(
    elf: &Elf64,
    view: &DynView,
    entries: &[(DynEntry, Origin)],
    pool: &mut StrPool,
) -> Result<(), ElfError> {
    for (i, (e, origin)) in entries.iter().enumerate() {
        if *origin == Origin::Old && STRING_TAGS.contains(&e.tag) {
            pool.add_ref(Site::Dyn(i), e.val);
        }
    }
    for (k, vn) in view.verneed.iter().enumerate() {
        pool.add_ref(Site::VnFile(k), u64::from(vn.file));
        for &n in &vn.names {
            pool.add_ref(Site::Fixed, u64::from(n));
        }
    }
    for &n in &view.verdef_names {
        pool.add_ref(Site::Fixed, u64::from(n));
    }
    let dynstr = elf.shdrs.iter().position(|s| {
        s.in_file() && s.sh_offset == view.strtab.offset && s.sh_addr == view.strtab.vaddr
    });
    let Some(dynstr) = dynstr else {
        pool.forbid_overwrite("no section header describes `.dynstr`".into());
        return Ok(());
    };
    let mut dynsym_seen = false;
    for s in elf.shdrs.iter().skip(1) {
        if usize::try_from(s.sh_link).ok() != Some(dynstr) {
            continue;
        }
        match s.sh_type {
            SHT_DYNSYM if s.sh_entsize == SYM_SIZE => {
                dynsym_seen = true;
                let syms = bytes(elf.data, s.sh_offset, s.sh_size, "`.dynsym`")?;
                for i in 0..(syms.len() as u64 / SYM_SIZE) {
                    pool.add_ref(Site::Fixed, u64::from(u32_at(syms, i * SYM_SIZE)?));
                }
            }
            SHT_DYNAMIC | SHT_GNU_VERNEED | SHT_GNU_VERDEF => {}
            _ => pool.forbid_overwrite(format!(
                "section `{}` also uses `.dynstr`",
                elf.section_name(s)
            )),
        }
    }
    if !dynsym_seen {
        pool.forbid_overwrite("no `.dynsym` section header: symbol names cannot be listed".into());
    }
    Ok(())
}

/// What a caller should see in the output, as an independent parser reads it.
struct Expected {
    soname: Option<String>,
    needed: Vec<String>,
    rpath: Vec<String>,
    runpath: Vec<String>,
}

fn split_path(s: &[u8]) -> Vec<String> {
    lossy(s)
        .split(':')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

fn expected(
    view: &DynView,
    edits: &DynamicEdits,
    path_tag: Option<u64>,
) -> Result<Expected, ElfError> {
    let strings_of = |tag: u64| -> Result<Vec<&[u8]>, ElfError> {
        view.dynamic
            .entries
            .iter()
            .filter(|e| e.tag == tag)
            .map(|e| view.string(e.val))
            .collect()
    };
    let soname = match &edits.soname {
        Some(s) => Some(s.clone()),
        None => strings_of(DT_SONAME)?.first().map(|s| lossy(s)),
    };
    let needed = view
        .needed()?
        .into_iter()
        .map(|n| {
            let n = lossy(n);
            edits
                .replace_needed
                .iter()
                .find(|(old, _)| *old == n)
                .map_or(n, |(_, new)| new.clone())
        })
        .collect();
    let (rpath, runpath) = match (&edits.search_path, path_tag) {
        (Some(list), Some(DT_RUNPATH)) => (Vec::new(), list.clone()),
        (Some(list), Some(_)) => (list.clone(), Vec::new()),
        (Some(_), None) => (Vec::new(), Vec::new()),
        (None, _) => (
            strings_of(DT_RPATH)?
                .into_iter()
                .flat_map(split_path)
                .collect(),
            strings_of(DT_RUNPATH)?
                .into_iter()
                .flat_map(split_path)
                .collect(),
        ),
    };
    Ok(Expected {
        soname,
        needed,
        rpath,
        runpath,
    })
}

/// Re-checks the output with the layout checker and re-parses it with goblin.
fn verify(out: &[u8], want: &Expected) -> Result<(), ElfError> {
    check(out).map_err(|e| ElfError::OutputCheck(e.to_string()))?;
    let info = match inspect(out).map_err(|e| ElfError::OutputCheck(format!("goblin: {e}")))? {
        Inspected::Host(info) => info,
        other => {
            return Err(ElfError::OutputCheck(format!(
                "goblin no longer sees a host object: {other:?}"
            )));
        }
    };
    let mismatch = |what: &str, got: &dyn std::fmt::Debug, want: &dyn std::fmt::Debug| {
        ElfError::OutputCheck(format!("goblin reads {what} {got:?}, expected {want:?}"))
    };
    if info.soname != want.soname {
        return Err(mismatch("SONAME", &info.soname, &want.soname));
    }
    if info.needed != want.needed {
        return Err(mismatch("NEEDED", &info.needed, &want.needed));
    }
    if info.rpath != want.rpath {
        return Err(mismatch("RPATH", &info.rpath, &want.rpath));
    }
    if info.runpath != want.runpath {
        return Err(mismatch("RUNPATH", &info.runpath, &want.runpath));
    }
    for vn in &info.version_needs {
        if !info.needed.contains(&vn.file) {
            return Err(ElfError::OutputCheck(format!(
                "goblin reads version-needs file `{}`, which is not NEEDED",
                vn.file
            )));
        }
    }
    Ok(())
}

/// The edit worked out, before any byte is written.
struct Planned {
    laid: layout::Laid,
    want: Expected,
    notes: Vec<String>,
}

/// Applies `edits` to the ELF object in `input` and returns the verified new bytes.
///
/// The input is checked first ([`check`]); an input that already breaks the layout rules is
/// refused rather than made worse. The output is built in one buffer (the input plus at most a
/// copy of `.dynstr`, a `.dynamic` and a program header table) and is returned only after it
/// passes [`check`] and goblin reads back the expected SONAME, NEEDED, RPATH and RUNPATH.
pub fn patch(input: &[u8], edits: &DynamicEdits) -> Result<PatchOutcome, ElfError> {
    let (laid, want, notes) = match plan(input, edits)? {
        None => {
            return Ok(PatchOutcome {
                data: input.to_vec(),
                method: Method::Unchanged,
                notes: vec!["nothing to change".into()],
            });
        }
        Some(Planned { laid, want, notes }) => (laid, want, notes),
    };
    let data = build(input, &laid.writes)?;
    verify(&data, &want)?;
    Ok(PatchOutcome {
        data,
        method: laid.method,
        notes,
    })
}

/// An object edited in its own buffer ([`patch_in_place`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchedInPlace {
    pub method: Method,
    pub notes: Vec<String>,
    /// What changed: the input's bytes can be read back from the buffer through it.
    pub changes: Changes,
}

/// [`patch`] made in `buf` itself, which needs no second buffer as large as the object: the
/// same checks, and the buffer ends up holding the bytes [`patch`] returns. On an error the
/// buffer holds the input again.
pub fn patch_in_place(buf: &mut Vec<u8>, edits: &DynamicEdits) -> Result<PatchedInPlace, ElfError> {
    let (laid, want, notes) = match plan(buf, edits)? {
        None => {
            return Ok(PatchedInPlace {
                method: Method::Unchanged,
                notes: vec!["nothing to change".into()],
                changes: Changes {
                    at: buf.len(),
                    len: buf.len(),
                    ..Changes::default()
                },
            });
        }
        Some(Planned { laid, want, notes }) => (laid, want, notes),
    };
    let changes = apply_writes(buf, &laid.writes)?;
    if let Err(e) = verify(buf, &want) {
        changes.undo(buf);
        return Err(e);
    }
    Ok(PatchedInPlace {
        method: laid.method,
        notes,
        changes,
    })
}

/// The new file [`layout::Writes`] describes, built from a copy of `input`.
fn build(input: &[u8], writes: &layout::Writes) -> Result<Vec<u8>, ElfError> {
    let mut out = Vec::new();
    let total = usize::try_from(writes.total).map_err(|_| too_large())?;
    out.try_reserve_exact(total).map_err(|_| too_large())?;
    out.extend_from_slice(input);
    apply_writes(&mut out, writes)?;
    Ok(out)
}

fn too_large() -> ElfError {
    ElfError::Unsupported("layout arithmetic overflowed (size)".into())
}

/// Carries out `writes` on `buf`, which holds the input.
fn apply_writes(buf: &mut Vec<u8>, writes: &layout::Writes) -> Result<Changes, ElfError> {
    let at = usize::try_from(writes.at).map_err(|_| too_large())?;
    let inserted = usize::try_from(writes.inserted).map_err(|_| too_large())?;
    let list: Vec<(usize, &[u8])> = writes
        .list
        .iter()
        .map(|(off, b)| usize::try_from(*off).map(|o| (o, b.as_slice())))
        .collect::<Result<_, _>>()
        .map_err(|_| too_large())?;
    Changes::apply(buf, at, inserted, &list).ok_or_else(|| {
        ElfError::Unsupported("internal: a layout write falls outside the new file".into())
    })
}

/// Reads `input` and works out the edit (see [`patch`]).
/// `None` when nothing changes.
fn plan(input: &[u8], edits: &DynamicEdits) -> Result<Option<Planned>, ElfError> {
    validate(edits)?;
    let elf = Elf64::parse(input)?;
    plain_numbering(&elf)?;
    supported_target(&elf)?;
    check(input).map_err(|e| match e {
        ElfError::Layout(m) => ElfError::Layout(format!("the input already fails the check: {m}")),
        e => e,
    })?;
    let view = DynView::parse(&elf)?.ok_or_else(|| {
        ElfError::Unsupported("the object has no dynamic section (statically linked?)".into())
    })?;

    let mut notes = Vec::new();
    let mut entries: Vec<(DynEntry, Origin)> = view
        .dynamic
        .entries
        .iter()
        .map(|&e| (e, Origin::Old))
        .collect();
    let (string_edits, path_tag) = restructure(&view, edits, &mut entries, &mut notes)?;

    let mut pool = StrPool::new(view.strings);
    collect_refs(&elf, &view, &entries, &mut pool)?;
    for edit in &string_edits {
        let unchanged = edit.sites.iter().all(|&s| {
            pool.offset_of(s)
                .and_then(|off| pool.string_at(off))
                .is_some_and(|cur| cur == edit.value.as_slice())
        });
        if unchanged {
            continue;
        }
        let (at, how) = pool.place(&edit.value, &edit.sites)?;
        notes.push(match how {
            Placed::Reused => format!(
                "{}: reused the existing string at `.dynstr`+{at:#x}",
                edit.label
            ),
            Placed::Overwritten => format!(
                "{}: overwrote the old string in place at `.dynstr`+{at:#x}",
                edit.label
            ),
            Placed::Appended => match pool.overwrite_blocked() {
                Some(why) => format!(
                    "{}: appended at `.dynstr`+{at:#x} (in-place edits are off: {why})",
                    edit.label
                ),
                None => format!("{}: appended at `.dynstr`+{at:#x}", edit.label),
            },
        });
        for &site in &edit.sites {
            if let Site::Dyn(i) = site
                && let Some((e, _)) = entries.get_mut(i)
            {
                e.val = at;
            }
        }
    }

    let mut vn_files = Vec::new();
    for (k, vn) in view.verneed.iter().enumerate() {
        if let Some(off) = pool.offset_of(Site::VnFile(k))
            && off != u64::from(vn.file)
        {
            let off = u32::try_from(off).map_err(|_| {
                ElfError::Unsupported("`.dynstr` would outgrow the 32-bit `vn_file` field".into())
            })?;
            vn_files.push((vn.file_field, off));
        }
    }
    let new_entries: Vec<DynEntry> = entries.into_iter().map(|(e, _)| e).collect();
    if new_entries == view.dynamic.entries
        && pool.table() == view.strings
        && pool.tail().is_empty()
        && vn_files.is_empty()
    {
        return Ok(None);
    }
    let want = expected(&view, edits, path_tag)?;
    let mut laid = layout::lay_out(
        &elf,
        &view,
        Edited {
            entries: new_entries,
            table: pool.table(),
            tail: pool.tail(),
            vn_files,
        },
    )?;
    notes.extend(std::mem::take(&mut laid.notes));
    Ok(Some(Planned { laid, want, notes }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::consts::{PT_LOAD, PT_NULL, PT_PHDR};
    use crate::elf::synth::Synth;

    fn info(data: &[u8]) -> crate::elf::ElfInfo {
        match inspect(data).unwrap() {
            Inspected::Host(i) => *i,
            other => panic!("{other:?}"),
        }
    }

    fn path(list: &[&str], kind: PathKind) -> DynamicEdits {
        DynamicEdits {
            search_path: Some(list.iter().map(|s| s.to_string()).collect()),
            path_kind: kind,
            ..DynamicEdits::default()
        }
    }

    fn long() -> String {
        format!("/long/{}", "x".repeat(300))
    }

    /// Entries before the terminator + slots of the synthetic `.dynamic`.
    const SYNTH_ENTRIES: usize = 7;

    #[test]
    fn a_new_entry_goes_into_dt_null_slack_and_reuses_an_existing_string() {
        let input = Synth {
            extra_strings: vec!["/opt/lib"],
            ..Synth::default()
        }
        .build();
        let out = patch(&input, &path(&["/opt/lib"], PathKind::Keep)).unwrap();
        assert_eq!(out.method, Method::InPlace, "{:#?}", out.notes);
        assert_eq!(out.data.len(), input.len());
        assert_eq!(info(&out.data).rpath, vec!["/opt/lib"]);
        assert!(
            out.notes.iter().any(|n| n.contains("reused")),
            "{:#?}",
            out.notes
        );
    }

    #[test]
    fn no_slack_moves_dynamic_into_a_writable_segment() {
        let input = Synth {
            dyn_slots: SYNTH_ENTRIES + 1,
            extra_strings: vec!["/opt/lib"],
            ..Synth::default()
        }
        .build();
        let out = patch(&input, &path(&["/opt/lib"], PathKind::Runpath)).unwrap();
        assert_eq!(
            out.method,
            Method::NewSegment {
                dynstr: false,
                dynamic: true,
                program_headers: false,
                moved_sections: vec![]
            },
            "{:#?}",
            out.notes
        );
        let i = info(&out.data);
        assert_eq!(i.runpath, vec!["/opt/lib"]);
        let dynamic = i.segments.iter().find(|s| s.kind == "DYNAMIC").unwrap();
        let load = i.segments.iter().rfind(|s| s.kind == "LOAD").unwrap();
        assert_eq!((load.flags.as_str(), dynamic.offset), ("RW", load.offset));
        // The moved array keeps spare DT_NULL slots for the next edit.
        assert!(
            dynamic.filesz >= (SYNTH_ENTRIES as u64 + 2 + 4) * 16,
            "{dynamic:?}"
        );
    }

    #[test]
    fn a_pt_null_slot_takes_the_new_load() {
        let input = Synth {
            pt_null: true,
            note_after_phdrs: true,
            ..Synth::default()
        }
        .build();
        let before = Elf64::parse(&input).unwrap().phdrs;
        let out = patch(&input, &path(&[&long()], PathKind::Keep)).unwrap();
        assert_eq!(
            out.method,
            Method::NewSegment {
                dynstr: true,
                dynamic: false,
                program_headers: false,
                moved_sections: vec![]
            }
        );
        assert!(
            out.notes.iter().any(|n| n.contains("PT_NULL")),
            "{:#?}",
            out.notes
        );
        let after = Elf64::parse(&out.data).unwrap().phdrs;
        assert_eq!(after.len(), before.len());
        assert!(!after.iter().any(|p| p.p_type == PT_NULL));
        assert_eq!(after.iter().filter(|p| p.p_type == PT_LOAD).count(), 3);
        assert_eq!(info(&out.data).rpath, vec![long()]);
    }

    #[test]
    fn free_bytes_after_the_table_let_it_grow_in_place() {
        let input = Synth {
            pt_phdr: true,
            ..Synth::default()
        }
        .build();
        let out = patch(&input, &path(&[&long()], PathKind::Keep)).unwrap();
        assert_eq!(
            out.method,
            Method::NewSegment {
                dynstr: true,
                dynamic: false,
                program_headers: false,
                moved_sections: vec![]
            }
        );
        let elf = Elf64::parse(&out.data).unwrap();
        assert_eq!(elf.header.e_phoff, 0x40);
        let phdr = elf.phdrs.iter().find(|p| p.p_type == PT_PHDR).unwrap();
        assert_eq!(phdr.p_filesz, elf.phdrs.len() as u64 * 56);
    }

    #[test]
    fn a_note_after_the_table_makes_it_move_with_pt_phdr() {
        let input = Synth {
            pt_phdr: true,
            note_after_phdrs: true,
            ..Synth::default()
        }
        .build();
        let out = patch(&input, &path(&[&long()], PathKind::Keep)).unwrap();
        assert_eq!(
            out.method,
            Method::NewSegment {
                dynstr: true,
                dynamic: false,
                program_headers: true,
                moved_sections: vec![]
            }
        );
        let elf = Elf64::parse(&out.data).unwrap();
        let phdr = elf.phdrs.iter().find(|p| p.p_type == PT_PHDR).unwrap();
        let last = elf.phdrs.iter().rfind(|p| p.p_type == PT_LOAD).unwrap();
        assert_eq!((phdr.p_offset, phdr.p_vaddr), (last.p_offset, last.p_vaddr));
        assert_eq!(elf.header.e_phoff, last.p_offset);
        // The note did not move.
        let before = Elf64::parse(&input).unwrap();
        let note = |e: &Elf64| {
            *e.phdrs
                .iter()
                .find(|p| p.p_type == crate::elf::consts::PT_NOTE)
                .unwrap()
        };
        assert_eq!(note(&elf), note(&before));
    }

    #[test]
    fn retag_remove_and_keep_semantics() {
        let rpath = Synth {
            path: Some((DT_RPATH, "/old/path/long/enough")),
            ..Synth::default()
        }
        .build();
        // Same string, other kind: only the tag changes.
        let out = patch(&rpath, &path(&["/old/path/long/enough"], PathKind::Runpath)).unwrap();
        assert_eq!(out.method, Method::InPlace);
        let i = info(&out.data);
        assert_eq!(
            (i.rpath.len(), i.runpath),
            (0, vec!["/old/path/long/enough".to_string()])
        );
        // Keep keeps RPATH; a shorter path overwrites in place.
        let out = patch(&rpath, &path(&["/new"], PathKind::Keep)).unwrap();
        assert_eq!(out.method, Method::InPlace);
        assert_eq!(info(&out.data).rpath, vec!["/new"]);
        // Some(vec![]) removes it, and the freed slot becomes DT_NULL slack.
        let out = patch(&rpath, &path(&[], PathKind::Keep)).unwrap();
        assert_eq!(out.method, Method::InPlace);
        let i = info(&out.data);
        assert!(i.rpath.is_empty() && i.runpath.is_empty());
        // No path at all + Keep → DT_RPATH (documented default).
        let none = Synth {
            extra_strings: vec!["/opt"],
            ..Synth::default()
        }
        .build();
        assert_eq!(
            info(&patch(&none, &path(&["/opt"], PathKind::Keep)).unwrap().data).rpath,
            vec!["/opt"]
        );
        // Asking for what is already there changes nothing.
        let same = patch(&rpath, &path(&["/old/path/long/enough"], PathKind::Keep)).unwrap();
        assert_eq!((same.method, same.data == rpath), (Method::Unchanged, true));
    }

    #[test]
    fn a_shorter_needed_name_overwrites_the_string_it_shares_with_vn_file() {
        let input = Synth::default().build();
        let edits = DynamicEdits {
            replace_needed: vec![("libdep.so.1".into(), "libx.so.1".into())],
            ..DynamicEdits::default()
        };
        let out = patch(&input, &edits).unwrap();
        assert_eq!(out.method, Method::InPlace, "{:#?}", out.notes);
        let i = info(&out.data);
        assert_eq!(i.needed, vec!["libx.so.1"]);
        assert_eq!(i.version_needs[0].file, "libx.so.1");
        assert_eq!(i.version_needs[0].versions, vec!["LIBDEP_1.0"]);
    }

    #[test]
    fn a_longer_soname_is_added_and_appended() {
        let input = Synth {
            soname: Some("libs.so"),
            ..Synth::default()
        }
        .build();
        let edits = DynamicEdits {
            soname: Some("libsomething-longer.so.1".into()),
            ..DynamicEdits::default()
        };
        let out = patch(&input, &edits).unwrap();
        assert!(
            matches!(out.method, Method::NewSegment { dynstr: true, .. }),
            "{out:?}"
        );
        assert_eq!(
            info(&out.data).soname.as_deref(),
            Some("libsomething-longer.so.1")
        );
        let added = patch(&Synth::default().build(), &edits).unwrap();
        assert_eq!(
            info(&added.data).soname.as_deref(),
            Some("libsomething-longer.so.1")
        );
        assert!(added.notes.iter().any(|n| n.contains("added a DT_SONAME")));
    }

    #[test]
    fn in_place_gives_the_bytes_a_copy_gets_and_reads_the_input_back() {
        let inputs = [
            Synth::default().build(),
            Synth {
                pt_null: true,
                note_after_phdrs: true,
                ..Synth::default()
            }
            .build(),
            Synth {
                pt_phdr: true,
                note_after_phdrs: true,
                ..Synth::default()
            }
            .build(),
            Synth {
                dyn_slots: SYNTH_ENTRIES + 1,
                extra_strings: vec!["/opt/lib"],
                ..Synth::default()
            }
            .build(),
            Synth {
                extra_strings: vec!["/opt/lib"],
                ..Synth::default()
            }
            .build(),
        ];
        let edits = [
            path(&[&long()], PathKind::Keep),
            path(&["/opt/lib"], PathKind::Runpath),
            path(&[], PathKind::Keep),
            DynamicEdits {
                replace_needed: vec![("libdep.so.1".into(), "libx.so.1".into())],
                soname: Some("libsomething-longer.so.1".into()),
                ..DynamicEdits::default()
            },
            DynamicEdits {
                replace_needed: vec![("libdep.so.1".into(), "libx.so.1".into())],
                ..DynamicEdits::default()
            },
            DynamicEdits {
                replace_needed: vec![("nope.so".into(), "b.so".into())],
                ..DynamicEdits::default()
            },
        ];
        let mut methods = Vec::new();
        for input in &inputs {
            for e in &edits {
                let mut buf = input.clone();
                match (patch(input, e), patch_in_place(&mut buf, e)) {
                    (Ok(copy), Ok(done)) => {
                        assert_eq!(copy.data, buf, "{e:?}");
                        assert_eq!((&copy.method, &copy.notes), (&done.method, &done.notes));
                        let back = done.changes.original(&buf, 0, input.len()).unwrap();
                        assert_eq!(&*back, &input[..], "{e:?}");
                        assert_eq!(done.changes.is_empty(), copy.data == *input);
                        done.changes.undo(&mut buf);
                        assert_eq!(&buf, input);
                        methods.push(done.method);
                    }
                    (Err(a), Err(b)) => {
                        assert_eq!(a, b);
                        assert_eq!(&buf, input, "an error leaves the input as it was");
                    }
                    (a, b) => panic!(
                        "{e:?}: {:?} / {:?}",
                        a.map(|o| o.method),
                        b.map(|o| o.method)
                    ),
                }
            }
        }
        // Every placement was taken at least once.
        assert!(methods.contains(&Method::InPlace));
        assert!(
            methods
                .iter()
                .any(|m| matches!(m, Method::NewSegment { .. }))
        );
    }

    #[test]
    fn invalid_edits_and_missing_needed_are_refused() {
        let input = Synth::default().build();
        let edits = DynamicEdits {
            replace_needed: vec![
                ("a.so".into(), "b.so".into()),
                ("a.so".into(), "c.so".into()),
            ],
            ..DynamicEdits::default()
        };
        assert!(
            matches!(patch(&input, &edits), Err(ElfError::InvalidEdit(m)) if m.contains("twice"))
        );
        let edits = DynamicEdits {
            replace_needed: vec![("nope.so".into(), "b.so".into())],
            ..DynamicEdits::default()
        };
        assert_eq!(
            patch(&input, &edits),
            Err(ElfError::NeededNotFound("nope.so".into()))
        );
        let mut cuda = input.clone();
        cuda[18] = 190;
        assert!(
            matches!(patch(&cuda, &DynamicEdits::default()), Err(ElfError::Unsupported(m)) if m.contains("GPU"))
        );
    }
}

#[cfg(test)]
mod executable_tests {
    use super::*;
    use crate::elf::consts::{PT_INTERP, PT_NOTE};
    use crate::elf::synth::{DYNAMIC_OFF, Synth};

    fn long_path() -> DynamicEdits {
        DynamicEdits {
            search_path: Some(vec![format!("/long/{}", "x".repeat(300))]),
            ..DynamicEdits::default()
        }
    }

    #[test]
    fn an_executable_moves_the_sections_after_its_table_not_the_table() {
        let input = Synth {
            interp: true,
            note_after_phdrs: true,
            pt_phdr: true,
            ..Synth::default()
        }
        .build();
        let out = patch(&input, &long_path()).unwrap();
        match &out.method {
            Method::NewSegment {
                program_headers: false,
                moved_sections,
                ..
            } => {
                assert_eq!(
                    moved_sections,
                    &[".interp".to_string(), ".note.test".to_string()]
                );
            }
            other => panic!("{other:?}"),
        }
        let before = Elf64::parse(&input).unwrap();
        let after = Elf64::parse(&out.data).unwrap();
        assert_eq!(
            after.header.e_phoff, 0x40,
            "an executable's table never moves"
        );
        let seg = |e: &Elf64, t| *e.phdrs.iter().find(|p| p.p_type == t).unwrap();
        let (old_interp, new_interp) = (seg(&before, PT_INTERP), seg(&after, PT_INTERP));
        let (old_note, new_note) = (seg(&before, PT_NOTE), seg(&after, PT_NOTE));
        let bytes = |d: &[u8], p: crate::elf::file::ProgramHeader| {
            d[p.p_offset as usize..(p.p_offset + p.p_filesz) as usize].to_vec()
        };
        assert_eq!(bytes(&out.data, new_interp), bytes(&input, old_interp));
        assert_eq!(bytes(&out.data, new_note), bytes(&input, old_note));
        // One shift for the whole block, alignment kept.
        assert_eq!(
            new_note.p_vaddr - old_note.p_vaddr,
            new_interp.p_vaddr - old_interp.p_vaddr
        );
        assert_eq!(new_note.p_offset % 16, old_note.p_offset % 16);
        assert_eq!(info_interp(&out.data), "/lib64/ld-linux-x86-64.so.2");
    }

    fn info_interp(data: &[u8]) -> String {
        match inspect(data).unwrap() {
            Inspected::Host(i) => i.interpreter.unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_executable_is_refused_when_something_else_points_at_those_sections() {
        let mut input = Synth {
            interp: true,
            ..Synth::default()
        }
        .build();
        // Turn DT_SYMENT (5th entry) into a DT_INIT that points at `.interp`.
        let interp = Elf64::parse(&input)
            .unwrap()
            .phdrs
            .iter()
            .find(|p| p.p_type == crate::elf::consts::PT_INTERP)
            .unwrap()
            .p_vaddr;
        let at = (DYNAMIC_OFF + 4 * 16) as usize;
        input[at..at + 8].copy_from_slice(&12u64.to_le_bytes());
        input[at + 8..at + 16].copy_from_slice(&interp.to_le_bytes());
        check(&input).unwrap();
        match patch(&input, &long_path()) {
            Err(ElfError::Unsupported(m)) => assert!(m.contains("dynamic tag 0xc"), "{m}"),
            other => panic!("{:?}", other.map(|o| o.method)),
        }
    }
}
