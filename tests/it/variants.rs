//! One soname in several variant folders (issue 10 item 14): a framework ships per-CUDA-version
//! plugins, each beside its own `libnccl.so.2` (`gpu11.1/`, `gpu11.6/`). `split` gives each
//! variant its own folder in the runtime wheel and points each plugin at its own copy; checked
//! with `verify`, `ldd` and CPython loading every plugin with `LD_BIND_NOW=1` after pip installs
//! the outputs into a fresh venv.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use crate::profiles::wheel;
use crate::split::{Venv, ldd_path};
use crate::tools::need;

/// Compiles `code` into a shared object `dir/file` with `soname`, linked against `libs` with
/// RPATH `$ORIGIN`.
fn build(dir: &Path, file: &str, soname: &str, code: &str, libs: &[PathBuf]) -> Vec<u8> {
    std::fs::create_dir_all(dir).unwrap();
    let src = dir.join(format!("{file}.c"));
    std::fs::write(&src, code).unwrap();
    let out = dir.join(file);
    let mut cmd = Command::new(need("gcc", "gcc"));
    cmd.args(["-shared", "-nostdlib", "-fPIC", "-o"])
        .arg(&out)
        .arg(format!("-Wl,-soname,{soname}"))
        .arg("-Wl,--no-as-needed,-rpath,$ORIGIN")
        .arg(&src)
        .args(libs);
    run(&mut cmd);
    std::fs::read(&out).unwrap()
}

const VARIANTS: [(&str, i32); 2] = [("gpu11.1", 111), ("gpu11.6", 116)];

fn framework(dir: &Path) -> PathBuf {
    let mut files = Vec::new();
    for (variant, value) in VARIANTS {
        let d = dir.join(variant);
        let nccl = build(
            &d,
            "libnccl.so.2",
            "libnccl.so.2",
            &format!("int nccl_variant(void) {{ return {value}; }}\n"),
            &[],
        );
        let plugin = build(
            &d,
            "_plugin.so",
            "_plugin.so",
            "int nccl_variant(void);\nint use_value(int x) { return nccl_variant() * 10 + x; }\n",
            &[d.join("libnccl.so.2")],
        );
        files.push((format!("fwv/{variant}/libnccl.so.2"), nccl));
        files.push((format!("fwv/{variant}/_plugin.so"), plugin));
    }
    files.sort();
    wheel(dir, "fwv", "1.0", &files)
}

fn whl_in(dir: &Path) -> PathBuf {
    let all: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
        .collect();
    assert_eq!(all.len(), 1, "{all:?}");
    all[0].clone()
}

#[test]
fn each_variant_gets_its_own_folder_and_each_plugin_its_own_copy() {
    let tmp = tempdir();
    let input = framework(&tmp.path().join("build"));
    let before = std::fs::read(&input).unwrap();
    let (main_dir, rt_dir) = (tmp.path().join("dist"), tmp.path().join("rt"));
    let o = wheelslim(&[
        "split",
        input.to_str().unwrap(),
        "-w",
        main_dir.to_str().unwrap(),
        "--runtime-dir",
        rt_dir.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}\n{}", stdout(&o), stderr(&o));
    assert_eq!(std::fs::read(&input).unwrap(), before, "input changed");
    let (main, runtime) = (whl_in(&main_dir), whl_in(&rt_dir));

    let rt: Vec<String> = read_zip(&runtime).into_iter().map(|(n, _)| n).collect();
    for (variant, _) in VARIANTS {
        let want = format!("fwv_runtime_nccl/lib/{variant}/libnccl.so.2");
        assert!(rt.contains(&want), "{want} not in {rt:?}");
    }
    let main_names: Vec<String> = read_zip(&main).into_iter().map(|(n, _)| n).collect();
    assert!(
        main_names.iter().all(|n| !n.ends_with("libnccl.so.2")),
        "{main_names:?}"
    );

    let v = wheelslim(&["verify", main.to_str().unwrap(), runtime.to_str().unwrap()]);
    assert_eq!(code(&v), 0, "{}\n{}", stdout(&v), stderr(&v));

    let venv = Venv::new(tmp.path(), "venv");
    venv.pip_install(&[main.to_str().unwrap(), runtime.to_str().unwrap()]);
    let site = venv.site_packages();
    let ldd = need("ldd", "libc-bin");
    for (variant, value) in VARIANTS {
        let plugin = site.join(format!("fwv/{variant}/_plugin.so"));
        let out = run(Command::new(&ldd)
            .arg(&plugin)
            .env_remove("LD_LIBRARY_PATH"));
        assert_eq!(
            ldd_path(&out, "libnccl.so.2"),
            site.join(format!("fwv_runtime_nccl/lib/{variant}/libnccl.so.2"))
                .canonicalize()
                .unwrap(),
            "{variant}: {out}"
        );
        let called = run(Command::new(venv.python())
            .args([
                "-c",
                "import ctypes,sys; print(ctypes.CDLL(sys.argv[1]).use_value(5))",
            ])
            .arg(&plugin)
            .env("LD_BIND_NOW", "1")
            .env_remove("LD_LIBRARY_PATH"));
        assert_eq!(called.trim(), (value * 10 + 5).to_string(), "{variant}");
    }
}

/// Identical copies in several folders are still one file of the runtime wheel.
#[test]
fn identical_copies_stay_one_file() {
    let tmp = tempdir();
    let d = tmp.path().join("b");
    let nccl = build(
        &d,
        "libnccl.so.2",
        "libnccl.so.2",
        "int nccl_variant(void) { return 1; }\n",
        &[],
    );
    let plugin = build(
        &d,
        "_plugin.so",
        "_plugin.so",
        "int nccl_variant(void);\nint use_value(int x) { return nccl_variant() + x; }\n",
        &[d.join("libnccl.so.2")],
    );
    let mut files = Vec::new();
    for variant in ["a", "b"] {
        files.push((format!("same/{variant}/libnccl.so.2"), nccl.clone()));
        files.push((format!("same/{variant}/_plugin.so"), plugin.clone()));
    }
    let input = wheel(tmp.path(), "same", "1.0", &files);
    let o = wheelslim(&["split", "--json", "--dry-run", input.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let libs = report["plan"]["runtime_sets"][0]["libraries"]
        .as_array()
        .unwrap();
    let files: Vec<&str> = libs.iter().map(|l| l["file"].as_str().unwrap()).collect();
    assert_eq!(files, ["libnccl.so.2"]);
}
