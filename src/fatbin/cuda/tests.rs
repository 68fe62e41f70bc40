//! Unit tests on synthetic containers; the fixture tests live in tests/fatbin_*.rs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

use super::*;

/// Test-side description of one entry, turned into bytes by [`Spec::bytes`].
#[derive(Clone)]
pub(crate) struct Spec {
    pub kind: u16,
    pub sm: u32,
    pub flags: u64,
    pub version: (u16, u16),
    /// Stored payload (padded to 8 when written).
    pub payload: Vec<u8>,
    pub compressed_size: u32,
    pub uncompressed_size: u64,
    /// Bytes after the fixed 64-byte header (records).
    pub tail: Vec<u8>,
    pub options_offset: u32,
    pub id_offset: u32,
    pub id_len: u32,
    /// Override the header size field.
    pub header_size: Option<u32>,
    /// Override the payload size field.
    pub payload_size: Option<u64>,
}

impl Spec {
    pub fn elf(sm: u32, flags: u64, image: &[u8]) -> Spec {
        Spec {
            kind: 2,
            sm,
            flags: 0x11 | flags,
            version: (1, 8),
            payload: image.to_vec(),
            compressed_size: 0,
            uncompressed_size: 0,
            tail: Vec::new(),
            options_offset: 0,
            id_offset: 0,
            id_len: 0,
            header_size: None,
            payload_size: None,
        }
    }

    /// PTX with an options record holding `options` (empty: the ordinary 0x50 header).
    pub fn ptx(sm: u32, flags: u64, text: &[u8], options: &str) -> Spec {
        let mut s = Spec::elf(sm, flags, text);
        s.kind = 1;
        s.version = (9, 4);
        s.options_offset = 64;
        s.tail = options_record(64, options.as_bytes());
        s
    }

    /// PTX as CUDA 10.2 and 11.x write it: an options record with both fields zero and no
    /// string after it, so the header is 0x48 long.
    pub fn ptx_empty_record(sm: u32, flags: u64, text: &[u8]) -> Spec {
        let mut s = Spec::ptx(sm, flags, text, "");
        s.version = (6, 5);
        s.tail = vec![0; 8];
        s
    }

    pub fn zstd(mut self) -> Spec {
        let z = zstd::bulk::compress(&self.payload, 3).unwrap();
        self.compressed_size = z.len() as u32;
        self.uncompressed_size = self.payload.len() as u64;
        self.payload = z;
        self.flags |= FLAG_ZSTD;
        self
    }

    pub fn lz4(mut self) -> Spec {
        let z = lz4_flex::block::compress(&self.payload);
        self.compressed_size = z.len() as u32;
        self.uncompressed_size = self.payload.len() as u64;
        self.payload = z;
        self.flags |= FLAG_LZ4;
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut payload = self.payload.clone();
        payload.resize(payload.len().div_ceil(8) * 8, 0);
        let hs = self.header_size.unwrap_or(64 + self.tail.len() as u32);
        let ps = self.payload_size.unwrap_or(payload.len() as u64);
        let mut h = vec![0u8; 64];
        h[0..2].copy_from_slice(&self.kind.to_le_bytes());
        h[2..4].copy_from_slice(&0x0101u16.to_le_bytes());
        h[4..8].copy_from_slice(&hs.to_le_bytes());
        h[8..16].copy_from_slice(&ps.to_le_bytes());
        h[16..20].copy_from_slice(&self.compressed_size.to_le_bytes());
        h[20..24].copy_from_slice(&self.options_offset.to_le_bytes());
        h[24..26].copy_from_slice(&self.version.1.to_le_bytes());
        h[26..28].copy_from_slice(&self.version.0.to_le_bytes());
        h[28..32].copy_from_slice(&self.sm.to_le_bytes());
        h[32..36].copy_from_slice(&self.id_offset.to_le_bytes());
        h[36..40].copy_from_slice(&self.id_len.to_le_bytes());
        h[40..48].copy_from_slice(&self.flags.to_le_bytes());
        h[56..64].copy_from_slice(&self.uncompressed_size.to_le_bytes());
        h.extend_from_slice(&self.tail);
        h.extend_from_slice(&payload);
        h
    }
}

/// An options record at `at` (from the entry start): string offset, length, NUL-padded string.
pub(crate) fn options_record(at: u32, s: &[u8]) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(&(at + 8).to_le_bytes());
    r.extend_from_slice(&(s.len() as u32).to_le_bytes());
    r.extend_from_slice(s);
    r.push(0);
    r.resize(8 + (s.len() + 1).div_ceil(8) * 8, 0);
    r
}

