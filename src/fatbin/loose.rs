//! Device code shipped as files of its own: `.cubin`, `.fatbin`, `.ptx`, `.hsaco`/`.co` and
//! offload bundle files.
//!
//! The kind is decided by content where the content says it (ELF `e_machine`, container and
//! bundle magics) and by the `.ptx` extension for PTX text; a `.cubin` that is not a CUDA ELF
//! is not a cubin.
//!
//! # Cubin architecture (`EM_CUDA` = 190)
//!
//! Measured on cubins from ptxas 12.9 and 13.4 (the fixtures, plus cubins built for every
//! arch from sm_75 to sm_121f) against `cuobjdump --list-elf`:
//!
//! | ELF ABI | written by | SM | "a" flag | other bits |
//! | --- | --- | --- | --- | --- |
//! | `EI_ABIVERSION` 7, `EI_OSABI` 0x33 | CUDA ≤ 12 ptxas for sm < 100 | `e_flags & 0xff` | `0x800` | `(e_flags >> 16) & 0xff` = the PTX target SM; `0x500` = 64-bit, unified texture mode |
//! | `EI_ABIVERSION` 8, `EI_OSABI` 0x41 | CUDA 13 ptxas, and CUDA 12.9 ptxas for sm ≥ 100 | `(e_flags >> 8) & 0xff` | `0x8` (12.9 only) | low bits `0x4`/`0x2`; bits 24+ vary |
//!
//! Examples: sm_50 (12.9) `0x320532`, sm_90a (12.9) `0x5a0d5a`, sm_80 (13.4) `0x6005004`,
//! sm_100a (12.9) `0x600640a`, sm_120 (13.4) `0x6007802`.
//!
//! CUDA 13 ptxas does **not** mark "a" cubins in `e_flags` (sm_90 and sm_90a, sm_100 and sm_100a
//! have the same flags), and no release marks "f" there. Both toolkits record the ptxas command
//! line in the `.note.nv.tkinfo` note (owner `NVIDIA Corp`, type 2000) as `-arch sm_100f`, so
//! the variant is taken from there when the note names the same SM. (CUDA 13 also records "a"
//! as attribute 9 = 1 in `.nv.compat`; cuobjdump prints "a" but not "f".)
//!
//! # AMD code objects (`EM_AMDGPU` = 224)
//!
//! The processor is `e_flags & 0xff` (`EF_AMDGPU_MACH`), named by [`amdgpu_processor`]: the
//! names were checked with `llvm-readelf-19 -h` on headers carrying each value (and on the
//! fixtures: gfx90a = 0x3f, gfx942 = 0x4c); gfx950, gfx1153, gfx1250 and gfx9-4-generic come
//! from newer LLVM headers. Target features: code object v3 (`EI_ABIVERSION` 1) sets 0x100 for
//! xnack on and 0x200 for sramecc on; v4 and later use two-bit fields (xnack 0x300: 0x100 any,
//! 0x200 off, 0x300 on; sramecc 0xc00: 0x400 any, 0x800 off, 0xc00 on).

use serde::Serialize;

use super::FatbinError;
use super::bytes::{le_u16, le_u32, le_u64, u64_of};
use super::cuda::{self, ArchVariant, CudaArch, EntryKind};
use super::hip;
use super::select::{GfxReason, GfxSelection, Reason, Selection};

const EM_CUDA: u16 = 190;
const EM_AMDGPU: u16 = 224;

/// What a device file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LooseKind {
    /// An ELF cubin (`EM_CUDA`).
    Cubin,
    /// One or more fatbin containers.
    Fatbin,
    /// PTX text.
    Ptx,
    /// An AMD GPU code object (`EM_AMDGPU`), `.hsaco` or `.co`.
    AmdCodeObject,
    /// A clang offload bundle, plain or compressed.
    OffloadBundle,
}

/// What a device file holds and for which architectures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LooseInfo {
    pub kind: LooseKind,
    /// `sm_90a` (cubin), `compute_90` (PTX), `gfx90a:xnack+` (AMD); every distinct image
    /// architecture of a fatbin or bundle, host excluded. Empty when it cannot be told.
    pub archs: Vec<String>,
    pub bytes: u64,
}

