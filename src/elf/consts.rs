//! The numbers of the ELF format (System V gABI and the GNU extensions) that the readers,
//! the patcher, the shrinker and the checker use, defined once. Only 64-bit little-endian
//! objects are read, so the sizes are those of the `Elf64_*` structures; see
//! `docs/elf.md` for what the code relies on.

// Sizes of the 64-bit structures.
pub(crate) const EHDR_SIZE: u64 = 64;
pub(crate) const PHDR_SIZE: u64 = 56;
pub(crate) const SHDR_SIZE: u64 = 64;
pub(crate) const DYN_SIZE: u64 = 16;
pub(crate) const SYM_SIZE: u64 = 24;
pub(crate) const RELA_SIZE: u64 = 24;

// Object types and machines (`e_type`, `e_machine`) and the extended-numbering escapes.
pub(crate) const ET_EXEC: u16 = 2;
pub(crate) const ET_DYN: u16 = 3;
pub(crate) const EM_PPC64: u16 = 21;
pub(crate) const EM_X86_64: u16 = 62;
pub(crate) const EM_AARCH64: u16 = 183;
/// `e_phnum` value meaning "the real count is in section 0's `sh_info`".
pub(crate) const PN_XNUM: u16 = 0xffff;
/// `e_shstrndx` value meaning "the real index is in section 0's `sh_link`".
pub(crate) const SHN_XINDEX: u16 = 0xffff;

// Segment types and flags (`p_type`, `p_flags`).
pub(crate) const PT_NULL: u32 = 0;
pub(crate) const PT_LOAD: u32 = 1;
pub(crate) const PT_DYNAMIC: u32 = 2;
pub(crate) const PT_INTERP: u32 = 3;
pub(crate) const PT_NOTE: u32 = 4;
pub(crate) const PT_PHDR: u32 = 6;
pub(crate) const PT_TLS: u32 = 7;
pub(crate) const PT_GNU_EH_FRAME: u32 = 0x6474_e550;
pub(crate) const PT_GNU_RELRO: u32 = 0x6474_e552;
pub(crate) const PT_GNU_PROPERTY: u32 = 0x6474_e553;
pub(crate) const PF_X: u32 = 1;
pub(crate) const PF_W: u32 = 2;
pub(crate) const PF_R: u32 = 4;

// Section types and flags (`sh_type`, `sh_flags`).
pub(crate) const SHT_NULL: u32 = 0;
pub(crate) const SHT_PROGBITS: u32 = 1;
pub(crate) const SHT_SYMTAB: u32 = 2;
pub(crate) const SHT_RELA: u32 = 4;
pub(crate) const SHT_HASH: u32 = 5;
pub(crate) const SHT_DYNAMIC: u32 = 6;
pub(crate) const SHT_NOTE: u32 = 7;
pub(crate) const SHT_NOBITS: u32 = 8;
pub(crate) const SHT_REL: u32 = 9;
pub(crate) const SHT_DYNSYM: u32 = 11;
pub(crate) const SHT_SYMTAB_SHNDX: u32 = 18;
pub(crate) const SHT_RELR: u32 = 19;
pub(crate) const SHT_GNU_HASH: u32 = 0x6fff_fff6;
pub(crate) const SHT_GNU_VERDEF: u32 = 0x6fff_fffd;
pub(crate) const SHT_GNU_VERNEED: u32 = 0x6fff_fffe;
pub(crate) const SHT_GNU_VERSYM: u32 = 0x6fff_ffff;
pub(crate) const SHF_WRITE: u64 = 0x1;
pub(crate) const SHF_ALLOC: u64 = 2;
pub(crate) const SHF_EXECINSTR: u64 = 0x4;
pub(crate) const SHF_TLS: u64 = 0x400;

// Symbols: types and special section indices.
pub(crate) const STT_SECTION: u8 = 3;
pub(crate) const STT_TLS: u8 = 6;
pub(crate) const SHN_UNDEF: u32 = 0;
pub(crate) const SHN_LORESERVE: u32 = 0xff00;
pub(crate) const SHN_ABS: u32 = 0xfff1;

