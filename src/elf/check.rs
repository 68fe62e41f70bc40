//! Layout invariants of a loadable ELF object (shared library or executable), checked on every
//! output of [`super::patch`] and usable on inputs.
//!
//! What is checked:
//! - every segment and section lies inside the file;
//! - PT_LOADs are sorted by `p_vaddr`, do not overlap, have `p_filesz <= p_memsz`, a power-of-two
//!   `p_align`, and `p_offset ≡ p_vaddr (mod p_align)`;
//! - every SHF_ALLOC section lies in a PT_LOAD whose offset↔address mapping agrees with it;
//! - PT_PHDR (if any) describes the program header table and a PT_LOAD maps it; PT_DYNAMIC,
//!   PT_INTERP, PT_NOTE, PT_GNU_EH_FRAME, PT_GNU_PROPERTY and PT_TLS are mapped the same way;
//! - PT_DYNAMIC matches the `.dynamic` section header;
//! - the address-valued DT_* tags point inside a PT_LOAD, and the sized tables (DT_STRTAB +
//!   DT_STRSZ, DT_RELA + DT_RELASZ, ...) are file-backed inside one;
//! - DT_NEEDED/SONAME/RPATH/RUNPATH (and the other string tags), `vn_file`, `vna_name` and
//!   `vda_name` are NUL-terminated strings inside DT_STRSZ;
//! - every `.gnu.version_r` file name is one of the DT_NEEDED names (otherwise glibc's `ld.so`
//!   aborts with `_dl_check_map_versions: Assertion 'needed != NULL'`).

use super::ElfError;
use super::dynview::DynView;
use super::file::Elf64;
use super::raw::segment_name;
use crate::elf::consts::{
    ADDRESS_TAGS, ET_DYN, ET_EXEC, PHDR_SIZE, PT_DYNAMIC, PT_GNU_EH_FRAME, PT_GNU_PROPERTY,
    PT_INTERP, PT_LOAD, PT_NOTE, PT_PHDR, PT_TLS, SHF_TLS, SHT_DYNAMIC, SHT_NOBITS, SIZED_TABLES,
    STRING_TAGS,
};

/// How many problems a failed check lists before "and N more".
const MAX_LISTED: usize = 8;

#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, msg: String) {
        self.0.push(msg);
    }

    fn finish(self) -> Result<(), ElfError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let n = self.0.len();
        let mut listed: Vec<String> = self.0.into_iter().take(MAX_LISTED).collect();
        if n > MAX_LISTED {
            listed.push(format!("and {} more", n - MAX_LISTED));
        }
        Err(ElfError::Layout(listed.join("; ")))
    }
}

/// Checks the layout invariants listed in the module documentation. Returns
/// `ElfError::Layout` listing the violations, or the parse error when the file cannot even be
/// read; 32-bit, big-endian and non-loadable (relocatable, core) objects are `Unsupported`.
pub fn check(data: &[u8]) -> Result<(), ElfError> {
    let elf = Elf64::parse(data)?;
    if !matches!(elf.header.e_type, ET_DYN | ET_EXEC) {
        return Err(ElfError::Unsupported(format!(
            "e_type {} is not a shared object or executable: there is no load layout to check",
            elf.header.e_type
        )));
    }
    if is_debug_only(&elf) {
        return Err(ElfError::Unsupported(
            "a separate debug-info file (its loaded sections are NOBITS): there is no dynamic \
             section to read or rewrite"
                .into(),
        ));
    }
    let mut problems = Problems::default();
    check_segments(&elf, &mut problems);
    check_sections(&elf, &mut problems);
    match DynView::parse(&elf) {
        Ok(Some(view)) => check_dynamic(&elf, &view, &mut problems),
        Ok(None) => {}
        Err(e) => problems.push(format!("dynamic section: {e}")),
    }
    problems.finish()
}

/// `objcopy --only-keep-debug` output keeps the program headers but turns the loaded sections,
/// `.dynamic` included, into NOBITS.
fn is_debug_only(elf: &Elf64) -> bool {
    elf.shdrs.iter().any(|s| {
        s.sh_type == SHT_NOBITS && matches!(elf.section_name(s).as_str(), ".dynamic" | ".dynstr")
    })
}

fn is_pow2_or_zero(v: u64) -> bool {
    v == 0 || v.is_power_of_two()
}