/// The kind of a device file from its name and the first bytes of its content (64 bytes are
/// enough for everything but PTX, which needs no NUL byte in the prefix given). `None` for
/// anything else, including host ELF files.
pub fn classify(name: &str, data_prefix: &[u8]) -> Option<LooseKind> {
    if data_prefix.starts_with(b"\x7fELF") {
        return match le_u16(data_prefix, 0x12)? {
            EM_CUDA => Some(LooseKind::Cubin),
            EM_AMDGPU => Some(LooseKind::AmdCodeObject),
            _ => None,
        };
    }
    if le_u32(data_prefix, 0) == Some(cuda::CONTAINER_MAGIC) {
        return Some(LooseKind::Fatbin);
    }
    if data_prefix.starts_with(hip::BUNDLE_MAGIC) || data_prefix.starts_with(hip::CCOB_MAGIC) {
        return Some(LooseKind::OffloadBundle);
    }
    let is_ptx_name = name
        .rsplit_once('.')
        .is_some_and(|(_, ext)| ext.eq_ignore_ascii_case("ptx"));
    if is_ptx_name && !data_prefix.contains(&0) {
        return Some(LooseKind::Ptx);
    }
    None
}

/// Classify a whole file and list its architectures.
///
/// Errors only come from fatbins and bundles that fail to parse.
pub fn inspect(name: &str, data: &[u8]) -> Result<Option<LooseInfo>, FatbinError> {
    let Some(kind) = classify(name, data) else {
        return Ok(None);
    };
    let mut archs: Vec<String> = Vec::new();
    let mut add = |a: String| {
        if !archs.contains(&a) {
            archs.push(a);
        }
    };
    match kind {
        LooseKind::Cubin => {
            if let Some(a) = cubin_arch(data) {
                add(a.to_string());
            } else if let Some(a) = arch_from_name(name) {
                add(a);
            }
        }
        LooseKind::Ptx => {
            let text = String::from_utf8_lossy(data);
            if let Some(a) = ptx_target(&text) {
                add(a.compute_name());
            } else if let Some(a) = arch_from_name(name) {
                add(a);
            }
        }
        LooseKind::AmdCodeObject => {
            if let Some(t) = amdgpu_target(data) {
                add(t);
            } else if let Some(a) = arch_from_name(name) {
                add(a);
            }
        }
        LooseKind::Fatbin => {
            // One container at a time: a list of millions would be held just to be read.
            for c in cuda::containers(data) {
                let c = c?;
                for e in &c.entries {
                    if e.kind == EntryKind::Concat {
                        for m in &e.members {
                            add(match m.kind {
                                EntryKind::Ptx => m.arch.compute_name(),
                                _ => m.arch.to_string(),
                            });
                        }
                    } else {
                        add(e.arch_name());
                    }
                }
            }
        }
        LooseKind::OffloadBundle => {
            for b in hip::parse_section(data)? {
                for e in b.entries.iter().filter(|e| !e.is_host()) {
                    add(e.target.clone().unwrap_or_else(|| e.triple.clone()));
                }
            }
        }
    }
    Ok(Some(LooseInfo {
        kind,
        archs,
        bytes: u64_of(data.len()),
    }))
}

/// The architecture of a cubin (see the module docs for the encodings).
pub fn cubin_arch(data: &[u8]) -> Option<CudaArch> {
    if !data.starts_with(b"\x7fELF") || le_u16(data, 0x12)? != EM_CUDA {
        return None;
    }
    let abi = *data.get(8)?;
    let flags = le_u32(data, 0x30)?;
    let (sm, a) = if abi >= 8 {
        ((flags >> 8) & 0xff, flags & 0x8 != 0)
    } else {
        (flags & 0xff, flags & 0x800 != 0)
    };
    if sm < 10 {
        return None;
    }
    let variant = if a { ArchVariant::A } else { ArchVariant::Base };
    let header = CudaArch::new(sm, variant);
    match tkinfo_arch(data) {
        Some(noted) if noted.sm == sm => Some(noted),
        _ => Some(header),
    }
}

