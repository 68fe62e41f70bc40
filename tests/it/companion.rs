//! Companion shared objects (`elf::companion`, issue 14) checked by tools that are not ours:
//! GNU `readelf -a` (no warning; both hash tables present), `eu-elflint --gnu-ld` (no message),
//! glibc's `ld.so` (x86_64 natively through ctypes, aarch64 with 64 KiB pages and ppc64le under
//! qemu with the cross sysroots) and musl's (x86_64): every symbol resolves under
//! `LD_BIND_NOW=1` to exactly the bytes it names, through `.gnu.hash`, and again through `.hash`
//! alone. NVIDIA's `cuobjdump` lists the same ELF/PTX entries as the fixture library they came
//! from, and extracts them byte-identical; LLVM's `clang-offload-bundler` lists the same targets
//! in each bundle. goblin, the crate's own `inspect` and the layout checker re-parse every
//! output; the crate's dynamic editor and patchelf keep it loadable.
//!
//! The device code is real: the containers and bundles of the committed CUDA and HIP fixtures.
//! A missing tool fails the test with the package to install; nothing is skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

use wheelslim::elf::companion::{self, Companion, CompanionSpec, DataBlock, Export};
use wheelslim::elf::{self, Inspected, Machine};

use crate::common::{fixture, tool_env};
use crate::shrink_support::{
    cuda_containers, cuobjdump_list, elflint, hip_bundles, need, run_out, section,
};

const MACHINES: [Machine; 3] = [Machine::X86_64, Machine::Aarch64, Machine::Ppc64le];

/// A fatbin section: its name, bytes, and containers as `(offset in section, length)`.
type FatbinSection = (String, Vec<u8>, Vec<(usize, usize)>);

/// The sections of `data` holding CUDA containers, in file order.
fn cuda_sections(data: &[u8]) -> Vec<FatbinSection> {
    let mut out = Vec::new();
    for name in [".nv_fatbin", "__nv_relfatbin"] {
        if let Some((off, _, size)) = section(data, name) {
            let sec = data[off..off + size].to_vec();
            let containers = cuda_containers(&sec)
                .iter()
                .map(|c| (c.off, c.len))
                .collect();
            out.push((off, name.to_string(), sec, containers));
        }
    }
    out.sort_by_key(|s| s.0);
    out.into_iter().map(|(_, n, s, c)| (n, s, c)).collect()
}

/// One block per container (8-aligned), each named by a symbol covering it.
fn cuda_blocks<'a>(sections: &'a [FatbinSection], prefix: &str) -> Vec<DataBlock<'a>> {
    let mut blocks = Vec::new();
    for (si, (name, sec, containers)) in sections.iter().enumerate() {
        for (ci, &(off, len)) in containers.iter().enumerate() {
            blocks.push(DataBlock {
                section: name.clone(),
                align: 8,
                bytes: &sec[off..off + len],
                symbols: vec![Export {
                    name: format!("{prefix}_{si}_{ci}"),
                    offset: 0,
                    size: len as u64,
                }],
            });
        }
    }
    blocks
}

/// The `.hip_fatbin` of a HIP fixture and its bundles `(offset, length)`.
fn hip_section(data: &[u8]) -> (Vec<u8>, Vec<(usize, usize)>) {
    let (off, _, size) = section(data, ".hip_fatbin").expect("a .hip_fatbin section");
    let sec = data[off..off + size].to_vec();
    let bundles = hip_bundles(&sec);
    assert!(!bundles.is_empty());
    (sec, bundles)
}

/// One 4096-aligned block per bundle, each named by a symbol covering it.
fn hip_blocks<'a>(sec: &'a [u8], bundles: &[(usize, usize)], prefix: &str) -> Vec<DataBlock<'a>> {
    bundles
        .iter()
        .enumerate()
        .map(|(i, &(off, len))| DataBlock {
            section: ".hip_fatbin".into(),
            align: 4096,
            bytes: &sec[off..off + len],
            symbols: vec![Export {
                name: format!("{prefix}_{i}"),
                offset: 0,
                size: len as u64,
            }],
        })
        .collect()
}