/// True when a PT_LOAD maps `len` file bytes at `offset` to `vaddr`.
fn mapped_at(elf: &Elf64, offset: u64, vaddr: u64, len: u64) -> bool {
    elf.loads()
        .any(|p| p.file_offset_of(vaddr, len) == Some(offset))
}

fn check_segments(elf: &Elf64, problems: &mut Problems) {
    let len = elf.data.len() as u64;
    let mut prev_load: Option<(usize, u64, u64)> = None;
    let mut phdr_count = 0;
    for (i, p) in elf.phdrs.iter().enumerate() {
        let kind = segment_name(p.p_type);
        if p.p_filesz > 0 && p.file_end().is_none_or(|e| e > len) {
            problems.push(format!(
                "segment [{i}] {kind} at {:#x}+{:#x} ends past the file's {len:#x} bytes",
                p.p_offset, p.p_filesz
            ));
        }
        if p.p_type == PT_LOAD {
            if p.p_filesz > p.p_memsz {
                problems.push(format!(
                    "segment [{i}] LOAD has p_filesz {:#x} > p_memsz {:#x}",
                    p.p_filesz, p.p_memsz
                ));
            }
            if !is_pow2_or_zero(p.p_align) {
                problems.push(format!(
                    "segment [{i}] LOAD has p_align {:#x}, not a power of two",
                    p.p_align
                ));
            } else if p.p_align > 1 && p.p_offset % p.p_align != p.p_vaddr % p.p_align {
                problems.push(format!(
                    "segment [{i}] LOAD: p_offset {:#x} and p_vaddr {:#x} differ modulo p_align {:#x}",
                    p.p_offset, p.p_vaddr, p.p_align
                ));
            }
            let Some(end) = p.mem_end() else {
                problems.push(format!("segment [{i}] LOAD: p_vaddr + p_memsz overflows"));
                continue;
            };
            if let Some((j, pstart, pend)) = prev_load {
                if p.p_vaddr < pstart {
                    problems.push(format!(
                        "PT_LOADs are not sorted by address: [{i}] at {:#x} follows [{j}] at {pstart:#x}",
                        p.p_vaddr
                    ));
                } else if p.p_vaddr < pend {
                    problems.push(format!(
                        "PT_LOADs [{j}] (ends {pend:#x}) and [{i}] (starts {:#x}) overlap",
                        p.p_vaddr
                    ));
                }
            }
            prev_load = Some((i, p.p_vaddr, end));
        }
    }
    for (i, p) in elf.phdrs.iter().enumerate() {
        let kind = segment_name(p.p_type);
        match p.p_type {
            PT_PHDR => {
                phdr_count += 1;
                let table = elf.phdrs.len() as u64 * PHDR_SIZE;
                if p.p_offset != elf.header.e_phoff || p.p_filesz != table {
                    problems.push(format!(
                        "PT_PHDR ({:#x}+{:#x}) does not describe the program header table \
                         ({:#x}+{table:#x})",
                        p.p_offset, p.p_filesz, elf.header.e_phoff
                    ));
                }
                if !mapped_at(elf, p.p_offset, p.p_vaddr, p.p_filesz) {
                    problems.push(format!(
                        "PT_PHDR at {:#x} (offset {:#x}) is not mapped by a PT_LOAD",
                        p.p_vaddr, p.p_offset
                    ));
                }
            }
            PT_DYNAMIC | PT_INTERP | PT_NOTE | PT_GNU_EH_FRAME | PT_GNU_PROPERTY | PT_TLS
                if p.p_filesz > 0 && !mapped_at(elf, p.p_offset, p.p_vaddr, p.p_filesz) =>
            {
                problems.push(format!(
                    "segment [{i}] {kind} at {:#x} (offset {:#x}, {:#x} bytes) is not mapped \
                     by a PT_LOAD at the same offset",
                    p.p_vaddr, p.p_offset, p.p_filesz
                ));
            }
            _ => {}
        }
    }
    if phdr_count > 1 {
        problems.push(format!("{phdr_count} PT_PHDR segments"));
    }
}