/// The `-arch sm_XY[a|f]` recorded in a cubin's `.note.nv.tkinfo` note, if any.
fn tkinfo_arch(data: &[u8]) -> Option<CudaArch> {
    // ELF64 little-endian only: cubins are.
    if data.get(4) != Some(&2) || data.get(5) != Some(&1) {
        return None;
    }
    let shoff = usize::try_from(le_u64(data, 0x28)?).ok()?;
    let shentsize = usize::from(le_u16(data, 0x3a)?);
    let shnum = le_u16(data, 0x3c)?;
    if shentsize < 0x40 {
        return None;
    }
    let mut at = shoff;
    for _ in 0..shnum {
        let sh = data.get(at..at.checked_add(0x40)?)?;
        at = at.checked_add(shentsize)?;
        if le_u32(sh, 4)? != 7 {
            continue; // not SHT_NOTE
        }
        let off = usize::try_from(le_u64(sh, 0x18)?).ok()?;
        let size = usize::try_from(le_u64(sh, 0x20)?).ok()?;
        let Some(notes) = data.get(off..off.saturating_add(size)) else {
            continue;
        };
        if let Some(a) = notes_arch(notes) {
            return Some(a);
        }
    }
    None
}

/// Walk the notes of one SHT_NOTE section for NVIDIA's tool-kit note (type 2000).
fn notes_arch(notes: &[u8]) -> Option<CudaArch> {
    let pad4 = |n: usize| n.checked_add(3).map(|v| v & !3);
    let mut at = 0usize;
    while at < notes.len() {
        let namesz = usize::try_from(le_u32(notes, at)?).ok()?;
        let descsz = usize::try_from(le_u32(notes, at.checked_add(4)?)?).ok()?;
        let kind = le_u32(notes, at.checked_add(8)?)?;
        let name_at = at.checked_add(12)?;
        let desc_at = name_at.checked_add(pad4(namesz)?)?;
        let next = desc_at.checked_add(pad4(descsz)?)?;
        let name = notes.get(name_at..name_at.checked_add(namesz)?)?;
        if kind == 2000 && name.starts_with(b"NVIDIA Corp") {
            let desc = notes.get(desc_at..desc_at.checked_add(descsz)?)?;
            return arch_after(desc, b"-arch ");
        }
        at = next;
    }
    None
}

/// The architecture token that follows `key` in `text` (`-arch sm_90a` → sm_90a).
fn arch_after(text: &[u8], key: &[u8]) -> Option<CudaArch> {
    let pos = text.windows(key.len()).position(|w| w == key)?;
    let rest = text.get(pos.checked_add(key.len())?..)?;
    let end = rest
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
        .unwrap_or(rest.len());
    std::str::from_utf8(rest.get(..end)?).ok()?.parse().ok()
}

/// The `.target` of PTX text, as the architecture it was written for (`sm_90a` → 90a).
pub fn ptx_target(text: &str) -> Option<CudaArch> {
    ptx_directive(text, ".target")
        .and_then(|v| v.split(',').next())
        .and_then(|t| t.trim().parse().ok())
}

/// The `.version` of PTX text (`9.4`).
pub fn ptx_version(text: &str) -> Option<String> {
    ptx_directive(text, ".version").map(|v| v.trim().to_string())
}

fn ptx_directive<'a>(text: &'a str, directive: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let line = line.split("//").next().unwrap_or("").trim();
        let rest = line.strip_prefix(directive)?;
        rest.starts_with(char::is_whitespace).then_some(rest)
    })
}