fn write_companion(dir: &Path, file: &str, spec: &CompanionSpec<'_>) -> (PathBuf, Companion) {
    let out = companion::write(spec).unwrap_or_else(|e| panic!("{file}: {e}"));
    let path = crate::shrink_support::write(dir, file, &out.bytes);
    (path, out)
}

// ---------------------------------------------------------------------------- static oracles

/// `readelf -aW` and `readelf -DW --dyn-syms` (symbols found through the dynamic section and
/// its hash tables): no warnings, both hash tables seen, every symbol listed.
fn readelf_accepts(path: &Path, symbols: &[&str]) {
    let readelf = need("readelf", "binutils");
    for args in [&["-aW"][..], &["-DW", "--dyn-syms"]] {
        let (ok, out, err) = run_out(Command::new(&readelf).args(args).arg(path));
        assert!(
            ok && err.trim().is_empty(),
            "readelf {args:?} {}: {err}",
            path.display()
        );
        let listed: std::collections::HashSet<&str> = out
            .lines()
            .filter_map(|l| l.split_whitespace().last())
            .collect();
        for name in symbols {
            assert!(
                listed.contains(name),
                "readelf {args:?} does not list `{name}`:\n{out}"
            );
        }
        if args == ["-aW"] {
            assert!(out.contains("Histogram for bucket list length"), "{out}");
            assert!(
                out.contains("Histogram for `.gnu.hash' bucket list length"),
                "{out}"
            );
            assert!(out.contains("(SONAME)"), "{out}");
            assert!(
                !out.contains("(NEEDED)"),
                "a companion needs nothing: {out}"
            );
            let stack = out
                .lines()
                .find(|l| l.trim_start().starts_with("GNU_STACK"))
                .unwrap_or_else(|| panic!("no GNU_STACK: {out}"));
            assert!(stack.contains(" RW "), "stack not RW: {stack}");
        }
    }
    let lint = elflint(path);
    assert!(
        lint.is_empty(),
        "eu-elflint complains about {}: {lint:#?}",
        path.display()
    );
}

/// goblin, `elf::inspect` and `elf::check` re-parse `bytes`; every placed symbol is found
/// with the bytes of its block.
fn crate_reader_accepts(bytes: &[u8], machine: Machine, soname: &str, out: &Companion) {
    elf::check(bytes).unwrap_or_else(|e| panic!("layout check: {e}"));
    let Inspected::Host(info) = elf::inspect(bytes).expect("inspect") else {
        panic!("not a host object")
    };
    assert_eq!(info.machine, machine);
    assert_eq!(info.soname.as_deref(), Some(soname));
    assert_eq!(Some(info.load_align), companion::page_size(machine));
    let g = goblin::elf::Elf::parse(bytes).expect("goblin");
    assert_eq!(g.dynsyms.len(), out.symbols.len() + 1);
    for p in &out.symbols {
        let sym = g
            .dynsyms
            .iter()
            .find(|s| g.dynstrtab.get_at(s.st_name) == Some(p.name.as_str()))
            .unwrap_or_else(|| panic!("goblin does not find {}", p.name));
        assert_eq!((sym.st_value, sym.st_size), (p.vaddr, p.size));
    }
}

// ------------------------------------------------------------------------------ loading

const PEEK_C: &str = r#"
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* peek LIB NAME:LEN...: dlopen LIB (RTLD_NOW), print "NAME HEX" for LEN bytes at each symbol. */
int main(int argc, char **argv) {
    void *h = dlopen(argv[1], RTLD_NOW);
    if (!h) { printf("dlopen failed: %s\n", dlerror()); return 1; }
    for (int i = 2; i < argc; i++) {
        char name[512];
        const char *c = strchr(argv[i], ':');
        if (!c || (size_t)(c - argv[i]) >= sizeof name) return 2;
        memcpy(name, argv[i], (size_t)(c - argv[i])); name[c - argv[i]] = 0;
        long n = atol(c + 1);
        const unsigned char *p = dlsym(h, name);
        if (!p) { printf("dlsym(%s) failed: %s\n", name, dlerror()); return 1; }
        printf("%s ", name);
        for (long k = 0; k < n; k++) printf("%02x", p[k]);
        printf("\n");
    }
    return 0;
}
"#;