fn check_sections(elf: &Elf64, problems: &mut Problems) {
    let len = elf.data.len() as u64;
    let dynamic = elf.dynamic_segment().ok().flatten().map(|(_, p)| p);
    for (i, s) in elf.shdrs.iter().enumerate().skip(1) {
        if s.sh_size == 0 {
            continue;
        }
        let name = || elf.section_name(s);
        if s.in_file() && s.sh_offset.checked_add(s.sh_size).is_none_or(|e| e > len) {
            problems.push(format!(
                "section [{i}] `{}` at {:#x}+{:#x} ends past the file's {len:#x} bytes",
                name(),
                s.sh_offset,
                s.sh_size
            ));
            continue;
        }
        if s.is_alloc() && !(s.sh_type == SHT_NOBITS && s.sh_flags & SHF_TLS != 0) {
            let ok = if s.in_file() {
                mapped_at(elf, s.sh_offset, s.sh_addr, s.sh_size)
            } else {
                elf.loads().any(|p| p.contains_vaddr(s.sh_addr, s.sh_size))
            };
            if !ok {
                problems.push(format!(
                    "section [{i}] `{}` (address {:#x}, offset {:#x}, {:#x} bytes) is not mapped \
                     by a PT_LOAD at the same offset",
                    name(),
                    s.sh_addr,
                    s.sh_offset,
                    s.sh_size
                ));
            }
        }
        if s.sh_type == SHT_DYNAMIC {
            match dynamic {
                Some(d)
                    if d.p_offset == s.sh_offset
                        && d.p_vaddr == s.sh_addr
                        && d.p_filesz == s.sh_size => {}
                Some(d) => problems.push(format!(
                    "PT_DYNAMIC ({:#x}, offset {:#x}, {:#x} bytes) does not match section `{}` \
                     ({:#x}, offset {:#x}, {:#x} bytes)",
                    d.p_vaddr,
                    d.p_offset,
                    d.p_filesz,
                    name(),
                    s.sh_addr,
                    s.sh_offset,
                    s.sh_size
                )),
                None => problems.push(format!(
                    "section `{}` has type SHT_DYNAMIC but there is no PT_DYNAMIC",
                    name()
                )),
            }
        }
    }
}

fn tag_name(tag: u64) -> String {
    match tag {
        crate::elf::consts::DT_NEEDED => "DT_NEEDED".into(),
        crate::elf::consts::DT_SONAME => "DT_SONAME".into(),
        crate::elf::consts::DT_RPATH => "DT_RPATH".into(),
        crate::elf::consts::DT_RUNPATH => "DT_RUNPATH".into(),
        t => ADDRESS_TAGS
            .iter()
            .find(|(x, _)| *x == t)
            .map_or_else(|| format!("tag {t:#x}"), |(_, n)| (*n).to_string()),
    }
}