/// The target ID of an AMD GPU code object: `gfx90a`, `gfx90a:xnack+`, `gfx942:sramecc-`.
pub fn amdgpu_target(data: &[u8]) -> Option<String> {
    if !data.starts_with(b"\x7fELF") || le_u16(data, 0x12)? != EM_AMDGPU {
        return None;
    }
    let abi = *data.get(8)?;
    let flags = le_u32(data, 0x30)?;
    let mut t = amdgpu_processor(flags & 0xff)?.to_string();
    if abi <= 1 {
        // Code object v3: bits mean "on"; clear means off or unsupported.
        if flags & 0x200 != 0 {
            t.push_str(":sramecc+");
        }
        if flags & 0x100 != 0 {
            t.push_str(":xnack+");
        }
    } else {
        match flags & 0xc00 {
            0x800 => t.push_str(":sramecc-"),
            0xc00 => t.push_str(":sramecc+"),
            _ => {}
        }
        match flags & 0x300 {
            0x200 => t.push_str(":xnack-"),
            0x300 => t.push_str(":xnack+"),
            _ => {}
        }
    }
    Some(t)
}

/// The processor named by an `EF_AMDGPU_MACH` value.
pub fn amdgpu_processor(mach: u32) -> Option<&'static str> {
    Some(match mach {
        0x20 => "gfx600",
        0x21 => "gfx601",
        0x22 => "gfx700",
        0x23 => "gfx701",
        0x24 => "gfx702",
        0x25 => "gfx703",
        0x26 => "gfx704",
        0x28 => "gfx801",
        0x29 => "gfx802",
        0x2a => "gfx803",
        0x2b => "gfx810",
        0x2c => "gfx900",
        0x2d => "gfx902",
        0x2e => "gfx904",
        0x2f => "gfx906",
        0x30 => "gfx908",
        0x31 => "gfx909",
        0x32 => "gfx90c",
        0x33 => "gfx1010",
        0x34 => "gfx1011",
        0x35 => "gfx1012",
        0x36 => "gfx1030",
        0x37 => "gfx1031",
        0x38 => "gfx1032",
        0x39 => "gfx1033",
        0x3a => "gfx602",
        0x3b => "gfx705",
        0x3c => "gfx805",
        0x3d => "gfx1035",
        0x3e => "gfx1034",
        0x3f => "gfx90a",
        0x40 => "gfx940",
        0x41 => "gfx1100",
        0x42 => "gfx1013",
        0x43 => "gfx1150",
        0x44 => "gfx1103",
        0x45 => "gfx1036",
        0x46 => "gfx1101",
        0x47 => "gfx1102",
        0x48 => "gfx1200",
        0x49 => "gfx1250",
        0x4a => "gfx1151",
        0x4b => "gfx941",
        0x4c => "gfx942",
        0x4e => "gfx1201",
        0x4f => "gfx950",
        0x51 => "gfx9-generic",
        0x52 => "gfx10-1-generic",
        0x53 => "gfx10-3-generic",
        0x54 => "gfx11-generic",
        0x55 => "gfx1152",
        0x58 => "gfx1153",
        0x59 => "gfx12-generic",
        0x5f => "gfx9-4-generic",
        _ => return None,
    })
}

