//! Making a host ELF object really smaller after its device code was trimmed.
//!
//! The caller rebuilds each container (CUDA fatbin container, HIP offload bundle) of a device
//! section with fewer entries and hands the new bytes in. [`shrink`] then either
//!
//! * **cuts**: packs the containers from the section start, re-points every reference to them,
//!   and removes the freed whole granules from the file by splitting the PT_LOAD that holds
//!   them, so that no virtual address of anything else changes (`docs/elf.md`, "Shrinking"); each
//!   piece of the split PT_LOAD keeps only the permissions what it holds needs
//!   (`flags`); or
//! * **zeroes in place**: writes each container at its old offset and zeroes its tail. The
//!   layout is untouched and the file keeps its size, but the wheel shrinks after deflate.
//!
//! It cuts only when every reference into the sections is accounted for; otherwise it zeroes
//! and says why. Both outputs are checked against the input before they are returned, and,
//! when the input passes the layout invariants of [`super::check`] (the checker every patcher
//! output passes), the output must pass them too: a cut that breaks one falls back to zeroing.

mod cut;
mod flags;
mod holes;
mod layout;
mod pack;
mod phdrs;
mod refs;
mod tables;
mod verify;

use super::ElfError;
use cut::CutPlan;
use layout::Layout;
use pack::{DevSection, Packing};
use refs::RefEdits;
use verify::CutExpect;

/// One container (or bundle) of a device-code section, as rebuilt by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Offset of the container from the section start.
    pub old_offset: u64,
    /// Its length in the input.
    pub old_len: u64,
    /// Its new bytes; at most `old_len` long. Empty drops the container.
    pub new_bytes: Vec<u8>,
    /// Alignment of the container's address: 8 for CUDA, 4096 for HIP.
    pub align: u64,
}

/// The rebuilt containers of one section. Bytes of the section that no block covers must be
/// zero padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionEdit {
    /// `.nv_fatbin`, `__nv_relfatbin`, `.hip_fatbin`.
    pub name: String,
    pub blocks: Vec<Block>,
}

/// How the file was shrunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShrinkMethod {
    /// Containers packed and whole granules removed from the file.
    Cut {
        /// How much shorter the file is.
        file_bytes_removed: u64,
        /// How many PT_LOADs were split (one per hole).
        segments_split: usize,
    },
    /// Containers rewritten in place, tails zeroed; same size and layout.
    Zeroed {
        /// Why the file was not cut.
        reason: String,
    },
}

/// The rewritten file and what was done to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShrinkOutcome {
    pub data: Vec<u8>,
    pub method: ShrinkMethod,
    /// What a report should say: sizes, holes, where the program header table went, caveats.
    pub notes: Vec<String>,
}

/// Why the cut was not made: a reason to fall back to zeroing, or an input that cannot be
/// handled by either method.
#[derive(Debug)]
pub(crate) enum Refuse {
    Cut(String),
    Fatal(ElfError),
}

impl From<ElfError> for Refuse {
    fn from(e: ElfError) -> Refuse {
        Refuse::Fatal(e)
    }
}

/// Rewrites `input` so that each edited section holds the new container bytes.
///
/// With `allow_cut`, the file is cut when that is provably safe and zeroed in place (with the
/// reason in [`ShrinkMethod::Zeroed`]) otherwise; without it, it is always zeroed in place.
/// Errors are for inputs neither method can handle: not a 64-bit little-endian x86_64,
/// aarch64 or ppc64le ELF file, truncated or malformed headers, an edit naming a missing or
/// NOBITS section or one not inside one PT_LOAD, or blocks that overlap, grow or fall
/// outside their section.
pub fn shrink(
    input: &[u8],
    edits: &[SectionEdit],
    allow_cut: bool,
) -> Result<ShrinkOutcome, ElfError> {
    let l = Layout::parse(input)?;
    let relative = tables::relative_type(l.machine).ok_or_else(|| {
        ElfError::Unsupported(format!(
            "e_machine {} is not x86_64, aarch64 or ppc64le",
            l.machine
        ))
    })?;
    let devs = pack::resolve(&l, edits)?;
    // Inputs the checker refuses (layouts it does not model; it reads extended numbering since
    // the one reader) are held to the comparisons with the input alone, as before.
    let checked = super::check(input).is_ok();
    let outcome = if allow_cut {
        match cut(input, &l, relative, devs.clone(), edits, checked) {
            Ok(outcome) => outcome,
            Err(Refuse::Cut(reason)) => zero_in_place(input, &devs, edits, reason, Vec::new())?,
            Err(Refuse::Fatal(e)) => return Err(e),
        }
    } else {
        zero_in_place(
            input,
            &devs,
            edits,
            "cutting was not allowed".into(),
            Vec::new(),
        )?
    };
    if checked && matches!(outcome.method, ShrinkMethod::Zeroed { .. }) {
        super::check(&outcome.data).map_err(|e| ElfError::OutputCheck(e.to_string()))?;
    }
    Ok(outcome)
}

