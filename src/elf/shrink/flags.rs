//! The permissions of the pieces a cut splits a PT_LOAD into.
//!
//! A cut turns one PT_LOAD into a head and a tail (more with several holes). Copying the
//! parent's `p_flags` to every piece is always safe for loading, but it can leave a piece
//! marked executable (or writable) although nothing it holds is code (or written): the
//! typical case is a library linked without `-z separate-code`, whose single `R E` segment
//! holds `.text`, `.rodata`, `.nv_fatbin` and `.eh_frame`; the tail after the hole then holds
//! only the rest of the fatbin and the unwind tables. This module decides which of those
//! bits a piece may lose. Only pieces of a split PT_LOAD are touched, and only by clearing
//! bits; every other program header keeps the input's flags exactly.
//!
//! What each consumer needs:
//!
//! * **eu-elflint** gives each allocated, non-TLS section with file bytes to the first
//!   PT_LOAD whose file range holds the section's start, ORs up the `SHF_EXECINSTR` and
//!   `SHF_WRITE` of those sections, and complains about a PT_LOAD with `PF_X` (`PF_W`) that
//!   got none ("executable but contains no executable sections"). It also wants a section
//!   with `SHF_EXECINSTR` only in a `PF_X` segment, and the PT_LOAD holding PT_GNU_RELRO to be
//!   writable with flags that include RELRO's.
//! * **glibc** (`_dl_map_segments`) maps each PT_LOAD with the protection of its own flags;
//!   the hole is whole granules of the largest `p_align`, so the head's last page and the
//!   tail's first page are distinct and one piece's flags never reach the other's bytes.
//!   `PF_X` is otherwise only bookkeeping (`l_text_end`, the end of the last executable
//!   piece, which an object linked with `-z separate-code` has short of the end anyway).
//!   `PF_W` matters more: relocations are applied in place (with `DT_TEXTREL` glibc lifts
//!   the protection of non-writable segments for the time of relocation), PT_GNU_RELRO is
//!   made read-only after relocation, and the zero-filled tail of `.bss` is cleared through
//!   the mapping of the last file page.
//! * **The kernel** (for a program it loads itself) also maps by each PT_LOAD's flags; it
//!   reads `PF_X` only to fill in `start_code`/`end_code`.
//! * **Unwinders and `dl_iterate_phdr` users** find an object by the address ranges of its
//!   PT_LOADs, whatever their flags.
//!
//! The rules, using the extents every allocated section has in the output (a packed device
//! section ends before the hole, so what it used to cover in the tail is dead zero bytes):
//!
//! * `PF_X` is dropped from a piece when no `SHF_EXECINSTR` section overlaps it, provided
//!   the parent PT_LOAD held at least one such section (so the section headers do describe
//!   the code of that segment; otherwise nothing is known and the flag stays).
//! * `PF_W` is dropped only when, besides no `SHF_WRITE` section (NOBITS and TLS included)
//!   overlapping it and the parent holding one, nothing can write to the piece: no
//!   relocation applies inside it, it has no zero-filled part (`p_memsz == p_filesz`), and
//!   no PT_GNU_RELRO, PT_DYNAMIC or PT_TLS overlaps it.
//! * `PF_R` is never dropped; PT_GNU_STACK, PT_GNU_RELRO and the other headers are not
//!   changed, and RELRO keeps a writable holder because the piece holding it keeps `PF_W`.

use super::layout::{Layout, Segment, overlaps};

use super::pack::Packing;
use crate::elf::consts::PT_DYNAMIC;
use crate::elf::consts::{PF_W, PF_X, PT_GNU_RELRO, PT_TLS, SHF_EXECINSTR, SHF_WRITE};

/// Where an allocated section lies in memory, and its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Extent {
    pub addr: u64,
    pub size: u64,
    pub flags: u64,
}

impl Extent {
    /// Overlaps `[start, end)`; an empty section counts when it sits inside or at either edge.
    fn meets(&self, start: u64, end: u64) -> bool {
        if self.size == 0 {
            start <= self.addr && self.addr <= end
        } else {
            overlaps(self.addr, self.size, start, end - start)
        }
    }
}