const PEEK_PY: &str = r#"
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
for arg in sys.argv[2:]:
    name, n = arg.rsplit(":", 1)
    addr = ctypes.addressof(ctypes.c_char.in_dll(lib, name))
    print(name, ctypes.string_at(addr, int(n)).hex())
"#;

/// `cross gcc` for a machine, with the qemu that runs its programs, the sysroot and page size.
fn cross(machine: Machine) -> (PathBuf, PathBuf, PathBuf) {
    match machine {
        Machine::Aarch64 => {
            let ld = need(
                "/usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1",
                "libc6-arm64-cross",
            );
            (
                need(
                    "aarch64-linux-gnu-gcc",
                    "gcc-aarch64-linux-gnu libc6-dev-arm64-cross",
                ),
                need("qemu-aarch64-static", "qemu-user-static"),
                ld.parent().and_then(Path::parent).unwrap().to_path_buf(),
            )
        }
        Machine::Ppc64le => {
            let ld = need(
                "/usr/powerpc64le-linux-gnu/lib/ld64.so.2",
                "libc6-ppc64el-cross",
            );
            (
                need(
                    "powerpc64le-linux-gnu-gcc",
                    "gcc-powerpc64le-linux-gnu libc6-dev-ppc64el-cross",
                ),
                need("qemu-ppc64le-static", "qemu-user-static"),
                ld.parent().and_then(Path::parent).unwrap().to_path_buf(),
            )
        }
        other => panic!("{other} is loaded natively"),
    }
}

/// Loads `lib` with glibc and `LD_BIND_NOW=1` and returns, per symbol, the hex of the `len`
/// bytes `dlsym` points at. `Err` with the loader's words when it fails.
fn peek(
    machine: Machine,
    dir: &Path,
    lib: &Path,
    wants: &[(String, usize)],
) -> Result<Vec<String>, String> {
    let args: Vec<String> = wants.iter().map(|(n, l)| format!("{n}:{l}")).collect();
    let (ok, out, err) = match machine {
        Machine::X86_64 => run_out(
            Command::new(need("python3", "python3"))
                .args(["-c", PEEK_PY])
                .arg(lib)
                .args(&args)
                .env("LD_BIND_NOW", "1")
                .env_remove("LD_LIBRARY_PATH")
                .env_remove("LD_PRELOAD"),
        ),
        _ => {
            let (gcc, qemu, sysroot) = cross(machine);
            let src = dir.join("peek.c");
            let prog = dir.join(format!("peek_{machine}"));
            if !prog.exists() {
                std::fs::write(&src, PEEK_C).unwrap();
                let (ok, o, e) = run_out(
                    Command::new(gcc)
                        .args(["-O2", "-o"])
                        .arg(&prog)
                        .arg(&src)
                        .arg("-ldl"),
                );
                assert!(ok, "cross gcc failed: {o}{e}");
            }
            run_out(
                Command::new(qemu)
                    .args(["-p", "65536", "-L"])
                    .arg(&sysroot)
                    .args(["-E", "LD_BIND_NOW=1", "-U", "LD_LIBRARY_PATH"])
                    .arg(&prog)
                    .arg(lib)
                    .args(&args),
            )
        }
    };
    if ok {
        Ok(out.lines().map(str::to_string).collect())
    } else {
        Err(format!("{out}{err}"))
    }
}