pub(crate) fn container(entries: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = entries.concat();
    let mut c = Vec::new();
    c.extend_from_slice(&CONTAINER_MAGIC.to_le_bytes());
    c.extend_from_slice(&1u16.to_le_bytes());
    c.extend_from_slice(&16u16.to_le_bytes());
    c.extend_from_slice(&(body.len() as u64).to_le_bytes());
    c.extend_from_slice(&body);
    c
}

/// A member of a synthetic concat group: (kind, sm, flags, image, has an options record).
pub(crate) type MemberSpec<'a> = (u16, u32, u64, &'a [u8], bool);

/// A concat group entry (kind 0x100) compressed with `method` (FLAG_ZSTD, FLAG_LZ4 or 0).
pub(crate) fn concat(members: &[MemberSpec<'_>], method: u64) -> Spec {
    let mut blob = Vec::new();
    let mut table = Vec::new();
    for &(kind, sm, flags, image, with_options) in members {
        let mut m = Spec::elf(sm, flags, image);
        m.kind = kind;
        if with_options {
            m.options_offset = 64;
            m.tail = options_record(64, b"");
        }
        let mut h = m.bytes();
        h.truncate(64 + m.tail.len());
        h[4..8].copy_from_slice(&(blob.len() as u32).to_le_bytes());
        h[8..16].copy_from_slice(&(image.len() as u64).to_le_bytes());
        table.extend_from_slice(&h);
        blob.extend_from_slice(image);
    }
    let mut tail = Vec::new();
    tail.extend_from_slice(&(members.len() as u32).to_le_bytes());
    tail.extend_from_slice(&(8 + table.len() as u32).to_le_bytes());
    tail.extend_from_slice(&table);
    let mut s = Spec::elf(0, 0, &blob);
    s.kind = 0x100;
    s.version = (0, 1);
    s.options_offset = 64;
    s.tail = tail;
    match method {
        FLAG_ZSTD => s.zstd(),
        FLAG_LZ4 => s.lz4(),
        _ => s,
    }
}

fn cubin(tag: u8, len: usize) -> Vec<u8> {
    let mut v = b"\x7fELF\x02\x01\x01\x41".to_vec();
    v.extend((0..len - 8).map(|i| tag.wrapping_add((i % 7) as u8)));
    v
}

fn sample() -> Vec<u8> {
    container(&[
        Spec::elf(80, 0, &cubin(1, 200)).bytes(),
        Spec::ptx(90, 0, b".version 9.4\n.target sm_90\n\0", "")
            .zstd()
            .bytes(),
        Spec::elf(90, FLAG_ARCH_A, &cubin(2, 300)).lz4().bytes(),
        Spec::ptx(
            120,
            0,
            b".version 9.4\n.target sm_120\n\0",
            "--compile-only",
        )
        .bytes(),
    ])
}

#[test]
fn parses_a_synthetic_container() {
    let data = sample();
    let cs = parse_section(&data).unwrap();
    assert_eq!(cs.len(), 1);
    let c = &cs[0];
    assert_eq!((c.offset, c.len, c.header_size), (0, data.len(), 16));
    let e = &c.entries;
    assert_eq!(e.len(), 4);
    assert_eq!(e[0].kind, EntryKind::Elf);
    assert_eq!(e[0].arch.to_string(), "sm_80");
    assert_eq!(e[0].compression, Compression::None);
    assert_eq!(e[0].offset, 16);
    assert_eq!(e[0].header_size, 64);
    assert_eq!(e[0].payload_size, 200);
    assert_eq!(e[0].image_bytes(), 200);
    assert_eq!(e[1].kind, EntryKind::Ptx);
    assert_eq!(e[1].arch_name(), "compute_90");
    assert_eq!(e[1].compression, Compression::Zstd);
    assert_eq!(e[1].header_size, 0x50);
    assert_eq!(e[1].version, (9, 4));
    assert_eq!(e[1].options, None);
    assert_eq!(e[2].arch.to_string(), "sm_90a");
    assert_eq!(e[2].compression, Compression::Lz4);
    assert_eq!(e[2].image_bytes(), 300);
    assert_eq!(e[3].options.as_deref(), Some("--compile-only"));
    assert_eq!(e[3].header_size, 64 + 8 + 16);
    let ends: usize = e.iter().map(Entry::total_len).sum();
    assert_eq!(ends + 16, data.len());
}

#[test]
fn decompresses_to_exact_images() {
    let data = sample();
    let c = &parse_section(&data).unwrap()[0];
    assert_eq!(
        decompress_entry(&data, &c.entries[0]).unwrap(),
        cubin(1, 200)
    );
    let ptx = decompress_entry(&data, &c.entries[1]).unwrap();
    assert!(ptx.starts_with(b".version 9.4"));
    assert_eq!(
        decompress_entry(&data, &c.entries[2]).unwrap(),
        cubin(2, 300)
    );
    // A cap below the image size is refused before decoding.
    let err = decompress_entry_capped(&data, &c.entries[2], 100).unwrap_err();
    assert!(
        matches!(err, FatbinError::TooLarge { size: 300, .. }),
        "{err}"
    );
}

#[test]
fn section_with_gaps_and_trailing_zeros() {
    let one = sample();
    let mut data = one.clone();
    data.extend_from_slice(&[0; 24]); // an 8-aligned zero gap
    let second_at = data.len();
    data.extend_from_slice(&one);
    data.extend_from_slice(&[0; 13]); // trailing padding
    let cs = parse_section(&data).unwrap();
    assert_eq!(cs.len(), 2);
    assert_eq!(cs[1].offset, second_at);
    assert_eq!(cs[1].entries[0].offset, second_at + 16);
    assert!(parse_section(&[]).unwrap().is_empty());
    assert!(parse_section(&[0; 64]).unwrap().is_empty());

    let mut bad = one.clone();
    bad.extend_from_slice(&[0, 0, 0, 7, 0, 0, 0, 0]);
    let err = parse_section(&bad).unwrap_err();
    assert_eq!(
        err,
        FatbinError::NonZeroGap {
            what: "fatbin container",
            offset: one.len() + 3,
            value: 7
        }
    );
    assert!(err.to_string().contains(&format!("{:#x}", one.len() + 3)));

    let mut misaligned = vec![0u8; 4];
    misaligned.extend_from_slice(&one);
    assert!(matches!(
        parse_section(&misaligned).unwrap_err(),
        FatbinError::Misaligned { offset: 4, .. }
    ));
}

#[test]
fn rebuild_keeps_exactly_the_subset() {
    let data = sample();
    let c = &parse_section(&data).unwrap()[0];
    assert_eq!(rebuild_container(&data, c, &[true; 4]).unwrap(), data);
    let out = rebuild_container(&data, c, &[false, true, false, true]).unwrap();
    let again = parse_section(&out).unwrap();
    assert_eq!(again.len(), 1);
    let kept: Vec<String> = again[0].entries.iter().map(Entry::arch_name).collect();
    assert_eq!(kept, ["compute_90", "compute_120"]);
    assert_eq!(
        again[0].entries[0].bytes(&out).unwrap(),
        c.entries[1].bytes(&data).unwrap()
    );
    let empty = rebuild_container(&data, c, &[false; 4]).unwrap();
    assert_eq!(empty.len(), 16);
    assert!(parse_section(&empty).unwrap()[0].entries.is_empty());
    assert!(matches!(
        rebuild_container(&data, c, &[true; 3]).unwrap_err(),
        FatbinError::KeepLength {
            expected: 4,
            actual: 3,
            ..
        }
    ));
    // A container that does not describe the bytes given is refused.
    let other = container(&[Spec::elf(75, 0, &cubin(9, 64)).bytes()]);
    assert!(rebuild_container(&other, c, &[true; 4]).is_err());
}

fn group(method: u64) -> (Vec<u8>, Vec<Vec<u8>>) {
    let images = vec![
        b".version 9.4\n.target sm_90\n\0\0\0\0\0".to_vec(),
        cubin(3, 96),
        cubin(4, 120),
        cubin(5, 64),
    ];
    let members: Vec<MemberSpec<'_>> = vec![
        (1, 90, 0x11, &images[0], true),
        (2, 80, 0x11, &images[1], false),
        (2, 90, 0x10_0011, &images[2], false),
        (2, 100, 0x120_0011, &images[3], true),
    ];
    let data = container(&[
        Spec::elf(75, 0, &cubin(8, 80)).bytes(),
        concat(&members, method).bytes(),
    ]);
    (data, images)
}

