//! A tiny synthetic x86_64 shared object for unit tests: precise control over the layouts real
//! linkers never produce (PT_NULL slots, exact DT_NULL slack, a note right after the program
//! header table, deliberately broken invariants).
//!
//! Layout: `[ehdr][phdrs][.interp?][.note?][.dynstr @0x200][.gnu.version_r @0x300]
//! [.dynsym @0x340]` in an R PT_LOAD at 0, `.dynamic @0x400` (vaddr 0x1400) in an RW PT_LOAD,
//! then `.shstrtab` and the section headers.

use super::file::ProgramHeader;

use crate::elf::consts::{
    DT_NEEDED, DT_SONAME, DT_STRSZ, DT_STRTAB, DT_SYMTAB, DT_VERNEED, DT_VERNEEDNUM, PT_DYNAMIC,
    PT_INTERP, PT_LOAD, PT_NOTE, PT_NULL, PT_PHDR,
};

pub(crate) const DYNSTR_OFF: u64 = 0x200;
pub(crate) const VERNEED_OFF: u64 = 0x300;
pub(crate) const DYNSYM_OFF: u64 = 0x340;
pub(crate) const DYNAMIC_OFF: u64 = 0x400;
pub(crate) const DYNAMIC_VADDR: u64 = 0x1400;
const INTERP: &[u8] = b"/lib64/ld-linux-x86-64.so.2\0";