fn check_dynamic(elf: &Elf64, view: &DynView, problems: &mut Problems) {
    let entries = &view.dynamic.entries;
    for e in entries {
        if e.val != 0
            && ADDRESS_TAGS.iter().any(|(t, _)| *t == e.tag)
            && !elf.loads().any(|p| p.contains_vaddr(e.val, 0))
        {
            problems.push(format!(
                "{} {:#x} points outside every PT_LOAD",
                tag_name(e.tag),
                e.val
            ));
        }
        if STRING_TAGS.contains(&e.tag)
            && let Err(err) = view.string(e.val)
        {
            problems.push(format!("{}: {err}", tag_name(e.tag)));
        }
    }
    for (addr_tag, size_tag, what) in SIZED_TABLES {
        if let (Some(addr), Some(size)) = (view.dynamic.get(addr_tag), view.dynamic.get(size_tag))
            && size > 0
            && elf.vaddr_to_offset(addr, size).is_none()
        {
            problems.push(format!(
                "{what} ({addr:#x}+{size:#x}) is not file-backed inside one PT_LOAD"
            ));
        }
    }
    let needed = view.needed().unwrap_or_default();
    for vn in &view.verneed {
        match view.string(u64::from(vn.file)) {
            Ok(file) if needed.contains(&file) => {}
            Ok(file) => problems.push(format!(
                "`.gnu.version_r` names file `{}`, which is not a DT_NEEDED entry \
                 (ld.so would abort: needed != NULL)",
                String::from_utf8_lossy(file)
            )),
            Err(err) => problems.push(format!("`.gnu.version_r` file name: {err}")),
        }
        for &name in &vn.names {
            if let Err(err) = view.string(u64::from(name)) {
                problems.push(format!("`.gnu.version_r` version name: {err}"));
            }
        }
    }
    for &name in &view.verdef_names {
        if let Err(err) = view.string(u64::from(name)) {
            problems.push(format!("`.gnu.version_d` version name: {err}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::synth::{DYNAMIC_OFF, Synth, VERNEED_OFF};

    fn phdr_at(i: u64) -> u64 {
        0x40 + i * PHDR_SIZE
    }

    fn set_u64(data: &mut [u8], at: u64, v: u64) {
        let at = at as usize;
        data[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }

    fn layout_error(data: &[u8]) -> String {
        match check(data) {
            Err(ElfError::Layout(m)) => m,
            other => panic!("expected a layout error, got {other:?}"),
        }
    }

    /// `data` with its program header count moved into section 0 (`e_phnum = PN_XNUM`,
    /// the count in section 0's `sh_info`) and the name-table index too (`SHN_XINDEX`, the
    /// index in `sh_link`), as linkers write them when the counts do not fit 16 bits.
    fn extended(mut d: Vec<u8>, phnum_in_sh0: u32) -> Vec<u8> {
        let shoff = u64::from_le_bytes(d[40..48].try_into().unwrap()) as usize;
        let shstrndx = u16::from_le_bytes([d[62], d[63]]);
        d[shoff + 40..shoff + 44].copy_from_slice(&u32::from(shstrndx).to_le_bytes());
        d[shoff + 44..shoff + 48].copy_from_slice(&phnum_in_sh0.to_le_bytes());
        d[56..58].copy_from_slice(&crate::elf::consts::PN_XNUM.to_le_bytes());
        d[62..64].copy_from_slice(&crate::elf::consts::SHN_XINDEX.to_le_bytes());
        d
    }

    #[test]
    fn extended_numbering_is_read_and_checked() {
        let plain = Synth {
            pt_phdr: true,
            ..Synth::default()
        }
        .build();
        let phnum = u32::from(u16::from_le_bytes([plain[56], plain[57]]));
        let data = extended(plain.clone(), phnum);
        check(&data).unwrap();
        // Names resolve through section 0's sh_link, as in the plain file.
        let (a, b) = (Elf64::parse(&plain).unwrap(), Elf64::parse(&data).unwrap());
        let names = |e: &Elf64| {
            e.shdrs
                .iter()
                .map(|s| e.section_name(s))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&b), names(&a));
        assert!(names(&b).iter().any(|n| n == ".dynamic"));
        // The PT_PHDR rule uses the count read from section 0.
        assert!(layout_error(&extended(plain, phnum - 1)).contains("PT_PHDR"));
        // The patcher reads such a file and still refuses to rewrite it, with the same words.
        match crate::elf::patch(&data, &crate::elf::DynamicEdits::default()) {
            Err(ElfError::Unsupported(m)) => {
                assert_eq!(m, "extended program header numbering (e_phnum = PN_XNUM)")
            }
            other => panic!("{:?}", other.map(|o| o.method)),
        }
    }

    #[test]
    fn a_well_formed_object_passes() {
        check(&Synth::default().build()).unwrap();
        check(
            &Synth {
                pt_phdr: true,
                pt_null: true,
                note_after_phdrs: true,
                ..Synth::default()
            }
            .build(),
        )
        .unwrap();
    }

    #[test]
    fn unsorted_overlapping_and_misaligned_loads_are_reported() {
        let good = Synth::default().build();
        let mut swapped = good.clone();
        let (a, b) = (phdr_at(0) as usize, phdr_at(1) as usize);
        let first: Vec<u8> = swapped[a..a + 56].to_vec();
        swapped.copy_within(b..b + 56, a);
        swapped[b..b + 56].copy_from_slice(&first);
        assert!(layout_error(&swapped).contains("not sorted"));

        let mut overlap = good.clone();
        set_u64(&mut overlap, phdr_at(0) + 40, 0x1500); // p_memsz of the first LOAD
        assert!(layout_error(&overlap).contains("overlap"));

        let mut misaligned = good.clone();
        set_u64(&mut misaligned, phdr_at(1) + 16, 0x1500); // p_vaddr of the second LOAD
        let m = layout_error(&misaligned);
        assert!(m.contains("differ modulo p_align"), "{m}");
        assert!(m.contains("`.dynamic`"), "sections no longer map: {m}");

        let mut bigger = good.clone();
        set_u64(&mut bigger, phdr_at(0) + 32, 0x500); // p_filesz > p_memsz
        assert!(layout_error(&bigger).contains("p_filesz"));

        let mut odd = good;
        set_u64(&mut odd, phdr_at(0) + 48, 0x1800);
        assert!(layout_error(&odd).contains("power of two"));
    }

    #[test]
    fn phdr_and_dynamic_must_describe_what_they_claim() {
        let mut data = Synth {
            pt_phdr: true,
            ..Synth::default()
        }
        .build();
        set_u64(&mut data, phdr_at(0) + 32, 56); // PT_PHDR p_filesz: one entry only
        assert!(layout_error(&data).contains("PT_PHDR"));

        let mut data = Synth::default().build();
        set_u64(&mut data, phdr_at(2) + 8, DYNAMIC_OFF + 16); // PT_DYNAMIC p_offset
        let m = layout_error(&data);
        assert!(m.contains("does not match section `.dynamic`"), "{m}");
    }

    #[test]
    fn dynamic_strings_and_version_files_are_checked() {
        let mut data = Synth::default().build();
        set_u64(&mut data, DYNAMIC_OFF + 8, 0x5000); // DT_NEEDED beyond DT_STRSZ
        assert!(layout_error(&data).contains("DT_NEEDED"));

        // vn_file naming something that is not NEEDED (here: the symbol name `dep_value`).
        let mut data = Synth::default().build();
        let dep_value = 1 + "libdep.so.1".len() as u32 + 1 + "LIBDEP_1.0".len() as u32 + 1;
        let at = VERNEED_OFF as usize + 4;
        data[at..at + 4].copy_from_slice(&dep_value.to_le_bytes());
        let m = layout_error(&data);
        assert!(
            m.contains("`dep_value`") && m.contains("needed != NULL"),
            "{m}"
        );

        let mut data = Synth::default().build();
        set_u64(&mut data, DYNAMIC_OFF + 3 * 16 + 8, 0x0dea_d000); // DT_SYMTAB
        assert!(layout_error(&data).contains("DT_SYMTAB"));
    }

    #[test]
    fn sections_outside_the_file_or_their_segment_are_reported() {
        let data = Synth::default().build();
        let shoff = u64::from_le_bytes(data[40..48].try_into().unwrap());
        let mut past = data.clone();
        set_u64(&mut past, shoff + 64 + 32, 0x10_0000); // .dynstr sh_size
        assert!(layout_error(&past).contains("ends past the file"));
        let mut moved = data;
        set_u64(&mut moved, shoff + 64 + 16, 0x250); // .dynstr sh_addr ≠ its offset
        assert!(layout_error(&moved).contains("`.dynstr`"));
    }

    #[test]
    fn other_classes_and_types_are_unsupported() {
        let mut data = Synth::default().build();
        data[4] = 1;
        assert!(matches!(check(&data), Err(ElfError::Unsupported(m)) if m.contains("32-bit")));
        let mut data = Synth::default().build();
        data[5] = 2;
        assert!(matches!(check(&data), Err(ElfError::Unsupported(m)) if m.contains("big-endian")));
        let mut data = Synth::default().build();
        data[16] = 1; // ET_REL
        assert!(matches!(check(&data), Err(ElfError::Unsupported(_))));
        assert!(matches!(
            check(b"\x7fELF\x02\x01\x01"),
            Err(ElfError::Truncated(_))
        ));
        assert!(matches!(check(b""), Err(ElfError::NotElf(_))));
    }

    #[test]
    fn separate_debug_files_are_named_as_such() {
        // What `objcopy --only-keep-debug` does to `.dynamic`: NOBITS, with PT_DYNAMIC intact.
        let mut data = Synth::default().build();
        let shoff = u64::from_le_bytes(data[40..48].try_into().unwrap());
        let dynamic = (shoff + 4 * 64 + 4) as usize; // sh_type of section 4, `.dynamic`
        data[dynamic..dynamic + 4].copy_from_slice(&SHT_NOBITS.to_le_bytes());
        assert!(matches!(check(&data), Err(ElfError::Unsupported(m)) if m.contains("debug-info")));
    }
}