/// The allocated sections of `l` (NOBITS and TLS ones included), with the device sections
/// of `p` placed where the packing puts them, when `p` is given.
pub(crate) fn extents(l: &Layout, p: Option<&Packing>) -> Vec<Extent> {
    l.sections
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(_, s)| s.is_alloc())
        .map(|(j, s)| {
            let placed = p.and_then(|p| {
                p.devs
                    .iter()
                    .position(|d| d.shndx == j)
                    .map(|di| p.new_sections[di])
            });
            let (addr, size) = placed.unwrap_or((s.addr, s.size));
            Extent {
                addr,
                size,
                flags: s.flags,
            }
        })
        .collect()
}

/// What may write to memory or run code, besides the sections: the non-PT_LOAD program
/// headers and the places relocations write to.
pub(crate) struct Writers<'a> {
    pub others: &'a [Segment],
    pub reloc_places: &'a [u64],
}

/// The flags a piece of the split PT_LOAD `parent` should carry (see the module text).
pub(crate) fn piece_flags(parent: &Segment, piece: &Segment, secs: &[Extent], w: &Writers) -> u32 {
    let (ps, pe) = (parent.vaddr, parent.mem_end());
    let (start, end) = (piece.vaddr, piece.mem_end());
    let in_parent = |bit: u64| secs.iter().any(|s| s.flags & bit != 0 && s.meets(ps, pe));
    let in_piece = |bit: u64| {
        secs.iter()
            .any(|s| s.flags & bit != 0 && s.meets(start, end))
    };
    let mut flags = parent.flags;
    if flags & PF_X != 0 && in_parent(SHF_EXECINSTR) && !in_piece(SHF_EXECINSTR) {
        flags &= !PF_X;
    }
    let written = || {
        in_piece(SHF_WRITE)
            || piece.memsz != piece.filesz
            || w.reloc_places
                .iter()
                .any(|&r| overlaps(r, 8, start, end - start))
            || w.others.iter().any(|o| {
                matches!(o.p_type, PT_GNU_RELRO | PT_DYNAMIC | PT_TLS)
                    && (overlaps(o.vaddr, o.memsz, start, end - start)
                        || (o.memsz == 0 && start <= o.vaddr && o.vaddr < end))
            })
    };
    if flags & PF_W != 0 && in_parent(SHF_WRITE) && !written() {
        flags &= !PF_W;
    }
    flags
}