#[test]
fn parses_concat_members() {
    let (data, _) = group(FLAG_ZSTD);
    let c = &parse_section(&data).unwrap()[0];
    let g = &c.entries[1];
    assert_eq!(g.kind, EntryKind::Concat);
    assert_eq!(g.header_size, 64 + 8 + 80 + 64 + 64 + 80);
    let m: Vec<(EntryKind, String, u64, u64, usize)> = g
        .members
        .iter()
        .map(|m| (m.kind, m.arch.to_string(), m.offset, m.size, m.header_len))
        .collect();
    assert_eq!(
        m,
        [
            (EntryKind::Ptx, "sm_90".to_string(), 0, 32, 80),
            (EntryKind::Elf, "sm_80".to_string(), 32, 96, 64),
            (EntryKind::Elf, "sm_90a".to_string(), 128, 120, 64),
            (EntryKind::Elf, "sm_100f".to_string(), 248, 64, 80),
        ]
    );
}

#[test]
fn rebuilds_concat_groups_with_each_method() {
    for method in [FLAG_ZSTD, FLAG_LZ4, 0] {
        let (data, images) = group(method);
        let c = &parse_section(&data).unwrap()[0];
        let g = &c.entries[1];
        assert_eq!(
            rebuild_concat_entry(&data, g, &[true; 4]).unwrap(),
            g.bytes(&data).unwrap()
        );
        assert!(matches!(
            rebuild_concat_entry(&data, g, &[false; 4]).unwrap_err(),
            FatbinError::EmptyConcat { .. }
        ));
        let keep = [true, false, true, true];
        let out = rebuild_container_with(
            &data,
            c,
            &[EntryEdit::Drop, EntryEdit::KeepMembers(keep.to_vec())],
        )
        .unwrap();
        let again = &parse_section(&out).unwrap()[0];
        assert_eq!(again.entries.len(), 1);
        let ng = &again.entries[0];
        assert_eq!(ng.compression, g.compression);
        assert_eq!(ng.members.len(), 3);
        let image = decompress_entry(&out, ng).unwrap();
        let wanted: Vec<&Vec<u8>> = images
            .iter()
            .zip(keep)
            .filter(|(_, k)| *k)
            .map(|(i, _)| i)
            .collect();
        for (m, want) in ng.members.iter().zip(wanted) {
            let at = m.offset as usize;
            assert_eq!(&image[at..at + m.size as usize], want.as_slice());
            assert_eq!(at % 8, 0);
        }
        let archs: Vec<String> = ng.members.iter().map(|m| m.arch.to_string()).collect();
        assert_eq!(archs, ["sm_90", "sm_90a", "sm_100f"]);
        if method != 0 {
            assert_eq!(ng.uncompressed_size, image.len() as u64);
        }
        assert_eq!(ng.payload_size % 8, 0);
    }
}

