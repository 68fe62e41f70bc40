#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

use super::*;

const HOST: &str = "host-x86_64-unknown-linux--";

fn code(tag: u8, len: usize) -> Vec<u8> {
    let mut v = b"\x7fELF\x02\x01\x01\x40\x03".to_vec();
    v.extend((0..len - 9).map(|i| tag ^ (i % 251) as u8));
    v
}

/// A plain bundle laid out as clang lays it out (4096-aligned code objects).
pub(crate) fn plain(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut table = BUNDLE_MAGIC.to_vec();
    table.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    let table_len = 32 + entries.iter().map(|(t, _)| 24 + t.len()).sum::<usize>();
    let mut at = table_len;
    let mut body = Vec::new();
    for (t, c) in entries {
        at = at.div_ceil(4096) * 4096;
        table.extend_from_slice(&(at as u64).to_le_bytes());
        table.extend_from_slice(&(c.len() as u64).to_le_bytes());
        table.extend_from_slice(&(t.len() as u64).to_le_bytes());
        table.extend_from_slice(t.as_bytes());
        body.push((at, c.clone()));
        at += c.len();
    }
    let mut out = table;
    for (at, c) in body {
        out.resize(at, 0);
        out.extend_from_slice(&c);
    }
    out
}

fn three() -> Vec<u8> {
    plain(&[
        (HOST, Vec::new()),
        ("hipv4-amdgcn-amd-amdhsa--gfx1100", code(1, 3000)),
        ("hipv4-amdgcn-amd-amdhsa--gfx90a:xnack+", code(2, 5000)),
        ("hipv4-amdgcn-amd-amdhsa--gfx942", code(3, 100)),
    ])
}

#[test]
fn triples_name_targets() {
    let t = |s: &str| target_of_triple(s);
    assert_eq!(t(HOST).as_deref(), Some("host"));
    assert_eq!(
        t("hipv4-amdgcn-amd-amdhsa--gfx90a").as_deref(),
        Some("gfx90a")
    );
    assert_eq!(
        t("hipv4-amdgcn-amd-amdhsa--gfx90a:xnack+").as_deref(),
        Some("gfx90a:xnack+")
    );
    assert_eq!(
        t("hipv4-amdgcn-amd-amdhsa--gfx10-3-generic").as_deref(),
        Some("gfx10-3-generic")
    );
    assert_eq!(t("hip-amdgcn-amd-amdhsa-gfx906").as_deref(), Some("gfx906"));
    assert_eq!(
        t("hip-amdgcn-amd-amdhsa-gfx9-generic").as_deref(),
        Some("gfx9-generic")
    );
    assert_eq!(t("openmp-x86_64-pc-linux-gnu"), None);
    assert_eq!(t("nonsense"), None);
}

#[test]
fn parses_plain_bundles_in_a_section() {
    let b = three();
    let (section, offsets) = pack_bundles(&[b.clone(), b.clone()]);
    assert_eq!(offsets, [0, b.len().div_ceil(4096) * 4096]);
    let bundles = parse_section(&section).unwrap();
    assert_eq!(bundles.len(), 2);
    for (x, &at) in bundles.iter().zip(&offsets) {
        assert_eq!(x.offset, at);
        assert_eq!(x.len, b.len());
        assert!(x.ccob.is_none());
        assert_eq!(
            x.targets(),
            [
                Some("host"),
                Some("gfx1100"),
                Some("gfx90a:xnack+"),
                Some("gfx942")
            ]
        );
        assert_eq!(x.entries[1].offset, 4096);
        assert_eq!(x.entries[2].offset, 8192);
        assert!(x.entries[0].is_host());
        assert!(x.entries[1].is_amdgcn());
        assert_eq!(x.entries[1].offload_kind(), "hipv4");
    }
}

#[test]
fn rebuilds_plain_bundles() {
    let b = three();
    let bundles = parse_section(&b).unwrap();
    let x = &bundles[0];
    assert_eq!(rebuild_bundle(&b, x, &[true; 4]).unwrap(), b);
    // The host entry stays even when its flag says otherwise.
    let out = rebuild_bundle(&b, x, &[false, false, true, false]).unwrap();
    let again = parse_section(&out).unwrap();
    assert_eq!(again[0].targets(), [Some("host"), Some("gfx90a:xnack+")]);
    let e = &again[0].entries[1];
    assert_eq!(e.offset % 4096, 0);
    assert_eq!(
        &out[e.offset as usize..][..e.size as usize],
        code(2, 5000).as_slice()
    );
    assert_eq!(
        out,
        plain(&[
            (HOST, Vec::new()),
            ("hipv4-amdgcn-amd-amdhsa--gfx90a:xnack+", code(2, 5000))
        ])
    );
    assert!(matches!(
        rebuild_bundle(&b, x, &[true; 2]).unwrap_err(),
        FatbinError::KeepLength { .. }
    ));
}

