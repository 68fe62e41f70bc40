//! The host rewrite of issue 14 (`elf::companion::move_device_code`) checked by what the
//! runtime would see: a stand-in `libcudart.so.13` (C, built here with `cc`) records every
//! wrapper `__cudaRegisterFatBinary` is handed and a hash of the container its data pointer
//! reaches (16-byte header, `u64` size at +8). A small loader `dlopen`s the host with
//! `LD_BIND_NOW=1` and then reads every wrapper record of the loaded host (addresses from the
//! ELF, the load base from `dlinfo`), hashing the container each points at. The original and
//! the rewritten host (companions beside it) must give the same lines, byte for byte, in the
//! same order. No GPU is needed or used: the stand-in is how we prove the runtime is handed
//! identical device code. cuobjdump, readelf and eu-elflint check the files statically.

use std::path::{Path, PathBuf};
use std::process::Command;

use wheelslim::elf::companion::{CompanionTarget, MoveError, MovedBlock, move_device_code};
use wheelslim::fatbin::cuda;

use crate::common::fixture;
use crate::shrink_support::{
    cuobjdump_list, elflint_new_complaints, need, readelf_complaints, run_out, section,
};

const STANDIN_C: &str = r#"
#include <stdint.h>
#include <stdio.h>
#include <string.h>
static uint64_t fnv(const unsigned char *p, uint64_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (uint64_t i = 0; i < n; i++) { h ^= p[i]; h *= 1099511628211ULL; }
    return h;
}
static void *handles[64];
static int nh;
void **__cudaRegisterFatBinary(void *w) {
    const uint32_t *m = (const uint32_t *)w;
    const unsigned char *c = *(const unsigned char *const *)((const char *)w + 8);
    uint16_t hs; uint64_t size; uint32_t magic;
    memcpy(&magic, c, 4); memcpy(&hs, c + 6, 2); memcpy(&size, c + 8, 8);
    printf("register wrapper magic=%08x version=%u container magic=%08x len=%llu fnv=%016llx\n",
           m[0], m[1], magic, (unsigned long long)(hs + size),
           (unsigned long long)fnv(c, hs + size));
    fflush(stdout);
    return &handles[nh++ % 64];
}
void __cudaRegisterFatBinaryEnd(void **h) { (void)h; printf("end\n"); }
void __cudaUnregisterFatBinary(void **h) { (void)h; }
void __cudaRegisterFunction(void **h, const char *hf, char *df, const char *name, int tl,
                            void *a, void *b, void *c, void *d, int *e) {
    (void)h; (void)hf; (void)df; (void)tl; (void)a; (void)b; (void)c; (void)d; (void)e;
    printf("function %s\n", name);
}
void __cudaRegisterVar(void **h, char *hv, char *dv, const char *name, int ext, size_t size,
                       int constant, int global) {
    (void)h; (void)hv; (void)dv; (void)ext; (void)constant; (void)global;
    printf("var %s %zu\n", name, size);
}
void __cudaRegisterManagedVar(void **h, void **hv, char *dv, const char *name, int ext,
                              size_t size, int constant, int global) {
    (void)h; (void)hv; (void)dv; (void)ext; (void)constant; (void)global;
    printf("managed %s %zu\n", name, size);
}
unsigned __cudaPushCallConfiguration(void) { return 0; }
int __cudaPopCallConfiguration(void) { return 0; }
int cudaGetLastError(void) { return 0; }
int cudaLaunchKernel(void) { return 0; }
int __cudaLaunchKernel(void) { return 0; }
void *__cudaGetKernel(void) { return 0; }
"#;

const LOADER_C: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static uint64_t fnv(const unsigned char *p, uint64_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (uint64_t i = 0; i < n; i++) { h ^= p[i]; h *= 1099511628211ULL; }
    return h;
}
/* loader LIB [VADDR COUNT]...: dlopen LIB, then hash the container each wrapper points at. */
int main(int argc, char **argv) {
    void *h = dlopen(argv[1], RTLD_NOW);
    if (!h) { printf("dlopen failed: %s\n", dlerror()); return 1; }
    struct link_map *lm = 0;
    if (dlinfo(h, RTLD_DI_LINKMAP, &lm) != 0) return 2;
    for (int i = 2; i + 1 < argc; i += 2) {
        uint64_t va = strtoull(argv[i], 0, 0);
        long n = atol(argv[i + 1]);
        for (long k = 0; k < n; k++) {
            const unsigned char *w = (const unsigned char *)(lm->l_addr + va + 24 * k);
            uint32_t magic; memcpy(&magic, w, 4);
            if (magic == 0) { printf("wrapper %ld padding\n", k); continue; }
            const unsigned char *c; memcpy(&c, w + 8, 8);
            uint16_t hs; uint64_t size; memcpy(&hs, c + 6, 2); memcpy(&size, c + 8, 8);
            printf("wrapper %ld magic=%08x len=%llu fnv=%016llx\n", k, magic,
                   (unsigned long long)(hs + size), (unsigned long long)fnv(c, hs + size));
        }
    }
    int (*f)(void) = (int (*)(void))dlsym(h, "host_value");
    if (f) printf("host_value %d\n", f());
    return 0;
}
"#;

pub(crate) struct Rig {
    pub(crate) dir: tempfile::TempDir,
    loader: PathBuf,
}

impl Rig {
    pub(crate) fn new() -> Rig {
        let cc = need("cc", "gcc");
        let dir = crate::common::tempdir();
        let rt = dir.path().join("rt");
        std::fs::create_dir_all(&rt).unwrap();
        std::fs::write(dir.path().join("standin.c"), STANDIN_C).unwrap();
        std::fs::write(
            dir.path().join("cudart.map"),
            "libcudart.so.13 { global: *; };\n",
        )
        .unwrap();
        let (ok, o, e) = run_out(
            Command::new(&cc)
                .args(["-shared", "-fPIC", "-O1", "-Wl,-soname,libcudart.so.13"])
                .arg(format!(
                    "-Wl,--version-script={}",
                    dir.path().join("cudart.map").display()
                ))
                .arg("-o")
                .arg(rt.join("libcudart.so.13"))
                .arg(dir.path().join("standin.c")),
        );
        assert!(ok, "building the stand-in libcudart failed: {o}{e}");
        std::fs::write(dir.path().join("loader.c"), LOADER_C).unwrap();
        let loader = dir.path().join("loader");
        let (ok, o, e) = run_out(
            Command::new(&cc)
                .args(["-O1", "-o"])
                .arg(&loader)
                .arg(dir.path().join("loader.c"))
                .arg("-ldl"),
        );
        assert!(ok, "building the loader failed: {o}{e}");
        Rig { dir, loader }
    }