fn patched(data: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
    let mut d = data.to_vec();
    d[at..at + bytes.len()].copy_from_slice(bytes);
    d
}

#[test]
fn hostile_containers_are_errors() {
    let data = sample();
    let e0 = 16; // first entry header
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated container header", data[..10].to_vec()),
        ("bad magic", patched(&data, 0, &[0x51])),
        ("version 2", patched(&data, 4, &2u16.to_le_bytes())),
        (
            "container header size 8",
            patched(&data, 6, &8u16.to_le_bytes()),
        ),
        (
            "container size past the end",
            patched(&data, 8, &(1u64 << 40).to_le_bytes()),
        ),
        (
            "container size u64::MAX",
            patched(&data, 8, &u64::MAX.to_le_bytes()),
        ),
        ("container size one short", {
            let size = (data.len() - 16 - 1) as u64;
            patched(&data, 8, &size.to_le_bytes())
        }),
        (
            "entry header size 0",
            patched(&data, e0 + 4, &0u32.to_le_bytes()),
        ),
        (
            "entry header size 63",
            patched(&data, e0 + 4, &63u32.to_le_bytes()),
        ),
        (
            "entry header size past the end",
            patched(&data, e0 + 4, &u32::MAX.to_le_bytes()),
        ),
        (
            "payload past the end",
            patched(&data, e0 + 8, &(1u64 << 62).to_le_bytes()),
        ),
        (
            "payload u64::MAX",
            patched(&data, e0 + 8, &u64::MAX.to_le_bytes()),
        ),
        (
            "both a and f",
            patched(&data, e0 + 40, &0x30_0011u64.to_le_bytes()),
        ),
        ("identifier outside the header", {
            let d = patched(&data, e0 + 32, &64u32.to_le_bytes());
            patched(&d, e0 + 36, &8u32.to_le_bytes())
        }),
        ("identifier inside the fixed header", {
            let d = patched(&data, e0 + 32, &8u32.to_le_bytes());
            patched(&d, e0 + 36, &4u32.to_le_bytes())
        }),
        (
            "options record outside the header",
            patched(&data, e0 + 20, &0x1000u32.to_le_bytes()),
        ),
    ];
    for (name, bytes) in cases {
        match parse_section(&bytes) {
            Err(err) => assert!(!err.to_string().is_empty(), "{name}"),
            Ok(c) => panic!("{name}: parsed {c:?}"),
        }
    }
}