#[test]
fn ccob_round_trips_every_version_and_method() {
    let b = three();
    for method in [CcobMethod::Zstd, CcobMethod::Zlib] {
        for version in [1u16, 2, 3] {
            let c = compress_ccob(&b, version, method).unwrap();
            let (section, _) = pack_bundles(&[c.clone(), c.clone(), b.clone()]);
            let bundles = parse_section(&section).unwrap();
            assert_eq!(bundles.len(), 3, "{method:?} v{version}");
            let x = &bundles[0];
            let h = x.ccob.as_ref().unwrap();
            assert_eq!((h.version, h.method), (version, method));
            assert_eq!(h.uncompressed_size, b.len() as u64);
            assert_eq!(h.hash, bundle_hash(&b));
            assert_eq!(
                h.total_size,
                (version > 1).then_some(c.len() as u64),
                "{method:?} v{version}"
            );
            if version > 1 || method == CcobMethod::Zstd {
                assert_eq!(x.len, c.len());
            }
            assert_eq!(x.targets().len(), 4);
            assert_eq!(decompress_ccob(&section, x).unwrap(), b);
            assert_eq!(
                bundle_bytes(&section, &bundles[2]).unwrap().as_ref(),
                b.as_slice()
            );

            let out = rebuild_bundle(&section, x, &[false, true, false, true]).unwrap();
            let again = parse_section(&out).unwrap();
            let h2 = again[0].ccob.as_ref().unwrap();
            assert_eq!((h2.version, h2.method), (version, method));
            assert_eq!(
                again[0].targets(),
                [Some("host"), Some("gfx1100"), Some("gfx942")]
            );
            let inner = decompress_ccob(&out, &again[0]).unwrap();
            assert_eq!(h2.hash, bundle_hash(&inner));
            assert_eq!(h2.uncompressed_size, inner.len() as u64);
            assert_eq!(
                rebuild_bundle(&section, x, &[true; 4]).unwrap(),
                x.stored(&section).unwrap()
            );
        }
    }
}

fn patched(data: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
    let mut d = data.to_vec();
    d[at..at + bytes.len()].copy_from_slice(bytes);
    d
}

#[test]
fn hostile_plain_bundles() {
    let b = three();
    let e1 = 32 + 24 + HOST.len(); // second table entry
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated magic", b[..10].to_vec()),
        ("truncated table", b[..40].to_vec()),
        ("count 2^40", patched(&b, 24, &(1u64 << 40).to_le_bytes())),
        ("count u64::MAX", patched(&b, 24, &u64::MAX.to_le_bytes())),
        ("count 5 of 4", patched(&b, 24, &5u64.to_le_bytes())),
        (
            "offset past the end",
            patched(&b, e1, &(1u64 << 50).to_le_bytes()),
        ),
        (
            "size past the end",
            patched(&b, e1 + 8, &u64::MAX.to_le_bytes()),
        ),
        (
            "triple length huge",
            patched(&b, e1 + 16, &(1u64 << 62).to_le_bytes()),
        ),
        ("bad magic", patched(&b, 0, b"__CLANG_OFFLOAD_BUNDLX")),
        ("non-zero gap", {
            let mut d = b.clone();
            d.resize(b.len().div_ceil(4096) * 4096 + 8, 0);
            let n = d.len();
            d[n - 1] = 1;
            d
        }),
        ("misaligned next bundle", {
            let mut d = b.clone();
            d.extend_from_slice(&[0; 8]);
            d.extend_from_slice(&b);
            d
        }),
    ];
    for (name, bytes) in cases {
        assert!(parse_section(&bytes).is_err(), "{name} parsed");
    }
}

#[test]
fn hostile_ccob() {
    let b = three();
    let v2 = compress_ccob(&b, 2, CcobMethod::Zstd).unwrap();
    let v3 = compress_ccob(&b, 3, CcobMethod::Zstd).unwrap();
    let z2 = compress_ccob(&b, 2, CcobMethod::Zlib).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("version 4", patched(&v2, 4, &4u16.to_le_bytes())),
        ("method 7", patched(&v2, 6, &7u16.to_le_bytes())),
        (
            "total past the end",
            patched(&v2, 8, &u32::MAX.to_le_bytes()),
        ),
        (
            "total below the header",
            patched(&v2, 8, &3u32.to_le_bytes()),
        ),
        (
            "v3 total u64::MAX",
            patched(&v3, 8, &u64::MAX.to_le_bytes()),
        ),
        (
            "uncompressed too small for the table",
            patched(&v2, 12, &40u32.to_le_bytes()),
        ),
        ("garbage stream", {
            let mut d = v2.clone();
            d[24..].fill(0x5a);
            d
        }),
        ("garbage zlib stream", {
            let mut d = z2.clone();
            d[24..].fill(0x5a);
            d
        }),
        ("truncated header", v2[..12].to_vec()),
    ];
    for (name, bytes) in cases {
        assert!(parse_section(&bytes).is_err(), "{name} parsed");
    }
    // Sizes the table survives but the full decompression must refuse.
    for (name, bytes) in [
        (
            "uncompressed one short",
            patched(&v2, 12, &((b.len() - 1) as u32).to_le_bytes()),
        ),
        (
            "uncompressed 3 GiB",
            patched(&v2, 12, &(3u32 << 30).to_le_bytes()),
        ),
        (
            "v3 uncompressed 2^40",
            patched(&v3, 16, &(1u64 << 40).to_le_bytes()),
        ),
        (
            "zlib one long",
            patched(&z2, 12, &((b.len() + 1) as u32).to_le_bytes()),
        ),
    ] {
        if let Ok(bs) = parse_section(&bytes) {
            assert!(
                decompress_ccob(&bytes, &bs[0]).is_err(),
                "{name} decompressed"
            );
            assert!(rebuild_bundle(&bytes, &bs[0], &[true, false, true, true]).is_err());
        }
    }
}

