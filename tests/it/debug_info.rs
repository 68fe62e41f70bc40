//! Debug information in libraries (issue 10 item 17): `audit` reports the bytes of
//! non-allocated `.debug_*` sections per object, in text and JSON, and in its size guidance.
//! readelf is the oracle for the numbers.

use std::path::Path;
use std::process::Command;

use crate::common::*;
use crate::shrink_support::{
    elflint, elflint_new_complaints, need, readelf_complaints, readelf_loads, run_out,
};

/// A shared library built by gcc with the given flags.
fn library(dir: &Path, name: &str, flags: &[&str]) -> Vec<u8> {
    need("gcc", "gcc");
    let src = dir.join(format!("{name}.c"));
    let mut code = String::new();
    code.push_str("int plain(int v) { return v * 3; }\n");
    // Enough functions and types that -g3 gives debug sections of some size.
    for i in 0..200 {
        code.push_str(&format!(
            "struct s{i} {{ int a; long b[{i}]; const char *name; }};\n\
             int f{i}(struct s{i} *p, int v) {{ int acc = v; for (int k = 0; k < {i}; k++) acc += (int)p->b[k]; return acc + p->a; }}\n"
        ));
    }
    std::fs::write(&src, code).unwrap();
    let out = dir.join(name);
    let (ok, o, e) = run_out(
        Command::new("gcc")
            .args(["-shared", "-fPIC", "-O1"])
            .args(flags)
            .arg(&src)
            .arg("-o")
            .arg(&out),
    );
    assert!(ok, "{o}{e}");
    std::fs::read(out).unwrap()
}

/// Sum of the sizes readelf gives for `.debug_*` sections without the A flag.
fn readelf_debug_bytes(path: &Path) -> u64 {
    need("readelf", "binutils");
    let (ok, out, err) = run_out(Command::new("readelf").args(["-S", "-W"]).arg(path));
    assert!(ok, "{err}");
    let mut total = 0;
    for line in out.lines() {
        let Some(rest) = line.split_once(']').map(|(_, r)| r) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        // Name Type Address Off Size ES Flg Lk Inf Al (Flg may be empty).
        if f.len() < 9 || !(f[0].starts_with(".debug_") || f[0].starts_with(".zdebug_")) {
            continue;
        }
        let flags = if f.len() >= 10 { f[6] } else { "" };
        if !flags.contains('A') {
            total += u64::from_str_radix(f[4], 16).unwrap();
        }
    }
    total
}