/// Like `peek` on x86_64, but with musl's dynamic linker (musllinux wheels).
fn peek_musl(dir: &Path, lib: &Path, wants: &[(String, usize)]) -> Result<Vec<String>, String> {
    let prog = dir.join("peek_musl");
    if !prog.exists() {
        let src = dir.join("peek_musl.c");
        std::fs::write(&src, PEEK_C).unwrap();
        let (ok, o, e) = run_out(
            Command::new(need("musl-gcc", "musl-tools"))
                .args(["-O2", "-o"])
                .arg(&prog)
                .arg(&src),
        );
        assert!(ok, "musl-gcc failed: {o}{e}");
    }
    let (ok, out, err) = run_out(
        Command::new(&prog)
            .arg(lib)
            .args(wants.iter().map(|(n, l)| format!("{n}:{l}")))
            .env_remove("LD_LIBRARY_PATH"),
    );
    if ok {
        Ok(out.lines().map(str::to_string).collect())
    } else {
        Err(format!("{out}{err}"))
    }
}

/// What `peek` must print: each symbol with the hex of the bytes its block gave it.
fn expected(spec: &CompanionSpec<'_>) -> (Vec<(String, usize)>, Vec<String>) {
    let mut wants = Vec::new();
    let mut lines = Vec::new();
    for b in &spec.blocks {
        for s in &b.symbols {
            let bytes = &b.bytes[s.offset as usize..(s.offset + s.size) as usize];
            wants.push((s.name.clone(), bytes.len()));
            let hex: String = bytes.iter().map(|x| format!("{x:02x}")).collect();
            lines.push(format!("{} {hex}", s.name));
        }
    }
    (wants, lines)
}

/// `data` with its DT_GNU_HASH entry turned into DT_CHECKSUM (which glibc ignores), so the
/// loader must find every symbol through `.hash`.
fn without_gnu_hash(data: &[u8]) -> Vec<u8> {
    let g = goblin::elf::Elf::parse(data).unwrap();
    let dynamic = g
        .section_headers
        .iter()
        .find(|s| s.sh_type == goblin::elf::section_header::SHT_DYNAMIC)
        .unwrap();
    let mut out = data.to_vec();
    let mut hit = 0;
    for at in
        (dynamic.sh_offset as usize..(dynamic.sh_offset + dynamic.sh_size) as usize).step_by(16)
    {
        let tag = u64::from_le_bytes(out[at..at + 8].try_into().unwrap());
        if tag == 0x6fff_fef5 {
            out[at..at + 8].copy_from_slice(&0x6fff_fdf8u64.to_le_bytes());
            hit += 1;
        }
    }
    assert_eq!(hit, 1, "one DT_GNU_HASH entry");
    out
}

// --------------------------------------------------------------------------------- the tests