// Dynamic tags (`d_tag`).
pub(crate) const DT_NULL: u64 = 0;
pub(crate) const DT_NEEDED: u64 = 1;
pub(crate) const DT_PLTRELSZ: u64 = 2;
pub(crate) const DT_HASH: u64 = 4;
pub(crate) const DT_STRTAB: u64 = 5;
pub(crate) const DT_SYMTAB: u64 = 6;
pub(crate) const DT_RELA: u64 = 7;
pub(crate) const DT_RELASZ: u64 = 8;
pub(crate) const DT_STRSZ: u64 = 10;
pub(crate) const DT_SONAME: u64 = 14;
pub(crate) const DT_RPATH: u64 = 15;
pub(crate) const DT_REL: u64 = 17;
pub(crate) const DT_RELSZ: u64 = 18;
pub(crate) const DT_PLTREL: u64 = 20;
pub(crate) const DT_JMPREL: u64 = 23;
pub(crate) const DT_RUNPATH: u64 = 29;
pub(crate) const DT_RELRSZ: u64 = 35;
pub(crate) const DT_RELR: u64 = 36;
/// Android's packed relocation formats (`DT_ANDROID_REL`, `DT_ANDROID_RELA`).
pub(crate) const DT_ANDROID_REL: u64 = 0x6000_000f;
pub(crate) const DT_ANDROID_RELA: u64 = 0x6000_0011;
pub(crate) const DT_GNU_HASH: u64 = 0x6fff_fef5;
pub(crate) const DT_VERSYM: u64 = 0x6fff_fff0;
pub(crate) const DT_VERDEF: u64 = 0x6fff_fffc;
pub(crate) const DT_VERDEFNUM: u64 = 0x6fff_fffd;
pub(crate) const DT_VERNEED: u64 = 0x6fff_fffe;
pub(crate) const DT_VERNEEDNUM: u64 = 0x6fff_ffff;
/// Tags whose value is an offset into the dynamic string table.
pub(crate) const STRING_TAGS: [u64; 9] = [
    DT_NEEDED,
    DT_SONAME,
    DT_RPATH,
    DT_RUNPATH,
    0x7fff_fffd, // DT_AUXILIARY
    0x7fff_ffff, // DT_FILTER
    0x6fff_fefa, // DT_CONFIG
    0x6fff_fefb, // DT_DEPAUDIT
    0x6fff_fefc, // DT_AUDIT
];
/// Tags whose value is a link-time address (`d_ptr`) that must lie inside a PT_LOAD.
pub(crate) const ADDRESS_TAGS: [(u64, &str); 19] = [
    (3, "DT_PLTGOT"),
    (4, "DT_HASH"),
    (DT_STRTAB, "DT_STRTAB"),
    (DT_SYMTAB, "DT_SYMTAB"),
    (7, "DT_RELA"),
    (12, "DT_INIT"),
    (13, "DT_FINI"),
    (17, "DT_REL"),
    (23, "DT_JMPREL"),
    (25, "DT_INIT_ARRAY"),
    (26, "DT_FINI_ARRAY"),
    (32, "DT_PREINIT_ARRAY"),
    (36, "DT_RELR"),
    (0x6fff_fef5, "DT_GNU_HASH"),
    (0x6fff_feff, "DT_SYMINFO"),
    (0x6fff_fff0, "DT_VERSYM"),
    (DT_VERDEF, "DT_VERDEF"),
    (DT_VERNEED, "DT_VERNEED"),
    (0x6fff_fef7, "DT_TLSDESC_GOT"),
];
/// `(address tag, size tag)` pairs: the whole table must be file-backed inside one PT_LOAD.
pub(crate) const SIZED_TABLES: [(u64, u64, &str); 7] = [
    (DT_STRTAB, DT_STRSZ, "DT_STRTAB+DT_STRSZ"),
    (7, 8, "DT_RELA+DT_RELASZ"),
    (17, 18, "DT_REL+DT_RELSZ"),
    (23, 2, "DT_JMPREL+DT_PLTRELSZ"),
    (25, 27, "DT_INIT_ARRAY+DT_INIT_ARRAYSZ"),
    (26, 28, "DT_FINI_ARRAY+DT_FINI_ARRAYSZ"),
    (36, 35, "DT_RELR+DT_RELRSZ"),
];
