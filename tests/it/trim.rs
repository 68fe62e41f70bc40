//! `wheelslim trim` end to end, checked by NVIDIA's cuobjdump, LLVM's clang-offload-bundler,
//! binutils' readelf, glibc's loader (Python ctypes, `LD_BIND_NOW=1`) and qemu-user.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

const CUDA_LIBS: &[&str] = &[
    "libfix_plain.so",
    "libfix_default.so",
    "libfix_compress_all.so",
    "libfix_lz4.so",
    "libfix_rdc.so",
    "libfix_concat.so",
];

fn trim_json(wheel: &Path, out: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec![
        "trim",
        "--json",
        wheel.to_str().unwrap(),
        "-w",
        out.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let o = wheelslim(&all);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)))
}

/// PT_LOADs from `readelf -lW`: (offset, vaddr, filesz, align).
fn loads(path: &Path) -> Vec<(u64, u64, u64, u64)> {
    let out = run(Command::new("readelf").arg("-lW").arg(path));
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    out.lines()
        .filter(|l| l.trim_start().starts_with("LOAD"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (hex(f[1]), hex(f[2]), hex(f[4]), hex(f[f.len() - 1]))
        })
        .collect()
}

fn assert_layout(path: &Path) {
    let l = loads(path);
    for w in l.windows(2) {
        assert!(
            w[0].1 < w[1].1,
            "PT_LOADs not sorted by vaddr in {}: {l:x?}",
            path.display()
        );
    }
    for (off, vaddr, _, align) in &l {
        assert_eq!(
            off % align,
            vaddr % align,
            "{}: offset {off:#x} vaddr {vaddr:#x} align {align:#x}",
            path.display()
        );
    }
}

/// Loads a CUDA fixture library with every symbol bound, calls host code, and throws and
/// catches a C++ exception inside it.
fn load_cuda_fixture(path: &Path) {
    let python = tool_env("WHEELSLIM_PYTHON");
    let code = format!(
        "import ctypes\nl = ctypes.CDLL({:?})\nprint(l.fix_ka_host(3), l.fix_kb_host(3), l.fix_throw_catch(7))",
        path.to_str().unwrap()
    );
    let out = run(Command::new(python)
        .args(["-c", &code])
        .env("LD_BIND_NOW", "1")
        .env("LD_LIBRARY_PATH", tool_env("WHEELSLIM_CUDA_LIB")));
    assert_eq!(out.trim(), "7 8 73", "{}", path.display());
}

trait MkDir {
    fn tap_mkdir(self) -> PathBuf;
}

