//! Fatbins written by CUDA 10.2 and 11.x (issue 10, item 6): real containers carved out of
//! PyPI wheels (`fixtures/cuda_old`, see its README section) parse, agree with NVIDIA's
//! cuobjdump, and go through audit, split and trim.
//!
//! cuobjdump 12 and later refuse files that hold sm_3x code, so the listing of the untrimmed
//! fixtures is cuobjdump 11.8's, recorded by `fixtures/cuda_old/build.sh`
//! (`cuobjdump-11.8.txt`). What has no sm_3x code (one of the containers, and every trim
//! output below) is listed live by the cuobjdump of `WHEELSLIM_CUOBJDUMP`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use wheelslim::fatbin::cuda::{self, Compression, Container, EntryKind};

use crate::common::*;

const DIR: &str = "cuda_old";
const LIB: &str = "libold_toolkits.so";
/// The loose containers: (file, what cuobjdump 11.8 lists as (kind, arch)).
const FATBINS: &[&str] = &[
    "cu102_spconv_sm30.fatbin",
    "cu102_spconv.fatbin",
    "cu117_curand.fatbin",
    "cu117_cufft.fatbin",
    "cu117_cufft_rel.fatbin",
    "cu118_curand.fatbin",
];

fn old(rel: &str) -> std::path::PathBuf {
    fixture(&format!("{DIR}/{rel}"))
}

/// cuobjdump 11.8's recorded listing: file → [(ELF|PTX, sm_XX)] in order.
fn recorded() -> BTreeMap<String, Vec<(String, String)>> {
    let text = std::fs::read_to_string(old("cuobjdump-11.8.txt")).unwrap();
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("== ") {
            current = name.to_string();
            out.entry(current.clone()).or_default();
        } else if let Some(item) = listing_line(line) {
            out.get_mut(&current).unwrap().push(item);
        }
    }
    out
}

/// `ELF file    3: name.3.sm_50.cubin` → ("ELF", "sm_50").
fn listing_line(line: &str) -> Option<(String, String)> {
    let (head, name) = line.split_once(": ")?;
    let kind = head.split_whitespace().next()?;
    if !matches!(kind, "ELF" | "PTX") {
        return None;
    }
    let stem = name.trim().rsplit_once('.')?.0;
    Some((kind.to_string(), stem.rsplit('.').next()?.to_string()))
}

fn cuobjdump_live(path: &Path) -> Vec<(String, String)> {
    let out = run(Command::new(tool_env("WHEELSLIM_CUOBJDUMP"))
        .args(["-all", "--list-elf", "--list-ptx"])
        .arg(path));
    out.lines().filter_map(listing_line).collect()
}

