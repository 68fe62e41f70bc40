//! Device-code parsing, selection and rebuilding on the real fixtures (fixtures/cuda, hip,
//! aarch64, ppc64le: built with nvcc 13.4 and clang-19, see fixtures/build.sh).
//!
//! Tests that need NVIDIA's or LLVM's tools run them and fail loudly when they are missing:
//! * `WHEELSLIM_CUOBJDUMP`: path to cuobjdump (13.x);
//! * `WHEELSLIM_CLANG_OFFLOAD_BUNDLER`: path to clang-offload-bundler (default
//!   `clang-offload-bundler-19` from PATH, then /usr/lib/llvm-19/bin).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stderr
)]

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Command;

use wheelslim::fatbin::cuda::{
    self, ArchVariant, Compression, Container, Entry, EntryEdit, EntryKind,
};
use wheelslim::fatbin::hip::{self, CcobMethod};
use wheelslim::fatbin::loose::{self, LooseKind};
use wheelslim::fatbin::select::{GfxSelection, PtxPolicy, Selection, UnmatchedPolicy};

// ------------------------------------------------------------------------------------------
// helpers

fn fixture_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

fn fixture(rel: &str) -> Vec<u8> {
    let p = fixture_path(rel);
    std::fs::read(&p).unwrap_or_else(|e| {
        panic!(
            "fixture {} is missing ({e}); the fixtures live in <repo>/fixtures (fixtures/build.sh)",
            p.display()
        )
    })
}

/// (section name, byte range) of every section named in `names`, in section header order.
fn sections(data: &[u8], names: &[&str]) -> Vec<(String, Range<usize>)> {
    let elf = goblin::elf::Elf::parse(data).unwrap();
    elf.section_headers
        .iter()
        .filter_map(|sh| {
            let name = elf.shdr_strtab.get_at(sh.sh_name)?;
            names.contains(&name).then(|| {
                let start = sh.sh_offset as usize;
                (name.to_string(), start..start + sh.sh_size as usize)
            })
        })
        .collect()
}

const CUDA_SECTIONS: &[&str] = &[".nv_fatbin", "__nv_relfatbin"];

/// A parsed fatbin section: its name, its bytes in the file, its containers.
type ParsedSection = (String, Range<usize>, Vec<Container>);
/// Per section name, per container, the entries as [`describe`] writes them.
type Listing<'a> = Vec<(&'a str, Vec<Vec<String>>)>;

/// Every fatbin section of a fixture, parsed.
fn cuda_sections(rel: &str) -> (Vec<u8>, Vec<ParsedSection>) {
    let data = fixture(rel);
    let secs = sections(&data, CUDA_SECTIONS)
        .into_iter()
        .map(|(name, r)| {
            let cs = cuda::parse_section(&data[r.clone()])
                .unwrap_or_else(|e| panic!("{rel} {name}: {e}"));
            (name, r, cs)
        })
        .collect();
    (data, secs)
}

const CUDA_LIBS: &[&str] = &[
    "cuda/libfix_plain.so",
    "cuda/libfix_default.so",
    "cuda/libfix_compress_all.so",
    "cuda/libfix_lz4.so",
    "cuda/libfix_concat.so",
    "cuda/libfix_debug.so",
    "cuda/libfix_rdc.so",
    "aarch64/libfix_a64.so",
    "ppc64le/libfix_ppc64le.so",
];

/// `E sm_90a zstd` / `P compute_90 none` / `C sm_0 zstd [P compute_90, E sm_90a]`.
fn describe(e: &Entry) -> String {
    let k = match e.kind {
        EntryKind::Ptx => "P",
        EntryKind::Elf => "E",
        EntryKind::Concat => "C",
        EntryKind::Unknown(_) => "?",
    };
    let mut s = format!("{k} {} {}", e.arch_name(), e.compression.name());
    if !e.members.is_empty() {
        let m: Vec<String> = e
            .members
            .iter()
            .map(|m| match m.kind {
                EntryKind::Ptx => format!("P {}", m.arch.compute_name()),
                _ => format!("E {}", m.arch),
            })
            .collect();
        s.push_str(&format!(" [{}]", m.join(", ")));
    }
    s
}

/// One TU's entries as nvcc built them for the fixtures: SASS for 50…120, PTX 90 and 120.
fn tu(ptx: &str, elf: &str) -> Vec<String> {
    [
        ("E", "sm_50"),
        ("E", "sm_70"),
        ("E", "sm_80"),
        ("E", "sm_86"),
        ("P", "compute_90"),
        ("E", "sm_90"),
        ("E", "sm_90a"),
        ("E", "sm_100f"),
        ("P", "compute_120"),
        ("E", "sm_120"),
    ]
    .iter()
    .map(|(k, a)| format!("{k} {a} {}", if *k == "P" { ptx } else { elf }))
    .collect()
}