#[test]
fn hostile_compression_fields() {
    let ptx_text = b".version 9.4\n.target sm_90\n\0";
    let ok = Spec::ptx(90, 0, ptx_text, "").zstd();
    // compressed size larger than the payload, or zero
    let mut s = ok.clone();
    s.compressed_size = 4096;
    assert!(parse_section(&container(&[s.bytes()])).is_err());
    let mut s = ok.clone();
    s.compressed_size = 0;
    assert!(parse_section(&container(&[s.bytes()])).is_err());

    // Parsing checks the streams (without decoding them); what gets through is decompressed.
    let decomp = |s: &Spec| {
        let d = container(&[s.bytes()]);
        let c = parse_section(&d)?;
        decompress_entry(&d, &c[0].entries[0])
    };
    // absurd uncompressed sizes: refused, never allocated
    let mut s = ok.clone();
    s.uncompressed_size = u64::MAX;
    assert!(matches!(
        decomp(&s).unwrap_err(),
        FatbinError::TooLarge { .. }
            | FatbinError::SizeMismatch { .. }
            | FatbinError::BadField {
                field: "uncompressed size",
                ..
            }
    ));
    // Claims beyond 256 times the stream are bombs, refused when parsed.
    let mut s = ok.clone();
    s.uncompressed_size = 3 << 30;
    assert!(matches!(
        parse_section(&container(&[s.bytes()])).unwrap_err(),
        FatbinError::BadField {
            field: "uncompressed size",
            ..
        }
    ));
    let mut s = ok.clone();
    s.uncompressed_size = 4 << 20; // under the bomb floor but larger than the frame produces
    assert!(matches!(
        decomp(&s).unwrap_err(),
        FatbinError::SizeMismatch { .. }
    ));
    let mut s = Spec::ptx(90, 0, ptx_text, "").lz4();
    s.uncompressed_size = 4 << 20;
    assert!(matches!(
        decomp(&s).unwrap_err(),
        FatbinError::Decompress { .. } | FatbinError::SizeMismatch { .. }
    ));
    // sizes one off in either direction
    for delta in [-1i64, 1] {
        for base in [
            Spec::ptx(90, 0, ptx_text, "").zstd(),
            Spec::ptx(90, 0, ptx_text, "").lz4(),
        ] {
            let mut s = base;
            s.uncompressed_size = (s.uncompressed_size as i64 + delta) as u64;
            assert!(decomp(&s).is_err(), "delta {delta}");
        }
    }
    // garbage streams
    let mut s = ok.clone();
    let n = s.payload.len();
    s.payload = vec![0xa5; n];
    assert!(matches!(
        decomp(&s).unwrap_err(),
        FatbinError::Decompress { .. }
    ));
    let mut s = Spec::ptx(90, 0, ptx_text, "").lz4();
    let n = s.payload.len();
    s.payload = vec![0xff; n];
    assert!(decomp(&s).is_err());
    // a valid frame followed by junk inside the stated compressed size
    let mut s = ok.clone();
    s.payload.extend_from_slice(&[1, 2, 3]);
    s.compressed_size += 3;
    assert!(matches!(
        decomp(&s).unwrap_err(),
        FatbinError::Decompress { .. }
    ));
    // the old compression bit
    let mut s = ok.clone();
    s.flags = (s.flags & !FLAG_ZSTD) | FLAG_COMPRESSED_OLD;
    assert!(matches!(
        decomp(&s).unwrap_err(),
        FatbinError::UnknownCompression { .. }
    ));
}