/// The bits [`piece_flags`] may have cleared in `piece`, checked independently against the
/// output's own sections: an error names what still needs the bit.
pub(crate) fn check_dropped(
    parent: &Segment,
    piece: &Segment,
    out_secs: &[Extent],
    w: &Writers,
) -> Result<(), String> {
    let dropped = parent.flags & !piece.flags;
    if piece.flags & !parent.flags != 0 || dropped & !(PF_X | PF_W) != 0 {
        return Err(format!(
            "the PT_LOAD at {:#x} has flags {:#x}, not a subset of its parent's {:#x} less X/W",
            piece.vaddr, piece.flags, parent.flags
        ));
    }
    let (start, end) = (piece.vaddr, piece.mem_end());
    let holding = |bit: u64| {
        out_secs
            .iter()
            .find(|s| s.flags & bit != 0 && s.meets(start, end))
    };
    if dropped & PF_X != 0
        && let Some(s) = holding(SHF_EXECINSTR)
    {
        return Err(format!(
            "the PT_LOAD at {start:#x} lost PF_X but holds code at {:#x}",
            s.addr
        ));
    }
    if dropped & PF_W != 0 {
        if let Some(s) = holding(SHF_WRITE) {
            return Err(format!(
                "the PT_LOAD at {start:#x} lost PF_W but holds writable data at {:#x}",
                s.addr
            ));
        }
        if piece.memsz != piece.filesz {
            return Err(format!(
                "the PT_LOAD at {start:#x} lost PF_W but zero-fills memory"
            ));
        }
        if let Some(r) = w.reloc_places.iter().find(|&&r| r < end && start < r + 8) {
            return Err(format!(
                "the PT_LOAD at {start:#x} lost PF_W but a relocation writes at {r:#x}"
            ));
        }
        if let Some(o) = w.others.iter().find(|o| {
            matches!(o.p_type, PT_GNU_RELRO | PT_DYNAMIC | PT_TLS)
                && o.vaddr < end
                && start < o.vaddr.saturating_add(o.memsz.max(1))
        }) {
            return Err(format!(
                "the PT_LOAD at {start:#x} lost PF_W but program header type {:#x} lies in it",
                o.p_type
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::consts::PT_LOAD;

    fn seg(p_type: u32, flags: u32, vaddr: u64, filesz: u64, memsz: u64) -> Segment {
        Segment {
            p_type,
            flags,
            offset: vaddr,
            vaddr,
            paddr: vaddr,
            filesz,
            memsz,
            align: 0x1000,
        }
    }

    fn ext(addr: u64, size: u64, flags: u64) -> Extent {
        Extent {
            addr,
            size,
            flags: flags | 2,
        }
    }

    const NONE: Writers<'static> = Writers {
        others: &[],
        reloc_places: &[],
    };

    #[test]
    fn a_tail_of_data_after_the_code_is_not_executable() {
        // R E parent [0, 0x10000): .text at 0x1000, a fatbin packed into 0x3000..0x3800, the
        // hole 0x4000..0xc000, .eh_frame at 0xc800.
        let parent = seg(PT_LOAD, 5, 0, 0x10000, 0x10000);
        let secs = [
            ext(0x1000, 0x2000, SHF_EXECINSTR),
            ext(0x3000, 0x800, 0),
            ext(0xc800, 0x400, 0),
        ];
        let head = seg(PT_LOAD, 5, 0, 0x4000, 0x4000);
        let tail = seg(PT_LOAD, 5, 0xc000, 0x4000, 0x4000);
        assert_eq!(piece_flags(&parent, &head, &secs, &NONE), 5);
        assert_eq!(piece_flags(&parent, &tail, &secs, &NONE), 4);
        let cut_tail = seg(PT_LOAD, 4, 0xc000, 0x4000, 0x4000);
        assert!(check_dropped(&parent, &cut_tail, &secs, &NONE).is_ok());
        // Code in the tail keeps the bit, and the check refuses a tail that lost it.
        let secs2 = [ext(0x1000, 0x2000, 0), ext(0xd000, 0x100, SHF_EXECINSTR)];
        assert_eq!(piece_flags(&parent, &tail, &secs2, &NONE), 5);
        assert_eq!(piece_flags(&parent, &head, &secs2, &NONE), 4);
        assert!(check_dropped(&parent, &cut_tail, &secs2, &NONE).is_err());
        // Sections that describe no code at all: nothing is known, the bit stays.
        let blind = [ext(0x3000, 0x800, 0)];
        assert_eq!(piece_flags(&parent, &tail, &blind, &NONE), 5);
    }

    #[test]
    fn writable_stays_while_anything_may_write() {
        let parent = seg(PT_LOAD, 6, 0, 0x10000, 0x10000);
        let secs = [ext(0x1000, 0x100, SHF_WRITE), ext(0xc800, 0x400, 0)];
        let tail = seg(PT_LOAD, 6, 0xc000, 0x4000, 0x4000);
        assert_eq!(piece_flags(&parent, &tail, &secs, &NONE), 4);
        let relocs = [0xc900];
        let by_reloc = Writers {
            others: &[],
            reloc_places: &relocs,
        };
        assert_eq!(piece_flags(&parent, &tail, &secs, &by_reloc), 6);
        let relro = [seg(PT_GNU_RELRO, 4, 0xc000, 0x1000, 0x1000)];
        let by_relro = Writers {
            others: &relro,
            reloc_places: &[],
        };
        assert_eq!(piece_flags(&parent, &tail, &secs, &by_relro), 6);
        let bss = seg(PT_LOAD, 6, 0xc000, 0x3000, 0x4000);
        assert_eq!(piece_flags(&parent, &bss, &secs, &NONE), 6);
        let cut = seg(PT_LOAD, 4, 0xc000, 0x4000, 0x4000);
        assert!(check_dropped(&parent, &cut, &secs, &NONE).is_ok());
        assert!(check_dropped(&parent, &cut, &secs, &by_reloc).is_err());
        assert!(check_dropped(&parent, &cut, &secs, &by_relro).is_err());
        // Never a bit the parent lacked, never PF_R.
        let grown = seg(PT_LOAD, 7, 0xc000, 0x4000, 0x4000);
        assert!(check_dropped(&parent, &grown, &secs, &NONE).is_err());
        let unreadable = seg(PT_LOAD, 2, 0xc000, 0x4000, 0x4000);
        assert!(check_dropped(&parent, &unreadable, &secs, &NONE).is_err());
    }
}