/// The fatbin sections of an ELF file, in section header order, parsed.
fn fatbin_sections(data: &[u8]) -> Vec<(String, Vec<Container>, Vec<u8>)> {
    let elf = goblin::elf::Elf::parse(data).unwrap();
    elf.section_headers
        .iter()
        .filter_map(|sh| {
            let name = elf.shdr_strtab.get_at(sh.sh_name)?;
            if name != ".nv_fatbin" && name != "__nv_relfatbin" {
                return None;
            }
            let s = sh.sh_offset as usize;
            let bytes = data[s..s + sh.sh_size as usize].to_vec();
            let cs = cuda::parse_section(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            Some((name.to_string(), cs, bytes))
        })
        .collect()
}

/// Our parse in cuobjdump's words (PTX as `sm_XX`).
fn ours(cs: &[Container]) -> Vec<(String, String)> {
    cs.iter()
        .flat_map(|c| &c.entries)
        .map(|e| {
            let kind = if e.kind == EntryKind::Ptx {
                "PTX"
            } else {
                "ELF"
            };
            (kind.to_string(), e.arch.to_string())
        })
        .collect()
}

fn lib_listing(data: &[u8]) -> Vec<(String, String)> {
    fatbin_sections(data)
        .iter()
        .flat_map(|(_, cs, _)| ours(cs))
        .collect()
}

#[test]
fn old_toolkit_containers_parse_as_cuobjdump_lists_them() {
    let rec = recorded();
    for f in FATBINS {
        let data = std::fs::read(old(f)).unwrap();
        let cs = cuda::parse_section(&data).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(cs.len(), 1, "{f}");
        assert_eq!(ours(&cs), rec[*f], "{f}");
    }
    let data = std::fs::read(old(LIB)).unwrap();
    assert_eq!(lib_listing(&data), rec[LIB]);
    assert_eq!(rec[LIB].len(), 37);
}

/// The header facts the module docs of `fatbin::cuda` state for these toolkits.
#[test]
fn old_toolkit_headers_and_records() {
    // (file, PTX ISA version, every cubin LZ4-compressed)
    for (f, isa, elf_lz4) in [
        ("cu102_spconv_sm30.fatbin", (6, 5), false),
        ("cu102_spconv.fatbin", (6, 5), false),
        ("cu117_curand.fatbin", (7, 7), false),
        ("cu117_cufft.fatbin", (7, 7), true),
        ("cu117_cufft_rel.fatbin", (7, 7), true),
        ("cu118_curand.fatbin", (7, 8), false),
    ] {
        let data = std::fs::read(old(f)).unwrap();
        let c = &cuda::parse_section(&data).unwrap()[0];
        for e in &c.entries {
            assert_eq!(e.flags & 0x11, 0x11, "{f}");
            match e.kind {
                EntryKind::Ptx => {
                    assert_eq!(e.version, isa, "{f}");
                    assert_eq!(e.compression, Compression::Lz4, "{f}");
                    if f.ends_with("_rel.fatbin") {
                        assert_eq!(e.header_size, 0x60, "{f}");
                        assert_eq!(e.options.as_deref(), Some("--compile-only  "), "{f}");
                    } else {
                        // The empty options record of these toolkits: (0, 0), no string.
                        assert_eq!(e.header_size, 0x48, "{f}");
                        let rec = &data[e.offset + 64..e.offset + 72];
                        assert_eq!(rec, [0; 8], "{f}");
                        assert_eq!(e.options, None, "{f}");
                    }
                    let text = cuda::decompress_entry(&data, e).unwrap();
                    assert_eq!(text.len() as u64, e.uncompressed_size, "{f}");
                    let head = String::from_utf8_lossy(&text[..text.len().min(4096)]).to_string();
                    let want = format!(".version {}.{}", isa.0, isa.1);
                    assert!(head.contains(&want), "{f}: no `{want}` in the PTX");
                }
                _ => {
                    assert_eq!(e.header_size, 0x40, "{f}");
                    assert_eq!(e.version, (1, 7), "{f}");
                    let lz4 = e.compression == Compression::Lz4;
                    assert_eq!(lz4, elf_lz4, "{f}");
                    let image = cuda::decompress_entry(&data, e).unwrap();
                    assert_eq!(&image[..4], b"\x7fELF", "{f}");
                }
            }
        }
    }
}

/// The one container without sm_3x code is read by today's cuobjdump too, as we read it.
#[test]
fn current_cuobjdump_lists_the_sm60_container() {
    let path = old("cu117_cufft_rel.fatbin");
    let data = std::fs::read(&path).unwrap();
    let cs = cuda::parse_section(&data).unwrap();
    assert_eq!(cuobjdump_live(&path), ours(&cs));
    assert_eq!(cuobjdump_live(&path), recorded()["cu117_cufft_rel.fatbin"]);
}

/// `fix_old_host(3) fix_fatbin_check() fix_fatbin_entries()` of a loaded copy of the library.
fn load(path: &Path) -> String {
    let out = run(Command::new(tool_env("WHEELSLIM_PYTHON"))
        .args([
            "-c",
            "import ctypes,sys; l=ctypes.CDLL(sys.argv[1]); \
             print(l.fix_old_host(3), l.fix_fatbin_check(), l.fix_fatbin_entries())",
        ])
        .arg(path)
        .env("LD_BIND_NOW", "1"));
    out.trim().to_string()
}

fn old_wheel(dir: &Path) -> std::path::PathBuf {
    let lib = std::fs::read(old(LIB)).unwrap();
    let sm30 = std::fs::read(old("cu102_spconv_sm30.fatbin")).unwrap();
    let rel = std::fs::read(old("cu117_cufft_rel.fatbin")).unwrap();
    make_wheel(
        dir,
        "manylinux_2_17_x86_64",
        &[
            ("demo/libold_toolkits.so", &lib),
            ("demo/kernels/cu102_sm30.fatbin", &sm30),
            ("demo/kernels/cu117_rel.fatbin", &rel),
        ],
    )
}

/// audit, split (with and without --sm, also --dry-run) and trim accept the wheel; the audit's
/// device matrix is cuobjdump's; a trim's output is listed by today's cuobjdump as we parse
/// it, still loads, and its wrappers still reach valid containers.
#[test]
fn audit_split_and_trim_accept_old_toolkit_fatbins() {
    let tmp = tempdir();
    let w = old_wheel(tmp.path());
    let ws = w.to_str().unwrap();
    let fine = |args: &[&str]| {
        let out = wheelslim(args);
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert_eq!(code(&out), 0, "{args:?}:\n{all}");
        assert!(!all.contains("damaged"), "{args:?}:\n{all}");
        all
    };

    // The device matrix against cuobjdump 11.8's listing, per member.
    let out = wheelslim(&["audit", "--json", ws]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rec = recorded();
    let device = report["wheels"][0]["device_code"].as_array().unwrap();
    let mut seen = 0;
    for (member, file) in [
        ("demo/libold_toolkits.so", LIB),
        ("demo/kernels/cu102_sm30.fatbin", "cu102_spconv_sm30.fatbin"),
        ("demo/kernels/cu117_rel.fatbin", "cu117_cufft_rel.fatbin"),
    ] {
        let d = device.iter().find(|d| d["member"] == member).unwrap();
        let mut matrix = BTreeMap::new();
        for row in d["rows"].as_array().unwrap() {
            let arch = row["arch"].as_str().unwrap().replace("compute_", "sm_");
            let kind = if row["arch"].as_str().unwrap().starts_with("compute_") {
                "PTX"
            } else {
                "ELF"
            };
            *matrix.entry((kind.to_string(), arch)).or_insert(0) +=
                row["entries"].as_u64().unwrap() as usize;
        }
        let mut theirs = BTreeMap::new();
        for item in &rec[file] {
            *theirs.entry(item.clone()).or_insert(0) += 1;
        }
        assert_eq!(matrix, theirs, "{member}");
        seen += 1;
    }
    assert_eq!(seen, 3);
    fine(&["audit", ws]);

    let out_dir = tmp.path().join("out");
    let od = out_dir.to_str().unwrap();
    fine(&["split", "--dry-run", "-w", od, ws]);
    fine(&["split", "--dry-run", "--sm", "80", "-w", od, ws]);
    fine(&["split", "-w", od, ws]);
    std::fs::remove_dir_all(&out_dir).unwrap();
    fine(&["trim", "--dry-run", "--sm", "80", "-w", od, ws]);
    fine(&["trim", "--sm", "80", "-w", od, ws]);

    let trimmed = out_dir.join(w.file_name().unwrap());
    let members = read_zip(&trimmed);
    let lib = &members
        .iter()
        .find(|(n, _)| n == "demo/libold_toolkits.so")
        .unwrap()
        .1;
    let original = std::fs::read(old(LIB)).unwrap();
    assert!(lib.len() < original.len(), "the trim removed nothing");
    let lib_path = tmp.path().join(LIB);
    std::fs::write(&lib_path, lib).unwrap();
    // Nothing of sm_3x is left, so today's cuobjdump reads the whole library.
    let listed = cuobjdump_live(&lib_path);
    assert_eq!(listed, lib_listing(lib));
    let expect: Vec<(String, String)> = [
        ("PTX", "sm_75"), // spconv (10.2): no sm_8x cubin, so its newest usable PTX
        ("ELF", "sm_80"), // curand 11.7: compute_86 cannot JIT for sm_80, but it is the
        ("PTX", "sm_86"), // container's only PTX, kept so GPUs newer than sm_80 can JIT
        ("PTX", "sm_80"), // cufft 11.7
        ("ELF", "sm_80"),
        ("ELF", "sm_80"), // curand 11.8, and its only PTX for newer GPUs
        ("PTX", "sm_90"),
        ("PTX", "sm_80"), // cufft 11.7, __nv_relfatbin
        ("ELF", "sm_80"),
    ]
    .iter()
    .map(|(k, a)| (k.to_string(), a.to_string()))
    .collect();
    assert_eq!(listed, expect);
    assert_eq!(load(&old(LIB)), "19 5 37");
    assert_eq!(load(&lib_path), format!("19 5 {}", expect.len()));

    // The loose container without sm_3x keeps what sm_80 needs, and cuobjdump agrees.
    let rel = &members
        .iter()
        .find(|(n, _)| n == "demo/kernels/cu117_rel.fatbin")
        .unwrap()
        .1;
    let rel_path = tmp.path().join("rel.fatbin");
    std::fs::write(&rel_path, rel).unwrap();
    assert_eq!(
        cuobjdump_live(&rel_path),
        ours(&cuda::parse_section(rel).unwrap())
    );
    assert_eq!(cuobjdump_live(&rel_path), expect[7..]);
}