/// The parse-time stream check agrees with the decoders on what they accept and how long
/// their output is, and refuses streams that are not what the entry header says (the hostile
/// corpus's "fatbin_bad_zstd" and "fatbin_bad_lz4": a cubin flagged compressed passed audit
/// and trim, because nothing decoded it).
#[test]
fn stream_check_matches_the_decoders() {
    use super::decompress::check_stream;
    let mut x: u32 = 7;
    for len in [1usize, 5, 15, 16, 19, 270, 4096, 70_000] {
        let data: Vec<u8> = (0..len)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if i % 7 < 4 {
                    b"abcd"[i % 4]
                } else {
                    (x >> 24) as u8
                }
            })
            .collect();
        let size = data.len() as u64;
        let lz = lz4_flex::block::compress(&data);
        check_stream(Compression::Lz4, &lz, size, "t", 0).unwrap();
        assert!(check_stream(Compression::Lz4, &lz, size + 1, "t", 0).is_err());
        let z = zstd::bulk::compress(&data, 3).unwrap();
        check_stream(Compression::Zstd, &z, size, "t", 0).unwrap();
        assert!(check_stream(Compression::Zstd, &z, size + 1, "t", 0).is_err());
        assert!(check_stream(Compression::Zstd, &z[..z.len() - 1], size, "t", 0).is_err());
    }
    let cubin = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0\xbe\0\x01\0\0\0";
    for m in [Compression::Lz4, Compression::Zstd] {
        assert!(check_stream(m, cubin, 4096, "t", 0).is_err(), "{m:?}");
    }
    // a match reaching back before the block, and a block cut inside a length
    assert!(check_stream(Compression::Lz4, &[0x10, b'a', 5, 0, 0x00], 6, "t", 0).is_err());
    assert!(check_stream(Compression::Lz4, &[0xf0, 255], 300, "t", 0).is_err());
}

#[test]
fn hostile_concat_tables() {
    let (data, _) = group(FLAG_ZSTD);
    let c = &parse_section(&data).unwrap()[0];
    let g = c.entries[1].offset;
    let rs = g + 64;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "count 2^31",
            patched(&data, rs, &(1u32 << 31).to_le_bytes()),
        ),
        (
            "count u32::MAX",
            patched(&data, rs, &u32::MAX.to_le_bytes()),
        ),
        ("count 0", patched(&data, rs, &0u32.to_le_bytes())),
        ("count 3 of 4", patched(&data, rs, &3u32.to_le_bytes())),
        (
            "record size huge",
            patched(&data, rs + 4, &u32::MAX.to_le_bytes()),
        ),
        ("record size 4", patched(&data, rs + 4, &4u32.to_le_bytes())),
        // first member: its image past the group's image
        (
            "member offset past the image",
            patched(&data, rs + 8 + 4, &0x10_0000u32.to_le_bytes()),
        ),
        (
            "member size u64::MAX",
            patched(&data, rs + 8 + 8, &u64::MAX.to_le_bytes()),
        ),
        (
            "member options past the table",
            patched(&data, rs + 8 + 20, &0x4000u32.to_le_bytes()),
        ),
        // Found by fatbin_cuda: an identifier inside the table parsed, and a rebuild that
        // shrank the table left it pointing past the new header.
        ("identifier across the member table", {
            let d = patched(&data, g + 32, &72u32.to_le_bytes());
            patched(&d, g + 36, &8u32.to_le_bytes())
        }),
    ];
    for (name, bytes) in cases {
        assert!(parse_section(&bytes).is_err(), "{name} parsed");
    }
}

#[test]
fn zero_size_entries_cannot_loop() {
    // An entry claiming header size 64 and payload 0, repeated: parses, makes progress.
    let mut s = Spec::elf(80, 0, &[]);
    s.payload = Vec::new();
    let data = container(&[s.bytes(), s.bytes(), s.bytes()]);
    let c = parse_section(&data).unwrap();
    assert_eq!(c[0].entries.len(), 3);
    assert_eq!(c[0].entries[2].offset, 16 + 128);
    // A zero-filled container body is an error (header size 0), not an endless loop.
    let mut z = container(&[]);
    z[8..16].copy_from_slice(&128u64.to_le_bytes());
    z.extend_from_slice(&[0; 128]);
    assert!(parse_section(&z).is_err());
}