fn cut(
    input: &[u8],
    l: &Layout,
    relative: u32,
    devs: Vec<DevSection>,
    edits: &[SectionEdit],
    checked: bool,
) -> Result<ShrinkOutcome, Refuse> {
    let tables = refs::read_tables(input, l, relative)?;
    let packing = pack::pack(input, l, devs, edits)?;
    let refs = refs::analyse(input, l, &tables, &packing)?;
    let plan = cut::plan(input, l, &tables, &packing)?;
    let out = cut::assemble(input, l, &packing, edits, &refs, &plan)?;
    let expect = CutExpect {
        input,
        inl: l,
        plan: &plan,
        packing: &packing,
        edits,
        refs: &refs,
        tables: &tables,
    };
    verify::verify_cut(&out, &expect)
        .map_err(|m| Refuse::Cut(format!("the cut output failed its self-check: {m}")))?;
    // It must also read back as the input did: tables the layout checks do not model (a hash
    // table counting more symbols than `.dynsym` holds, reaching over the cut) may not.
    super::inspect::inspect(&out)
        .map_err(|e| Refuse::Cut(format!("the cut output does not read back: {e}")))?;
    if checked {
        super::check(&out)
            .map_err(|e| Refuse::Cut(format!("the cut output fails the layout check: {e}")))?;
    }
    let removed = (input.len() as u64).saturating_sub(out.len() as u64);
    let notes = cut_notes(l, &packing, &refs, &plan, removed);
    Ok(ShrinkOutcome {
        method: ShrinkMethod::Cut {
            file_bytes_removed: removed,
            segments_split: plan.holes.len(),
        },
        data: out,
        notes,
    })
}

fn cut_notes(
    l: &Layout,
    p: &Packing,
    refs: &RefEdits,
    plan: &CutPlan,
    removed: u64,
) -> Vec<String> {
    let mut notes = Vec::new();
    for (di, d) in p.devs.iter().enumerate() {
        let kept = p.placed.iter().filter(|pl| pl.dev == di).count();
        let (addr, size) = p.new_sections[di];
        let moved = if addr != d.addr {
            format!(", moved from {:#x} to {addr:#x}", d.addr)
        } else {
            String::new()
        };
        notes.push(format!(
            "`{}`: {:#x} → {size:#x} bytes, {kept} of {} containers packed from the section start{moved}",
            d.name,
            d.size,
            d.blocks.len()
        ));
    }
    for h in &plan.holes {
        notes.push(format!(
            "cut {:#x} bytes at file offset {:#x} (addresses {:#x}..{:#x} left unmapped) by splitting a PT_LOAD",
            h.len(),
            h.off_start,
            h.vstart,
            h.vend
        ));
    }
    for s in plan.segments.iter().filter(|s| s.is_load()) {
        let parent = l
            .segments
            .iter()
            .find(|g| g.is_load() && g.vaddr <= s.vaddr && s.mem_end() <= g.mem_end());
        if let Some(g) = parent.filter(|g| g.flags != s.flags) {
            notes.push(format!(
                "the piece at {:#x}..{:#x} of a split PT_LOAD holds no {}: mapped {} instead of {}",
                s.vaddr,
                s.mem_end(),
                dropped_what(g.flags & !s.flags),
                flag_letters(s.flags),
                flag_letters(g.flags)
            ));
        }
    }
    notes.push(format!("program header table: {}", plan.table.how));
    if plan.table.in_range.is_none() {
        notes.push(format!(
            "the file is {removed:#x} bytes shorter: {:#x} cut, less the table appended at the end",
            plan.map.removed()
        ));
    }
    notes.push(format!(
        "re-pointed {} reference(s) to moved containers",
        refs.retargeted
    ));
    notes.extend(refs.notes.iter().cloned());
    if l.sections.iter().any(|s| s.name == ".note.gnu.build-id") {
        notes
            .push("the build-id (and any .gnu_debuglink CRC) now describes the old content".into());
    }
    notes
}

/// `R W E`, as readelf prints segment flags.
fn flag_letters(f: u32) -> String {
    let mut s = String::new();
    for (bit, c) in [(4, 'R'), (2, 'W'), (1, 'E')] {
        s.push(if f & bit != 0 { c } else { ' ' });
    }
    s.trim_end().to_string()
}

fn dropped_what(bits: u32) -> &'static str {
    match bits {
        1 => "code",
        2 => "data that is written",
        _ => "code or data that is written",
    }
}

fn zero_in_place(
    input: &[u8],
    devs: &[DevSection],
    edits: &[SectionEdit],
    reason: String,
    mut notes: Vec<String>,
) -> Result<ShrinkOutcome, ElfError> {
    let mut out = input.to_vec();
    let mut ranges = Vec::new();
    for dev in devs {
        let e = &edits[dev.edit];
        let mut freed = 0u64;
        for &bi in &dev.blocks {
            let b = &e.blocks[bi];
            let off = dev.offset + b.old_offset;
            let n = b.new_bytes.len() as u64;
            layout::put_bytes(&mut out, off, &b.new_bytes)?;
            layout::zero_range(&mut out, off + n, b.old_len - n)?;
            freed += b.old_len - n;
            ranges.push((off, b.new_bytes.as_slice(), b.old_len));
        }
        notes.push(format!(
            "`{}`: {} containers rewritten in place, {freed:#x} bytes zeroed",
            dev.name,
            dev.blocks.len()
        ));
    }
    verify::verify_zeroed(input, &out, &ranges).map_err(ElfError::SelfCheck)?;
    Ok(ShrinkOutcome {
        data: out,
        method: ShrinkMethod::Zeroed { reason },
        notes,
    })
}