    /// Loads `lib` (its directory and the stand-in on LD_LIBRARY_PATH) and returns what the
    /// stand-in recorded and what the wrappers point at.
    pub(crate) fn load(&self, lib: &Path, wrappers: &[(u64, u64)]) -> Result<Vec<String>, String> {
        let path = format!(
            "{}:{}",
            lib.parent().unwrap().display(),
            self.dir.path().join("rt").display()
        );
        self.load_with(lib, wrappers, &path)
    }

    /// Loads `lib` with only `path` on LD_LIBRARY_PATH (so its own search path must find
    /// what sits beside it).
    pub(crate) fn load_with(
        &self,
        lib: &Path,
        wrappers: &[(u64, u64)],
        path: &str,
    ) -> Result<Vec<String>, String> {
        let mut cmd = Command::new(&self.loader);
        cmd.arg(lib);
        for (va, n) in wrappers {
            cmd.arg(format!("{va:#x}")).arg(n.to_string());
        }
        let (ok, out, err) = run_out(
            cmd.env("LD_BIND_NOW", "1")
                .env("LD_LIBRARY_PATH", path)
                .env_remove("LD_PRELOAD"),
        );
        if ok {
            Ok(out.lines().map(str::to_string).collect())
        } else {
            Err(format!("{out}{err}"))
        }
    }
}

/// `(vaddr, count)` of the `.nvFatBinSegment` records of `data`.
pub(crate) fn wrapper_sections(data: &[u8]) -> Vec<(u64, u64)> {
    let g = goblin::elf::Elf::parse(data).unwrap();
    g.section_headers
        .iter()
        .filter(|s| g.shdr_strtab.get_at(s.sh_name) == Some(".nvFatBinSegment"))
        .map(|s| (s.sh_addr, s.sh_size / 24))
        .collect()
}

/// File offset of the first `.nvFatBinSegment`.
fn wrapper_file_off(data: &[u8]) -> usize {
    section(data, ".nvFatBinSegment").unwrap().0
}

/// Every container of the CUDA sections of `data`, as `MovedBlock`s, in file order.
fn all_blocks(data: &[u8]) -> Vec<MovedBlock> {
    let mut out = Vec::new();
    for name in [".nv_fatbin", "__nv_relfatbin"] {
        if let Some((off, _, size)) = section(data, name) {
            for c in cuda::parse_section(&data[off..off + size]).unwrap() {
                out.push(MovedBlock {
                    section: name.into(),
                    offset: c.offset as u64,
                    size: c.len as u64,
                });
            }
        }
    }
    out
}