#[test]
fn every_machine_passes_readelf_elflint_and_loads_with_glibc_and_musl() {
    let dir = tempfile::tempdir().unwrap();
    let cuda = std::fs::read(fixture("cuda/libfix_plain.so")).unwrap();
    let cuda_secs = cuda_sections(&cuda);
    let hip = std::fs::read(fixture("hip/libhipfix.so")).unwrap();
    let (hip_sec, bundles) = hip_section(&hip);
    for machine in MACHINES {
        let mut blocks = cuda_blocks(&cuda_secs, "__wheelslim_cuda");
        // A block holding two symbols, one of them in the middle, to prove offsets.
        let first = &cuda_secs[0].1[..64];
        blocks.insert(
            0,
            DataBlock {
                section: ".nv_fatbin".into(),
                align: 8,
                bytes: first,
                symbols: vec![
                    Export {
                        name: "__wheelslim_head".into(),
                        offset: 0,
                        size: 16,
                    },
                    Export {
                        name: "__wheelslim_mid".into(),
                        offset: 40,
                        size: 24,
                    },
                ],
            },
        );
        blocks.extend(hip_blocks(&hip_sec, &bundles, "__wheelslim_hip"));
        let soname = format!("libfix_device_{machine}.so");
        let spec = CompanionSpec {
            machine,
            soname: soname.clone(),
            blocks,
        };
        let (path, out) = write_companion(dir.path(), &soname, &spec);
        let names: Vec<&str> = out.symbols.iter().map(|s| s.name.as_str()).collect();
        assert!(names.len() >= 5, "{names:?}");
        readelf_accepts(&path, &names);
        crate_reader_accepts(&out.bytes, machine, &soname, &out);

        let (wants, lines) = expected(&spec);
        let got = peek(machine, dir.path(), &path, &wants)
            .unwrap_or_else(|e| panic!("{machine}: glibc does not load the companion: {e}"));
        assert_eq!(got, lines, "{machine}: dlsym bytes differ");

        // The same lookups through the System V hash table alone.
        let sysv = dir.path().join(format!("sysv_{soname}"));
        std::fs::write(&sysv, without_gnu_hash(&out.bytes)).unwrap();
        let got = peek(machine, dir.path(), &sysv, &wants)
            .unwrap_or_else(|e| panic!("{machine}: .hash alone does not resolve: {e}"));
        assert_eq!(got, lines, "{machine}: dlsym bytes through .hash differ");

        if machine == Machine::X86_64 {
            for (what, file) in [("", &path), (" through .hash", &sysv)] {
                let got = peek_musl(dir.path(), file, &wants)
                    .unwrap_or_else(|e| panic!("musl does not load the companion{what}: {e}"));
                assert_eq!(got, lines, "musl: dlsym bytes{what} differ");
            }
        }

        // Negative control: a symbol the companion does not define is not found.
        let missing = peek(
            machine,
            dir.path(),
            &path,
            &[("__wheelslim_absent".into(), 1)],
        );
        assert!(
            missing.as_ref().is_err_and(|e| e.contains("dlsym")
                || e.contains("undefined symbol")
                || e.contains("AttributeError")),
            "{machine}: {missing:?}"
        );
    }
}

#[test]
fn cuobjdump_lists_and_extracts_the_same_entries_as_the_fixture() {
    let cuobjdump = tool_env("WHEELSLIM_CUOBJDUMP");
    let dir = tempfile::tempdir().unwrap();
    for rel in [
        "cuda/libfix_plain.so",
        "cuda/libfix_default.so",
        "cuda/libfix_lz4.so",
        "cuda/libfix_rdc.so",
        "cuda/libfix_concat.so",
        "aarch64/libfix_a64.so",
        "ppc64le/libfix_ppc64le.so",
    ] {
        let orig = fixture(rel);
        let data = std::fs::read(&orig).unwrap();
        let machine = match elf::inspect(&data).unwrap() {
            Inspected::Host(info) => info.machine,
            other => panic!("{rel}: {other:?}"),
        };
        let secs = cuda_sections(&data);
        assert!(!secs.is_empty(), "{rel} has no fatbin section");
        let spec = CompanionSpec {
            machine,
            soname: "libfix_device.so".into(),
            blocks: cuda_blocks(&secs, "__wheelslim_fatbin"),
        };
        let stem = Path::new(rel).file_name().unwrap().to_str().unwrap();
        let sub = dir.path().join(stem.replace('.', "_"));
        for side in ["orig", "comp"] {
            std::fs::create_dir_all(sub.join(side)).unwrap();
        }
        // The same file name on both sides, so cuobjdump names the extracted files alike.
        let (comp, _) = write_companion(&sub.join("comp"), stem, &spec);
        std::fs::copy(&orig, sub.join("orig").join(stem)).unwrap();
        readelf_accepts(&comp, &[]);
        for all in [false, true] {
            let want = cuobjdump_list(&orig, all);
            assert!(!want.is_empty(), "{rel}: cuobjdump lists nothing");
            assert_eq!(cuobjdump_list(&comp, all), want, "{rel} (-all: {all})");
        }
        let mut extracted = Vec::new();
        for side in ["orig", "comp"] {
            let (ok, out, err) = run_out(
                Command::new(&cuobjdump)
                    .current_dir(sub.join(side))
                    .args(["-all", "-xelf", "all", "-xptx", "all", stem]),
            );
            assert!(ok, "{rel} {side}: cuobjdump -x failed: {out}{err}");
            let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(sub.join(side))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.file_name().unwrap() != stem)
                .map(|p| {
                    (
                        p.file_name().unwrap().to_string_lossy().into_owned(),
                        std::fs::read(&p).unwrap(),
                    )
                })
                .collect();
            files.sort();
            extracted.push(files);
        }
        assert!(!extracted[0].is_empty(), "{rel}: nothing extracted");
        let names = |v: &[(String, Vec<u8>)]| v.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
        assert_eq!(names(&extracted[1]), names(&extracted[0]), "{rel}");
        for (a, b) in extracted[0].iter().zip(&extracted[1]) {
            assert!(a.1 == b.1, "{rel}: {} differs", a.0);
        }
    }
}