/// Deterministic xorshift for the mutation test.
pub(crate) struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Mutate a valid section and run everything on it: parse, decompress, rebuild. Only errors,
/// never panics.
pub(crate) fn exercise(data: &[u8]) {
    if let Ok(cs) = parse_section(data) {
        for c in &cs {
            for e in &c.entries {
                let _ = decompress_entry_capped(data, e, 1 << 20);
            }
            let keep: Vec<bool> = (0..c.entries.len()).map(|i| i % 2 == 0).collect();
            let _ = rebuild_container(data, c, &keep);
            let edits: Vec<EntryEdit> = c
                .entries
                .iter()
                .map(|e| EntryEdit::KeepMembers((0..e.members.len()).map(|i| i != 1).collect()))
                .collect();
            let _ = rebuild_container_with(data, c, &edits);
        }
    }
}

pub(crate) fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut d = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(d.len());
        match rng.below(4) {
            0 => d[at] = rng.next() as u8,
            1 => d[at] ^= 1 << rng.below(8),
            2 => {
                let v = [0u8, 0xff, 0x40, 0x80][rng.below(4)];
                let n = (d.len() - at).min(4);
                d[at..at + n].fill(v);
            }
            _ => d.truncate(at),
        }
        if d.is_empty() {
            break;
        }
    }
    d
}

#[test]
fn mutations_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let bases = [sample(), group(FLAG_ZSTD).0, group(FLAG_LZ4).0];
    for i in 0..3000 {
        let m = mutate(&mut rng, &bases[i % bases.len()]);
        exercise(&m);
    }
}

/// CUDA 10.2 and 11.x write an empty options record as (0, 0) with no string; cuobjdump lists
/// such entries, and 12.x+ write (0x48, 0) plus 8 zero bytes instead. Both parse, and a
/// rebuild copies the old header verbatim.
#[test]
fn empty_options_record_of_old_toolkits() {
    let text = b".version 6.5\n.target sm_75\n\0";
    let data = container(&[
        Spec::elf(75, 0, &cubin(6, 128)).lz4().bytes(),
        Spec::ptx_empty_record(75, 0, text).lz4().bytes(),
        Spec::ptx_empty_record(30, 0, text).bytes(),
        Spec::ptx(75, 0, text, "").bytes(),
    ]);
    let c = &parse_section(&data).unwrap()[0];
    let e = &c.entries;
    assert_eq!(e.len(), 4);
    for old in &e[1..3] {
        assert_eq!(old.kind, EntryKind::Ptx);
        assert_eq!(old.header_size, 0x48);
        assert_eq!(old.options, None);
        assert_eq!(old.version, (6, 5));
    }
    assert_eq!(e[1].compression, Compression::Lz4);
    assert_eq!(decompress_entry(&data, &e[1]).unwrap(), text);
    assert_eq!(e[2].arch_name(), "compute_30");
    assert_eq!((e[3].header_size, e[3].options.as_deref()), (0x50, None));
    let out = rebuild_container(&data, c, &[false, true, false, true]).unwrap();
    let again = &parse_section(&out).unwrap()[0];
    assert_eq!(
        again.entries[0].bytes(&out).unwrap(),
        e[1].bytes(&data).unwrap()
    );
    assert_eq!(
        again.entries[1].bytes(&out).unwrap(),
        e[3].bytes(&data).unwrap()
    );
}