/// An architecture named in a file name: `kernel.sm_90a.cubin` → `sm_90a`,
/// `k.compute_90.ptx` → `compute_90`, `Kernels.so-000-gfx942.hsaco` → `gfx942`.
pub fn arch_from_name(name: &str) -> Option<String> {
    let base = name.rsplit('/').next().unwrap_or(name);
    let bytes = base.as_bytes();
    for (i, _) in base.char_indices() {
        let boundary = i == 0
            || bytes
                .get(i.saturating_sub(1))
                .is_some_and(|b| !b.is_ascii_alphanumeric());
        if !boundary {
            continue;
        }
        let rest = base.get(i..).unwrap_or("");
        for prefix in ["sm_", "compute_"] {
            if let Some(tail) = rest.strip_prefix(prefix) {
                let n = tail.bytes().take_while(u8::is_ascii_digit).count();
                let mut end = n;
                if matches!(tail.as_bytes().get(n), Some(b'a' | b'f')) {
                    end = n.saturating_add(1);
                }
                let token = tail.get(..end).unwrap_or("");
                let after = tail.as_bytes().get(end);
                if n > 0 && after.is_none_or(|b| !b.is_ascii_alphanumeric()) {
                    let full = format!("{prefix}{token}");
                    if full.parse::<CudaArch>().is_ok() {
                        return Some(full);
                    }
                }
            }
        }
        if let Some(tail) = rest.strip_prefix("gfx") {
            let n = tail
                .bytes()
                .take_while(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
                .count();
            if n > 0 && tail.as_bytes().first().is_some_and(u8::is_ascii_digit) {
                return Some(format!("gfx{}", tail.get(..n).unwrap_or("")));
            }
        }
    }
    None
}

/// What to do with a device file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LooseAction {
    Keep,
    Drop,
    /// A fatbin or bundle: rebuild it with the selection ([`cuda::rebuild_container_with`],
    /// [`hip::rebuild_bundle`]).
    Trim,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LooseDecision {
    pub action: LooseAction,
    pub reason: String,
}

/// The group a loose device file belongs to, or `None` for fatbins and offload bundles (each
/// is a container of its own, trimmed entry by entry).
///
/// Files in one folder whose names differ only in the architecture they name hold the same
/// kernels built for several GPUs, the way a container's entries do: `k.sm_80.cubin`,
/// `k.sm_90a.cubin` and `k.compute_90.ptx`, or `fmhaSm100aKernel_X.cubin` and
/// `fmhaSm100fKernel_X.cubin`. The key is the folder and the name without its extension,
/// with each architecture token (`sm_90a`, `sm90`, `Sm100f`, `compute_90`, `gfx942`) written
/// as `*`, prefixed by the vendor. A file whose name names no architecture is a group of its
/// own (together with a same-named file of another extension: `k.cubin` and `k.ptx`).
pub fn group_key(name: &str, kind: LooseKind) -> Option<String> {
    let vendor = match kind {
        LooseKind::Cubin | LooseKind::Ptx => "cuda",
        LooseKind::AmdCodeObject => "amd",
        LooseKind::Fatbin | LooseKind::OffloadBundle => return None,
    };
    let (dir, base) = match name.rsplit_once('/') {
        Some((d, b)) => (d, b),
        None => ("", name),
    };
    let stem = match base.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => base,
    };
    Some(format!("{vendor}:{dir}/{}", mask_arch_tokens(stem)))
}

/// `stem` with every architecture token replaced by `*` (see [`group_key`]).
fn mask_arch_tokens(stem: &str) -> String {
    let b = stem.as_bytes();
    let mut out = String::with_capacity(stem.len());
    let mut i = 0usize;
    while i < b.len() {
        let boundary = match i.checked_sub(1).and_then(|p| b.get(p)) {
            None => true,
            Some(prev) => {
                !prev.is_ascii_alphanumeric()
                    || (b.get(i).is_some_and(u8::is_ascii_uppercase)
                        && (prev.is_ascii_lowercase() || prev.is_ascii_digit()))
            }
        };
        if boundary && let Some(len) = arch_token_len(b.get(i..).unwrap_or(&[])) {
            out.push('*');
            i = i.saturating_add(len);
            continue;
        }
        if let Some(c) = stem.get(i..).and_then(|r| r.chars().next()) {
            out.push(c);
            i = i.saturating_add(c.len_utf8());
        } else {
            i = i.saturating_add(1);
        }
    }
    out
}