#[test]
fn audit_reports_debug_bytes_per_library() {
    let tmp = tempdir();
    let with = library(tmp.path(), "libwith.so", &["-g3"]);
    let without = library(tmp.path(), "libwithout.so", &[]);
    let expected = readelf_debug_bytes(&tmp.path().join("libwith.so"));
    assert!(expected > 10_000, "{expected}");
    assert_eq!(readelf_debug_bytes(&tmp.path().join("libwithout.so")), 0);
    let whl = make_wheel(
        tmp.path(),
        "manylinux_2_17_x86_64",
        &[("demo/libwith.so", &with), ("demo/libwithout.so", &without)],
    );
    let p = whl.to_str().unwrap();
    let j = wheelslim(&["audit", "--json", p]);
    let report: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    let objects = report["wheels"][0]["elf_objects"].as_array().unwrap();
    let debug = |m: &str| {
        objects
            .iter()
            .find(|o| o["member"] == m)
            .unwrap_or_else(|| panic!("{m}: {objects:?}"))["debug_bytes"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(debug("demo/libwith.so"), expected);
    assert_eq!(debug("demo/libwithout.so"), 0);

    let text = stdout(&wheelslim(&["audit", p]));
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("demo/libwith.so"))
        .unwrap();
    assert!(line.contains("  debug "), "{line}");
    let plain = text
        .lines()
        .find(|l| l.trim_start().starts_with("demo/libwithout.so"))
        .unwrap();
    assert!(!plain.contains("debug"), "{plain}");
    assert!(text.contains("Debug info: "), "{text}");
    assert!(
        text.contains("largest") && text.contains("in demo/libwith.so"),
        "{text}"
    );

    // Over the limit: the guidance says what the debug sections take.
    let small = wheelslim(&["audit", "--max-size", "20KiB", p]);
    let small = stdout(&small);
    assert!(small.contains("To fit under"), "{small}");
    assert!(small.contains("debug sections take"), "{small}");
    assert!(small.contains("trim --strip-debug"), "{small}");
}

/// The names in `.symtab`, as readelf lists them.
fn symtab_names(path: &Path) -> Vec<String> {
    let (ok, out, err) = run_out(Command::new("readelf").args(["-sW"]).arg(path));
    assert!(ok, "{err}");
    out.lines()
        .skip_while(|l| !l.contains("'.symtab'"))
        .filter_map(|l| l.split_whitespace().nth(7).map(str::to_string))
        .collect()
}

#[test]
fn strip_debug_empties_debug_sections_and_keeps_every_loaded_byte() {
    need("python3", "python3");
    let tmp = tempdir();
    let data = library(tmp.path(), "libdbg.so", &["-g3"]);
    let orig = tmp.path().join("libdbg.so");
    let expected = readelf_debug_bytes(&orig);
    let s = wheelslim::elf::strip::strip_debug(&data)
        .unwrap()
        .expect("something to strip");
    assert_eq!(s.removed, expected);
    assert_eq!(s.kept_inside_loads, 0);
    assert!(
        s.data.len() as u64 <= data.len() as u64 - expected + 4096,
        "{} {}",
        s.data.len(),
        data.len()
    );
    let out = tmp.path().join("out/libdbg.so");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&out, &s.data).unwrap();

    // readelf: no debug bytes left, no complaints, the same segments, the same symbols.
    assert_eq!(readelf_debug_bytes(&out), 0);
    assert_eq!(readelf_complaints(&out), "");
    let loads = readelf_loads(&orig);
    assert_eq!(readelf_loads(&out), loads);
    let end = loads.iter().map(|l| l.0 + l.2).max().unwrap() as usize;
    // Only e_shoff (0x28..0x30, which the loader never reads) may differ in the loaded part.
    let changed: Vec<usize> = (0..end)
        .filter(|&i| s.data[i] != data[i] && !(0x28..0x30).contains(&i))
        .collect();
    assert!(
        changed.is_empty(),
        "loaded bytes changed at {:x?}",
        &changed[..changed.len().min(8)]
    );
    let syms = symtab_names(&orig);
    assert!(syms.iter().any(|n| n == "f7"), "{syms:?}");
    assert_eq!(symtab_names(&out), syms);
    // eu-elflint: nothing new.
    assert_eq!(
        elflint_new_complaints(&orig, &out),
        Vec::<String>::new(),
        "{:?}",
        elflint(&out)
    );
    // It loads with every symbol bound, and calls work.
    let (ok, stdout, err) = run_out(
        Command::new("python3")
            .args([
                "-c",
                "import ctypes, sys; print(ctypes.CDLL(sys.argv[1]).plain(14))",
            ])
            .arg(&out)
            .env("LD_BIND_NOW", "1"),
    );
    assert!(ok, "{err}");
    assert_eq!(stdout.trim(), "42");
    // A second pass finds nothing; a library without debug info is left alone.
    assert_eq!(wheelslim::elf::strip::strip_debug(&s.data).unwrap(), None);
    let plain = library(tmp.path(), "libplain.so", &[]);
    assert_eq!(wheelslim::elf::strip::strip_debug(&plain).unwrap(), None);
    // Not ELF, or truncated: an error, not a panic.
    assert!(wheelslim::elf::strip::strip_debug(b"not an elf").is_err());
    assert!(wheelslim::elf::strip::strip_debug(&data[..100]).is_err());
}