/// A zstd CCOB whose header lies about the uncompressed size is refused when parsed, not only
/// when decompressed: the corpus's "ccob_absurd_size" (2^31 bytes claimed) passed audit,
/// verify and split, which read only the table.
#[test]
fn zstd_ccob_size_lie_is_refused_at_parse() {
    let b = three();
    for (v, at) in [(2u16, 12usize), (3, 16)] {
        let c = compress_ccob(&b, v, CcobMethod::Zstd).unwrap();
        let lie = if v == 2 {
            patched(&c, at, &0x7fff_ffffu32.to_le_bytes())
        } else {
            patched(&c, at, &(1u64 << 40).to_le_bytes())
        };
        assert!(
            matches!(
                parse_section(&lie),
                Err(FatbinError::SizeMismatch { .. }
                    | FatbinError::BadField {
                        field: "uncompressed size",
                        ..
                    })
            ),
            "version {v}"
        );
    }
}

#[test]
fn ccob_bomb_does_not_become_a_huge_table() {
    // A bundle with a million one-letter entries, which compresses to a few bytes.
    let mut bomb = BUNDLE_MAGIC.to_vec();
    bomb.extend_from_slice(&1_000_000u64.to_le_bytes());
    for _ in 0..1_000_000 {
        bomb.extend_from_slice(&[0; 16]);
        bomb.extend_from_slice(&1u64.to_le_bytes());
        bomb.push(b'x');
    }
    let c = compress_ccob(&bomb, 3, CcobMethod::Zstd).unwrap();
    assert!(c.len() < 4096);
    let err = parse_section(&c).unwrap_err();
    assert!(
        matches!(
            err,
            FatbinError::BadField {
                field: "entry table size" | "uncompressed size",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn mutations_never_panic() {
    use crate::fatbin::cuda::tests::{Rng, mutate};
    let b = three();
    let bases = [
        b.clone(),
        compress_ccob(&b, 2, CcobMethod::Zstd).unwrap(),
        compress_ccob(&b, 1, CcobMethod::Zlib).unwrap(),
    ];
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for i in 0..3000 {
        let m = mutate(&mut rng, &bases[i % bases.len()]);
        if let Ok(bs) = parse_section(&m) {
            for x in &bs {
                let _ = decompress_ccob_capped(&m, x, 1 << 20);
                let keep: Vec<bool> = (0..x.entries.len()).map(|i| i % 2 == 1).collect();
                let _ = rebuild_bundle(&m, x, &keep);
            }
        }
    }
}

#[test]
fn rebuilding_many_tiny_entries_is_refused() {
    // 5000 one-byte code objects would need 5000 × 4 KiB of padding.
    let entries: Vec<(String, Vec<u8>)> = (0..5000)
        .map(|i| (format!("hipv4-amdgcn-amd-amdhsa--gfx{i}"), vec![1u8]))
        .collect();
    let mut table = BUNDLE_MAGIC.to_vec();
    table.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    let table_len = 32 + entries.iter().map(|(t, _)| 24 + t.len()).sum::<usize>();
    for (i, (t, _)) in entries.iter().enumerate() {
        table.extend_from_slice(&((table_len + i) as u64).to_le_bytes());
        table.extend_from_slice(&1u64.to_le_bytes());
        table.extend_from_slice(&(t.len() as u64).to_le_bytes());
        table.extend_from_slice(t.as_bytes());
    }
    table.extend(std::iter::repeat_n(1u8, entries.len()));
    let b = &parse_section(&table).unwrap()[0];
    let keep: Vec<bool> = (0..5000).map(|i| i != 0).collect();
    assert!(matches!(
        rebuild_bundle(&table, b, &keep).unwrap_err(),
        FatbinError::BadField {
            field: "entry count",
            ..
        }
    ));
}