/// The length of the architecture token at the start of `s`, if there is one: `sm_90a`,
/// `sm90`, `Sm100f`, `compute_90`, `gfx90a`, `gfx1100`. The token must end where a word ends:
/// at the end, before a non-alphanumeric byte, or before an upper-case letter.
fn arch_token_len(s: &[u8]) -> Option<usize> {
    let lower = |n: usize| s.get(n).map(u8::to_ascii_lowercase);
    let starts = |word: &[u8]| word.iter().enumerate().all(|(n, c)| lower(n) == Some(*c));
    let ends_at = |n: usize| {
        s.get(n)
            .is_none_or(|c| !c.is_ascii_alphanumeric() || c.is_ascii_uppercase())
    };
    if starts(b"gfx") {
        let mut n = 3usize;
        if !s.get(n).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        while s
            .get(n)
            .is_some_and(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
        {
            n = n.saturating_add(1);
        }
        return ends_at(n).then_some(n);
    }
    let mut n = if starts(b"compute") {
        7usize
    } else if starts(b"sm") {
        2usize
    } else {
        return None;
    };
    if s.get(n) == Some(&b'_') {
        n = n.saturating_add(1);
    }
    let digits = s
        .get(n..)
        .unwrap_or(&[])
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    if !(2..=4).contains(&digits) {
        return None;
    }
    n = n.saturating_add(digits);
    if matches!(s.get(n), Some(b'a' | b'f')) && ends_at(n.saturating_add(1)) {
        n = n.saturating_add(1);
    }
    ends_at(n).then_some(n)
}

/// The decision on a group of loose files (see [`group_key`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupDecision {
    /// One per file, in the order given.
    pub files: Vec<LooseDecision>,
    /// Nothing in the group served any target; `--unmatched` decided.
    pub unmatched: bool,
    /// Targets that could run a file of the group before and none after.
    pub targets_lost: Vec<String>,
    /// The plain PTX of the group when none of it stays (GPUs newer than every target lose
    /// their last image).
    pub newer_gpus_lost: Vec<String>,
}

/// Keep or drop each file of a group of cubins and PTX files, or of AMD code objects, exactly
/// as the entries of one container are judged ([`Selection::choose_images`],
/// [`GfxSelection::choose_targets`]): per target the best SASS, PTX per `--ptx`, and a group
/// in which nothing runs on any target is kept whole with `--unmatched keep` (the default)
/// or dropped with `--unmatched drop`. A file whose architecture cannot be told is kept.
/// `cuda`/`gfx` are the selections in force (`None`: that vendor's files are not trimmed).
pub fn decide_group(
    infos: &[&LooseInfo],
    cuda: Option<&Selection>,
    gfx: Option<&GfxSelection>,
) -> GroupDecision {
    let keep_all = |why: &str| GroupDecision {
        files: infos
            .iter()
            .map(|_| LooseDecision {
                action: LooseAction::Keep,
                reason: why.to_string(),
            })
            .collect(),
        unmatched: false,
        targets_lost: Vec::new(),
        newer_gpus_lost: Vec::new(),
    };
    let amd = infos.iter().any(|i| i.kind == LooseKind::AmdCodeObject);
    if amd {
        let Some(sel) = gfx.filter(|s| !s.targets.is_empty()) else {
            return keep_all("no gfx targets given");
        };
        let targets: Vec<Option<&str>> = infos
            .iter()
            .map(|i| i.archs.first().map(String::as_str))
            .collect();
        let choice = sel.choose_targets(&targets);
        let files = infos
            .iter()
            .zip(choice.keep.iter().zip(&choice.reasons))
            .map(|(i, (keep, reason))| {
                let name = i.archs.first().map_or("target unknown", String::as_str);
                LooseDecision {
                    action: if *keep {
                        LooseAction::Keep
                    } else {
                        LooseAction::Drop
                    },
                    reason: gfx_reason_text(name, reason),
                }
            })
            .collect();
        return GroupDecision {
            files,
            unmatched: choice.unmatched,
            targets_lost: Vec::new(),
            newer_gpus_lost: Vec::new(),
        };
    }
    let Some(sel) = cuda.filter(|s| !s.targets.is_empty()) else {
        return keep_all("no CUDA targets given");
    };
    let images: Vec<Option<(EntryKind, CudaArch)>> = infos
        .iter()
        .map(|i| {
            let arch = i.archs.first()?.parse::<CudaArch>().ok()?;
            match i.kind {
                LooseKind::Cubin => Some((EntryKind::Elf, arch)),
                LooseKind::Ptx => Some((EntryKind::Ptx, arch)),
                _ => None,
            }
        })
        .collect();
    let choice = sel.choose_images(&images);
    let files = infos
        .iter()
        .zip(&choice.entries)
        .map(|(i, e)| {
            let name = i
                .archs
                .first()
                .map_or("architecture unknown", String::as_str);
            LooseDecision {
                action: if e.keep {
                    LooseAction::Keep
                } else {
                    LooseAction::Drop
                },
                reason: cuda_reason_text(name, e.reason),
            }
        })
        .collect();
    GroupDecision {
        files,
        unmatched: choice.unmatched,
        targets_lost: choice
            .targets_lost
            .iter()
            .map(ToString::to_string)
            .collect(),
        newer_gpus_lost: choice.newer_gpus_lost,
    }
}