fn dlink() -> Vec<String> {
    vec!["E sm_75 none".to_string()]
}

// ------------------------------------------------------------------------------------------
// CUDA: parsing

#[test]
fn cuda_fixtures_parse_as_built() {
    let concat = vec![
        "C sm_0 zstd [P compute_90, P compute_120]".to_string(),
        "C sm_0 zstd [E sm_50, E sm_70, E sm_80, E sm_86, E sm_90, E sm_90a]".to_string(),
        "C sm_0 zstd [E sm_100f, E sm_120]".to_string(),
    ];
    let small = |p: &str| {
        vec![
            "E sm_80 none".to_string(),
            format!("P compute_90 {p}"),
            "E sm_90 none".to_string(),
        ]
    };
    let rdc_rel = vec![
        "E sm_80 zstd".to_string(),
        "P compute_90 zstd".to_string(),
        "E sm_90 zstd".to_string(),
    ];
    // (fixture, [(section, [container listing])])
    let expected: Vec<(&str, Listing<'_>)> = vec![
        (
            "cuda/libfix_plain.so",
            vec![(
                ".nv_fatbin",
                vec![dlink(), tu("none", "none"), tu("none", "none")],
            )],
        ),
        (
            "cuda/libfix_default.so",
            vec![(
                ".nv_fatbin",
                vec![dlink(), tu("zstd", "none"), tu("zstd", "none")],
            )],
        ),
        (
            "cuda/libfix_lz4.so",
            vec![(
                ".nv_fatbin",
                vec![dlink(), tu("lz4", "none"), tu("lz4", "none")],
            )],
        ),
        (
            "cuda/libfix_compress_all.so",
            vec![(
                ".nv_fatbin",
                vec![dlink(), tu("zstd", "zstd"), tu("zstd", "zstd")],
            )],
        ),
        (
            "cuda/libfix_debug.so",
            vec![(
                ".nv_fatbin",
                vec![dlink(), tu("zstd", "none"), tu("zstd", "none")],
            )],
        ),
        (
            "cuda/libfix_concat.so",
            vec![(".nv_fatbin", vec![dlink(), concat.clone(), concat])],
        ),
        (
            "cuda/libfix_rdc.so",
            vec![
                (
                    ".nv_fatbin",
                    vec![vec!["E sm_80 none".to_string(), "E sm_90 none".to_string()]],
                ),
                ("__nv_relfatbin", vec![rdc_rel.clone(), rdc_rel]),
            ],
        ),
        (
            "aarch64/libfix_a64.so",
            vec![(".nv_fatbin", vec![small("zstd"), small("zstd")])],
        ),
        (
            "ppc64le/libfix_ppc64le.so",
            vec![(".nv_fatbin", vec![small("zstd")])],
        ),
    ];
    for (rel, want) in expected {
        let (_, secs) = cuda_sections(rel);
        let got: Vec<(String, Vec<Vec<String>>)> = secs
            .iter()
            .map(|(n, _, cs)| {
                (
                    n.clone(),
                    cs.iter()
                        .map(|c| c.entries.iter().map(describe).collect())
                        .collect(),
                )
            })
            .collect();
        let want: Vec<(String, Vec<Vec<String>>)> =
            want.into_iter().map(|(n, v)| (n.to_string(), v)).collect();
        assert_eq!(got, want, "{rel}");
    }
}

#[test]
fn cuda_fixture_headers_and_records() {
    let (_, secs) = cuda_sections("cuda/libfix_debug.so");
    let cs = &secs[0].2;
    for (c, id) in cs[1..].iter().zip(["ka.cu", "kb.cu"]) {
        for e in &c.entries {
            assert_eq!(e.identifier.as_deref(), Some(id));
            assert!(!e.debug, "-lineinfo is not -G");
            if e.kind == EntryKind::Ptx {
                assert_eq!(e.options.as_deref(), Some(" --generate-line-info "));
                assert_eq!(e.version, (9, 4));
            }
        }
    }
    let (_, secs) = cuda_sections("cuda/libfix_rdc.so");
    let rel = &secs[1].2[0];
    assert_eq!(rel.entries[1].options.as_deref(), Some("--compile-only  "));
    assert_eq!(rel.entries[1].header_size, 0x60);
    let (_, secs) = cuda_sections("cuda/libfix_plain.so");
    let c = &secs[0].2[1];
    let sizes: Vec<usize> = c.entries.iter().map(|e| e.header_size).collect();
    assert_eq!(
        sizes,
        [0x40, 0x40, 0x40, 0x40, 0x50, 0x40, 0x40, 0x78, 0x50, 0x78]
    );
    let abi: Vec<(u16, u16)> = c.entries.iter().map(|e| e.version).collect();
    assert_eq!(abi[0], (1, 7), "sm_50 comes from ptxas 12.9");
    assert_eq!(abi[2], (1, 8));
    assert_eq!(c.entries[6].arch.variant, ArchVariant::A);
    assert_eq!(c.entries[7].arch.variant, ArchVariant::F);
    assert!(
        c.entries[7].options.is_none(),
        "binary option blob is not text"
    );
}