/// `--list` of each bundle of a `.hip_fatbin` that `objcopy` extracts from `file`: the bundle
/// bytes and their sorted targets.
pub fn bundler_lists(dir: &Path, file: &Path) -> Vec<(Vec<u8>, Vec<String>)> {
    let objcopy = need("objcopy", "binutils");
    let bundler = need("clang-offload-bundler-19", "clang-tools-19");
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let raw = dir.join(format!("{name}.hip_fatbin"));
    let (ok, o, e) = run_out(
        Command::new(objcopy)
            .args([
                "-I",
                "elf64-little",
                "-O",
                "binary",
                "--only-section=.hip_fatbin",
            ])
            .arg(file)
            .arg(&raw),
    );
    assert!(ok, "objcopy failed on {name}: {o}{e}");
    let sec = std::fs::read(&raw).unwrap();
    hip_bundles(&sec)
        .into_iter()
        .enumerate()
        .map(|(i, (off, len))| {
            let one = dir.join(format!("{name}.bundle{i}"));
            std::fs::write(&one, &sec[off..off + len]).unwrap();
            let (ok, out, err) = run_out(
                Command::new(&bundler)
                    .args(["--list", "--type=o"])
                    .arg(format!("--input={}", one.display())),
            );
            assert!(ok, "clang-offload-bundler --list {name} #{i}: {out}{err}");
            let mut targets: Vec<String> = out.lines().map(str::to_string).collect();
            targets.sort();
            (sec[off..off + len].to_vec(), targets)
        })
        .collect()
}

#[test]
fn clang_offload_bundler_finds_the_same_targets_in_the_companion() {
    let dir = tempfile::tempdir().unwrap();
    for rel in ["hip/libhipfix.so", "hip/libhipfix_ccob.so"] {
        let orig = fixture(rel);
        let data = std::fs::read(&orig).unwrap();
        let (sec, bundles) = hip_section(&data);
        for machine in MACHINES {
            let spec = CompanionSpec {
                machine,
                soname: "libhipfix_device.so".into(),
                blocks: hip_blocks(&sec, &bundles, "__wheelslim_bundle"),
            };
            let stem = format!(
                "{machine}_{}",
                Path::new(rel).file_name().unwrap().to_str().unwrap()
            );
            let (comp, out) = write_companion(dir.path(), &stem, &spec);
            readelf_accepts(&comp, &[]);
            for b in &out.blocks {
                assert_eq!(b.vaddr % 4096, 0, "{rel}: bundle not 4096-aligned");
            }
            let want = bundler_lists(dir.path(), &orig);
            assert_eq!(want.len(), bundles.len());
            assert!(
                want.iter()
                    .all(|(_, t)| t.iter().any(|t| t.contains("gfx"))),
                "{rel}: {want:?}"
            );
            let got = bundler_lists(dir.path(), &comp);
            assert_eq!(got.len(), want.len(), "{rel} {machine}");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g.1, w.1, "{rel} {machine}: bundle {i} targets");
                assert!(!g.1.is_empty(), "{rel}: bundle {i} lists no target");
                assert!(g.0 == w.0, "{rel} {machine}: bundle {i} bytes differ");
            }
        }
    }
}