/// A record that lies outside its header is refused with the numbers that show why: the
/// message once read "ends at 0x3d30, past the end 0x3d78" for a record starting at 0.
#[test]
fn misplaced_records_are_described_honestly() {
    let text = b".version 7.0\n.target sm_80\n\0";
    let at = 16; // the entry's offset in the section
    // A string at offset 0 with a length: it would lie in the fixed header.
    let mut s = Spec::ptx_empty_record(80, 0, text);
    s.tail = [0u32.to_le_bytes(), 5u32.to_le_bytes()].concat();
    let err = parse_section(&container(&[s.bytes()])).unwrap_err();
    assert_eq!(
        err,
        FatbinError::RecordOutside {
            what: "options string",
            offset: at,
            start: 0,
            end: 5,
            min: 64,
            limit: 0x48,
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains("bytes 0x0..0x5") && msg.contains("0x40..0x48"),
        "{msg}"
    );
    // A string running past the header's end.
    let mut s = Spec::ptx(80, 0, text, "-O3");
    s.tail[4..8].copy_from_slice(&40u32.to_le_bytes());
    let err = parse_section(&container(&[s.bytes()])).unwrap_err();
    assert_eq!(
        err,
        FatbinError::RecordOutside {
            what: "options string",
            offset: at,
            start: 72,
            end: 112,
            min: 64,
            limit: 80,
        }
    );
    // The record itself past the header: a header of 0x40 with an options offset of 0x40.
    let mut s = Spec::ptx(80, 0, text, "");
    s.tail.clear();
    let err = parse_section(&container(&[s.bytes()])).unwrap_err();
    assert!(
        matches!(
            err,
            FatbinError::RecordOutside {
                what: "options record",
                start: 64,
                end: 72,
                limit: 64,
                ..
            }
        ),
        "{err}"
    );
}

/// A concat member whose options record is empty in the old way ends right after the record.
#[test]
fn concat_member_with_an_empty_old_record() {
    let (data, _) = group(FLAG_ZSTD);
    let c = &parse_section(&data).unwrap()[0];
    let g = &c.entries[1];
    // The first member (PTX, 80 bytes: 64 + record + empty string) becomes 72 bytes long:
    // rebuild the table by hand with its record zeroed and the 8 string bytes removed.
    let rs = g.offset + 64;
    let m0 = rs + 8;
    let mut entry = data[g.offset..g.offset + g.header_size].to_vec();
    let m0_rel = m0 - g.offset;
    entry[m0_rel + 64..m0_rel + 72].fill(0);
    entry.drain(m0_rel + 72..m0_rel + 80);
    let hs = entry.len() as u32;
    entry[4..8].copy_from_slice(&hs.to_le_bytes());
    let rec = u32::from_le_bytes(entry[68..72].try_into().unwrap()) - 8;
    entry[68..72].copy_from_slice(&rec.to_le_bytes());
    entry.extend_from_slice(&data[g.payload_offset()..g.offset + g.total_len()]);
    let again = container(&[entry]);
    let p = &parse_section(&again).unwrap()[0].entries[0];
    let lens: Vec<usize> = p.members.iter().map(|m| m.header_len).collect();
    assert_eq!(lens, [72, 64, 64, 80]);
    assert_eq!(
        decompress_entry(&again, p).unwrap(),
        decompress_entry(&data, g).unwrap()
    );
}

/// The containers of `data` as [`walk_windows`] reads them, `window` bytes at a time.
fn windowed(data: &[u8], window: usize, checked: bool) -> Option<Vec<Container>> {
    let read = |at: u64, out: &mut [u8]| {
        let at = at as usize;
        out.copy_from_slice(&data[at..at + out.len()]);
        Ok(())
    };
    let mut got = Vec::new();
    walk_windows(data.len(), window, &read, checked, &mut |c| got.push(c))?;
    Some(got)
}

/// Read a window at a time, a section gives exactly the containers a walk over it held
/// whole gives: with gaps, trailing zeros, containers larger than the window and headers
/// cut by a window's end; and the walk gives up (for the caller to walk it whole) wherever
/// the whole walk would refuse the bytes.
#[test]
fn windows_give_the_containers_of_the_whole_section() {
    let one = sample();
    let mut data = Vec::new();
    for gap in [0usize, 24, 8, 0, 64] {
        data.extend_from_slice(&[0; 64][..gap]);
        data.extend_from_slice(&one);
        while data.len() % CONTAINER_ALIGN != 0 {
            data.push(0);
        }
    }
    data.extend_from_slice(&[0; 13]);
    let whole = parse_section(&data).unwrap();
    assert_eq!(whole.len(), 5);
    for window in [
        1,
        7,
        16,
        40,
        one.len() - 1,
        one.len(),
        one.len() + 9,
        4096,
        WINDOW,
    ] {
        for checked in [true, false] {
            let got = windowed(&data, window, checked);
            assert_eq!(got.as_ref(), Some(&whole), "window {window}");
        }
    }
    assert_eq!(windowed(&[0; 40], 16, true), Some(Vec::new()));
    assert_eq!(windowed(&[], 16, true), Some(Vec::new()));

    let mut misaligned = vec![0u8; 4];
    misaligned.extend_from_slice(&one);
    let mut gap = one.clone();
    gap.extend_from_slice(&[0, 0, 0, 7, 0, 0, 0, 0]);
    let mut magic = data.clone();
    magic[one.len() + 24] ^= 0xff;
    let cut = data[..data.len() - 40].to_vec();
    for bad in [&misaligned, &gap, &magic, &cut] {
        assert!(parse_section(bad).is_err());
        for window in [16, 100, WINDOW] {
            assert_eq!(windowed(bad, window, true), None, "window {window}");
        }
    }
}