#[test]
fn every_image_decompresses_to_its_stated_size() {
    for rel in CUDA_LIBS {
        let (data, secs) = cuda_sections(rel);
        for (name, r, cs) in &secs {
            let sec = &data[r.clone()];
            for c in cs {
                for e in &c.entries {
                    let img = cuda::decompress_entry(sec, e)
                        .unwrap_or_else(|err| panic!("{rel} {name}: {err}"));
                    assert_eq!(
                        img.len() as u64,
                        e.image_bytes(),
                        "{rel} {name} {:#x}",
                        e.offset
                    );
                    if e.compression != Compression::None {
                        assert_eq!(img.len() as u64, e.uncompressed_size);
                    }
                    let mut images = vec![(e.kind, img.as_slice())];
                    if e.kind == EntryKind::Concat {
                        images = e
                            .members
                            .iter()
                            .map(|m| {
                                let at = m.offset as usize;
                                (m.kind, &img[at..at + m.size as usize])
                            })
                            .collect();
                    }
                    for (kind, bytes) in images {
                        match kind {
                            EntryKind::Elf => {
                                assert!(bytes.starts_with(b"\x7fELF"), "{rel} {:#x}", e.offset)
                            }
                            EntryKind::Ptx => {
                                let text = String::from_utf8_lossy(bytes);
                                assert!(text.contains(".version "), "{rel} {:#x}", e.offset);
                                assert!(!text.trim_end_matches('\0').contains('\0'));
                            }
                            _ => panic!("{rel}: unexpected kind {kind:?}"),
                        }
                    }
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// CUDA: rebuilding

#[test]
fn rebuilding_with_everything_kept_is_identity() {
    for rel in CUDA_LIBS {
        let (data, secs) = cuda_sections(rel);
        for (name, r, cs) in &secs {
            let sec = &data[r.clone()];
            for c in cs {
                let all = vec![true; c.entries.len()];
                let out = cuda::rebuild_container(sec, c, &all).unwrap();
                assert_eq!(out, &sec[c.offset..c.end()], "{rel} {name} {:#x}", c.offset);
                let edits: Vec<EntryEdit> = c
                    .entries
                    .iter()
                    .map(|e| EntryEdit::KeepMembers(vec![true; e.members.len()]))
                    .collect();
                let out = cuda::rebuild_container_with(sec, c, &edits).unwrap();
                assert_eq!(out, &sec[c.offset..c.end()]);
            }
        }
    }
}

#[test]
fn rebuilding_a_subset_keeps_exactly_that_subset() {
    for rel in CUDA_LIBS {
        let (data, secs) = cuda_sections(rel);
        for (name, r, cs) in &secs {
            let sec = &data[r.clone()];
            for c in cs {
                let n = c.entries.len();
                for pattern in 0..4usize {
                    let keep: Vec<bool> = (0..n).map(|i| (i + pattern) % 3 == 0).collect();
                    let out = cuda::rebuild_container(sec, c, &keep).unwrap();
                    let again = cuda::parse_section(&out).unwrap();
                    assert_eq!(again.len(), 1, "{rel} {name}");
                    let kept: Vec<&Entry> = c
                        .entries
                        .iter()
                        .zip(&keep)
                        .filter(|(_, k)| **k)
                        .map(|(e, _)| e)
                        .collect();
                    assert_eq!(again[0].entries.len(), kept.len());
                    for (new, old) in again[0].entries.iter().zip(kept) {
                        assert_eq!(describe(new), describe(old));
                        assert_eq!(new.bytes(&out).unwrap(), old.bytes(sec).unwrap());
                        assert_eq!(
                            cuda::decompress_entry(&out, new).unwrap(),
                            cuda::decompress_entry(sec, old).unwrap()
                        );
                    }
                }
            }
        }
    }
}

/// The images a selection keeps in a container, as `E sm_90a` / `P compute_90`, in order.
fn kept_images(c: &Container, sel: &Selection) -> Vec<String> {
    let choice = sel.choose_container(c);
    let mut out = Vec::new();
    for (e, ch) in c.entries.iter().zip(&choice.entries) {
        if e.members.is_empty() {
            if ch.keep {
                out.push(describe(e).rsplit_once(' ').unwrap().0.to_string());
            }
        } else {
            for (m, mc) in e.members.iter().zip(&ch.members) {
                if mc.keep {
                    out.push(match m.kind {
                        EntryKind::Ptx => format!("P {}", m.arch.compute_name()),
                        _ => format!("E {}", m.arch),
                    });
                }
            }
        }
    }
    out
}

fn images_of(c: &Container) -> Vec<String> {
    let everything = Selection::default();
    kept_images(c, &everything)
}

#[test]
fn selections_rebuild_real_containers_including_concat_groups() {
    let cases: &[(&str, &[&str])] = &[
        ("90", &["E sm_90", "E sm_90a", "P compute_90"]),
        // No PTX ≤ 86: the oldest plain PTX stays so newer GPUs can still JIT.
        ("86", &["E sm_86", "P compute_90"]),
        ("100", &["P compute_90", "E sm_100f"]),
        ("120", &["P compute_120", "E sm_120"]),
        ("80,90", &["E sm_80", "E sm_90", "E sm_90a", "P compute_90"]),
    ];
    for rel in [
        "cuda/libfix_plain.so",
        "cuda/libfix_compress_all.so",
        "cuda/libfix_concat.so",
    ] {
        let (data, secs) = cuda_sections(rel);
        let (_, r, cs) = &secs[0];
        let sec = &data[r.clone()];
        for (targets, want) in cases {
            let sel = Selection::parse_targets(targets).unwrap();
            let mut rebuilt = Vec::new();
            for c in &cs[1..] {
                let choice = sel.choose_container(c);
                assert!(!choice.unmatched, "{rel} {targets}");
                let out = cuda::rebuild_container_with(sec, c, &choice.edits()).unwrap();
                let again = &cuda::parse_section(&out).unwrap()[0];
                let mut got = images_of(again);
                let mut want: Vec<String> = want.iter().map(ToString::to_string).collect();
                got.sort();
                want.sort();
                assert_eq!(got, want, "{rel} {targets}");
                // the kept images are byte-identical to the originals
                let originals = member_images(sec, c);
                for (name, bytes) in member_images(&out, again) {
                    let orig = originals.iter().find(|(n, _)| *n == name).unwrap();
                    assert_eq!(bytes, orig.1, "{rel} {targets} {name}");
                }
                let exact = sel.kept_bytes_exact(sec, std::slice::from_ref(c)).unwrap();
                assert_eq!(exact, out.len() as u64);
                if rel.contains("concat") {
                    let est = choice.kept_bytes(c);
                    eprintln!(
                        "{rel} {targets}: {} -> {} (estimated {est})",
                        c.len,
                        out.len()
                    );
                } else {
                    assert_eq!(choice.kept_bytes(c), out.len() as u64);
                }
                rebuilt.push(out);
            }
            // The dlink container matches nothing for these targets.
            let dl = sel.choose_container(&cs[0]);
            assert!(dl.unmatched && dl.keeps_everything());
            assert!(
                sel.clone()
                    .with_unmatched(UnmatchedPolicy::Drop)
                    .choose_container(&cs[0])
                    .keep_flags()
                    == [false]
            );
        }
    }
}

/// Every image of a container, decompressed: (description, bytes).
fn member_images(sec: &[u8], c: &Container) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in &c.entries {
        let img = cuda::decompress_entry(sec, e).unwrap();
        if e.members.is_empty() {
            out.push((describe(e).rsplit_once(' ').unwrap().0.to_string(), img));
        } else {
            for m in &e.members {
                let at = m.offset as usize;
                let name = match m.kind {
                    EntryKind::Ptx => format!("P {}", m.arch.compute_name()),
                    _ => format!("E {}", m.arch),
                };
                out.push((name, img[at..at + m.size as usize].to_vec()));
            }
        }
    }
    out
}

#[test]
fn kept_bytes_match_rebuilt_sizes_and_per_arch_bytes_add_up() {
    let (data, secs) = cuda_sections("cuda/libfix_default.so");
    let (_, r, cs) = &secs[0];
    let sec = &data[r.clone()];
    let stored: u64 = cs.iter().map(|c| c.len as u64).sum();
    let matrix = wheelslim::fatbin::select::bytes_per_arch(cs);
    let entries: u64 = matrix.values().map(|a| a.stored).sum();
    let headers: u64 = cs.iter().map(|c| c.header_size as u64).sum();
    assert_eq!(entries + headers, stored);
    assert_eq!(matrix["sm_90a"].images, 2);
    assert_eq!(matrix["compute_90"].images, 2);
    for targets in ["75", "80", "90", "120", "80,86,90a,100f,120"] {
        let sel = Selection::parse_targets(targets)
            .unwrap()
            .with_ptx(PtxPolicy::All);
        let total: u64 = cs
            .iter()
            .map(|c| {
                cuda::rebuild_container_with(sec, c, &sel.choose_container(c).edits())
                    .unwrap()
                    .len() as u64
            })
            .sum();
        assert_eq!(sel.kept_bytes(cs), total, "{targets}");
    }
}

// ------------------------------------------------------------------------------------------
// HIP

fn hip_section(rel: &str) -> (Vec<u8>, Range<usize>) {
    let data = fixture(rel);
    let (_, r) = sections(&data, &[".hip_fatbin"]).pop().unwrap();
    (data, r)
}

#[test]
fn hip_fixtures_parse() {
    let want = ["host", "gfx1100", "gfx90a", "gfx942"];
    let (data, r) = hip_section("hip/libhipfix.so");
    let plain = hip::parse_section(&data[r.clone()]).unwrap();
    assert_eq!(plain.len(), 2);
    assert_eq!(plain[1].offset, 0x7000);
    let (cdata, cr) = hip_section("hip/libhipfix_ccob.so");
    let ccob = hip::parse_section(&cdata[cr.clone()]).unwrap();
    assert_eq!(ccob.len(), 2);
    assert_eq!(ccob[1].offset, 0x1000);
    for (p, c) in plain.iter().zip(&ccob) {
        assert_eq!(p.targets(), want.map(Some));
        assert_eq!(c.targets(), want.map(Some));
        assert!(p.entries.iter().skip(1).all(|e| e.offset % 4096 == 0));
        let h = c.ccob.as_ref().unwrap();
        assert_eq!(
            (h.version, h.method, h.header_len),
            (2, CcobMethod::Zstd, 24)
        );
        assert_eq!(h.total_size, Some(c.len as u64));
        // The compressed bundle holds exactly the plain bundle of the same unit, and its
        // hash is the low 64 bits (first 8 digest bytes, little-endian) of its MD5.
        let inner = hip::decompress_ccob(&cdata[cr.clone()], c).unwrap();
        assert_eq!(inner, p.stored(&data[r.clone()]).unwrap());
        assert_eq!(h.uncompressed_size, inner.len() as u64);
        assert_eq!(h.hash, hip::bundle_hash(&inner));
    }
}

#[test]
fn hip_rebuilds_keep_exactly_the_chosen_targets() {
    for rel in ["hip/libhipfix.so", "hip/libhipfix_ccob.so"] {
        let (data, r) = hip_section(rel);
        let sec = &data[r];
        let bundles = hip::parse_section(sec).unwrap();
        let mut rebuilt = Vec::new();
        for b in &bundles {
            assert_eq!(
                hip::rebuild_bundle(sec, b, &[true; 4]).unwrap(),
                b.stored(sec).unwrap()
            );
            let full = hip::bundle_bytes(sec, b).unwrap();
            for (gfx, want) in [
                ("gfx90a", vec!["host", "gfx90a"]),
                ("gfx942,gfx1100", vec!["host", "gfx1100", "gfx942"]),
                ("gfx90a:xnack+", vec!["host", "gfx90a"]),
                ("gfx908", vec!["host"]),
            ] {
                // gfx908 matches nothing: dropped only when asked (kept whole by default).
                let choice = GfxSelection::parse(gfx)
                    .unwrap()
                    .with_unmatched(UnmatchedPolicy::Drop)
                    .choose(&b.entries);
                let out = hip::rebuild_bundle(sec, b, &choice.keep).unwrap();
                let again = hip::parse_section(&out).unwrap();
                assert_eq!(again.len(), 1);
                let got: Vec<&str> = again[0].targets().into_iter().flatten().collect();
                assert_eq!(got, want, "{rel} {gfx}");
                assert_eq!(again[0].ccob.is_some(), b.ccob.is_some());
                let inner = hip::bundle_bytes(&out, &again[0]).unwrap();
                if let Some(h) = &again[0].ccob {
                    assert_eq!(h.hash, hip::bundle_hash(&inner));
                    assert_eq!(h.version, 2);
                }
                for e in &again[0].entries {
                    assert_eq!(e.offset % 4096, 0);
                    let old = b.entries.iter().find(|o| o.triple == e.triple).unwrap();
                    assert_eq!(
                        &inner[e.offset as usize..][..e.size as usize],
                        &full[old.offset as usize..][..old.size as usize]
                    );
                }
                if gfx == "gfx90a" {
                    rebuilt.push(out);
                }
            }
        }
        let (packed, offsets) = hip::pack_bundles(&rebuilt);
        let again = hip::parse_section(&packed).unwrap();
        assert_eq!(again.iter().map(|b| b.offset).collect::<Vec<_>>(), offsets);
    }
}

// ------------------------------------------------------------------------------------------
// loose files

#[test]
fn loose_fixtures_classify() {
    let cases: &[(&str, LooseKind, &[&str])] = &[
        ("cuda/loose/fix_sm80.cubin", LooseKind::Cubin, &["sm_80"]),
        (
            "cuda/loose/fix_compute90.ptx",
            LooseKind::Ptx,
            &["compute_90"],
        ),
        (
            "cuda/loose/fix_sm80_sm90_compute90.fatbin",
            LooseKind::Fatbin,
            &["sm_80", "compute_90", "sm_90"],
        ),
        (
            "hip/hipfix_gfx90a.hsaco",
            LooseKind::AmdCodeObject,
            &["gfx90a"],
        ),
        (
            "hip/hipfix_gfx942.co",
            LooseKind::AmdCodeObject,
            &["gfx942"],
        ),
    ];
    for (rel, kind, archs) in cases {
        let data = fixture(rel);
        assert_eq!(
            loose::classify(rel, &data[..64.min(data.len())]),
            Some(*kind),
            "{rel}"
        );
        let info = loose::inspect(rel, &data).unwrap().unwrap();
        assert_eq!(info.kind, *kind);
        assert_eq!(info.archs, *archs, "{rel}");
        assert_eq!(info.bytes, data.len() as u64);
    }
    // The cubins inside the fatbins say the same as the fatbin headers.
    for rel in CUDA_LIBS {
        let (data, secs) = cuda_sections(rel);
        for (_, r, cs) in &secs {
            for c in cs {
                for (name, img) in member_images(&data[r.clone()], c) {
                    if let Some(arch) = name.strip_prefix("E ") {
                        let got = loose::cubin_arch(&img).unwrap().to_string();
                        assert_eq!(got, arch, "{rel}");
                    }
                }
            }
        }
    }
    let host = fixture("cuda/libfix_plain.so");
    assert_eq!(loose::classify("libfix_plain.so", &host[..64]), None);
}

// ------------------------------------------------------------------------------------------
// hostile input

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut d = base.to_vec();
    for _ in 0..1 + rng.below(3) {
        if d.is_empty() {
            break;
        }
        let at = rng.below(d.len());
        match rng.below(5) {
            0 => d[at] = rng.next() as u8,
            1 => d[at] ^= 1 << rng.below(8),
            2 => {
                let v = [0u8, 0xff, 0x7f, 0x80][rng.below(4)];
                let n = (d.len() - at).min(1 + rng.below(8));
                d[at..at + n].fill(v);
            }
            3 => d.truncate(at),
            _ => {
                // Aim at header fields: the first bytes of a container or entry.
                let at = rng.below(d.len().min(0x800));
                d[at] = rng.next() as u8;
            }
        }
    }
    d
}

#[test]
fn mutated_fixture_sections_never_panic() {
    let mut bases: Vec<Vec<u8>> = Vec::new();
    for rel in [
        "cuda/libfix_concat.so",
        "cuda/libfix_debug.so",
        "cuda/libfix_lz4.so",
        "cuda/libfix_rdc.so",
    ] {
        let (data, secs) = cuda_sections(rel);
        for (_, r, cs) in &secs {
            for c in cs {
                bases.push(data[r.start + c.offset..r.start + c.end()].to_vec());
            }
        }
    }
    let mut hip_bases: Vec<Vec<u8>> = Vec::new();
    for rel in ["hip/libhipfix.so", "hip/libhipfix_ccob.so"] {
        let (data, r) = hip_section(rel);
        hip_bases.push(data[r].to_vec());
    }
    let mut rng = Rng(0x853c_49e6_748f_ea9b);
    for i in 0..4000 {
        let m = mutate(&mut rng, &bases[i % bases.len()]);
        if let Ok(cs) = cuda::parse_section(&m) {
            for c in &cs {
                for e in &c.entries {
                    let _ = cuda::decompress_entry_capped(&m, e, 1 << 24);
                }
                let sel = Selection::parse_targets("90").unwrap();
                let _ = cuda::rebuild_container_with(&m, c, &sel.choose_container(c).edits());
            }
        }
        let _ = loose::inspect("x.fatbin", &m);
        let h = mutate(&mut rng, &hip_bases[i % hip_bases.len()]);
        if let Ok(bs) = hip::parse_section(&h) {
            let sel = GfxSelection::parse("gfx90a").unwrap();
            for b in &bs {
                let _ = hip::decompress_ccob_capped(&h, b, 1 << 24);
                let _ = hip::rebuild_bundle(&h, b, &sel.choose(&b.entries).keep);
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// NVIDIA's cuobjdump as the oracle

fn cuobjdump() -> PathBuf {
    let p = std::env::var_os("WHEELSLIM_CUOBJDUMP").unwrap_or_else(|| {
        panic!(
            "WHEELSLIM_CUOBJDUMP is not set: point it at cuobjdump 13.x \
             (pip install nvidia-cuda-cuobjdump; <site-packages>/nvidia/cu13/bin/cuobjdump)"
        )
    });
    let p = PathBuf::from(p);
    assert!(
        p.is_file(),
        "WHEELSLIM_CUOBJDUMP={} is not a file",
        p.display()
    );
    p
}

/// cuobjdump's listing of a file: ("ELF" | "PTX", arch as cuobjdump names it).
fn cuobjdump_list(path: &Path) -> Vec<(String, String)> {
    let out = Command::new(cuobjdump())
        .args(["-all", "--list-elf", "--list-ptx"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cuobjdump failed on {}: {out:?}",
        path.display()
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (head, name) = l.split_once(": ")?;
            let kind = head.split_whitespace().next()?;
            if !matches!(kind, "ELF" | "PTX") || !head.contains(" file") {
                return None;
            }
            // name.N.sm_90a.cubin, ka.sm_90.cubin → sm_90a
            let stem = name.trim().rsplit_once('.')?.0;
            let arch = stem.rsplit('.').next()?;
            Some((kind.to_string(), arch.to_string()))
        })
        .collect()
}

/// Our parse in cuobjdump's terms: it prints PTX as `sm_90`, and family cubins without "f".
fn our_list(cs: &[Container]) -> Vec<(String, String)> {
    let name = |kind: EntryKind, arch: cuda::CudaArch| {
        let sass = cuda::CudaArch {
            variant: if arch.variant == ArchVariant::F {
                ArchVariant::Base
            } else {
                arch.variant
            },
            ..arch
        };
        match kind {
            EntryKind::Ptx => ("PTX".to_string(), sass.to_string()),
            _ => ("ELF".to_string(), sass.to_string()),
        }
    };
    let mut out = Vec::new();
    for c in cs {
        for e in &c.entries {
            if e.members.is_empty() {
                out.push(name(e.kind, e.arch));
            } else {
                out.extend(e.members.iter().map(|m| name(m.kind, m.arch)));
            }
        }
    }
    out
}

#[test]
fn cuobjdump_lists_what_we_parse() {
    for rel in CUDA_LIBS {
        let (_, secs) = cuda_sections(rel);
        let ours: Vec<(String, String)> = secs.iter().flat_map(|(_, _, cs)| our_list(cs)).collect();
        let theirs = cuobjdump_list(&fixture_path(rel));
        assert_eq!(ours, theirs, "{rel}");
        eprintln!("{rel}: {} images agree with cuobjdump", ours.len());
    }
    for rel in [
        "cuda/loose/fix_sm80_sm90_compute90.fatbin",
        "cuda/loose/fix_sm80.cubin",
    ] {
        let data = fixture(rel);
        let theirs = cuobjdump_list(&fixture_path(rel));
        let ours = if rel.ends_with(".fatbin") {
            our_list(&cuda::parse_section(&data).unwrap())
        } else {
            vec![(
                "ELF".to_string(),
                loose::cubin_arch(&data).unwrap().to_string(),
            )]
        };
        assert_eq!(ours, theirs, "{rel}");
    }
}

#[test]
fn cuobjdump_reads_rebuilt_containers() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for rel in CUDA_LIBS {
        let (data, secs) = cuda_sections(rel);
        for (name, r, cs) in &secs {
            let sec = &data[r.clone()];
            for (ci, c) in cs.iter().enumerate() {
                for targets in ["90", "80,120", "100", "86"] {
                    let sel = Selection::parse_targets(targets).unwrap();
                    let out =
                        cuda::rebuild_container_with(sec, c, &sel.choose_container(c).edits())
                            .unwrap();
                    let again = cuda::parse_section(&out).unwrap();
                    if again[0].entries.is_empty() {
                        continue;
                    }
                    let file = dir.path().join(format!("r{checked}.fatbin"));
                    std::fs::write(&file, &out).unwrap();
                    assert_eq!(
                        cuobjdump_list(&file),
                        our_list(&again),
                        "{rel} {name} container {ci} targets {targets}"
                    );
                    checked += 1;
                }
            }
        }
    }
    eprintln!("{checked} rebuilt containers listed by cuobjdump as parsed");
}

#[test]
fn cuobjdump_extracts_rebuilt_concat_members_unchanged() {
    let (data, secs) = cuda_sections("cuda/libfix_concat.so");
    let (_, r, cs) = &secs[0];
    let sec = &data[r.clone()];
    for (ci, c) in cs.iter().enumerate().skip(1) {
        for targets in ["90", "86,120", "100"] {
            let sel = Selection::parse_targets(targets).unwrap();
            let edits = sel.choose_container(c).edits();
            assert!(edits.iter().any(|e| matches!(e, EntryEdit::KeepMembers(_))));
            let out = cuda::rebuild_container_with(sec, c, &edits).unwrap();
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("t.fatbin"), &out).unwrap();
            let status = Command::new(cuobjdump())
                .current_dir(dir.path())
                .args(["-xelf", "all", "-xptx", "all", "t.fatbin"])
                .output()
                .unwrap();
            assert!(status.status.success(), "{status:?}");
            let ours = member_images(&out, &cuda::parse_section(&out).unwrap()[0]);
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.file_name().unwrap() != "t.fatbin")
                .collect();
            files.sort();
            assert_eq!(files.len(), ours.len(), "container {ci} targets {targets}");
            for f in files {
                let fname = f.file_name().unwrap().to_string_lossy().to_string();
                let (stem, ext) = fname.rsplit_once('.').unwrap();
                let arch = stem.rsplit('.').next().unwrap();
                let bytes = std::fs::read(&f).unwrap();
                let found = ours.iter().any(|(name, img)| {
                    let (kind, a) = name.split_once(' ').unwrap();
                    let a = a.replace("compute_", "sm_").replace("100f", "100");
                    let same_kind = (kind == "E") == (ext == "cubin");
                    let trimmed: &[u8] = {
                        let end = img.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                        &img[..end]
                    };
                    same_kind && a == arch && (bytes == *img || (ext == "ptx" && bytes == trimmed))
                });
                assert!(found, "container {ci} targets {targets}: {fname} differs");
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// LLVM's clang-offload-bundler as the oracle

fn bundler() -> PathBuf {
    if let Some(p) = std::env::var_os("WHEELSLIM_CLANG_OFFLOAD_BUNDLER") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "WHEELSLIM_CLANG_OFFLOAD_BUNDLER={} is not a file",
            p.display()
        );
        return p;
    }
    crate::tools::need("clang-offload-bundler-19", "clang-tools-19")
}

#[test]
fn clang_offload_bundler_lists_and_unbundles_rebuilt_bundles() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    for rel in ["hip/libhipfix.so", "hip/libhipfix_ccob.so"] {
        let (data, r) = hip_section(rel);
        let sec = &data[r];
        for b in hip::parse_section(sec).unwrap() {
            let full = hip::bundle_bytes(sec, &b).unwrap();
            for gfx in ["gfx90a", "gfx942,gfx1100", "gfx1100", "gfx908"] {
                let keep = GfxSelection::parse(gfx).unwrap().choose(&b.entries).keep;
                let out = hip::rebuild_bundle(sec, &b, &keep).unwrap();
                let file = dir.path().join(format!("b{n}.bin"));
                n += 1;
                std::fs::write(&file, &out).unwrap();
                let listed = Command::new(bundler())
                    .args(["--list", "--type=o", "-verbose"])
                    .arg(format!("--input={}", file.display()))
                    .output()
                    .unwrap();
                assert!(listed.status.success(), "{rel} {gfx}: {listed:?}");
                let mut got: Vec<String> = String::from_utf8_lossy(&listed.stdout)
                    .lines()
                    .map(str::to_string)
                    .collect();
                got.sort();
                let mut want: Vec<String> = b
                    .entries
                    .iter()
                    .zip(&keep)
                    .filter(|(e, k)| **k || e.is_host())
                    .map(|(e, _)| e.triple.clone())
                    .collect();
                want.sort();
                assert_eq!(got, want, "{rel} {gfx}");
                if b.ccob.is_some() {
                    // clang recomputes the hash in verbose mode: it must match ours.
                    let log = String::from_utf8_lossy(&listed.stderr).to_string();
                    let hash = |key: &str| {
                        log.lines()
                            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
                            .unwrap_or_else(|| panic!("no `{key}` in {log}"))
                    };
                    assert_eq!(
                        hash("Stored hash:"),
                        hash("Recalculated hash:"),
                        "{rel} {gfx}"
                    );
                }
                for e in b
                    .entries
                    .iter()
                    .zip(&keep)
                    .filter(|(e, k)| **k && !e.is_host())
                {
                    let (e, _) = e;
                    let co = dir.path().join(format!("b{n}.co"));
                    let un = Command::new(bundler())
                        .args(["--unbundle", "--type=o"])
                        .arg(format!("--input={}", file.display()))
                        .arg(format!("--targets={}", e.triple))
                        .arg(format!("--output={}", co.display()))
                        .output()
                        .unwrap();
                    assert!(un.status.success(), "{rel} {gfx}: {un:?}");
                    assert_eq!(
                        std::fs::read(&co).unwrap(),
                        &full[e.offset as usize..][..e.size as usize],
                        "{rel} {gfx} {}",
                        e.triple
                    );
                }
            }
        }
    }
}
