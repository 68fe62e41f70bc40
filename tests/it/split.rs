//! `wheelslim split` end to end, checked by tools we did not write: pip installing the outputs
//! into fresh venvs, CPython importing the extension and calling into the moved libraries,
//! `ldd`, and `readelf`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

pub(crate) struct Venv {
    dir: PathBuf,
}

impl Venv {
    pub(crate) fn new(parent: &Path, name: &str) -> Venv {
        let dir = parent.join(name);
        let python = std::env::var("WHEELSLIM_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                panic!("WHEELSLIM_PYTHON is not set: run the tests with ./test.sh")
            });
        // No pip of its own: `python -m venv` would spend seconds in ensurepip for each of the
        // suite's venvs. pip runs from the tools venv against this interpreter instead
        // ([`Venv::pip`]), which installs into this venv exactly as its own pip would.
        run(Command::new(python)
            .args(["-m", "venv", "--without-pip"])
            .arg(&dir));
        Venv { dir }
    }

    /// `pip` (the tools venv's) working on this venv's interpreter: `pip --python`.
    pub(crate) fn pip(&self) -> Command {
        let tools = std::env::var("WHEELSLIM_PYTHON").unwrap_or_else(|_| {
            panic!("WHEELSLIM_PYTHON is not set: run the tests with ./test.sh")
        });
        let mut cmd = Command::new(tools);
        cmd.args(["-m", "pip", "--python"]).arg(self.python());
        cmd
    }

    pub(crate) fn python(&self) -> PathBuf {
        self.dir.join("bin/python")
    }

    pub(crate) fn site_packages(&self) -> PathBuf {
        let out = run(Command::new(self.python()).args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['platlib'])",
        ]));
        PathBuf::from(out.trim())
    }

    pub(crate) fn pip_install(&self, args: &[&str]) -> String {
        run(self
            .pip()
            .args(["install", "--no-index", "--disable-pip-version-check", "-q"])
            .args(args))
    }

    /// Imports slimdemo and calls into both vendor libraries, with every symbol bound at load.
    pub(crate) fn call_slimdemo(&self, prelude: &str) -> Result<String, String> {
        let code = format!(
            "{prelude}\nimport slimdemo._native as n\nprint(n.runtime_version(), n.cublas_version(), n.runtime_via_cublas())"
        );
        let out = Command::new(self.python())
            .args(["-c", &code])
            .env("LD_BIND_NOW", "1")
            .env_remove("LD_LIBRARY_PATH")
            .current_dir(&self.dir)
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

/// Where `ldd` says a library resolves, with `..` resolved.
pub(crate) fn ldd_path(ldd: &str, lib: &str) -> PathBuf {
    let line = ldd
        .lines()
        .find(|l| l.trim_start().starts_with(lib))
        .unwrap_or_else(|| panic!("{lib} not in ldd output:\n{ldd}"));
    let path = line
        .split("=>")
        .nth(1)
        .and_then(|r| r.split(" (").next())
        .map(str::trim)
        .unwrap_or_else(|| panic!("no path for {lib}: {line}"));
    Path::new(path)
        .canonicalize()
        .unwrap_or_else(|e| panic!("{lib} resolves to {path}, which does not exist: {e}"))
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn split(args: &[&str]) -> std::process::Output {
    let mut all = vec!["split"];
    all.extend_from_slice(args);
    wheelslim(&all)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const MAIN_NAME: &str = "slimdemo-0.1.0-cp38-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl";
const RUNTIME_NAME: &str =
    "slimdemo_runtime_cuda12-0.1.0-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl";

#[test]
fn split_installs_and_links_into_the_runtime_package() {
    let tmp = tempdir();
    let (main_dir, rt_dir) = (tmp.path().join("dist"), tmp.path().join("runtime"));
    let input = fixture(SLIMDEMO);
    let before = std::fs::read(&input).unwrap();
    let out = split(&[
        s(&input),
        "-w",
        s(&main_dir),
        "--runtime-dir",
        s(&rt_dir),
        "--unhash",
    ]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert_eq!(
        std::fs::read(&input).unwrap(),
        before,
        "the input must not change"
    );
    assert_eq!(files_in(&main_dir), [MAIN_NAME]);
    assert_eq!(files_in(&rt_dir), [RUNTIME_NAME]);
    let main = main_dir.join(MAIN_NAME);
    let runtime = rt_dir.join(RUNTIME_NAME);
    for out in [&main, &runtime] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{}", out.display());
    }

    // The main wheel lost the vendor libraries and requires the runtime wheel exactly.
    let members = read_zip(&main);
    assert!(
        members.iter().all(|(n, _)| !n.contains("slimdemo.libs")),
        "{:?}",
        members.iter().map(|m| &m.0).collect::<Vec<_>>()
    );
    let meta = String::from_utf8(
        members
            .iter()
            .find(|(n, _)| n.ends_with("METADATA"))
            .unwrap()
            .1
            .clone(),
    )
    .unwrap();
    assert!(
        meta.contains("Requires-Dist: slimdemo-runtime-cuda12==0.1.0\n"),
        "{meta}"
    );
    let rt_members: Vec<String> = read_zip(&runtime).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        rt_members,
        [
            "slimdemo_runtime_cuda12/__init__.py",
            "slimdemo_runtime_cuda12/lib/libcublas.so.12",
            "slimdemo_runtime_cuda12/lib/libcudart.so.12",
            "slimdemo_runtime_cuda12-0.1.0.dist-info/METADATA",
            "slimdemo_runtime_cuda12-0.1.0.dist-info/WHEEL",
            "slimdemo_runtime_cuda12-0.1.0.dist-info/RECORD",
        ]
    );

    // Our own verify and audit agree.
    let v = wheelslim(&["verify", s(&main), s(&runtime)]);
    assert_eq!(code(&v), 0, "{}", stdout(&v));

    // pip installs both from the two folders into a fresh venv; the extension works.
    let venv = Venv::new(tmp.path(), "venv");
    venv.pip_install(&[
        "--find-links",
        s(&main_dir),
        "--find-links",
        s(&rt_dir),
        "slimdemo",
    ]);
    assert_eq!(venv.call_slimdemo("").unwrap(), "12080 120904 12080");

    // ldd resolves the vendor libraries into the runtime package, and readelf shows the
    // renamed NEEDED and the new RPATH.
    let site = venv.site_packages();
    let ext = site.join("slimdemo/_native.abi3.so");
    let ldd = run(Command::new("ldd").arg(&ext));
    for lib in ["libcudart.so.12", "libcublas.so.12"] {
        let expected = site.join("slimdemo_runtime_cuda12/lib").join(lib);
        assert_eq!(
            ldd_path(&ldd, lib),
            expected.canonicalize().unwrap(),
            "{ldd}"
        );
    }
    let dynamic = run(Command::new("readelf").arg("-dW").arg(&ext));
    assert!(
        dynamic.contains("[$ORIGIN/../slimdemo_runtime_cuda12/lib]"),
        "{dynamic}"
    );
    assert!(!dynamic.contains("slimdemo.libs"), "{dynamic}");
    let versions = run(Command::new("readelf").arg("-VW").arg(&ext));
    assert!(
        !versions.contains("-aa97f077"),
        "verneed still names the hashed library:\n{versions}"
    );
    let cublas = site.join("slimdemo_runtime_cuda12/lib/libcublas.so.12");
    let dynamic = run(Command::new("readelf").arg("-dW").arg(&cublas));
    assert!(
        dynamic.contains("Library soname: [libcublas.so.12]"),
        "{dynamic}"
    );
    assert!(
        dynamic.contains("Shared library: [libcudart.so.12]"),
        "{dynamic}"
    );
}

#[test]
fn runtime_in_another_site_packages_needs_preload() {
    let tmp = tempdir();
    let out_dir = tmp.path().join("out");
    let out = split(&[s(&fixture(SLIMDEMO)), "-w", s(&out_dir)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let venv = Venv::new(tmp.path(), "venv");
    venv.pip_install(&["--no-deps", s(&out_dir.join(MAIN_NAME))]);
    let elsewhere = tmp.path().join("elsewhere");
    venv.pip_install(&[
        "--no-deps",
        "--target",
        s(&elsewhere),
        s(&out_dir.join(RUNTIME_NAME)),
    ]);
    // Without preload the loader cannot find the libraries...
    let err = venv.call_slimdemo("").unwrap_err();
    assert!(err.contains("cannot open shared object file"), "{err}");
    // ...with the runtime package's preload() it can.
    let prelude = format!(
        "import sys; sys.path.insert(0, {:?})\nimport slimdemo_runtime_cuda12 as rt\nrt.preload()",
        s(&elsewhere)
    );
    assert_eq!(venv.call_slimdemo(&prelude).unwrap(), "12080 120904 12080");
}

/// Runs `code` in the venv's python with `env`, as a user would: no `LD_LIBRARY_PATH`, every
/// symbol bound at load, started from a folder that holds nothing of ours.
fn python_in(venv: &Venv, env: &[(&str, &Path)], code: &str) -> Result<String, String> {
    let mut cmd = Command::new(venv.python());
    cmd.args(["-c", code])
        .env("LD_BIND_NOW", "1")
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONUSERBASE")
        .current_dir(&venv.dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

const CALL: &str = "import slimdemo\nprint(slimdemo.runtime_version(), slimdemo.cublas_version(), slimdemo.runtime_via_cublas())";

/// `--preload-hook`: the runtime wheel installed into another sys.path entry than the main
/// wheel (a `--target` folder on PYTHONPATH, a user site under PYTHONUSERBASE) is found and
/// loaded with no user code. Without the option the same installs fail with the bare loader
/// error; with it, an install into one site-packages loads nothing by path.
#[test]
fn preload_hook_finds_the_runtime_on_any_sys_path_entry() {
    let tmp = tempdir();
    let (plain, hooked) = (tmp.path().join("plain"), tmp.path().join("hooked"));
    let input = fixture(SLIMDEMO);
    let out = split(&[s(&input), "-w", s(&plain), "--unhash"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = split(&[s(&input), "-w", s(&hooked), "--unhash", "--preload-hook"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("slimdemo/__init__.py: preload hook added"),
        "{}",
        stderr(&out)
    );
    let v = wheelslim(&[
        "verify",
        s(&hooked.join(MAIN_NAME)),
        s(&hooked.join(RUNTIME_NAME)),
    ]);
    assert_eq!(code(&v), 0, "{}", stdout(&v));
    let members: Vec<String> = read_zip(&hooked.join(MAIN_NAME))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(
        members
            .iter()
            .any(|n| n == "slimdemo/_wheelslim_preload.py"),
        "{members:?}"
    );

    // A --target folder on PYTHONPATH.
    for (dir, works) in [(&plain, false), (&hooked, true)] {
        let name = dir.file_name().unwrap().to_str().unwrap();
        let venv = Venv::new(tmp.path(), &format!("venv-{name}"));
        venv.pip_install(&["--no-deps", s(&dir.join(MAIN_NAME))]);
        let target = tmp.path().join(format!("target-{name}"));
        venv.pip_install(&[
            "--no-deps",
            "--target",
            s(&target),
            s(&dir.join(RUNTIME_NAME)),
        ]);
        let got = python_in(&venv, &[("PYTHONPATH", &target)], CALL);
        if works {
            assert_eq!(got.unwrap(), "12080 120904 12080");
        } else {
            let err = got.unwrap_err();
            assert!(
                err.contains("ImportError: libcublas.so.12: cannot open shared object file"),
                "{err}"
            );
        }
    }

    // A user site (pip install --user under PYTHONUSERBASE), seen from a venv that sees it.
    for (dir, works) in [(&plain, false), (&hooked, true)] {
        let name = dir.file_name().unwrap().to_str().unwrap();
        let venv = Venv::new(tmp.path(), &format!("user-{name}"));
        run(Command::new(venv.python())
            .args(["-m", "venv", "--without-pip", "--system-site-packages"])
            .arg(&venv.dir));
        venv.pip_install(&["--no-deps", s(&dir.join(MAIN_NAME))]);
        let base = tmp.path().join(format!("userbase-{name}"));
        run(venv
            .pip()
            .args(["install", "--no-index", "--disable-pip-version-check", "-q"])
            .args(["--no-deps", "--user", s(&dir.join(RUNTIME_NAME))])
            .env("PYTHONUSERBASE", &base));
        let site = python_in(
            &venv,
            &[("PYTHONUSERBASE", &base)],
            "import site; print(site.getusersitepackages())",
        )
        .unwrap();
        assert!(
            Path::new(&site)
                .join("slimdemo_runtime_cuda12/lib/libcudart.so.12")
                .is_file(),
            "the runtime wheel is not in the user site {site}"
        );
        let got = python_in(&venv, &[("PYTHONUSERBASE", &base)], CALL);
        if works {
            assert_eq!(got.unwrap(), "12080 120904 12080");
        } else {
            let err = got.unwrap_err();
            assert!(
                err.contains("ImportError: libcublas.so.12: cannot open shared object file"),
                "{err}"
            );
        }
    }

    // Both in one site-packages: the RPATH finds them, the hook loads nothing by path.
    let venv = Venv::new(tmp.path(), "venv-same");
    venv.pip_install(&["--find-links", s(&hooked), "slimdemo"]);
    let got = python_in(
        &venv,
        &[],
        &format!("{CALL}\nimport slimdemo._wheelslim_preload as h\nprint(len(h.HANDLES))"),
    );
    assert_eq!(got.unwrap(), "12080 120904 12080\n0");
}

/// The hook line lands after the docstring and the `from __future__` imports, as CPython's own
/// parser sees them; a start this reader cannot follow is refused, naming the member.
#[test]
fn preload_hook_keeps_docstring_and_future_imports_first() {
    let tmp = tempdir();
    let python = crate::tools::need("python3", "python3");
    let init = "# -*- coding: utf-8 -*-\nr\"\"\"Doc with \\\"\"\" inside.\"\"\"  # c\n\nfrom __future__ import (\n    annotations,\n)\nfrom slimdemo._native import cublas_version, runtime_version, runtime_via_cublas\n";
    let input = tmp.path().join(MAIN_NAME);
    rewrite_wheel(&fixture(SLIMDEMO), &input, |name, data| {
        if name == "slimdemo/__init__.py" {
            init.as_bytes().to_vec()
        } else {
            data
        }
    });
    let out_dir = tmp.path().join("out");
    let out = split(&[s(&input), "-w", s(&out_dir), "--preload-hook"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let patched = read_zip(&out_dir.join(MAIN_NAME))
        .into_iter()
        .find(|(n, _)| n == "slimdemo/__init__.py")
        .unwrap()
        .1;
    let file = tmp.path().join("patched.py");
    std::fs::write(&file, &patched).unwrap();
    let check = "import ast, sys\nt = ast.parse(open(sys.argv[1]).read())\nprint(ast.get_docstring(t))\nprint([type(n).__name__ + ':' + (n.module or '.') + ':' + ','.join(a.name for a in n.names) for n in t.body[1:]])";
    let got = run(Command::new(&python).args(["-c", check]).arg(&file));
    assert_eq!(
        got.trim(),
        "Doc with \\\"\"\" inside.\n['ImportFrom:__future__:annotations', 'ImportFrom:.:_wheelslim_preload', 'ImportFrom:slimdemo._native:cublas_version,runtime_version,runtime_via_cublas']",
        "{}",
        String::from_utf8_lossy(&patched)
    );

    let odd = tmp.path().join("odd").join(MAIN_NAME);
    std::fs::create_dir_all(odd.parent().unwrap()).unwrap();
    rewrite_wheel(&fixture(SLIMDEMO), &odd, |name, data| {
        if name == "slimdemo/__init__.py" {
            b"from __future__ import annotations; import os\n".to_vec()
        } else {
            data
        }
    });
    let out = split(&[
        s(&odd),
        "-w",
        s(&tmp.path().join("out2")),
        "--preload-hook",
        "--dry-run",
    ]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "{}!slimdemo/__init__.py: --preload-hook cannot tell",
            odd.display()
        )),
        "{}",
        stderr(&out)
    );
}

#[test]
fn outputs_are_deterministic_and_independent_of_input_order() {
    let tmp = tempdir();
    // The same build under two Python tags, as cp38/cp39 jobs would produce.
    let a = tmp.path().join(MAIN_NAME);
    let b = tmp.path().join(MAIN_NAME.replace("cp38", "cp39"));
    std::fs::copy(fixture(SLIMDEMO), &a).unwrap();
    std::fs::copy(fixture(SLIMDEMO), &b).unwrap();
    let run_split = |dir: &str, inputs: &[&Path]| -> PathBuf {
        let out = tmp.path().join(dir);
        let mut args: Vec<&str> = inputs.iter().map(|p| s(p)).collect();
        args.extend(["-w", s(&out), "--unhash"]);
        let o = split(&args);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        out
    };
    let one = run_split("one", &[&a, &b]);
    let two = run_split("two", &[&a, &b]);
    let rev = run_split("rev", &[&b, &a]);
    let alone = run_split("alone", &[&b]);
    assert_eq!(files_in(&one), files_in(&rev));
    assert_eq!(
        files_in(&one).len(),
        3,
        "two mains and one shared runtime wheel: {:?}",
        files_in(&one)
    );
    for f in files_in(&one) {
        let bytes = std::fs::read(one.join(&f)).unwrap();
        assert_eq!(
            bytes,
            std::fs::read(two.join(&f)).unwrap(),
            "{f} differs between runs"
        );
        assert_eq!(
            bytes,
            std::fs::read(rev.join(&f)).unwrap(),
            "{f} depends on input order"
        );
    }
    assert_eq!(
        std::fs::read(one.join(RUNTIME_NAME)).unwrap(),
        std::fs::read(alone.join(RUNTIME_NAME)).unwrap(),
        "the runtime wheel depends on which inputs were given"
    );
}

#[test]
fn source_date_epoch_sets_the_timestamps() {
    let tmp = tempdir();
    let out_dir = tmp.path().join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_wheelslim"))
        .args(["split", s(&fixture(SLIMDEMO)), "-w", s(&out_dir)])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let f = std::fs::File::open(out_dir.join(RUNTIME_NAME)).unwrap();
    let mut z = zip::ZipArchive::new(f).unwrap();
    let t = z.by_index(0).unwrap().last_modified().unwrap();
    assert_eq!((t.year(), t.month(), t.day()), (2023, 11, 14));
}

#[test]
fn a_library_over_the_limit_fails_and_writes_nothing() {
    let tmp = tempdir();
    let (main_dir, rt_dir) = (tmp.path().join("dist"), tmp.path().join("rt"));
    std::fs::create_dir_all(&main_dir).unwrap();
    let o = split(&[
        s(&fixture(SLIMDEMO)),
        "-w",
        s(&main_dir),
        "--runtime-dir",
        s(&rt_dir),
        "--max-size",
        "200KiB",
    ]);
    // 200 KiB minus the reserved room leaves no space for any library.
    assert_eq!(code(&o), 2, "{}", stdout(&o));
    let err = stderr(&o);
    assert!(err.contains("cannot fit in a wheel even alone"), "{err}");
    assert!(err.contains("under the 200.0 KiB limit"), "{err}");
    assert!(
        err.contains("slimdemo.libs/lib"),
        "names the library: {err}"
    );
    // The library has no device code: trimming would not help, raising the limit would.
    assert!(!err.contains("--sm"), "no trim for host code: {err}");
    assert!(
        err.contains("--max-size 1MiB"),
        "says what limit to ask for: {err}"
    );
    assert_eq!(files_in(&main_dir), Vec::<String>::new());
    assert_eq!(files_in(&rt_dir), Vec::<String>::new());
}

#[test]
fn refuses_to_overwrite_its_input() {
    let tmp = tempdir();
    let input = tmp.path().join(MAIN_NAME);
    std::fs::copy(fixture(SLIMDEMO), &input).unwrap();
    let before = std::fs::read(&input).unwrap();
    let o = split(&[s(&input), "-w", s(tmp.path())]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("would overwrite the input wheel"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(&input).unwrap(), before);
    assert_eq!(files_in(tmp.path()), [MAIN_NAME]);
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let tmp = tempdir();
    let out_dir = tmp.path().join("never");
    let o = split(&[
        s(&fixture(SLIMDEMO)),
        "-w",
        s(&out_dir),
        "--dry-run",
        "--json",
        "--unhash",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(!out_dir.exists());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["schema"], "wheelslim.split/1");
    assert_eq!(v["dry_run"], true);
    let sets = v["plan"]["runtime_sets"].as_array().unwrap();
    assert_eq!(sets.len(), 1);
    assert_eq!(sets[0]["name"], "slimdemo-runtime-cuda12");
    let files: Vec<&str> = sets[0]["libraries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["file"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["libcublas.so.12", "libcudart.so.12"]);
}

#[test]
fn upstream_mode_depends_on_nvidia_wheels() {
    let tmp = tempdir();
    let out_dir = tmp.path().join("out");
    let o = split(&[s(&fixture(SLIMDEMO)), "-w", s(&out_dir), "--upstream"]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert_eq!(
        files_in(&out_dir),
        [MAIN_NAME],
        "no runtime wheel when everything goes upstream"
    );
    let main = out_dir.join(MAIN_NAME);
    let members = read_zip(&main);
    let meta = String::from_utf8(
        members
            .iter()
            .find(|(n, _)| n.ends_with("METADATA"))
            .unwrap()
            .1
            .clone(),
    )
    .unwrap();
    assert!(
        meta.contains("Requires-Dist: nvidia-cuda-runtime-cu12>=12,<13\n"),
        "{meta}"
    );
    assert!(
        meta.contains("Requires-Dist: nvidia-cublas-cu12>=12,<13\n"),
        "{meta}"
    );
    // verify accepts the links because the set requires the packages that provide them.
    let v = wheelslim(&["verify", "--json", s(&main)]);
    assert_eq!(code(&v), 0, "{}", stdout(&v));
    let report: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(report["from_upstream"].as_array().unwrap().len(), 2);

    // Lay out what the NVIDIA wheels would install (their real sonames, in their folders), and
    // the extension finds it there.
    let venv = Venv::new(tmp.path(), "venv");
    venv.pip_install(&["--no-deps", s(&main)]);
    let site = venv.site_packages();
    let rt = tmp.path().join("rt");
    let o = split(&[s(&fixture(SLIMDEMO)), "-w", s(&rt), "--unhash"]);
    assert_eq!(code(&o), 0);
    let libs = read_zip(&rt.join(RUNTIME_NAME));
    for (folder, lib) in [
        ("nvidia/cuda_runtime/lib", "libcudart.so.12"),
        ("nvidia/cublas/lib", "libcublas.so.12"),
    ] {
        let data = &libs.iter().find(|(n, _)| n.ends_with(lib)).unwrap().1;
        std::fs::create_dir_all(site.join(folder)).unwrap();
        std::fs::write(site.join(folder).join(lib), data).unwrap();
    }
    assert_eq!(venv.call_slimdemo("").unwrap(), "12080 120904 12080");
    let ldd = run(Command::new("ldd").arg(site.join("slimdemo/_native.abi3.so")));
    assert_eq!(
        ldd_path(&ldd, "libcudart.so.12"),
        site.join("nvidia/cuda_runtime/lib/libcudart.so.12")
            .canonicalize()
            .unwrap()
    );
}

#[test]
fn split_with_sm_trims_device_code_too() {
    let tmp = tempdir();
    let out_dir = tmp.path().join("out");
    let o = split(&[
        s(&fixture(CUDAFIX)),
        "-w",
        s(&out_dir),
        "--sm",
        "90",
        "--json",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let trimmed: Vec<&str> = report["trimmed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["member"].as_str().unwrap())
        .collect();
    assert!(trimmed.contains(&"cudafix/libfix_plain.so"), "{trimmed:?}");
    let out = out_dir.join(fixture(CUDAFIX).file_name().unwrap());
    let before = read_zip(&fixture(CUDAFIX));
    let after = read_zip(&out);
    let size =
        |v: &[(String, Vec<u8>)], n: &str| v.iter().find(|(m, _)| m == n).map(|(_, d)| d.len());
    assert!(size(&after, "cudafix/libfix_plain.so") < size(&before, "cudafix/libfix_plain.so"));
    assert_eq!(
        size(&after, "cudafix/kernels/fix_sm80.cubin"),
        None,
        "the sm_80 cubin leaves"
    );
    // Links that did not resolve in the input (libcudart.so.13 comes from NVIDIA's wheel at
    // run time) are reported, not held against the split.
    assert_eq!(report["verify"]["unresolved"].as_array().unwrap().len(), 6);
}

#[test]
fn differing_copies_of_one_library_are_an_error_naming_both() {
    let tmp = tempdir();
    let a = tmp.path().join(MAIN_NAME);
    let b = tmp.path().join(MAIN_NAME.replace("cp38", "cp39"));
    std::fs::copy(fixture(SLIMDEMO), &a).unwrap();
    // The cp39 build carries a different libcudart (bytes after the section headers differ).
    rewrite_wheel(&fixture(SLIMDEMO), &b, |name, mut data| {
        if name.contains("libcudart") {
            data.extend_from_slice(b"different build");
        }
        data
    });
    let out_dir = tmp.path().join("out");
    let o = split(&[s(&a), s(&b), "-w", s(&out_dir)]);
    assert_eq!(code(&o), 2, "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("two different libraries would both become"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{}!slimdemo.libs/libcudart-aa97f077.so.12",
            a.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{}!slimdemo.libs/libcudart-aa97f077.so.12",
            b.display()
        )),
        "{err}"
    );
    assert!(!out_dir.exists() || files_in(&out_dir).is_empty());
}

#[test]
fn a_runtime_set_over_the_limit_is_divided_into_parts_that_install_together() {
    let tmp = tempdir();
    let out_dir = tmp.path().join("out");
    // 256 KiB of every runtime wheel is kept for headers and metadata: at 260 KiB each wheel has
    // room for one of the two (about 2.5 KiB compressed) libraries.
    let o = split(&[
        s(&fixture(SLIMDEMO)),
        "-w",
        s(&out_dir),
        "--unhash",
        "--max-size",
        "260KiB",
    ]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let files = files_in(&out_dir);
    assert_eq!(
        files,
        [
            MAIN_NAME.to_string(),
            "slimdemo_runtime_cuda12-0.1.0-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl".to_string(),
            "slimdemo_runtime_cuda12_part2-0.1.0-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl".to_string(),
        ]
    );
    let meta = read_zip(&out_dir.join(MAIN_NAME))
        .into_iter()
        .find(|(n, _)| n.ends_with("METADATA"))
        .map(|(_, d)| String::from_utf8(d).unwrap())
        .unwrap();
    assert!(
        meta.contains("Requires-Dist: slimdemo-runtime-cuda12==0.1.0\n"),
        "{meta}"
    );
    assert!(
        meta.contains("Requires-Dist: slimdemo-runtime-cuda12-part2==0.1.0\n"),
        "{meta}"
    );
    // Both parts install into the same lib/ folder; pip resolves the pins and the extension works.
    let venv = Venv::new(tmp.path(), "venv");
    venv.pip_install(&["--find-links", s(&out_dir), "slimdemo"]);
    assert_eq!(venv.call_slimdemo("").unwrap(), "12080 120904 12080");
    let v = wheelslim(&[
        "verify",
        &format!("{}/{}", s(&out_dir), files[0]),
        &format!("{}/{}", s(&out_dir), files[1]),
        &format!("{}/{}", s(&out_dir), files[2]),
    ]);
    assert_eq!(code(&v), 0, "{}", stdout(&v));
}

/// Every member `split` rewrites was kept by its single inspect pass: none is inflated twice,
/// with or without renaming and trimming. A memory budget smaller than any member only
/// serializes the work and keeps fewer members (it must not make a worker wait for itself).
#[test]
fn rewritten_members_are_inflated_once() {
    use wheelslim::split::split as split_lib;
    for (wheel, unhash, sm, memory_budget) in [
        (SLIMDEMO, false, None, 1 << 30),
        (SLIMDEMO, true, None, 1),
        (CUDAFIX, false, Some("90"), 1 << 30),
        (CUDAFIX, false, Some("90"), 1),
    ] {
        let tmp = tempdir();
        // Hidden, but counting.
        let bar = indicatif::ProgressBar::hidden();
        let mut opts = lib_split_options(&tmp.path().join("w"));
        opts.runtime_dir = tmp.path().join("rt");
        opts.settings.unhash = unhash;
        opts.memory_budget = memory_budget;
        opts.trim.cuda =
            sm.map(|s| wheelslim::fatbin::select::Selection::parse_targets(s).unwrap());
        opts.progress = std::sync::Arc::new(bar.clone());
        let report = split_lib(
            &[fixture(wheel)],
            &wheelslim::profile::ProfileSet::built_in(),
            &opts,
        )
        .unwrap();
        let edited = report
            .plan
            .mains
            .iter()
            .flat_map(|m| &m.members)
            .filter(|a| matches!(a, wheelslim::plan::MemberAction::Edit { .. }))
            .count();
        assert!(
            edited + report.trimmed.len() > 0,
            "{wheel}: nothing rewritten"
        );
        // The progress bar (hidden, but counting) ends on a complete "writing" phase.
        assert_eq!(bar.message(), "writing");
        assert_eq!(Some(bar.position()), bar.length(), "{wheel}");
        assert!(bar.position() > 0);
        // Past the budget, rewritten members are inflated again rather than kept.
        if memory_budget > 1 {
            assert_eq!(
                report.members_read_twice, 0,
                "{wheel} unhash={unhash} sm={sm:?}"
            );
        }
    }
}

/// `--canonical-runtime` re-deflates the runtime members with wheelslim's own deflate: the
/// files inside are the same, the wheels verify, and the bytes do not depend on the thread
/// count.
#[test]
fn canonical_runtime_wheels_hold_the_same_files() {
    let tmp = tempdir();
    // Splits into a folder of its own and returns the runtime wheel (named with the hashed
    // sonames' project, found by prefix).
    let run = |name: &str, extra: &[&str]| -> PathBuf {
        let dir = tmp.path().join(name);
        let input = fixture(SLIMDEMO);
        let mut args = vec![s(&input), "-w", s(&dir)];
        args.extend_from_slice(extra);
        let o = split(&args);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let f = files_in(&dir)
            .into_iter()
            .find(|f| f.starts_with("slimdemo_runtime"))
            .unwrap();
        dir.join(f)
    };
    let plain = run("plain", &[]);
    let canon = run("canon", &["--canonical-runtime"]);
    let canon1 = run("canon1", &["--canonical-runtime", "-j", "1"]);
    assert_eq!(read_zip(&plain), read_zip(&canon));
    assert_eq!(
        std::fs::read(&canon).unwrap(),
        std::fs::read(&canon1).unwrap()
    );
    let main = tmp.path().join("canon").join(MAIN_NAME);
    let o = wheelslim(&["verify", s(&main), s(&canon)]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
}

/// Bytes shaped like code and tables (deflate makes Huffman blocks of them), deterministic.
fn filler(n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n);
    let mut x: u32 = 0x1234_5678;
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        match x % 3 {
            0 => v.extend_from_slice(format!("cuda_kernel_{}_{} ", x % 613, x % 7).as_bytes()),
            1 => v.extend_from_slice(&(x % 4099).to_le_bytes()),
            _ => v.push((x >> 11) as u8),
        }
    }
    v.truncate(n);
    v
}

/// A large member that split rewires is written from the input's own compressed blocks where
/// its bytes did not change (`wheel::splice`); the result is checked by tools we did not
/// write: the `zip` crate and pip read it (CRC-32 checked), the loader loads it.
#[test]
fn large_rewired_members_reuse_the_input_blocks() {
    use wheelslim::split::split as split_lib;
    let tmp = tempdir();
    let fixture_path = fixture(SLIMDEMO);
    let input = tmp
        .path()
        .join("in")
        .join(fixture_path.file_name().unwrap());
    std::fs::create_dir_all(input.parent().unwrap()).unwrap();
    // Bytes past the last section: the loader never reads them, every rewrite keeps them.
    let tail = filler(6 << 20);
    rewrite_wheel(&fixture_path, &input, |name, mut data| {
        if name.ends_with("_native.abi3.so") {
            data.extend_from_slice(&tail);
        }
        data
    });
    let run_split = |dir: &str| {
        let mut opts = lib_split_options(&tmp.path().join(dir));
        opts.settings.unhash = true;
        split_lib(
            std::slice::from_ref(&input),
            &wheelslim::profile::ProfileSet::built_in(),
            &opts,
        )
        .unwrap()
    };
    let report = run_split("out");
    assert!(
        report.reused_bytes >= 5 << 20,
        "only {} bytes reused",
        report.reused_bytes
    );
    // Deterministic.
    run_split("again");
    let main = tmp.path().join("out").join(MAIN_NAME);
    assert_eq!(
        std::fs::read(&main).unwrap(),
        std::fs::read(tmp.path().join("again").join(MAIN_NAME)).unwrap()
    );
    // The zip crate inflates it (CRC checked) to the rewired object with the tail intact.
    let ext = read_zip(&main)
        .into_iter()
        .find(|(n, _)| n.ends_with("_native.abi3.so"))
        .unwrap()
        .1;
    assert!(ext.ends_with(&tail));
    let v = wheelslim(&[
        "verify",
        s(&main),
        s(&tmp.path().join("out").join(RUNTIME_NAME)),
    ]);
    assert_eq!(code(&v), 0, "{}", stdout(&v));
    let venv = Venv::new(tmp.path(), "venv");
    venv.pip_install(&["--find-links", s(&tmp.path().join("out")), "slimdemo"]);
    assert_eq!(venv.call_slimdemo("").unwrap(), "12080 120904 12080");
}

/// Every output wheel of `split` with the trim on, by name, with its members (name and bytes).
type SplitMembers = Vec<(String, Vec<(String, Vec<u8>)>)>;

/// Splits `wheel` with `--sm sm` through the library, describing libraries from their parts
/// as `sparse` says under `memory_budget`; the output wheels' members, or the error.
fn split_sm(
    wheel: &Path,
    out: &Path,
    sm: &str,
    sparse: wheelslim::facts::Sparse,
    memory_budget: u64,
) -> Result<SplitMembers, String> {
    let mut opts = lib_split_options(&out.join("w"));
    opts.memory_budget = memory_budget;
    opts.trim.cuda = Some(wheelslim::fatbin::select::Selection::parse_targets(sm).unwrap());
    opts.companions = true;
    opts.sparse = sparse;
    split_members(wheel, &opts)
}

/// Splits `wheel` through the library with `opts`; the output wheels' members, or the error.
fn split_members(
    wheel: &Path,
    opts: &wheelslim::split::SplitOptions,
) -> Result<SplitMembers, String> {
    wheelslim::split::split(
        &[wheel.to_path_buf()],
        &wheelslim::profile::ProfileSet::built_in(),
        opts,
    )
    .map_err(|e| e.to_string())?;
    let dir = &opts.wheel_dir;
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names
        .into_iter()
        .map(|n| {
            let members = read_zip(&dir.join(&n));
            (n, members)
        })
        .collect())
}

/// `split --sm` of a large library reads it without its CUDA sections, kept from the inspect
/// pass or read again later (`facts::read_apart`), and the trim reads those a window at a
/// time. With every library taken for large (`Sparse::EVERYTHING`) and budgets that keep it
/// or not, each output wheel holds the same members, byte for byte, as when it is held whole.
#[test]
fn split_with_sm_from_parts_gives_the_same_wheels() {
    let tmp = tempdir();
    let mut wheels = vec![fixture(CUDAFIX)];
    wheels.extend(single_library_wheels(tmp.path()));
    let (mut compared, mut written) = (0, 0);
    for wheel in &wheels {
        for sm in ["90", "80,90", "50"] {
            let t = tmp.path().join(format!("{compared}"));
            let whole = split_sm(
                wheel,
                &t.join("whole"),
                sm,
                wheelslim::facts::Sparse::NEVER,
                1 << 30,
            );
            for budget in [1, 256 << 10, 1 << 30] {
                let parts = split_sm(
                    wheel,
                    &t.join(format!("parts{budget}")),
                    sm,
                    wheelslim::facts::Sparse::EVERYTHING,
                    budget,
                );
                if let (Ok(w), Ok(p)) = (&whole, &parts) {
                    assert_eq!(w.len(), p.len(), "{} --sm {sm}", wheel.display());
                    for (a, b) in w.iter().zip(p) {
                        assert_eq!(a.0, b.0);
                        let differ: Vec<&str> =
                            a.1.iter()
                                .zip(&b.1)
                                .filter(|(x, y)| x != y)
                                .map(|(x, _)| x.0.as_str())
                                .collect();
                        assert!(
                            a.1.len() == b.1.len() && differ.is_empty(),
                            "{} --sm {sm} at {budget}: {differ:?} differ in {}",
                            wheel.display(),
                            a.0
                        );
                    }
                    written += 1;
                } else {
                    assert_eq!(whole, parts, "{} --sm {sm} at {budget}", wheel.display());
                }
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 27);
    assert!(written >= 18, "only {written} splits wrote wheels");
}

/// `split` with device-code companions (no trim) of a library held without its CUDA
/// sections: the move reads its containers back from the archive as it writes each companion
/// (`elf::companion::Apart`), and the cut is made in the input's own buffer. With every
/// library taken for large (`Sparse::EVERYTHING`) and budgets that keep it from the inspect
/// pass or not, every output wheel holds the same members, byte for byte uncompressed, as
/// when the library is held whole; and companions are written.
#[test]
fn companions_from_parts_give_the_same_wheels() {
    let crc = |b: &[u8]| crc32fast::hash(b);
    let tmp = tempdir();
    let wheel = fixture(CUDAFIX);
    let (mut compared, mut with_companions) = (0, 0);
    let run = |lib: &str, out: &Path, sparse, budget| {
        let mut opts = lib_split_options(&out.join("w"));
        opts.memory_budget = budget;
        opts.companions = true;
        opts.max_size = 270 << 10;
        opts.sparse = sparse;
        opts.settings.ad_hoc =
            wheelslim::plan::vendor::AdHoc::new(&[lib.to_string()], &[]).unwrap();
        split_members(&wheel, &opts)
    };
    // Plain, rdc (`__nv_relfatbin`), several containers in one section, LZ4-compressed.
    for lib in [
        "libfix_plain.so",
        "libfix_rdc.so",
        "libfix_concat.so",
        "libfix_lz4.so",
    ] {
        let t = tmp.path().join(lib);
        let never = wheelslim::facts::Sparse::NEVER;
        let whole = run(lib, &t.join("whole"), never, 1 << 30);
        for budget in [1, 256 << 10, 1 << 30] {
            let every = wheelslim::facts::Sparse::EVERYTHING;
            let parts = run(lib, &t.join(format!("p{budget}")), every, budget);
            // Compared member by member, naming what differs (the bytes are too long to print).
            let digest = |r: &Result<SplitMembers, String>| match r {
                Ok(w) => Ok(w
                    .iter()
                    .map(|(n, ms)| {
                        (
                            n.clone(),
                            ms.iter().map(|m| (m.0.clone(), crc(&m.1))).collect(),
                        )
                    })
                    .collect::<Vec<(String, Vec<(String, u32)>)>>()),
                Err(e) => Err(e.clone()),
            };
            assert_eq!(digest(&whole), digest(&parts), "--move {lib} at {budget}");
            assert!(whole == parts, "--move {lib} at {budget}");
            compared += 1;
        }
        let moved = whole
            .iter()
            .flatten()
            .flat_map(|w| &w.1)
            .any(|m| m.0.contains(".wsdev"));
        with_companions += usize::from(moved);
    }
    assert_eq!(compared, 12);
    assert!(
        with_companions >= 3,
        "only {with_companions} splits wrote companions"
    );
}

/// Options for `split` through the library: everything off, outputs in `out`, a 1 GiB budget.
fn lib_split_options(out: &Path) -> wheelslim::split::SplitOptions {
    wheelslim::split::SplitOptions {
        settings: wheelslim::plan::SplitSettings {
            upstream: false,
            unhash: false,
            move_unlinked: false,
            ad_hoc: Default::default(),
        },
        wheel_dir: out.to_path_buf(),
        runtime_dir: out.to_path_buf(),
        max_size: 100 << 20,
        limits: Default::default(),
        memory_budget: 1 << 30,
        time: wheelslim::wheel::writer::ZipTime::EPOCH,
        dry_run: false,
        canonical_runtime: false,
        strip_debug: false,
        trim: wheelslim::trim::TrimSettings {
            cuda: None,
            gfx: None,
            allow_cut: true,
            allow_no_device_code: false,
        },
        preload_hook: false,
        companions: false,
        progress: wheelslim::progress::none(),
        sparse: wheelslim::facts::Sparse::default(),
    }
}