impl MkDir for PathBuf {
    fn tap_mkdir(self) -> PathBuf {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

fn extract(wheel: &Path, member: &str, to: &Path) -> PathBuf {
    let data = read_zip(wheel)
        .into_iter()
        .find(|(n, _)| n == member)
        .unwrap_or_else(|| panic!("{member} not in {}", wheel.display()))
        .1;
    let path = to.join(member.replace('/', "_"));
    std::fs::write(&path, data).unwrap();
    path
}

#[test]
fn every_cuda_fixture_trimmed_to_each_arch_and_pairs() {
    let input = fixture(CUDAFIX);
    let before = std::fs::read(&input).unwrap();
    let targets = [
        "50", "70", "75", "80", "86", "90", "90a", "100f", "120", "80,90", "86,120", "70,100",
    ];
    for t in targets {
        let tmp = tempdir();
        let out_dir = tmp.path().join("out");
        let report = trim_json(&input, &out_dir, &["--sm", t]);
        let out = out_dir.join(input.file_name().unwrap());
        assert!(out.exists(), "{t}");
        let members = report["wheels"][0]["members"].as_array().unwrap();
        for lib in CUDA_LIBS {
            let member = format!("cudafix/{lib}");
            let path = extract(&out, &member, tmp.path());
            let original = extract(&input, &member, &tmp.path().join("orig").tap_mkdir());
            let had = cuobjdump_counts(&original);
            let seen = cuobjdump_counts(&path);
            let Some(m) = members.iter().find(|m| m["member"] == member.as_str()) else {
                // Nothing in it matched the targets: the library is left as it was.
                assert_eq!(
                    std::fs::read(&path).unwrap(),
                    std::fs::read(&original).unwrap(),
                    "{member} {t}"
                );
                continue;
            };
            // What NVIDIA's tool sees is what we say we kept.
            let mut said = BTreeMap::new();
            for a in m["archs"].as_array().unwrap() {
                let kept = a["kept"].as_u64().unwrap() as usize;
                if kept > 0 {
                    let arch = a["arch"].as_str().unwrap();
                    let arch = arch
                        .strip_suffix('f')
                        .filter(|_| arch.starts_with("sm_"))
                        .unwrap_or(arch);
                    *said.entry(arch.to_string()).or_insert(0) += kept;
                }
            }
            assert_eq!(seen, said, "{member} --sm {t}");
            // Every requested target keeps something it can run, if it had something before.
            let usable = |counts: &BTreeMap<String, usize>, sm: u32| {
                counts.keys().any(|a| {
                    let n: u32 = a
                        .trim_start_matches(|c: char| !c.is_ascii_digit())
                        .trim_end_matches(|c: char| !c.is_ascii_digit())
                        .parse()
                        .unwrap_or(0);
                    if a.starts_with("sm_") {
                        n / 10 == sm / 10 && n <= sm
                    } else {
                        n <= sm
                    }
                })
            };
            for target in t.split(',') {
                let digits: String = target.chars().take_while(char::is_ascii_digit).collect();
                let sm: u32 = digits.parse().unwrap();
                if usable(&had, sm) {
                    assert!(
                        usable(&seen, sm),
                        "{member} --sm {t}: nothing left for sm_{sm}: {seen:?}"
                    );
                }
            }
            assert_layout(&path);
            load_cuda_fixture(&path);
            let (b, a) = (
                m["bytes_before"].as_u64().unwrap(),
                m["bytes_after"].as_u64().unwrap(),
            );
            assert_eq!(a, std::fs::metadata(&path).unwrap().len());
            match m["method"].as_str().unwrap() {
                "cut" => {
                    assert!(a < b, "{member} {t}");
                    assert_eq!((b - a) % 0x1000, 0, "{member} {t}: cut is whole pages");
                }
                "zeroed" => assert_eq!(a, b, "{member} {t}"),
                other => panic!("{member}: unexpected method {other}"),
            }
            assert!(
                m["zip_after"].as_u64().unwrap() < m["zip_before"].as_u64().unwrap(),
                "{member} {t}: the wheel shrinks"
            );
        }
        // Outside tools agree the output is a valid wheel.
        let v = wheelslim(&["verify", "--json", out.to_str().unwrap()]);
        let report: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
        assert!(
            report["wheels"][0]["violations"]
                .as_array()
                .unwrap()
                .is_empty(),
            "{report}"
        );
        assert!(std::fs::metadata(&out).unwrap().len() < before.len() as u64);
    }
    assert_eq!(
        std::fs::read(&input).unwrap(),
        before,
        "the input must not change"
    );
}

#[test]
fn big_libraries_are_really_cut() {
    // plain, default and lz4 carry ~100 KiB of device code: a single-arch trim frees pages.
    let tmp = tempdir();
    let report = trim_json(&fixture(CUDAFIX), &tmp.path().join("o"), &["--sm", "90"]);
    for lib in ["libfix_plain.so", "libfix_default.so", "libfix_lz4.so"] {
        let m = report["wheels"][0]["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["member"] == format!("cudafix/{lib}").as_str())
            .unwrap();
        assert_eq!(m["method"], "cut", "{lib}: {m}");
        assert!(
            m["bytes_before"].as_u64().unwrap() - m["bytes_after"].as_u64().unwrap() >= 0x10000,
            "{lib}: {m}"
        );
    }
}

#[test]
fn loose_device_files_follow_the_selection() {
    let tmp = tempdir();
    let out_dir = tmp.path().join("o");
    let report = trim_json(&fixture(CUDAFIX), &out_dir, &["--sm", "90"]);
    let out = out_dir.join(fixture(CUDAFIX).file_name().unwrap());
    let names: Vec<String> = read_zip(&out).into_iter().map(|(n, _)| n).collect();
    assert!(
        !names.contains(&"cudafix/kernels/fix_sm80.cubin".to_string()),
        "sm_80 cubin must go"
    );
    assert!(
        names.contains(&"cudafix/kernels/fix_compute90.ptx".to_string()),
        "compute_90 PTX stays"
    );
    let fatbin = extract(
        &out,
        "cudafix/kernels/fix_sm80_sm90_compute90.fatbin",
        tmp.path(),
    );
    assert_eq!(
        cuobjdump_counts(&fatbin),
        BTreeMap::from([("compute_90".to_string(), 1), ("sm_90".to_string(), 1)])
    );
    let record = read_zip(&out)
        .into_iter()
        .find(|(n, _)| n.ends_with("RECORD"))
        .map(|(_, d)| String::from_utf8(d).unwrap())
        .unwrap();
    assert!(
        !record.contains("fix_sm80.cubin"),
        "RECORD follows the removal"
    );
    let dropped = report["wheels"][0]["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["member"] == "cudafix/kernels/fix_sm80.cubin")
        .unwrap();
    assert_eq!(dropped["method"], "dropped");
}

#[test]
fn hip_bundles_trimmed_to_one_target() {
    let tmp = tempdir();
    let out_dir = tmp.path().join("o");
    let input = fixture(HIPFIX);
    let report = trim_json(&input, &out_dir, &["--gfx", "gfx90a"]);
    let out = out_dir.join(input.file_name().unwrap());
    for lib in ["hipfix/libhipfix.so", "hipfix/libhipfix_ccob.so"] {
        let path = extract(&out, lib, tmp.path());
        assert_layout(&path);
        // The stub linked into the library walks every registered bundle: both wrappers
        // still point at valid bundles, each with one code object left.
        let python = tool_env("WHEELSLIM_PYTHON");
        let code = format!(
            "import ctypes\nl = ctypes.CDLL({:?})\nprint(l.fix_hip_check(), l.fix_hip_code_objects(), l.fix_throw_catch(7))",
            path.to_str().unwrap()
        );
        let got = run(Command::new(python)
            .args(["-c", &code])
            .env("LD_BIND_NOW", "1"));
        // The stub cannot look inside compressed (CCOB) bundles, so it counts none there.
        let objects = if lib.ends_with("_ccob.so") { 0 } else { 2 };
        assert_eq!(got.trim(), format!("2 {objects} 73"), "{lib}");
        // LLVM's bundler lists only gfx90a (and the host) in every bundle.
        let m = report["wheels"][0]["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["member"] == lib)
            .unwrap();
        let mut kept: Vec<&str> = m["archs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["kept"].as_u64().unwrap() > 0)
            .map(|a| a["arch"].as_str().unwrap())
            .collect();
        kept.sort_unstable();
        assert_eq!(kept, ["gfx90a", "host"], "{lib}: {m}");
        // LLVM's bundler lists only gfx90a (and the host) in every bundle of the section,
        // which binutils' objcopy extracts; bundles start on 4096-byte boundaries.
        let section = tmp.path().join("hip_fatbin.bin");
        run(Command::new("objcopy")
            .args(["-O", "binary", "--only-section=.hip_fatbin"])
            .arg(&path)
            .arg(&section));
        let bytes = std::fs::read(&section).unwrap();
        let starts: Vec<usize> = (0..bytes.len())
            .step_by(4096)
            .filter(|&o| {
                bytes[o..].starts_with(b"__CLANG_OFFLOAD_BUNDLE__")
                    || bytes[o..].starts_with(b"CCOB")
            })
            .collect();
        assert_eq!(starts.len(), 2, "{lib}: two bundles");
        for (i, &start) in starts.iter().enumerate() {
            let mut end = starts.get(i + 1).copied().unwrap_or(bytes.len());
            if bytes[start..].starts_with(b"CCOB") {
                // A version-2 compressed bundle says its total size (the bundler reads to EOF).
                let total = u32::from_le_bytes(bytes[start + 8..start + 12].try_into().unwrap());
                end = start + total as usize;
            }
            let one = tmp.path().join(format!("bundle{i}.bin"));
            std::fs::write(&one, &bytes[start..end]).unwrap();
            let listed = run(Command::new("clang-offload-bundler-19")
                .args(["--list", "--type=o"])
                .arg(format!("--input={}", one.display())));
            let mut triples: Vec<&str> = listed.lines().collect();
            triples.sort_unstable();
            assert_eq!(triples.len(), 2, "{lib}: {listed}");
            assert!(
                triples[0].starts_with("hip") && triples[0].ends_with("gfx90a"),
                "{lib}: {listed}"
            );
            assert!(triples[1].starts_with("host-"), "{lib}: {listed}");
        }
    }
    let names: Vec<String> = read_zip(&out).into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"hipfix/kernels/hipfix_gfx90a.hsaco".to_string()));
    assert!(!names.contains(&"hipfix/kernels/hipfix_gfx942.co".to_string()));
}

#[test]
fn aarch64_object_with_64k_pages() {
    let tmp = tempdir();
    let lib = std::fs::read(fixture("aarch64/libfix_a64.so")).unwrap();
    let wheel = make_wheel(
        tmp.path(),
        "manylinux_2_17_aarch64",
        &[("demo/libfix_a64.so", &lib)],
    );
    // --sm 80 keeps sm_80 and, as the only plain PTX of each TU, compute_90 for newer GPUs.
    for (sm, entries) in [("80", 4), ("90", 4)] {
        let out_dir = tmp.path().join(format!("o{sm}"));
        let report = trim_json(&wheel, &out_dir, &["--sm", sm]);
        let path = extract(
            &out_dir.join(wheel.file_name().unwrap()),
            "demo/libfix_a64.so",
            tmp.path(),
        );
        assert_layout(&path);
        assert!(loads(&path).iter().all(|l| l.3 == 0x10000));
        let seen = cuobjdump_counts(&path);
        assert_eq!(seen.values().sum::<usize>(), entries, "--sm {sm}: {seen:?}");
        let m = &report["wheels"][0]["members"][0];
        assert!(m["method"] == "cut" || m["method"] == "zeroed", "{m}");
        // Load it under qemu with 64 KiB pages; the stub walks the re-pointed wrappers.
        let out = run(Command::new("qemu-aarch64-static")
            .args([
                "-p",
                "65536",
                "-L",
                "/usr/aarch64-linux-gnu",
                "-E",
                "LD_BIND_NOW=1",
            ])
            .arg(fixture("aarch64/loader"))
            .arg(&path)
            .args([
                "fix_fatbin_check",
                "fix_fatbin_entries",
                "fix_throw_catch:7",
            ]));
        let values: Vec<&str> = out.lines().filter_map(|l| l.split(" = ").nth(1)).collect();
        assert_eq!(
            values,
            ["2", &entries.to_string(), "73"],
            "--sm {sm}: {out}"
        );
    }
}

#[test]
fn dry_run_reports_and_writes_nothing() {
    let tmp = tempdir();
    let out_dir = tmp.path().join("never");
    let o = wheelslim(&[
        "trim",
        "--dry-run",
        "--sm",
        "90",
        fixture(CUDAFIX).to_str().unwrap(),
        "-w",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(!out_dir.exists());
    let text = stdout(&o);
    assert!(text.contains("Would trim (dry run) to sm_90"), "{text}");
    assert!(text.contains("cudafix/libfix_plain.so"), "{text}");
}

#[test]
fn trim_needs_targets() {
    let tmp = tempdir();
    let o = wheelslim(&[
        "trim",
        fixture(CUDAFIX).to_str().unwrap(),
        "-w",
        tmp.path().to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("--sm"), "{}", stderr(&o));
    let o = wheelslim(&[
        "trim",
        "--sm",
        "nonsense",
        fixture(CUDAFIX).to_str().unwrap(),
        "-w",
        tmp.path().to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("--sm nonsense"), "{}", stderr(&o));
}

/// A memory budget smaller than any member serializes the work but gives the same wheel:
/// a worker that holds a member and reserves room for its trimmed copy never waits for itself.
#[test]
fn a_tiny_memory_budget_gives_the_same_output() {
    let tmp = tempdir();
    let wheel = fixture(CUDAFIX);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    trim_json(&wheel, &a, &["--sm", "90"]);
    trim_json(&wheel, &b, &["--sm", "90", "--memory", "1"]);
    let name = wheel.file_name().unwrap();
    assert_eq!(
        std::fs::read(a.join(name)).unwrap(),
        std::fs::read(b.join(name)).unwrap()
    );
}

/// The cubins and PTX of the plain CUDA fixture, as NVIDIA's cuobjdump extracts them: file
/// name (`libfix_plain.16.sm_100.cubin`, `libfix_plain.2.sm_120.ptx`) → bytes. Real ptxas
/// output for sm_50 … sm_120 (the sm_100 ones were built as sm_100f).
fn extracted_images(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let dir = dir.join("images").tap_mkdir();
    let lib = fixture("cuda/libfix_plain.so");
    for what in ["-xelf", "-xptx"] {
        let status = Command::new(tool_env("WHEELSLIM_CUOBJDUMP"))
            .args([what, "all"])
            .arg(&lib)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(status.status.success(), "{status:?}");
    }
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_str().unwrap().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn trim_raw(args: &[&str]) -> std::process::Output {
    let mut all = vec!["trim"];
    all.extend_from_slice(args);
    wheelslim(&all)
}

/// Issue 10 item 1: a wheel of loose cubins built only for GPUs that are not selected lost
/// every kernel with exit 0. With the default `--unmatched keep` they stay, byte for byte.
#[test]
fn loose_cubins_for_other_gpus_stay_unless_asked() {
    let tmp = tempdir();
    let img = extracted_images(tmp.path());
    let files: Vec<(&str, &[u8])> = vec![
        (
            "bw/cubins/fmhaSm100fKernel_QkvE4m3.cubin",
            &img["libfix_plain.16.sm_100.cubin"],
        ),
        (
            "bw/cubins/Gemm_Bfloat16_t128_sm100f.cubin",
            &img["libfix_plain.8.sm_100.cubin"],
        ),
        (
            "bw/cubins/kernel.fp8_gemm.abfccf73.cubin",
            &img["libfix_plain.9.sm_120.cubin"],
        ),
    ];
    let wheel = make_wheel(tmp.path(), "manylinux_2_34_x86_64", &files);
    let name = wheel.file_name().unwrap().to_owned();
    let out_dir = tmp.path().join("o");
    let report = trim_json(&wheel, &out_dir, &["--sm", "90"]);
    let w = &report["wheels"][0];
    assert_eq!(w["loose_groups"], 3, "{w}");
    assert_eq!(w["loose_groups_unmatched"], 3, "{w}");
    assert!(w["members"].as_array().unwrap().is_empty(), "{w}");
    let out = out_dir.join(&name);
    let got: BTreeMap<String, Vec<u8>> = read_zip(&out).into_iter().collect();
    for (member, bytes) in &files {
        assert_eq!(
            got.get(*member).map(Vec::as_slice),
            Some(*bytes),
            "{member}"
        );
    }
    // NVIDIA's tool still finds the Blackwell kernels in what was written.
    let cubin = extract(&out, files[0].0, tmp.path());
    assert_eq!(
        cuobjdump_counts(&cubin),
        BTreeMap::from([("sm_100".to_string(), 1)])
    );
    // The summary says why nothing was trimmed, and how to choose otherwise.
    let o = trim_raw(&[
        "--sm",
        "90",
        "--dry-run",
        wheel.to_str().unwrap(),
        "-w",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stdout(&o).contains("3 of 3 group(s) of loose device files held nothing"),
        "{}",
        stdout(&o)
    );

    // --unmatched drop would leave the wheel with no device code at all: refused, dry run
    // included, naming the wheel, what went and the flag that makes it a choice.
    let refused_dir = tmp.path().join("refused");
    for dry in [false, true] {
        let mut args = vec![
            "--sm",
            "90",
            "--unmatched",
            "drop",
            wheel.to_str().unwrap(),
            "-w",
            refused_dir.to_str().unwrap(),
        ];
        if dry {
            args.push("--dry-run");
        }
        let o = trim_raw(&args);
        assert_eq!(code(&o), 2, "{}", stdout(&o));
        let err = stderr(&o);
        assert!(err.contains(wheel.to_str().unwrap()), "{err}");
        assert!(err.contains("no device code for any GPU"), "{err}");
        assert!(err.contains("sm_100f"), "{err}");
        assert!(err.contains("--allow-no-device-code"), "{err}");
        assert!(!refused_dir.join(&name).exists());
    }
    // Asked for explicitly, it is done.
    let empty_dir = tmp.path().join("empty");
    let report = trim_json(
        &wheel,
        &empty_dir,
        &[
            "--sm",
            "90",
            "--unmatched",
            "drop",
            "--allow-no-device-code",
        ],
    );
    let members = report["wheels"][0]["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    assert!(members.iter().all(|m| {
        m["method"] == "dropped"
            && m["lost"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["gpus"] == "all")
    }));
    let names: Vec<String> = read_zip(&empty_dir.join(&name))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".cubin")), "{names:?}");
}

/// Loose files that hold one kernel set for several GPUs are judged together, as the
/// entries of one container: the best SASS per target, PTX for newer GPUs.
#[test]
fn loose_groups_are_trimmed_like_containers() {
    let tmp = tempdir();
    let img = extracted_images(tmp.path());
    let files: Vec<(&str, &[u8])> = vec![
        ("k/ka.sm_80.cubin", &img["libfix_plain.4.sm_80.cubin"]),
        ("k/ka.sm_90.cubin", &img["libfix_plain.6.sm_90.cubin"]),
        ("k/ka.sm_120.cubin", &img["libfix_plain.9.sm_120.cubin"]),
        ("k/ka.compute_120.ptx", &img["libfix_plain.2.sm_120.ptx"]),
        // A group of its own with nothing for sm_90: kept.
        ("k/kb_sm100f.cubin", &img["libfix_plain.16.sm_100.cubin"]),
    ];
    let wheel = make_wheel(tmp.path(), "manylinux_2_34_x86_64", &files);
    let name = wheel.file_name().unwrap().to_owned();
    let out_dir = tmp.path().join("o");
    let report = trim_json(&wheel, &out_dir, &["--sm", "90"]);
    let out = out_dir.join(&name);
    let names: Vec<String> = read_zip(&out).into_iter().map(|(n, _)| n).collect();
    let has = |n: &str| names.iter().any(|m| m == n);
    assert!(
        !has("k/ka.sm_80.cubin") && !has("k/ka.sm_120.cubin"),
        "{names:?}"
    );
    assert!(has("k/ka.sm_90.cubin"), "{names:?}");
    // The group's only PTX is newer than sm_90: kept so newer GPUs can still JIT.
    assert!(has("k/ka.compute_120.ptx"), "{names:?}");
    assert!(has("k/kb_sm100f.cubin"), "{names:?}");
    assert_eq!(
        cuobjdump_counts(&extract(&out, "k/ka.sm_90.cubin", tmp.path())),
        BTreeMap::from([("sm_90".to_string(), 1)])
    );
    let w = &report["wheels"][0];
    assert_eq!(
        (
            w["loose_groups"].as_u64(),
            w["loose_groups_unmatched"].as_u64()
        ),
        (Some(2), Some(1))
    );
    for m in w["members"].as_array().unwrap() {
        assert_eq!(m["group"], "k/ka.*", "{m}");
        assert!(m.get("lost").is_none(), "{m}");
    }

    // --ptx none: the user's choice, done and reported per group (JSON and summary).
    let none_dir = tmp.path().join("none");
    let report = trim_json(&wheel, &none_dir, &["--sm", "90", "--ptx", "none"]);
    let ptx = report["wheels"][0]["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["member"] == "k/ka.compute_120.ptx")
        .unwrap()
        .clone();
    assert_eq!(ptx["method"], "dropped");
    assert_eq!(ptx["lost"][0]["gpus"], "newer", "{ptx}");
    assert_eq!(ptx["lost"][0]["had"][0], "compute_120", "{ptx}");
    let o = trim_raw(&[
        "--sm",
        "90",
        "--ptx",
        "none",
        "--dry-run",
        wheel.to_str().unwrap(),
        "-w",
        none_dir.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stdout(&o).contains("GPUs newer than sm_90 can no longer JIT"),
        "{}",
        stdout(&o)
    );
}

/// Issue 10 item 11: `--sm 86` dropped the only PTX of each container (compute_90 and
/// compute_120 are both newer than 86), so no GPU newer than sm_86 could run the library.
#[test]
fn libraries_keep_ptx_for_newer_gpus() {
    let tmp = tempdir();
    let input = fixture(CUDAFIX);
    let name = input.file_name().unwrap().to_owned();
    let member = "cudafix/libfix_plain.so";
    let out_dir = tmp.path().join("o");
    let report = trim_json(&input, &out_dir, &["--sm", "86"]);
    let path = extract(&out_dir.join(&name), member, tmp.path());
    let seen = cuobjdump_counts(&path);
    // One sm_86 image and the oldest plain PTX per TU container.
    assert_eq!(seen.get("compute_90"), Some(&2), "{seen:?}");
    assert_eq!(seen.get("compute_120"), None, "{seen:?}");
    let m = report["wheels"][0]["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["member"] == member)
        .unwrap()
        .clone();
    assert!(m.get("lost").is_none(), "{m}");

    // --ptx none drops it, and says so per library.
    let none_dir = tmp.path().join("none");
    let report = trim_json(&input, &none_dir, &["--sm", "86", "--ptx", "none"]);
    let path = extract(
        &none_dir.join(&name),
        member,
        &tmp.path().join("n").tap_mkdir(),
    );
    let seen = cuobjdump_counts(&path);
    assert!(!seen.keys().any(|k| k.starts_with("compute_")), "{seen:?}");
    let m = report["wheels"][0]["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["member"] == member)
        .unwrap()
        .clone();
    let lost = m["lost"].as_array().unwrap();
    assert_eq!(lost.len(), 1, "{m}");
    assert_eq!(lost[0]["gpus"], "newer");
    assert_eq!(lost[0]["containers"], 2);
    let o = trim_raw(&[
        "--sm",
        "86",
        "--ptx",
        "none",
        "--dry-run",
        input.to_str().unwrap(),
        "-w",
        none_dir.to_str().unwrap(),
    ]);
    let text = stdout(&o);
    assert!(
        text.contains("GPUs newer than sm_86 can no longer JIT 2 container(s)"),
        "{text}"
    );
}

/// HIP bundles in which nothing serves the targets follow `--unmatched` like CUDA containers.
#[test]
fn hip_code_for_other_gpus_stays_unless_asked() {
    let tmp = tempdir();
    let input = fixture(HIPFIX);
    let name = input.file_name().unwrap().to_owned();
    let out_dir = tmp.path().join("o");
    let report = trim_json(&input, &out_dir, &["--gfx", "gfx1030"]);
    let before: BTreeMap<String, Vec<u8>> = read_zip(&input).into_iter().collect();
    let after: BTreeMap<String, Vec<u8>> = read_zip(&out_dir.join(&name)).into_iter().collect();
    for m in [
        "hipfix/libhipfix.so",
        "hipfix/libhipfix_ccob.so",
        "hipfix/kernels/hipfix_gfx90a.hsaco",
        "hipfix/kernels/hipfix_gfx942.co",
    ] {
        assert!(
            before.contains_key(m) && before.get(m) == after.get(m),
            "{m} changed: {report}"
        );
    }
    // Dropping it all would leave the wheel without device code: refused unless meant.
    let o = trim_raw(&[
        "--gfx",
        "gfx1030",
        "--unmatched",
        "drop",
        input.to_str().unwrap(),
        "-w",
        tmp.path().join("d").to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 2, "{}", stdout(&o));
    assert!(
        stderr(&o).contains("--allow-no-device-code"),
        "{}",
        stderr(&o)
    );
}

/// Issue 10 item 20: two inputs of one file name would write one output twice.
#[test]
fn two_inputs_of_one_name_are_refused() {
    let tmp = tempdir();
    let name = fixture(CUDAFIX).file_name().unwrap().to_owned();
    let (a, b) = (
        tmp.path().join("a").tap_mkdir(),
        tmp.path().join("b").tap_mkdir(),
    );
    std::fs::copy(fixture(CUDAFIX), a.join(&name)).unwrap();
    std::fs::copy(fixture(CUDAFIX), b.join(&name)).unwrap();
    let out = tmp.path().join("o");
    let o = trim_raw(&[
        "--sm",
        "90",
        a.join(&name).to_str().unwrap(),
        b.join(&name).to_str().unwrap(),
        "-w",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 2, "{}", stdout(&o));
    let err = stderr(&o);
    assert!(err.contains("would both be written"), "{err}");
    assert!(!out.join(&name).exists());
}

/// `split --sm` trims through the same code: loose files for other GPUs stay, and a split
/// that would leave the wheel without device code is refused the same way.
#[test]
fn split_shares_the_loose_rules() {
    let tmp = tempdir();
    let img = extracted_images(tmp.path());
    let files: Vec<(&str, &[u8])> = vec![
        ("bw/k_sm100f.cubin", &img["libfix_plain.16.sm_100.cubin"]),
        ("bw/g.sm_90.cubin", &img["libfix_plain.6.sm_90.cubin"]),
        ("bw/g.sm_80.cubin", &img["libfix_plain.4.sm_80.cubin"]),
    ];
    let wheel = make_wheel(tmp.path(), "manylinux_2_34_x86_64", &files);
    let name = wheel.file_name().unwrap().to_owned();
    let (w, rt) = (tmp.path().join("w"), tmp.path().join("rt"));
    let o = wheelslim(&[
        "split",
        wheel.to_str().unwrap(),
        "-w",
        w.to_str().unwrap(),
        "--runtime-dir",
        rt.to_str().unwrap(),
        "--sm",
        "90",
    ]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let names: Vec<String> = read_zip(&w.join(&name))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(
        names.contains(&"bw/k_sm100f.cubin".to_string()),
        "{names:?}"
    );
    assert!(names.contains(&"bw/g.sm_90.cubin".to_string()), "{names:?}");
    assert!(
        !names.contains(&"bw/g.sm_80.cubin".to_string()),
        "{names:?}"
    );
    let o = wheelslim(&[
        "split",
        wheel.to_str().unwrap(),
        "-w",
        tmp.path().join("w2").to_str().unwrap(),
        "--runtime-dir",
        rt.to_str().unwrap(),
        "--sm",
        "75",
        "--unmatched",
        "drop",
    ]);
    assert_eq!(code(&o), 2, "{}", stdout(&o));
    assert!(
        stderr(&o).contains("--allow-no-device-code"),
        "{}",
        stderr(&o)
    );
    assert!(!tmp.path().join("w2").join(&name).exists());
}

/// The members of a wheel (name and bytes) and its trim report, as `trim_lib` gives them.
type TrimmedLib = (Vec<(String, Vec<u8>)>, String);

/// Trims `wheel` through the library with `sparse` (see `TrimOptions::sparse`) and a budget
/// too small to hold any member whole; returns the output wheel's members and the report,
/// compressed sizes left out.
fn trim_lib(
    wheel: &Path,
    out: &Path,
    sm: &str,
    sparse: wheelslim::facts::Sparse,
) -> Result<TrimmedLib, String> {
    use wheelslim::trim::{TrimOptions, TrimSettings, trim};
    let opts = TrimOptions {
        settings: TrimSettings {
            cuda: Some(wheelslim::fatbin::select::Selection::parse_targets(sm).unwrap()),
            gfx: None,
            allow_cut: true,
            allow_no_device_code: false,
        },
        wheel_dir: out.to_path_buf(),
        max_size: 100 << 20,
        limits: Default::default(),
        memory_budget: 1,
        time: wheelslim::wheel::writer::ZipTime::EPOCH,
        dry_run: false,
        strip_debug: false,
        progress: std::sync::Arc::new(indicatif::ProgressBar::hidden()),
        sparse,
    };
    let report = trim(
        &[wheel.to_path_buf()],
        &wheelslim::profile::ProfileSet::built_in(),
        &opts,
    )
    .map_err(|e| e.to_string())?;
    let mut json = serde_json::to_value(&report).unwrap();
    json["wheels"][0]["output"] = serde_json::Value::Null;
    json["wheels"][0]["size_after"] = serde_json::Value::Null;
    json["outputs"][0]["path"] = serde_json::Value::Null;
    json["outputs"][0]["size"] = serde_json::Value::Null;
    for m in json["wheels"][0]["members"].as_array_mut().unwrap() {
        m["zip_after"] = serde_json::Value::Null;
    }
    let members = read_zip(&out.join(wheel.file_name().unwrap()));
    Ok((members, json.to_string()))
}

/// A large library is trimmed from its parts: its CUDA sections are read again from the
/// archive a window at a time and only the containers kept are held, never the section
/// beside the rest of the library. Every member of the wheel, and the report, are the same
/// byte for byte as when it is held whole; only the compression may differ (the deflate
/// blocks of the sections left out are never reused, as their bytes are not at hand to
/// compare). The fixtures are small, so the test holds every member in parts with every
/// section left out that can be (`facts` checks that they are then really left out).
#[test]
fn trimming_from_parts_gives_the_same_wheel() {
    let tmp = tempdir();
    let mut wheels = vec![fixture(CUDAFIX), fixture(SLIMDEMO)];
    wheels.extend(single_library_wheels(tmp.path()));
    let (mut compared, mut trimmed) = (0, 0);
    for wheel in &wheels {
        for sm in ["90", "80,90", "50", "120", "75"] {
            let t = tmp.path().join(format!("{compared}"));
            let whole = trim_lib(wheel, &t.join("whole"), sm, wheelslim::facts::Sparse::NEVER);
            let parts = trim_lib(
                wheel,
                &t.join("parts"),
                sm,
                wheelslim::facts::Sparse::EVERYTHING,
            );
            match (&whole, &parts) {
                (Ok(w), Ok(p)) => {
                    assert!(
                        w.1 == p.1,
                        "{} --sm {sm}:\n{}\n{}",
                        wheel.display(),
                        w.1,
                        p.1
                    );
                    let differ: Vec<&str> =
                        w.0.iter()
                            .zip(&p.0)
                            .filter(|(a, b)| a != b)
                            .map(|(a, _)| a.0.as_str())
                            .collect();
                    assert!(
                        w.0.len() == p.0.len() && differ.is_empty(),
                        "{} --sm {sm}: {differ:?} differ",
                        wheel.display()
                    );
                    trimmed += 1;
                }
                _ => assert_eq!(whole, parts, "{} --sm {sm}", wheel.display()),
            }
            compared += 1;
        }
    }
    assert_eq!(compared, 20);
    assert!(trimmed >= 12, "only {trimmed} trims wrote a wheel");
}