#[test]
fn trim_strip_debug_writes_a_wheel_whose_libraries_still_load() {
    need("python3", "python3");
    let tmp = tempdir();
    let with = library(tmp.path(), "libwith.so", &["-g3"]);
    let without = library(tmp.path(), "libwithout.so", &[]);
    let whl = make_wheel(
        tmp.path(),
        "manylinux_2_17_x86_64",
        &[("demo/libwith.so", &with), ("demo/libwithout.so", &without)],
    );
    let out = tmp.path().join("out");
    let o = wheelslim(&[
        "trim",
        "--strip-debug",
        whl.to_str().unwrap(),
        "-w",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("demo/libwith.so"), "{}", stdout(&o));
    let zip = read_zip(&out.join(whl.file_name().unwrap()));
    let get = |n: &str| zip.iter().find(|(m, _)| m == n).unwrap().1.clone();
    assert_eq!(
        get("demo/libwithout.so"),
        without,
        "a library without debug info changed"
    );
    let stripped = tmp.path().join("x/libwith.so");
    std::fs::create_dir_all(stripped.parent().unwrap()).unwrap();
    std::fs::write(&stripped, get("demo/libwith.so")).unwrap();
    assert_eq!(readelf_debug_bytes(&stripped), 0);
    assert_eq!(readelf_complaints(&stripped), "");
    assert_eq!(
        elflint_new_complaints(&tmp.path().join("libwith.so"), &stripped),
        Vec::<String>::new()
    );
    let (ok, stdout_, err) = run_out(
        Command::new("python3")
            .args([
                "-c",
                "import ctypes, sys; print(ctypes.CDLL(sys.argv[1]).plain(5))",
            ])
            .arg(&stripped)
            .env("LD_BIND_NOW", "1"),
    );
    assert!(ok, "{err}");
    assert_eq!(stdout_.trim(), "15");
    // The output verifies (RECORD, hashes).
    let v = wheelslim(&[
        "verify",
        out.join(whl.file_name().unwrap()).to_str().unwrap(),
    ]);
    assert_eq!(code(&v), 0, "{}{}", stdout(&v), stderr(&v));
    // Without --sm and without --strip-debug there is still nothing to do.
    let none = wheelslim(&["trim", whl.to_str().unwrap(), "-w", out.to_str().unwrap()]);
    assert_eq!(code(&none), 2, "{}", stderr(&none));
}

/// A shared library of `n` functions built by gcc with `-g3`, with SONAME `name`, linking the
/// given libraries (paths).
fn big_library(dir: &Path, name: &str, n: usize, needed: &[&Path]) -> Vec<u8> {
    need("gcc", "gcc");
    let src = dir.join(format!("{name}.c"));
    let mut code = String::from("int plain(int v) { return v * 3; }\n");
    for i in 0..n {
        code.push_str(&format!(
            "struct t{i} {{ int a; long b[{}]; const char *name; double w; }};\n\
             int g{i}(struct t{i} *p, int v) {{ int acc = v; for (int k = 0; k < {}; k++) acc += (int)p->b[k] * {i}; return acc + p->a; }}\n",
            i % 17 + 1,
            i % 17 + 1
        ));
    }
    std::fs::write(&src, code).unwrap();
    let out = dir.join(name);
    let mut cmd = Command::new("gcc");
    cmd.args(["-shared", "-fPIC", "-O1", "-g3"])
        .arg(format!("-Wl,-soname,{name}"))
        .arg("-Wl,--no-as-needed")
        .arg(&src)
        .arg("-o")
        .arg(&out);
    for n in needed {
        cmd.arg(n);
    }
    let (ok, o, e) = run_out(&mut cmd);
    assert!(ok, "{o}{e}");
    std::fs::read(out).unwrap()
}

fn wheels_in(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|r| r.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.retain(|p: &std::path::PathBuf| p.extension().is_some_and(|e| e == "whl"));
    v.sort();
    v
}

#[test]
fn split_strip_debug_fits_a_wheel_that_fits_only_without_its_debug_info() {
    need("python3", "python3");
    let tmp = tempdir();
    let whl = debug_heavy_wheel(tmp.path());
    let p = whl.to_str().unwrap();
    let limit = limit_between_stripped_and_full(tmp.path(), &whl);
    let max = format!("{limit}");
    refused_without_strip_debug(tmp.path(), p, &max);
    let w = dry_run_with_strip_debug_estimates_a_fit(tmp.path(), p, &max);
    estimate_over_the_limit_fails_the_dry_run(p, &w);
    real_run_strips_and_fits(tmp.path(), p, &max, limit);
}

/// A wheel whose own library carries much debug info and needs a bundled `libcudart.so.12`.
fn debug_heavy_wheel(tmp: &Path) -> std::path::PathBuf {
    let cudart = big_library(tmp, "libcudart.so.12", 40, &[]);
    let with = big_library(tmp, "libwith.so", 5000, &[&tmp.join("libcudart.so.12")]);
    make_wheel(
        tmp,
        "manylinux_2_17_x86_64",
        &[
            ("demo/libwith.so", &with),
            ("demo/libcudart.so.12", &cudart),
        ],
    )
}

/// A size limit halfway between the wheel's size with and without debug info (trim
/// --strip-debug writes the latter).
fn limit_between_stripped_and_full(tmp: &Path, whl: &Path) -> u64 {
    let stripped_dir = tmp.join("stripped");
    let t = wheelslim(&[
        "trim",
        "--strip-debug",
        whl.to_str().unwrap(),
        "-w",
        stripped_dir.to_str().unwrap(),
    ]);
    assert_eq!(code(&t), 0, "{}", stderr(&t));
    let full = std::fs::metadata(whl).unwrap().len();
    let lean = std::fs::metadata(stripped_dir.join(whl.file_name().unwrap()))
        .unwrap()
        .len();
    let limit = (full + lean) / 2;
    assert!(
        full > lean * 3 && limit > 300 * 1024,
        "the fixture needs much debug info: {full} vs {lean}"
    );
    limit
}

fn dir_in(tmp: &Path, name: &str) -> String {
    tmp.join(name).to_str().unwrap().to_string()
}

/// Without --strip-debug the main wheel cannot fit, in the dry run and the real run alike.
fn refused_without_strip_debug(tmp: &Path, p: &str, max: &str) {
    for dry in [true, false] {
        let mut args = vec!["split", "--max-size", max, p, "-w"];
        let w = dir_in(tmp, if dry { "dry0" } else { "real0" });
        args.push(&w);
        if dry {
            args.push("--dry-run");
        }
        let o = wheelslim(&args);
        assert_eq!(code(&o), 2, "dry {dry}: {}", stderr(&o));
        assert!(stderr(&o).contains("limit"), "{}", stderr(&o));
        // The hint names the option that makes it fit.
        assert!(stderr(&o).contains("with --strip-debug"), "{}", stderr(&o));
    }
}

/// The dry run with --strip-debug estimates the sizes after the strip and says they fit (in
/// text and JSON), and writes nothing. Returns the output folder it was given.
fn dry_run_with_strip_debug_estimates_a_fit(tmp: &Path, p: &str, max: &str) -> String {
    let w = dir_in(tmp, "dry1");
    let o = wheelslim(&[
        "split",
        "--strip-debug",
        "--dry-run",
        "--max-size",
        max,
        p,
        "-w",
        &w,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("(main): about") && text.contains("estimated"),
        "{text}"
    );
    assert!(wheels_in(tmp.join("dry1").as_path()).is_empty());
    let j = wheelslim(&[
        "split",
        "--json",
        "--strip-debug",
        "--dry-run",
        "--max-size",
        max,
        p,
        "-w",
        &w,
    ]);
    let j: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    let est = j["size_estimates"].as_array().unwrap();
    let main = est.iter().find(|e| e["kind"] == "main").unwrap();
    assert!(main["fits"].as_bool().unwrap(), "{j:#}");
    assert!(main["bytes"].as_u64().unwrap() < main["bytes_before"].as_u64().unwrap() / 2);
    w
}

/// An estimate over the limit fails the dry run, and says it is an estimate: a runtime
/// wheel with 1 KiB of room cannot hold libcudart even stripped.
fn estimate_over_the_limit_fails_the_dry_run(p: &str, w: &str) {
    let tiny = format!("{}", 257 * 1024);
    let o = wheelslim(&[
        "split",
        "--strip-debug",
        "--dry-run",
        "--max-size",
        &tiny,
        p,
        "-w",
        w,
    ]);
    assert_eq!(code(&o), 2, "{}", stdout(&o));
    assert!(stderr(&o).contains("estimated"), "{}", stderr(&o));
    // Without --strip-debug, the refusal of that library names the option.
    let o = wheelslim(&["split", "--dry-run", "--max-size", &tiny, p, "-w", w]);
    assert_eq!(code(&o), 2, "{}", stdout(&o));
    assert!(
        stderr(&o).contains("libcudart.so.12") && stderr(&o).contains("with --strip-debug"),
        "{}",
        stderr(&o)
    );
}

/// The real run fits, strips both the main wheel's library and the moved one, and what it
/// writes verifies.
fn real_run_strips_and_fits(tmp: &Path, p: &str, max: &str, limit: u64) {
    let main_dir = dir_in(tmp, "main");
    let rt_dir = dir_in(tmp, "rt");
    let o = wheelslim(&[
        "split",
        "--strip-debug",
        "--max-size",
        max,
        p,
        "-w",
        &main_dir,
        "--runtime-dir",
        &rt_dir,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("strip-debug"), "{}", stdout(&o));
    let mains = wheels_in(Path::new(&main_dir));
    let rts = wheels_in(Path::new(&rt_dir));
    assert_eq!((mains.len(), rts.len()), (1, 1), "{mains:?} {rts:?}");
    assert!(std::fs::metadata(&mains[0]).unwrap().len() <= limit);
    stripped_libraries_load(tmp, &mains, &rts);
    let mut args = vec!["verify".to_string()];
    args.extend(mains.iter().chain(&rts).map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let v = wheelslim(&args);
    assert_eq!(code(&v), 0, "{}", stdout(&v));
}

/// Unpacked together, as pip installs them into one site-packages: both libraries lost their
/// debug info, the main one is still well-formed (no complaint readelf or eu-elflint did not
/// have before) and loads and runs.
fn stripped_libraries_load(tmp: &Path, mains: &[std::path::PathBuf], rts: &[std::path::PathBuf]) {
    let site = tmp.join("site");
    for w in mains.iter().chain(rts) {
        for (name, data) in read_zip(w) {
            let to = site.join(&name);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::write(to, data).unwrap();
        }
    }
    let lib = site.join("demo/libwith.so");
    assert_eq!(readelf_debug_bytes(&lib), 0);
    assert_eq!(readelf_complaints(&lib), "");
    let moved: Vec<_> = walk(&site)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "libcudart.so.12"))
        .collect();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(readelf_debug_bytes(&moved[0]), 0);
    assert_eq!(
        elflint_new_complaints(&tmp.join("libwith.so"), &lib),
        Vec::<String>::new()
    );
    let (ok, out, err) = run_out(
        Command::new("python3")
            .args([
                "-c",
                "import ctypes, sys; print(ctypes.CDLL(sys.argv[1]).plain(7))",
            ])
            .arg(&lib)
            .env("LD_BIND_NOW", "1"),
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "21");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