/// Writes the original in `orig/` and the rewrite with its companions in `moved/`, under the
/// same file name, and returns both paths.
fn lay_down(
    dir: &Path,
    stem: &str,
    orig: &[u8],
    out: &wheelslim::elf::companion::MoveOutcome,
) -> (PathBuf, PathBuf) {
    let (a, b) = (dir.join(stem).join("orig"), dir.join(stem).join("moved"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let name = "libhost.so";
    std::fs::write(a.join(name), orig).unwrap();
    std::fs::write(b.join(name), &out.host).unwrap();
    for (soname, bytes) in &out.companions {
        std::fs::write(b.join(soname), bytes).unwrap();
    }
    (a.join(name), b.join(name))
}

/// [`check_static`] over a host laid down by [`lay_down`], with its companions beside it;
/// returns the companions' paths.
fn check_moved(
    orig: &Path,
    moved: &Path,
    out: &wheelslim::elf::companion::MoveOutcome,
) -> Vec<PathBuf> {
    let comps: Vec<PathBuf> = out
        .companions
        .iter()
        .map(|(s, _)| moved.parent().unwrap().join(s))
        .collect();
    check_static(orig, moved, &comps);
    comps
}

pub(crate) fn check_static(orig: &Path, moved: &Path, companions: &[PathBuf]) {
    let readelf = need("readelf", "binutils");
    for file in std::iter::once(moved).chain(companions.iter().map(PathBuf::as_path)) {
        for args in [&["-aW"][..], &["-DW", "--dyn-syms"]] {
            let (ok, _, err) = run_out(Command::new(&readelf).args(args).arg(file));
            // Only warnings the input does not draw count (real libraries have a few of
            // their own, such as gaps in GNU build notes).
            let (_, _, before) = run_out(Command::new(&readelf).args(args).arg(orig));
            let new: Vec<&str> = err
                .lines()
                .filter(|l| !l.trim().is_empty() && !before.lines().any(|b| b == *l))
                .collect();
            assert!(
                ok && new.is_empty(),
                "readelf {args:?} {}: {new:#?}",
                file.display()
            );
        }
    }
    let before = readelf_complaints(orig);
    let complaints = readelf_complaints(moved);
    let new: Vec<&str> = complaints
        .lines()
        .filter(|l| !before.lines().any(|b| b == *l))
        .collect();
    assert!(new.is_empty(), "readelf on the host: {new:#?}");
    let new = elflint_new_complaints(orig, moved);
    if !new.is_empty() {
        // Symbol indices from `.gnu.hash`'s symoffset on shift: a complaint the input already
        // drew about a symbol (cuBLASLt's `.gnu.version` has 181) names another index now.
        // Program headers renumber too when the new PT_LOAD goes in before a segment the input
        // was already warned about (cuDNN's empty RW segment). Compare those as counts per
        // message, with symbol and segment numbers left out.
        let strip = |m: &str| -> String {
            let mut out = String::new();
            let mut rest = m;
            loop {
                let at = ["symbol ", "segment ["]
                    .iter()
                    .filter_map(|k| rest.find(k).map(|i| (i, k.len())))
                    .min();
                let Some((i, n)) = at else { break };
                out.push_str(&rest[..i + n]);
                rest = rest[i + n..].trim_start_matches(|c: char| c.is_ascii_digit());
                out.push('#');
            }
            out.push_str(rest);
            out
        };
        let count = |v: &[String]| {
            let mut m = std::collections::BTreeMap::new();
            for x in v {
                *m.entry(strip(x)).or_insert(0usize) += 1;
            }
            m
        };
        let (before, after) = (
            count(&crate::shrink_support::elflint(orig)),
            count(&crate::shrink_support::elflint(moved)),
        );
        let grown: Vec<&String> = after
            .iter()
            .filter(|(k, n)| before.get(*k).is_none_or(|b| b < n))
            .map(|(k, _)| k)
            .collect();
        assert!(
            grown.is_empty(),
            "eu-elflint has new complaints: {grown:#?} (all new lines: {new:#?})"
        );
    }
    for c in companions {
        let complaints = readelf_complaints(c);
        assert!(
            complaints.trim().is_empty(),
            "readelf on a companion: {complaints}"
        );
    }
}

#[test]
fn the_stand_in_runtime_is_handed_the_same_containers_after_the_move() {
    let rig = Rig::new();
    for rel in [
        "cuda/libfix_plain.so",
        "cuda/libfix_lz4.so",
        "cuda/libfix_default.so",
        "cuda/libfix_rdc.so",
        "cuda/libfix_concat.so",
    ] {
        let data = std::fs::read(fixture(rel)).unwrap();
        let blocks = all_blocks(&data);
        assert!(!blocks.is_empty(), "{rel}");
        // All containers in one companion; then a subset (every other one) in two.
        let mut plans = vec![vec![CompanionTarget {
            soname: "libhost_device.so".into(),
            blocks: blocks.clone(),
        }]];
        if blocks.len() > 1 {
            let (even, odd): (Vec<_>, Vec<_>) = blocks
                .iter()
                .cloned()
                .enumerate()
                .partition(|(i, _)| i % 2 == 0);
            plans.push(vec![CompanionTarget {
                soname: "libhost_dev0.so".into(),
                blocks: even.into_iter().map(|x| x.1).collect(),
            }]);
            let _ = odd;
        }
        let wrappers = wrapper_sections(&data);
        assert!(!wrappers.is_empty(), "{rel} has no wrappers");
        for (pi, plan) in plans.iter().enumerate() {
            let stem = format!("{}_{pi}", rel.replace(['/', '.'], "_"));
            let out =
                move_device_code(&data, plan).unwrap_or_else(|e| panic!("{rel} plan {pi}: {e}"));
            assert!(out.moved_bytes > 0);
            let (orig, moved) = lay_down(rig.dir.path(), &stem, &data, &out);
            let want = rig
                .load(&orig, &wrappers)
                .unwrap_or_else(|e| panic!("{rel}: {e}"));
            assert!(
                want.iter().any(|l| l.starts_with("register wrapper")),
                "{rel}: the stand-in saw no registration: {want:#?}"
            );
            let got = rig
                .load(&moved, &wrapper_sections(&out.host))
                .unwrap_or_else(|e| {
                    panic!("{rel} plan {pi}: the rewritten host does not load: {e}")
                });
            assert_eq!(got, want, "{rel} plan {pi}: {:#?}", out.notes);
            if pi == 0 {
                assert!(
                    out.host_bytes_removed > 0 || data.len() < 0x4000,
                    "{rel}: the host did not shrink: {:#?}",
                    out.notes
                );
            }
            let comps = check_moved(&orig, &moved, &out);
            // Negative control: without its companion the rewritten host does not load.
            for c in &comps {
                let hidden = c.with_extension("hidden");
                std::fs::rename(c, &hidden).unwrap();
                assert!(
                    rig.load(&moved, &[]).is_err(),
                    "{rel}: the host loads without its companion"
                );
                std::fs::rename(&hidden, c).unwrap();
            }
        }
    }
}

#[test]
fn cuobjdump_over_host_and_companions_lists_what_the_original_had() {
    let dir = crate::common::tempdir();
    for rel in [
        "cuda/libfix_plain.so",
        "cuda/libfix_rdc.so",
        "cuda/libfix_concat.so",
    ] {
        let data = std::fs::read(fixture(rel)).unwrap();
        let blocks = all_blocks(&data);
        let half = blocks.len() / 2;
        let plan = vec![
            CompanionTarget {
                soname: "libhost_a.so".into(),
                blocks: blocks[..half.max(1)].to_vec(),
            },
            CompanionTarget {
                soname: "libhost_b.so".into(),
                blocks: blocks[half.max(1)..].to_vec(),
            },
        ];
        let plan: Vec<CompanionTarget> =
            plan.into_iter().filter(|t| !t.blocks.is_empty()).collect();
        let out = move_device_code(&data, &plan).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let stem = rel.replace(['/', '.'], "_");
        let (orig, moved) = lay_down(dir.path(), &stem, &data, &out);
        let mut listed = Vec::new();
        listed.extend(cuobjdump_list_or_empty(&moved));
        for (s, _) in &out.companions {
            listed.extend(cuobjdump_list(&moved.parent().unwrap().join(s), true));
        }
        let mut want = cuobjdump_list(&orig, true);
        want.sort();
        listed.sort();
        assert_eq!(listed, want, "{rel}");
    }
}

/// cuobjdump on a host whose containers all left: it lists nothing (and may say so).
pub(crate) fn cuobjdump_list_or_empty(path: &Path) -> Vec<(String, String)> {
    let tool = crate::common::tool_env("WHEELSLIM_CUOBJDUMP");
    let (_, out, _) = run_out(
        Command::new(tool)
            .args(["-all", "--list-elf", "--list-ptx"])
            .arg(path),
    );
    out.lines()
        .filter_map(|l| {
            let kind = if l.starts_with("ELF file") {
                "ELF"
            } else if l.starts_with("PTX file") {
                "PTX"
            } else {
                return None;
            };
            let at = l.find("sm_")?;
            Some((
                kind.to_string(),
                l[at..].chars().take_while(|&c| c != '.').collect(),
            ))
        })
        .collect()
}

/// `data` with the first `.nvFatBinSegment`'s wrapper data pointers left without a
/// relocation: their RELATIVE entries become R_X86_64_NONE and each place holds the link-time
/// address, as in a non-PIE object.
pub(crate) fn unrelocated_wrappers(data: &[u8]) -> Vec<u8> {
    let g = goblin::elf::Elf::parse(data).unwrap();
    let (seg, n) = wrapper_sections(data)[0];
    let rela = g
        .section_headers
        .iter()
        .find(|s| g.shdr_strtab.get_at(s.sh_name) == Some(".rela.dyn"))
        .unwrap();
    let mut norel = data.to_vec();
    for k in 0..(rela.sh_size / 24) {
        let at = (rela.sh_offset + k * 24) as usize;
        let off = u64::from_le_bytes(norel[at..at + 8].try_into().unwrap());
        if (seg..seg + n * 24).contains(&off) && (off - seg) % 24 == 8 {
            let addend = norel[at + 16..at + 24].to_vec();
            norel[at..at + 24].fill(0);
            let place = off as usize - seg as usize + wrapper_file_off(data);
            norel[place..place + 8].copy_from_slice(&addend);
        }
    }
    norel
}

#[test]
fn refusals_are_named() {
    let data = std::fs::read(fixture("cuda/libfix_plain.so")).unwrap();
    let blocks = all_blocks(&data);
    let plan = vec![CompanionTarget {
        soname: "libhost_device.so".into(),
        blocks: blocks.clone(),
    }];
    // 32-bit.
    let mut b32 = data.clone();
    b32[4] = 1;
    assert_eq!(move_device_code(&b32, &plan), Err(MoveError::Elf32));
    // Non-PIE: an executable's wrappers hold absolute addresses.
    let mut exec = data.clone();
    exec[16] = 2;
    let e = move_device_code(&exec, &plan).unwrap_err();
    assert!(matches!(e, MoveError::NotShared(2)), "{e}");
    assert!(
        e.to_string()
            .contains("cannot be re-pointed, the library stays whole"),
        "{e}"
    );
    // A wrapper without its relocation.
    let norel = unrelocated_wrappers(&data);
    let e = move_device_code(&norel, &plan).unwrap_err();
    assert!(matches!(e, MoveError::NoRelocation { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("cannot be re-pointed, the library stays whole")
    );
    // Other machines and byte orders.
    let mut arm = data.clone();
    arm[18] = 40;
    assert_eq!(move_device_code(&arm, &plan), Err(MoveError::Machine(40)));
    let mut be = data.clone();
    be[5] = 2;
    assert_eq!(move_device_code(&be, &plan), Err(MoveError::BigEndian));
    // Not a container; twice; unknown section; soname clash.
    let bad = vec![CompanionTarget {
        soname: "libx.so".into(),
        blocks: vec![MovedBlock {
            section: ".nv_fatbin".into(),
            offset: 8,
            size: 16,
        }],
    }];
    assert!(matches!(
        move_device_code(&data, &bad),
        Err(MoveError::NotAContainer { .. })
    ));
    let twice = vec![CompanionTarget {
        soname: "libx.so".into(),
        blocks: vec![blocks[0].clone(), blocks[0].clone()],
    }];
    assert!(matches!(
        move_device_code(&data, &twice),
        Err(MoveError::Twice { .. })
    ));
    let clash = vec![CompanionTarget {
        soname: "libcudart.so.13".into(),
        blocks: vec![blocks[0].clone()],
    }];
    assert!(matches!(
        move_device_code(&data, &clash),
        Err(MoveError::Soname(..))
    ));
    let wrong = vec![CompanionTarget {
        soname: "libx.so".into(),
        blocks: vec![MovedBlock {
            section: ".text".into(),
            offset: 0,
            size: 16,
        }],
    }];
    assert!(matches!(
        move_device_code(&data, &wrong),
        Err(MoveError::NotDevice { .. })
    ));
    assert_eq!(move_device_code(&data, &[]), Err(MoveError::Nothing));
}

#[test]
fn the_output_is_deterministic() {
    let data = std::fs::read(fixture("cuda/libfix_rdc.so")).unwrap();
    let plan = vec![CompanionTarget {
        soname: "libhost_device.so".into(),
        blocks: all_blocks(&data),
    }];
    let a = move_device_code(&data, &plan).unwrap();
    let b = move_device_code(&data, &plan).unwrap();
    assert_eq!(a, b);
}

/// The move lays the new host out in the input's own buffer (`move_device_code_each`): the
/// buffer is given back byte for byte, whether the move succeeds, is refused, or is stopped
/// by the caller once a companion is written.
#[test]
fn the_input_buffer_is_given_back_as_it_was() {
    use wheelslim::elf::companion::move_device_code_each;
    for rel in ["cuda/libfix_rdc.so", "cuda/libfix_concat.so"] {
        let data = std::fs::read(fixture(rel)).unwrap();
        let blocks = all_blocks(&data);
        let half = blocks.len().div_ceil(2);
        let plan = vec![
            CompanionTarget {
                soname: "libhost_device1.so".into(),
                blocks: blocks[..half].to_vec(),
            },
            CompanionTarget {
                soname: "libhost_device2.so".into(),
                blocks: blocks[half..].to_vec(),
            },
        ];
        let plan: Vec<_> = plan.into_iter().filter(|t| !t.blocks.is_empty()).collect();
        let mut buf = data.clone();
        let mut seen = Vec::new();
        let out = move_device_code_each(&mut buf, &plan, &mut |soname, bytes, _, input| {
            assert_eq!(
                input,
                &data[..],
                "{rel}: a companion is handed the input host"
            );
            seen.push((soname.to_string(), bytes));
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(buf, data, "{rel}: the buffer changed after a move");
        let whole = move_device_code(&data, &plan).unwrap();
        assert_eq!(out.host, whole.host, "{rel}");
        assert_eq!(seen, whole.companions, "{rel}");
        assert!(out.host.len() < data.len(), "{rel}: the host was not cut");
        // Stopped after the first companion: an error, and the buffer as it was.
        let mut buf = data.clone();
        let stopped = move_device_code_each(&mut buf, &plan, &mut |_, _, _, _| Err("full".into()));
        assert_eq!(stopped.unwrap_err(), MoveError::Stopped("full".into()));
        assert_eq!(buf, data, "{rel}: the buffer changed after a stop");
        // Refused before anything is laid out.
        let mut buf = data.clone();
        let mut wrong = plan.clone();
        wrong[0].blocks[0].offset += 1;
        assert!(move_device_code_each(&mut buf, &wrong, &mut |_, _, _, _| Ok(())).is_err());
        assert_eq!(buf, data, "{rel}: the buffer changed after a refusal");
    }
}

/// A host built here from C: two real containers (from the plain fixture) in `.nv_fatbin`,
/// two wrappers, a constructor registering both, and an exported `host_value` reading a
/// global through a symbolic relocation against a defined (hashed) symbol, whose index
/// shifts when the new symbols go in.
fn build_c_host(rig: &Rig, name: &str, ld_flags: &[&str]) -> Vec<u8> {
    build_c_host_with(rig, name, ld_flags, "")
}

/// [`build_c_host`] with `extra` C code appended to the source.
fn build_c_host_with(rig: &Rig, name: &str, ld_flags: &[&str], extra: &str) -> Vec<u8> {
    let plain = std::fs::read(fixture("cuda/libfix_plain.so")).unwrap();
    let (off, _, size) = section(&plain, ".nv_fatbin").unwrap();
    let sec = &plain[off..off + size];
    let cs = cuda::parse_section(sec).unwrap();
    let arr = |i: usize| {
        let c = &cs[i];
        sec[c.offset..c.end()]
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let src = format!(
        r#"
#include <stdint.h>
struct wrapper {{ uint32_t magic; uint32_t version; const void *data; void *unused; }};
__attribute__((section(".nv_fatbin"), aligned(8), used)) static const unsigned char fb0[] = {{ {a} }};
__attribute__((section(".nv_fatbin"), aligned(8), used)) static const unsigned char fb1[] = {{ {b} }};
__attribute__((section(".nvFatBinSegment"), aligned(8), used)) static struct wrapper w0 = {{ 0x466243B1, 1, fb0, 0 }};
__attribute__((section(".nvFatBinSegment"), aligned(8), used)) static struct wrapper w1 = {{ 0x466243B1, 1, fb1, 0 }};
extern void **__cudaRegisterFatBinary(void *);
extern void __cudaRegisterFatBinaryEnd(void **);
int host_counter = 41;
int *host_ptr = &host_counter;
int host_value(void) {{ return *host_ptr + 1; }}
__attribute__((constructor)) static void reg(void) {{
    __cudaRegisterFatBinaryEnd(__cudaRegisterFatBinary(&w0));
    __cudaRegisterFatBinaryEnd(__cudaRegisterFatBinary(&w1));
}}
{extra}
"#,
        a = arr(0),
        b = arr(1)
    );
    let dir = rig.dir.path().join(format!("src_{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("host.c"), src).unwrap();
    let out = dir.join(format!("{name}.so"));
    let (ok, o, e) = run_out(
        Command::new(need("cc", "gcc"))
            .args(["-shared", "-fPIC", "-O1", "-o"])
            .arg(&out)
            .arg(dir.join("host.c"))
            .args(ld_flags)
            .arg(format!("-L{}", rig.dir.path().join("rt").display()))
            .arg("-l:libcudart.so.13"),
    );
    assert!(ok, "building the C host failed: {o}{e}");
    std::fs::read(out).unwrap()
}

#[test]
fn a_host_with_both_hash_tables_and_symbolic_binding_keeps_working() {
    let rig = Rig::new();
    for (name, flags) in [
        ("both", &["-Wl,--hash-style=both"][..]),
        ("sysv", &["-Wl,--hash-style=sysv"][..]),
        ("symbolic", &["-Wl,--hash-style=both", "-Wl,-Bsymbolic"][..]),
        // Full RELRO: `.dynamic` and the GOT are read-only once relocated, and every symbol
        // binds at load time.
        ("relro_now", &["-Wl,-z,relro", "-Wl,-z,now"][..]),
    ] {
        let data = build_c_host(&rig, name, flags);
        let blocks = all_blocks(&data);
        assert_eq!(blocks.len(), 2, "{name}");
        for plan in [blocks.clone(), blocks[1..].to_vec()] {
            let targets = vec![CompanionTarget {
                soname: format!("lib{name}_device.so"),
                blocks: plan.clone(),
            }];
            let out = move_device_code(&data, &targets).unwrap_or_else(|e| panic!("{name}: {e}"));
            let (orig, moved) = lay_down(
                rig.dir.path(),
                &format!("c_{name}_{}", plan.len()),
                &data,
                &out,
            );
            let want = rig.load(&orig, &wrapper_sections(&data)).unwrap();
            assert!(want.contains(&"host_value 42".to_string()), "{want:#?}");
            assert_eq!(want.iter().filter(|l| l.starts_with("register")).count(), 2);
            let got = rig
                .load(&moved, &wrapper_sections(&out.host))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got, want, "{name}: {:#?}", out.notes);
            check_moved(&orig, &moved, &out);
        }
    }
}

#[test]
fn a_wrapper_behind_a_relr_relocation_leaves_relr_for_rela_and_loads() {
    let rig = Rig::new();
    let data = build_c_host(&rig, "relr", &["-Wl,-z,pack-relative-relocs"]);
    let g = goblin::elf::Elf::parse(&data).unwrap();
    assert!(
        g.dynamic
            .as_ref()
            .unwrap()
            .dyns
            .iter()
            .any(|d| d.d_tag == 36),
        "the linker wrote no DT_RELR"
    );
    let blocks = all_blocks(&data);
    for plan in [blocks.clone(), blocks[..1].to_vec()] {
        let targets = vec![CompanionTarget {
            soname: "librelr_device.so".into(),
            blocks: plan.clone(),
        }];
        let out = move_device_code(&data, &targets).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.notes
                .iter()
                .any(|n| n.contains("out of the RELR table")),
            "{:#?}",
            out.notes
        );
        let (orig, moved) = lay_down(rig.dir.path(), &format!("relr_{}", plan.len()), &data, &out);
        let want = rig.load(&orig, &wrapper_sections(&data)).unwrap();
        assert_eq!(want.iter().filter(|l| l.starts_with("register")).count(), 2);
        let got = rig
            .load(&moved, &wrapper_sections(&out.host))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, want, "{:#?}", out.notes);
        check_moved(&orig, &moved, &out);
        // readelf decodes the shorter RELR table without the moved wrappers' places.
        let (ok, text, _) = run_out(Command::new("readelf").arg("-rW").arg(&moved));
        assert!(ok);
        let g = goblin::elf::Elf::parse(&out.host).unwrap();
        let seg = g
            .section_headers
            .iter()
            .find(|s| g.shdr_strtab.get_at(s.sh_name) == Some(".nvFatBinSegment"))
            .unwrap();
        let symbolic = text
            .lines()
            .filter(|l| l.contains("__wheelslim_dev_"))
            .count();
        assert_eq!(symbolic, plan.len(), "{text}");
        // glibc applies RELR before RELA, so a RELR entry left behind would be overwritten
        // there and go unnoticed at run time; other loaders may not: check the table itself.
        let relr = g
            .section_headers
            .iter()
            .find(|s| s.sh_type == 19)
            .expect("a .relr.dyn section");
        let places = relr_places(
            &out.host[relr.sh_offset as usize..(relr.sh_offset + relr.sh_size) as usize],
        );
        let fields: Vec<u64> = (0..seg.sh_size / 24)
            .map(|i| seg.sh_addr + 24 * i + 8)
            .collect();
        let still: Vec<&u64> = fields.iter().filter(|f| places.contains(f)).collect();
        assert_eq!(
            still.len(),
            2 - plan.len(),
            "RELR still relocates wrapper pointers {still:x?}"
        );
    }
}

/// `(section, offset, len)` of every bundle of `.hip_fatbin`, as `MovedBlock`s.
fn hip_blocks(data: &[u8]) -> Vec<MovedBlock> {
    let (off, _, size) = section(data, ".hip_fatbin").unwrap();
    wheelslim::fatbin::hip::parse_section(&data[off..off + size])
        .unwrap()
        .iter()
        .map(|b| MovedBlock {
            section: ".hip_fatbin".into(),
            offset: b.offset as u64,
            size: b.len as u64,
        })
        .collect()
}

/// The HIP fixture's own check functions, loaded with the companions on LD_LIBRARY_PATH.
pub(crate) fn load_hip_beside(path: &Path) -> String {
    let py = crate::common::tool_env("WHEELSLIM_PYTHON");
    let (ok, out, err) = run_out(
        Command::new(py)
            .args([
                "-c",
                "import ctypes,sys; l=ctypes.CDLL(sys.argv[1]); print(l.fix_hip_host(3), l.fix_throw_catch(7), l.fix_hip_check(), l.fix_hip_code_objects(), l.fix_hip_functions())",
            ])
            .arg(path)
            .env("LD_BIND_NOW", "1")
            .env("LD_LIBRARY_PATH", path.parent().unwrap()),
    );
    assert!(ok, "loading {} failed: {out}{err}", path.display());
    out.trim().to_string()
}

#[test]
fn hip_bundles_move_and_the_fixture_still_reaches_them() {
    let dir = crate::common::tempdir();
    for rel in ["hip/libhipfix.so", "hip/libhipfix_ccob.so"] {
        let data = std::fs::read(fixture(rel)).unwrap();
        let blocks = hip_blocks(&data);
        assert!(!blocks.is_empty());
        for (pi, plan) in [blocks.clone(), blocks[..1].to_vec()]
            .into_iter()
            .enumerate()
        {
            let targets = vec![CompanionTarget {
                soname: "libhipfix_device.so".into(),
                blocks: plan,
            }];
            let out = move_device_code(&data, &targets).unwrap_or_else(|e| panic!("{rel}: {e}"));
            let stem = format!("{}_{pi}", rel.replace(['/', '.'], "_"));
            let (orig, moved) = lay_down(dir.path(), &stem, &data, &out);
            assert_eq!(
                load_hip_beside(&moved),
                load_hip_beside(&orig),
                "{rel} {pi}: {:#?}",
                out.notes
            );
            let comp = moved.parent().unwrap().join("libhipfix_device.so");
            check_static(&orig, &moved, std::slice::from_ref(&comp));
            // clang-offload-bundler lists the same targets, bundle for bundle, over host and
            // companion together.
            let want = crate::companion::bundler_lists(dir.path(), &orig);
            let mut got = crate::companion::bundler_lists(dir.path(), &comp);
            if pi == 1 {
                got.extend(crate::companion::bundler_lists(dir.path(), &moved));
            }
            let mut want = want;
            want.sort();
            got.sort();
            assert_eq!(got, want, "{rel} {pi}");
        }
    }
}

/// Runs the committed cross loader under qemu with the companions on LD_LIBRARY_PATH.
pub(crate) fn load_cross(arch: &str, lib: &Path, calls: &[&str]) -> Vec<String> {
    let (qemu, loader, sysroot) = match arch {
        "aarch64" => (
            need("qemu-aarch64-static", "qemu-user-static"),
            fixture("aarch64/loader"),
            "/usr/aarch64-linux-gnu",
        ),
        _ => (
            need("qemu-ppc64le-static", "qemu-user-static"),
            fixture("ppc64le/loader"),
            "/usr/powerpc64le-linux-gnu",
        ),
    };
    let mut cmd = Command::new(qemu);
    if arch == "aarch64" {
        cmd.args(["-p", "65536"]);
    }
    cmd.args(["-L", sysroot, "-E", "LD_BIND_NOW=1", "-E"])
        .arg(format!(
            "LD_LIBRARY_PATH={}",
            lib.parent().unwrap().display()
        ))
        .arg(loader)
        .arg(lib)
        .args(calls);
    let (ok, out, err) = run_out(&mut cmd);
    assert!(
        ok,
        "qemu-{arch} could not load {}: {out}{err}",
        lib.display()
    );
    out.lines().skip(1).map(str::to_string).collect()
}

#[test]
fn aarch64_and_ppc64le_hosts_reach_their_moved_containers_under_qemu() {
    let dir = crate::common::tempdir();
    for (rel, arch, calls) in [
        (
            "aarch64/libfix_a64.so",
            "aarch64",
            &[
                "fix_a64_host:3",
                "fix_fatbin_check",
                "fix_fatbin_entries",
                "fix_fatbin_elves",
            ][..],
        ),
        (
            "ppc64le/libfix_ppc64le.so",
            "ppc64le",
            &[
                "fix_ppc_host:3",
                "fix_fatbin_check",
                "fix_fatbin_entries",
                "fix_fatbin_elves",
            ][..],
        ),
    ] {
        need(
            if arch == "aarch64" {
                "/usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1"
            } else {
                "/usr/powerpc64le-linux-gnu/lib/ld64.so.2"
            },
            if arch == "aarch64" {
                "libc6-arm64-cross"
            } else {
                "libc6-ppc64el-cross"
            },
        );
        let data = std::fs::read(fixture(rel)).unwrap();
        let blocks = all_blocks(&data);
        for (pi, plan) in [blocks.clone(), blocks[..1].to_vec()]
            .into_iter()
            .enumerate()
        {
            let targets = vec![CompanionTarget {
                soname: "libfix_device.so".into(),
                blocks: plan,
            }];
            let out = move_device_code(&data, &targets).unwrap_or_else(|e| panic!("{rel}: {e}"));
            let (orig, moved) = lay_down(dir.path(), &format!("{arch}_{pi}"), &data, &out);
            let want = load_cross(arch, &orig, calls);
            assert!(
                want.iter().any(|l| l.starts_with("fix_fatbin_check")),
                "{want:?}"
            );
            assert_eq!(
                load_cross(arch, &moved, calls),
                want,
                "{rel} {pi}: {:#?}",
                out.notes
            );
            let comp = moved.parent().unwrap().join("libfix_device.so");
            check_static(&orig, &moved, std::slice::from_ref(&comp));
            let mut listed = cuobjdump_list_or_empty(&moved);
            listed.extend(cuobjdump_list(&comp, true));
            let mut want = cuobjdump_list(&orig, true);
            listed.sort();
            want.sort();
            assert_eq!(listed, want, "{rel} {pi}");
        }
    }
}

/// `data` with every spare DT_NULL slot of `.dynamic` but the terminator taken by
/// DT_CHECKSUM (which the loader ignores), so new entries cannot fit in place.
fn without_dynamic_slack(data: &[u8]) -> Vec<u8> {
    let g = goblin::elf::Elf::parse(data).unwrap();
    let d = g
        .section_headers
        .iter()
        .find(|s| s.sh_type == goblin::elf::section_header::SHT_DYNAMIC)
        .unwrap();
    let mut out = data.to_vec();
    let (start, end) = (d.sh_offset as usize, (d.sh_offset + d.sh_size) as usize);
    let slots: Vec<usize> = (start..end).step_by(16).collect();
    let first_null = slots
        .iter()
        .position(|&at| out[at..at + 8] == [0; 8])
        .unwrap();
    for &at in &slots[first_null..slots.len() - 1] {
        out[at..at + 8].copy_from_slice(&0x6fff_fdf8u64.to_le_bytes());
    }
    out
}

#[test]
fn without_dynamic_slack_the_dynamic_section_moves_and_the_host_still_loads() {
    let rig = Rig::new();
    let data = without_dynamic_slack(&std::fs::read(fixture("cuda/libfix_plain.so")).unwrap());
    let blocks = all_blocks(&data);
    let targets: Vec<CompanionTarget> = blocks
        .iter()
        .enumerate()
        .map(|(i, b)| CompanionTarget {
            soname: format!("libhost_part{i}.so"),
            blocks: vec![b.clone()],
        })
        .collect();
    let out = move_device_code(&data, &targets).unwrap();
    assert!(
        out.notes.iter().any(|n| n.contains("moved `.dynamic`")),
        "{:#?}",
        out.notes
    );
    let (orig, moved) = lay_down(rig.dir.path(), "noslack", &data, &out);
    let want = rig.load(&orig, &wrapper_sections(&data)).unwrap();
    let got = rig.load(&moved, &wrapper_sections(&out.host)).unwrap();
    assert_eq!(got, want);
    check_moved(&orig, &moved, &out);

    // Full RELRO (`-z relro -z now`): the old `.dynamic` lies in PT_GNU_RELRO, made read-only
    // once relocated; the moved one is in the new writable segment, and PT_GNU_RELRO still
    // covers only what the input's did.
    let data = without_dynamic_slack(&build_c_host(&rig, "relro", &["-Wl,-z,relro,-z,now"]));
    let relro = |d: &[u8]| {
        let g = goblin::elf::Elf::parse(d).unwrap();
        g.program_headers
            .iter()
            .filter(|p| p.p_type == goblin::elf::program_header::PT_GNU_RELRO)
            .map(|p| (p.p_vaddr, p.p_memsz))
            .collect::<Vec<_>>()
    };
    assert_eq!(relro(&data).len(), 1);
    let targets = vec![CompanionTarget {
        soname: "librelro_device.so".into(),
        blocks: all_blocks(&data),
    }];
    let out = move_device_code(&data, &targets).unwrap();
    assert!(
        out.notes.iter().any(|n| n.contains("moved `.dynamic`")),
        "{:#?}",
        out.notes
    );
    assert_eq!(relro(&out.host), relro(&data));
    let (orig, moved) = lay_down(rig.dir.path(), "relro", &data, &out);
    let want = rig.load(&orig, &wrapper_sections(&data)).unwrap();
    assert!(want.contains(&"host_value 42".to_string()), "{want:#?}");
    let got = rig.load(&moved, &wrapper_sections(&out.host)).unwrap();
    assert_eq!(got, want);
    check_moved(&orig, &moved, &out);
}

#[test]
fn damaged_hosts_are_refused_or_moved_never_a_panic() {
    // Deterministic byte damage over the headers, the dynamic tables and the wrappers.
    let data = std::fs::read(fixture("cuda/libfix_rdc.so")).unwrap();
    let plan = vec![CompanionTarget {
        soname: "libhost_device.so".into(),
        blocks: all_blocks(&data),
    }];
    let (wrappers, _, wsize) = section(&data, ".nvFatBinSegment").unwrap();
    let mut regions = vec![(0usize, 0x1500usize), (wrappers, wrappers + wsize)];
    let (dynoff, _, dynsize) = section(&data, ".dynamic").unwrap();
    regions.push((dynoff, dynoff + dynsize));
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut ok = 0;
    for i in 0..600 {
        let (lo, hi) = regions[i % regions.len()];
        let mut bad = data.clone();
        for _ in 0..1 + next() % 4 {
            let at = lo + (next() as usize) % (hi - lo);
            bad[at] = next() as u8;
        }
        let r = std::panic::catch_unwind(|| move_device_code(&bad, &plan));
        let r = r.unwrap_or_else(|_| panic!("move_device_code panicked on damage #{i}"));
        if let Ok(out) = r {
            // Whatever is produced passes the crate's own checks.
            wheelslim::elf::check(&out.host).unwrap();
            ok += 1;
        }
    }
    assert!(ok > 0, "no damaged input was still movable");
}

/// The places a RELR table relocates (an independent decoder of the format).
fn relr_places(b: &[u8]) -> Vec<u64> {
    let mut out = Vec::new();
    let mut next = 0u64;
    for w in b.chunks_exact(8) {
        let w = u64::from_le_bytes(w.try_into().unwrap());
        if w & 1 == 0 {
            out.push(w);
            next = w + 8;
        } else {
            for bit in 0..63 {
                if (w >> (bit + 1)) & 1 == 1 {
                    out.push(next + 8 * bit);
                }
            }
            next += 63 * 8;
        }
    }
    out
}

#[test]
fn the_rewritten_host_takes_an_origin_runpath_from_the_patcher_and_finds_its_companion() {
    // The wheel step after the move: `$ORIGIN` so the companion is found beside the host.
    let rig = Rig::new();
    let data = std::fs::read(fixture("cuda/libfix_rdc.so")).unwrap();
    let targets = vec![CompanionTarget {
        soname: "librdc_device.so".into(),
        blocks: all_blocks(&data),
    }];
    let out = move_device_code(&data, &targets).unwrap();
    let patched = wheelslim::elf::patch(
        &out.host,
        &wheelslim::elf::DynamicEdits {
            search_path: Some(vec!["$ORIGIN".into()]),
            path_kind: wheelslim::elf::PathKind::Runpath,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("elf::patch refuses the rewritten host: {e}"));
    let dir = rig.dir.path().join("origin");
    std::fs::create_dir_all(&dir).unwrap();
    let host = dir.join("libhost.so");
    std::fs::write(&host, &patched.data).unwrap();
    for (s, b) in &out.companions {
        std::fs::write(dir.join(s), b).unwrap();
    }
    let orig = rig.dir.path().join("origin_orig");
    std::fs::create_dir_all(&orig).unwrap();
    std::fs::write(orig.join("libhost.so"), &data).unwrap();
    let want = rig
        .load(&orig.join("libhost.so"), &wrapper_sections(&data))
        .unwrap();
    // Only the stand-in runtime is on LD_LIBRARY_PATH: the companion comes from $ORIGIN.
    let (ok, text, err) = run_out(
        Command::new(&rig.loader)
            .arg(&host)
            .args(
                wrapper_sections(&patched.data)
                    .iter()
                    .flat_map(|(v, n)| [format!("{v:#x}"), n.to_string()]),
            )
            .env("LD_BIND_NOW", "1")
            .env("LD_LIBRARY_PATH", rig.dir.path().join("rt")),
    );
    assert!(ok, "{text}{err}");
    assert_eq!(text.lines().map(str::to_string).collect::<Vec<_>>(), want);
    check_static(&orig.join("libhost.so"), &host, &[]);
}

#[test]
fn other_references_into_a_moved_container_are_refused_by_name() {
    let rig = Rig::new();
    for (name, extra, what) in [
        (
            "alias",
            "const void *other_pointer = fb0;\nconst void *get_other(void) { return other_pointer; }",
            "the relocation at",
        ),
        (
            "exported",
            "extern const unsigned char exported_blob[] __attribute__((alias(\"fb0\")));",
            "the exported symbol `exported_blob`",
        ),
    ] {
        let data = build_c_host_with(&rig, name, &[], extra);
        let all = all_blocks(&data);
        let target = |b: Vec<MovedBlock>| {
            vec![CompanionTarget {
                soname: format!("lib{name}_device.so"),
                blocks: b,
            }]
        };
        match move_device_code(&data, &target(all.clone())) {
            Err(MoveError::Referenced(m)) => assert!(m.contains(what), "{name}: {m}"),
            other => panic!("{name}: {:?}", other.map(|o| o.notes)),
        }
        {
            // Moving only the other container is fine: nothing else points at it.
            let singles: Vec<_> = all
                .iter()
                .map(|b| move_device_code(&data, &target(vec![b.clone()])))
                .collect();
            assert_eq!(
                singles.iter().filter(|r| r.is_err()).count(),
                1,
                "{singles:?}"
            );
            let out = singles.into_iter().find_map(Result::ok).unwrap();
            let (orig, moved) = lay_down(rig.dir.path(), &format!("{name}_ok"), &data, &out);
            assert_eq!(
                rig.load(&moved, &wrapper_sections(&out.host)).unwrap(),
                rig.load(&orig, &wrapper_sections(&data)).unwrap()
            );
            let e = move_device_code(&data, &target(all)).unwrap_err();
            assert!(
                e.to_string()
                    .contains("leave that container in the library"),
                "{e}"
            );
        }
    }
}

/// Real vendor libraries (not in `./test.sh`): `WHEELSLIM_COMPANION_REAL=lib1:lib2 cargo test
/// --test it companion_host::real -- --ignored --nocapture`. Every CUDA container moves into
/// companions of at most 100 MiB each; the loaded host's wrappers (the runtime is linked in
/// statically, so the loader walks them) must reach the same container bytes.
#[test]
#[ignore]
#[allow(clippy::print_stdout)] // the measurements are the point of this test
fn real_libraries_from_the_environment() {
    let rig = Rig::new();
    let list = std::env::var("WHEELSLIM_COMPANION_REAL").expect("WHEELSLIM_COMPANION_REAL");
    for lib in list.split(':') {
        let data = std::fs::read(lib).unwrap();
        let blocks = all_blocks(&data);
        let mut targets: Vec<CompanionTarget> = Vec::new();
        let mut used = u64::MAX;
        for b in blocks {
            if used.saturating_add(b.size) > 100 << 20 {
                targets.push(CompanionTarget {
                    soname: format!("libreal_device{}.so", targets.len()),
                    blocks: Vec::new(),
                });
                used = 0;
            }
            used += b.size;
            targets.last_mut().unwrap().blocks.push(b);
        }
        let t = std::time::Instant::now();
        let out = move_device_code(&data, &targets).unwrap_or_else(|e| panic!("{lib}: {e}"));
        let took = t.elapsed();
        let stem = Path::new(lib)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace('.', "_");
        let keep = std::env::var_os("WHEELSLIM_COMPANION_OUT").map(PathBuf::from);
        let base = keep.clone().unwrap_or_else(|| rig.dir.path().to_path_buf());
        let (orig, moved) = lay_down(&base, &stem, &data, &out);
        let want = rig.load(&orig, &wrapper_sections(&data)).unwrap();
        let got = rig.load(&moved, &wrapper_sections(&out.host)).unwrap();
        assert_eq!(got.len(), want.len());
        assert!(got == want, "{lib}: the wrappers reach other bytes");
        check_static(&orig, &moved, &[]);
        println!(
            "{lib}: {} bytes → host {} bytes ({} removed), {} companions ({}), {} bytes moved, {} wrappers checked, {took:?}",
            data.len(),
            out.host.len(),
            out.host_bytes_removed,
            out.companions.len(),
            out.companions
                .iter()
                .map(|(s, b)| format!("{s} {}", b.len()))
                .collect::<Vec<_>>()
                .join(", "),
            out.moved_bytes,
            want.len()
        );
        for n in out.notes.iter().take(12) {
            println!("  {n}");
        }
    }
}

/// The shifts `split` hands the deflate splice for a moved host (`elf::section_shifts`) cover
/// every section the move left unchanged somewhere else in the file (read with goblin), so
/// its compressed blocks can be reused there. No shift is 0 (the splice tries that anyway).
#[test]
fn section_shifts_cover_every_section_the_move_kept_but_moved() {
    for rel in [
        "cuda/libfix_plain.so",
        "cuda/libfix_rdc.so",
        "cuda/libfix_concat.so",
    ] {
        let data = std::fs::read(fixture(rel)).unwrap();
        let plan = vec![CompanionTarget {
            soname: "libhost_device.so".into(),
            blocks: all_blocks(&data),
        }];
        let out = move_device_code(&data, &plan).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let shifts = wheelslim::elf::section_shifts(&data, &out.host, 4);
        assert!(!shifts.contains(&0), "{rel}: {shifts:?}");
        assert!(wheelslim::elf::section_shifts(&data, &data, 4).is_empty());
        let a = goblin::elf::Elf::parse(&data).unwrap();
        let b = goblin::elf::Elf::parse(&out.host).unwrap();
        let mut moved = 0;
        for (x, y) in a.section_headers.iter().zip(&b.section_headers) {
            let (xo, yo, n) = (
                x.sh_offset as usize,
                y.sh_offset as usize,
                x.sh_size as usize,
            );
            if x.sh_type == goblin::elf::section_header::SHT_NOBITS
                || n == 0
                || xo == yo
                || y.sh_size as usize != n
                || data.get(xo..xo + n) != out.host.get(yo..yo + n)
            {
                continue;
            }
            moved += 1;
            let shift = yo as i64 - xo as i64;
            let name = a.shdr_strtab.get_at(x.sh_name).unwrap_or("?");
            assert!(
                shifts.contains(&shift),
                "{rel}: `{name}` moved by {shift} unchanged, not among {shifts:?}"
            );
        }
        assert!(moved > 0, "{rel}: the move shifted no section whole");
    }
}

/// Whatever subset of containers moves, the page cut's self-check accepts its own output:
/// a wrapper whose relocation is now bound to a companion's symbol holds an offset from that
/// symbol as its addend, not an address of the host, and must not be judged as one (NCCL
/// 2.20.5's cut was refused so, and its containers were only zeroed in place). Every fixture,
/// keeping each container in turn and moving the rest, and moving all but none.
#[test]
fn the_cut_after_a_move_passes_its_own_check_whatever_stays() {
    for rel in [
        "cuda/libfix_plain.so",
        "cuda/libfix_lz4.so",
        "cuda/libfix_default.so",
        "cuda/libfix_rdc.so",
        "cuda/libfix_concat.so",
        "cuda/libfix_compress_all.so",
    ] {
        let data = std::fs::read(fixture(rel)).unwrap();
        let blocks = all_blocks(&data);
        for keep in std::iter::once(None).chain((0..blocks.len()).map(Some)) {
            let moved: Vec<MovedBlock> = blocks
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != keep)
                .map(|(_, b)| b.clone())
                .collect();
            if moved.is_empty() {
                continue;
            }
            // In file order and reversed: a large container first in the companion puts the
            // next one's offset (its addend) where the host's kept container now lies.
            for order in [moved.clone(), moved.iter().rev().cloned().collect()] {
                let target = CompanionTarget {
                    soname: "libhost_dev.so".into(),
                    blocks: order,
                };
                let out =
                    move_device_code(&data, &[target]).unwrap_or_else(|e| panic!("{rel}: {e}"));
                assert!(
                    !out.notes.iter().any(|n| n.contains("self-check")),
                    "{rel}, keeping {keep:?}: {:#?}",
                    out.notes
                );
            }
        }
    }
}