#[derive(Debug, Clone)]
pub(crate) struct Synth {
    /// Total 16-byte slots of `.dynamic` (entries + DT_NULLs).
    pub dyn_slots: usize,
    /// A DT_RPATH or DT_RUNPATH entry.
    pub path: Option<(u64, &'static str)>,
    pub soname: Option<&'static str>,
    /// Extra strings appended to `.dynstr` (for reuse tests).
    pub extra_strings: Vec<&'static str>,
    pub pt_null: bool,
    pub pt_phdr: bool,
    /// Put a note section right after the program header table, so the table cannot grow.
    pub note_after_phdrs: bool,
    /// Make it an executable: `.interp` + PT_INTERP right after the table (before the note).
    pub interp: bool,
}

impl Default for Synth {
    fn default() -> Self {
        Synth {
            dyn_slots: 16,
            path: None,
            soname: None,
            extra_strings: Vec::new(),
            pt_null: false,
            pt_phdr: false,
            note_after_phdrs: false,
            interp: false,
        }
    }
}

fn put(buf: &mut Vec<u8>, at: u64, bytes: &[u8]) {
    let at = at as usize;
    if buf.len() < at + bytes.len() {
        buf.resize(at + bytes.len(), 0);
    }
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

struct Strtab {
    bytes: Vec<u8>,
}

impl Strtab {
    fn add(&mut self, s: &str) -> u64 {
        let at = self.bytes.len() as u64;
        self.bytes.extend_from_slice(s.as_bytes());
        self.bytes.push(0);
        at
    }
}

/// `.dynstr` and where the strings `.dynamic` and the version and symbol tables name sit in it.
struct DynStrings {
    table: Strtab,
    needed: u64,
    version: u64,
    sym: u64,
    soname: Option<u64>,
    path: Option<(u64, u64)>,
}

/// File offsets (equal to their addresses) of the optional pieces after the program header
/// table.
struct AfterTable {
    interp_off: u64,
    note_off: u64,
}

impl Synth {
    /// The whole object, laid out as the module docs say, read top to bottom.
    pub fn build(&self) -> Vec<u8> {
        let strings = self.dynstr();
        let (phdrs, after) = self.program_headers();
        let mut buf = vec![0u8; 0x400];
        for (i, p) in phdrs.iter().enumerate() {
            put(&mut buf, 0x40 + i as u64 * 56, &p.encode());
        }
        self.put_interp_and_note(&mut buf, &after);
        put(&mut buf, DYNSTR_OFF, &strings.table.bytes);
        put_verneed(&mut buf, &strings);
        put_dynsym(&mut buf, &strings);
        self.put_dynamic(&mut buf, &strings);
        let sections = self.sections(&mut buf, &strings, &after);
        let shoff = put_section_headers(&mut buf, &sections);
        put_elf_header(&mut buf, shoff, phdrs.len(), sections.len());
        buf
    }

    fn dynamic_size(&self) -> u64 {
        self.dyn_slots as u64 * 16
    }

    fn dynstr(&self) -> DynStrings {
        let mut table = Strtab { bytes: vec![0] };
        let needed = table.add("libdep.so.1");
        let version = table.add("LIBDEP_1.0");
        let sym = table.add("dep_value");
        let soname = self.soname.map(|s| table.add(s));
        let path = self.path.map(|(tag, p)| (tag, table.add(p)));
        for e in &self.extra_strings {
            table.add(e);
        }
        assert!(table.bytes.len() <= 0x100);
        DynStrings {
            table,
            needed,
            version,
            sym,
            soname,
            path,
        }
    }

    /// The program header table: [PT_PHDR] [PT_INTERP] the two PT_LOADs, PT_DYNAMIC [PT_NOTE]
    /// [PT_NULL], and where `.interp` and the note go right after it.
    fn program_headers(&self) -> (Vec<ProgramHeader>, AfterTable) {
        let mut phdrs = Vec::new();
        if self.pt_phdr {
            phdrs.push(ProgramHeader {
                p_type: PT_PHDR,
                p_flags: 4,
                p_offset: 0x40,
                p_vaddr: 0x40,
                p_paddr: 0x40,
                p_filesz: 0,
                p_memsz: 0,
                p_align: 8,
            });
        }
        phdrs.push(load(0, 0, 0x400, 4));
        phdrs.push(load(DYNAMIC_OFF, DYNAMIC_VADDR, self.dynamic_size(), 6));
        phdrs.push(ProgramHeader {
            p_type: PT_DYNAMIC,
            p_flags: 6,
            p_offset: DYNAMIC_OFF,
            p_vaddr: DYNAMIC_VADDR,
            p_paddr: DYNAMIC_VADDR,
            p_filesz: self.dynamic_size(),
            p_memsz: self.dynamic_size(),
            p_align: 8,
        });
        let extra =
            u64::from(self.pt_null) + u64::from(self.note_after_phdrs) + u64::from(self.interp);
        let table_end = 0x40 + (phdrs.len() as u64 + extra) * 56;
        let interp_off = table_end;
        let note_off = if self.interp {
            (interp_off + INTERP.len() as u64).div_ceil(4) * 4
        } else {
            table_end
        };
        let after = AfterTable {
            interp_off,
            note_off,
        };
        self.add_optional_headers(&mut phdrs, &after);
        let phnum = phdrs.len() as u64;
        for p in phdrs.iter_mut().filter(|p| p.p_type == PT_PHDR) {
            p.p_filesz = phnum * 56;
            p.p_memsz = phnum * 56;
        }
        (phdrs, after)
    }

    /// PT_INTERP (after PT_PHDR), PT_NOTE and PT_NULL (at the end), as asked for.
    fn add_optional_headers(&self, phdrs: &mut Vec<ProgramHeader>, after: &AfterTable) {
        if self.interp {
            phdrs.insert(
                usize::from(self.pt_phdr),
                ProgramHeader {
                    p_type: PT_INTERP,
                    p_flags: 4,
                    p_offset: after.interp_off,
                    p_vaddr: after.interp_off,
                    p_paddr: after.interp_off,
                    p_filesz: INTERP.len() as u64,
                    p_memsz: INTERP.len() as u64,
                    p_align: 1,
                },
            );
        }
        if self.note_after_phdrs {
            phdrs.push(ProgramHeader {
                p_type: PT_NOTE,
                p_flags: 4,
                p_offset: after.note_off,
                p_vaddr: after.note_off,
                p_paddr: after.note_off,
                p_filesz: 0x18,
                p_memsz: 0x18,
                p_align: 4,
            });
        }
        if self.pt_null {
            phdrs.push(ProgramHeader {
                p_type: PT_NULL,
                p_flags: 0,
                p_offset: 0,
                p_vaddr: 0,
                p_paddr: 0,
                p_filesz: 0,
                p_memsz: 0,
                p_align: 0,
            });
        }
    }

    fn put_interp_and_note(&self, buf: &mut Vec<u8>, after: &AfterTable) {
        if self.interp {
            put(buf, after.interp_off, INTERP);
        }
        if self.note_after_phdrs {
            // namesz 4, descsz 4, type 1, "GNU\0", desc.
            let mut note = Vec::new();
            for v in [4u32, 4, 1] {
                note.extend_from_slice(&v.to_le_bytes());
            }
            note.extend_from_slice(b"GNU\0\x01\x02\x03\x04");
            put(buf, after.note_off, &note);
        }
    }

    /// `.dynamic`: NEEDED, [SONAME], [RPATH/RUNPATH], the table pointers, then DT_NULLs to
    /// fill `dyn_slots`.
    fn put_dynamic(&self, buf: &mut Vec<u8>, strings: &DynStrings) {
        let mut entries = vec![(DT_NEEDED, strings.needed)];
        if let Some(so) = strings.soname {
            entries.push((DT_SONAME, so));
        }
        if let Some((tag, off)) = strings.path {
            entries.push((tag, off));
        }
        entries.extend([
            (DT_STRTAB, DYNSTR_OFF),
            (DT_STRSZ, strings.table.bytes.len() as u64),
            (DT_SYMTAB, DYNSYM_OFF),
            (11, 24),
            (DT_VERNEED, VERNEED_OFF),
            (DT_VERNEEDNUM, 1),
        ]);
        assert!(entries.len() < self.dyn_slots);
        let mut dynamic = vec![0u8; self.dyn_slots * 16];
        for (i, (tag, val)) in entries.iter().enumerate() {
            dynamic[i * 16..i * 16 + 8].copy_from_slice(&tag.to_le_bytes());
            dynamic[i * 16 + 8..i * 16 + 16].copy_from_slice(&val.to_le_bytes());
        }
        put(buf, DYNAMIC_OFF, &dynamic);
    }

    /// Section headers: null, .dynstr, .gnu.version_r, .dynsym, .dynamic, [.interp], [.note],
    /// .shstrtab (whose bytes are written after `.dynamic`), each as [name, type, flags, addr,
    /// offset, size, link, info, align, entsize].
    fn sections(
        &self,
        buf: &mut Vec<u8>,
        strings: &DynStrings,
        after: &AfterTable,
    ) -> Vec<[u64; 10]> {
        let mut shstr = Strtab { bytes: vec![0] };
        let mut sections: Vec<[u64; 10]> = vec![[0; 10]];
        let n_dynstr = shstr.add(".dynstr");
        let dynstr_len = strings.table.bytes.len() as u64;
        sections.push([
            n_dynstr, 3, 2, DYNSTR_OFF, DYNSTR_OFF, dynstr_len, 0, 0, 1, 0,
        ]);
        let n_vr = shstr.add(".gnu.version_r");
        sections.push([
            n_vr,
            0x6fff_fffe,
            2,
            VERNEED_OFF,
            VERNEED_OFF,
            32,
            1,
            1,
            8,
            0,
        ]);
        let n_sym = shstr.add(".dynsym");
        sections.push([n_sym, 11, 2, DYNSYM_OFF, DYNSYM_OFF, 48, 1, 1, 8, 24]);
        let n_dyn = shstr.add(".dynamic");
        let dyn_size = self.dynamic_size();
        sections.push([
            n_dyn,
            6,
            3,
            DYNAMIC_VADDR,
            DYNAMIC_OFF,
            dyn_size,
            1,
            0,
            8,
            16,
        ]);
        if self.interp {
            let n_interp = shstr.add(".interp");
            let (off, size) = (after.interp_off, INTERP.len() as u64);
            sections.push([n_interp, 1, 2, off, off, size, 0, 0, 1, 0]);
        }
        if self.note_after_phdrs {
            let n_note = shstr.add(".note.test");
            let off = after.note_off;
            sections.push([n_note, 7, 2, off, off, 0x18, 0, 0, 4, 0]);
        }
        let n_shstr = shstr.add(".shstrtab");
        let shstr_off = DYNAMIC_OFF + dyn_size;
        let shstr_len = shstr.bytes.len() as u64;
        sections.push([n_shstr, 3, 0, 0, shstr_off, shstr_len, 0, 0, 1, 0]);
        put(buf, shstr_off, &shstr.bytes);
        sections
    }
}

fn load(off: u64, vaddr: u64, size: u64, flags: u32) -> ProgramHeader {
    ProgramHeader {
        p_type: PT_LOAD,
        p_flags: flags,
        p_offset: off,
        p_vaddr: vaddr,
        p_paddr: vaddr,
        p_filesz: size,
        p_memsz: size,
        p_align: 0x1000,
    }
}

/// `.gnu.version_r`: one file with one version.
fn put_verneed(buf: &mut Vec<u8>, strings: &DynStrings) {
    let mut vn = Vec::new();
    vn.extend_from_slice(&1u16.to_le_bytes());
    vn.extend_from_slice(&1u16.to_le_bytes());
    vn.extend_from_slice(&(strings.needed as u32).to_le_bytes());
    vn.extend_from_slice(&16u32.to_le_bytes());
    vn.extend_from_slice(&0u32.to_le_bytes());
    vn.extend_from_slice(&0x0c5f_7c30u32.to_le_bytes());
    vn.extend_from_slice(&0u16.to_le_bytes());
    vn.extend_from_slice(&2u16.to_le_bytes());
    vn.extend_from_slice(&(strings.version as u32).to_le_bytes());
    vn.extend_from_slice(&0u32.to_le_bytes());
    put(buf, VERNEED_OFF, &vn);
}

/// `.dynsym`: the null symbol and an undefined `dep_value`.
fn put_dynsym(buf: &mut Vec<u8>, strings: &DynStrings) {
    let mut syms = vec![0u8; 24];
    syms.extend_from_slice(&(strings.sym as u32).to_le_bytes());
    syms.extend_from_slice(&[0x12, 0, 0, 0]);
    syms.extend_from_slice(&[0u8; 16]);
    put(buf, DYNSYM_OFF, &syms);
}

/// Writes the section header table at the end of `buf` (8-aligned) and returns its offset.
fn put_section_headers(buf: &mut Vec<u8>, sections: &[[u64; 10]]) -> u64 {
    let shoff = (buf.len() as u64).div_ceil(8) * 8;
    for (i, s) in sections.iter().enumerate() {
        let at = shoff + i as u64 * 64;
        let mut b = Vec::with_capacity(64);
        b.extend_from_slice(&(s[0] as u32).to_le_bytes());
        b.extend_from_slice(&(s[1] as u32).to_le_bytes());
        b.extend_from_slice(&s[2].to_le_bytes());
        b.extend_from_slice(&s[3].to_le_bytes());
        b.extend_from_slice(&s[4].to_le_bytes());
        b.extend_from_slice(&s[5].to_le_bytes());
        b.extend_from_slice(&(s[6] as u32).to_le_bytes());
        b.extend_from_slice(&(s[7] as u32).to_le_bytes());
        b.extend_from_slice(&s[8].to_le_bytes());
        b.extend_from_slice(&s[9].to_le_bytes());
        put(buf, at, &b);
    }
    shoff
}

/// The ELF header of an x86_64 ET_DYN whose program headers follow it and whose section
/// header string table is the last section.
fn put_elf_header(buf: &mut Vec<u8>, shoff: u64, phnum: usize, shnum: usize) {
    let mut eh = Vec::with_capacity(64);
    eh.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    eh.extend_from_slice(&3u16.to_le_bytes()); // ET_DYN
    eh.extend_from_slice(&62u16.to_le_bytes()); // x86_64
    eh.extend_from_slice(&1u32.to_le_bytes());
    eh.extend_from_slice(&0u64.to_le_bytes()); // entry
    eh.extend_from_slice(&0x40u64.to_le_bytes()); // phoff
    eh.extend_from_slice(&shoff.to_le_bytes());
    eh.extend_from_slice(&0u32.to_le_bytes()); // flags
    eh.extend_from_slice(&64u16.to_le_bytes());
    eh.extend_from_slice(&56u16.to_le_bytes());
    eh.extend_from_slice(&(phnum as u16).to_le_bytes());
    eh.extend_from_slice(&64u16.to_le_bytes());
    eh.extend_from_slice(&(shnum as u16).to_le_bytes());
    eh.extend_from_slice(&((shnum - 1) as u16).to_le_bytes());
    put(buf, 0, &eh);
}