#[test]
fn thousands_of_symbols_resolve_through_both_tables() {
    // cuBLASLt 12.9 has 3,025 fatbin wrappers: one symbol per container at that scale.
    let dir = tempfile::tempdir().unwrap();
    let n = 3025usize;
    let bytes: Vec<u8> = (0..n * 8).map(|i| (i * 7 % 253) as u8).collect();
    let spec = CompanionSpec {
        machine: Machine::X86_64,
        soname: "libbig_device.so".into(),
        blocks: vec![DataBlock {
            section: ".nv_fatbin".into(),
            align: 8,
            bytes: &bytes,
            symbols: (0..n)
                .map(|i| Export {
                    name: format!("__wheelslim_fatbin_{i}"),
                    offset: i as u64 * 8,
                    size: 8,
                })
                .collect(),
        }],
    };
    let (path, out) = write_companion(dir.path(), "libbig_device.so", &spec);
    let names: Vec<&str> = out.symbols.iter().map(|s| s.name.as_str()).collect();
    readelf_accepts(&path, &names);
    crate_reader_accepts(&out.bytes, Machine::X86_64, "libbig_device.so", &out);
    let (wants, lines) = expected(&spec);
    let got = peek(Machine::X86_64, dir.path(), &path, &wants).unwrap();
    assert_eq!(got, lines);
    let sysv = dir.path().join("sysv_libbig_device.so");
    std::fs::write(&sysv, without_gnu_hash(&out.bytes)).unwrap();
    assert_eq!(
        peek(Machine::X86_64, dir.path(), &sysv, &wants).unwrap(),
        lines
    );
}

#[test]
fn the_crates_dynamic_editor_and_patchelf_can_edit_a_companion() {
    // Later steps rename companions and auditwheel may patch them: both must keep them loadable.
    let dir = tempfile::tempdir().unwrap();
    let cuda = std::fs::read(fixture("cuda/libfix_lz4.so")).unwrap();
    let secs = cuda_sections(&cuda);
    for machine in MACHINES {
        let spec = CompanionSpec {
            machine,
            soname: "libfix_device.so".into(),
            blocks: cuda_blocks(&secs, "__wheelslim_fatbin"),
        };
        let out = companion::write(&spec).unwrap();
        let (wants, lines) = expected(&spec);
        let new_name = "libfix_device_renamed_for_a_longer_soname.so.1";
        let patched = elf::patch(
            &out.bytes,
            &elf::DynamicEdits {
                soname: Some(new_name.into()),
                search_path: Some(vec!["$ORIGIN/../nvidia/lib".into()]),
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("{machine}: elf::patch refuses a companion: {e}"));
        let path = crate::shrink_support::write(
            dir.path(),
            &format!("{machine}_patched.so"),
            &patched.data,
        );
        crate_reader_accepts(&patched.data, machine, new_name, &out);
        let (ok, _, err) = run_out(
            Command::new(need("readelf", "binutils"))
                .arg("-aW")
                .arg(&path),
        );
        assert!(ok && err.trim().is_empty(), "{machine}: readelf: {err}");
        // The editor moves `.dynamic` into a new segment (a companion has no DT_NULL slack and
        // `.dynstr` is not a segment's tail), leaving the old RW segment empty: eu-elflint
        // notes that, and nothing else.
        let lint: Vec<String> = elflint(&path)
            .into_iter()
            .filter(|m| !m.ends_with("is writable but contains no writable sections"))
            .collect();
        assert!(lint.is_empty(), "{machine}: eu-elflint: {lint:#?}");
        assert_eq!(peek(machine, dir.path(), &path, &wants).unwrap(), lines);

        let pe = dir.path().join(format!("{machine}_patchelf.so"));
        std::fs::write(&pe, &out.bytes).unwrap();
        let (ok, o, e) = run_out(
            Command::new(need("patchelf", "patchelf"))
                .args(["--set-soname", new_name, "--set-rpath", "$ORIGIN"])
                .arg(&pe),
        );
        assert!(ok, "patchelf: {o}{e}");
        assert_eq!(peek(machine, dir.path(), &pe, &wants).unwrap(), lines);
    }
}