fn cuda_reason_text(name: &str, reason: Reason) -> String {
    match reason {
        Reason::Sass { target } => format!("{name} runs on {target}"),
        Reason::PtxNewest => format!("{name}: the newest PTX the highest target can JIT"),
        Reason::PtxFallback { target } => {
            format!("{name}: the PTX {target} can JIT (no SASS for it in its group)")
        }
        Reason::PtxAll => format!("{name}: PTX a target can JIT (--ptx all)"),
        Reason::PtxNewerGpus => {
            format!(
                "{name}: the oldest PTX of its group, kept so GPUs newer than the targets can JIT"
            )
        }
        Reason::UnknownKind => "architecture unknown".to_string(),
        Reason::Unmatched => format!(
            "{name}: nothing in its group runs on the targets, so it is kept (--unmatched drop drops it)"
        ),
        Reason::UnmatchedDropped => {
            format!("{name}: nothing in its group runs on the targets (--unmatched drop)")
        }
        Reason::NoTargets => "no CUDA targets given".to_string(),
        Reason::Incompatible => format!("{name} runs on none of the targets"),
        Reason::Superseded => {
            format!("{name}: a newer image of its group runs on the same targets")
        }
        Reason::PtxNotNeeded => format!("{name}: PTX not needed under --ptx"),
        Reason::PtxUnusable => format!("{name}: PTX no target can JIT"),
        Reason::Members => name.to_string(),
    }
}

fn gfx_reason_text(name: &str, reason: &GfxReason) -> String {
    match reason {
        GfxReason::Requested { target } => format!("{name} serves {target}"),
        GfxReason::GenericFamily { target } => {
            format!("{name}: generic code for the family of {target}")
        }
        GfxReason::Unmatched => format!(
            "{name}: nothing in its group serves the targets, so it is kept (--unmatched drop drops it)"
        ),
        GfxReason::NotRequested => format!("{name}: serves none of the targets"),
        GfxReason::UnknownGeneric => format!("{name}: generic code of an unknown family, kept"),
        GfxReason::Unrecognised => "target unknown".to_string(),
        GfxReason::NoTargets => "no gfx targets given".to_string(),
        GfxReason::Host => "host code".to_string(),
    }
}

/// Keep, drop or trim one device file on its own.
///
/// * fatbins and bundles are trimmed entry by entry;
/// * a cubin, PTX file or code object is judged as a group of one ([`decide_group`]): one
///   that serves no target matched nothing and follows `--unmatched`. Trimming a wheel judges
///   each file with the others of its group instead ([`group_key`]).
pub fn decide(
    info: &LooseInfo,
    cuda: Option<&Selection>,
    gfx: Option<&GfxSelection>,
) -> LooseDecision {
    let d = |action, reason: String| LooseDecision { action, reason };
    match info.kind {
        LooseKind::Fatbin => match cuda {
            Some(s) if !s.targets.is_empty() => d(
                LooseAction::Trim,
                "fatbin: trimmed entry by entry".to_string(),
            ),
            _ => d(LooseAction::Keep, "no CUDA targets given".to_string()),
        },
        LooseKind::OffloadBundle => match gfx {
            Some(s) if !s.targets.is_empty() => d(
                LooseAction::Trim,
                "bundle: trimmed entry by entry".to_string(),
            ),
            _ => d(LooseAction::Keep, "no gfx targets given".to_string()),
        },
        LooseKind::Cubin | LooseKind::Ptx | LooseKind::AmdCodeObject => {
            decide_group(&[info], cuda, gfx)
                .files
                .into_iter()
                .next()
                .unwrap_or(LooseDecision {
                    action: LooseAction::Keep,
                    reason: "architecture unknown".to_string(),
                })
        }
    }
}

#[cfg(test)]
mod tests;
