//! The platform policy (auditwheel 6.8.0's manylinux/musllinux data), PyPI's platform tags,
//! and violations an input already had (`split` and `trim` report them and are judged only on
//! what they change). The shared objects are built here with gcc, against stub libraries
//! whose only content is their soname, so each NEEDED list is exactly what a test names.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use crate::shrink_support::{need, run_out};

fn sh(cmd: &mut Command) {
    let (ok, out, err) = run_out(cmd);
    assert!(ok, "{cmd:?} failed:\n{out}\n{err}");
}

/// A stub shared object with this soname, in `dir/stubs`.
fn stub(dir: &Path, soname: &str) -> PathBuf {
    let stubs = dir.join("stubs");
    std::fs::create_dir_all(&stubs).unwrap();
    let src = stubs.join("empty.c");
    std::fs::write(&src, "int fix_stub_marker;\n").unwrap();
    let out = stubs.join(soname);
    sh(Command::new(need("gcc", "gcc"))
        .args(["-shared", "-fPIC", "-nostdlib"])
        .arg(format!("-Wl,-soname,{soname}"))
        .arg(&src)
        .arg("-o")
        .arg(&out));
    out
}

/// A shared object (no libc) whose NEEDED entries are exactly `needed`, in that order.
fn lib_needing(dir: &Path, name: &str, needed: &[&str]) -> Vec<u8> {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, "int fix_value(void) { return 42; }\n").unwrap();
    let out = dir.join(name);
    let mut cmd = Command::new(need("gcc", "gcc"));
    cmd.args(["-shared", "-fPIC", "-nostdlib", "-Wl,--no-as-needed"])
        .arg(format!("-Wl,-soname,{name}"))
        .arg(&src)
        .arg("-o")
        .arg(&out);
    for n in needed {
        cmd.arg(stub(dir, n));
    }
    sh(&mut cmd);
    std::fs::read(out).unwrap()
}

/// A PIE executable linked against this machine's glibc (Debian 12: 2.36), so it needs
/// `__libc_start_main@GLIBC_2.34`.
fn glibc_2_34_executable(dir: &Path) -> Vec<u8> {
    let src = dir.join("tool.c");
    std::fs::write(&src, "int main(void) { return 0; }\n").unwrap();
    let out = dir.join("tool");
    sh(Command::new(need("gcc", "gcc"))
        .args(["-O2", "-fPIE", "-pie"])
        .arg(&src)
        .arg("-o")
        .arg(&out));
    std::fs::read(out).unwrap()
}

/// A C++ library that needs `GLIBCXX_3.4.21` (the C++11 `std::string`), which
/// manylinux2014's libstdc++ (3.4.19) lacks.
fn cxx11_library(dir: &Path) -> Vec<u8> {
    let src = dir.join("s.cc");
    std::fs::write(
        &src,
        "#include <string>\nextern \"C\" unsigned long fix_len(const char *s) { std::string t(s); t += s; return t.size(); }\n",
    )
    .unwrap();
    let out = dir.join("libcxx11.so");
    sh(Command::new(need("g++", "g++"))
        .args(["-O2", "-shared", "-fPIC", "-D_GLIBCXX_USE_CXX11_ABI=1"])
        .arg(&src)
        .arg("-o")
        .arg(&out));
    std::fs::read(out).unwrap()
}

/// Copies a wheel adding `extra` members (before `.dist-info`), RECORD regenerated.
fn with_members(src: &Path, dst: &Path, extra: &[(&str, &[u8])]) {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    use std::io::Write;
    let mut members = read_zip(src);
    let record_name = members
        .iter()
        .map(|(n, _)| n.clone())
        .find(|n| n.ends_with(".dist-info/RECORD"))
        .expect("RECORD");
    members.retain(|(n, _)| *n != record_name && !n.ends_with('/'));
    let at = members
        .iter()
        .position(|(n, _)| n.contains(".dist-info/"))
        .unwrap_or(members.len());
    for (i, (n, d)) in extra.iter().enumerate() {
        members.insert(at + i, (n.to_string(), d.to_vec()));
    }
    let mut z = zip::ZipWriter::new(std::fs::File::create(dst).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o755);
    let mut record = String::new();
    for (name, data) in &members {
        z.start_file(name.as_str(), opts).unwrap();
        z.write_all(data).unwrap();
        let digest = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(data));
        record.push_str(&format!("{name},sha256={digest},{}\n", data.len()));
    }
    record.push_str(&format!("{record_name},,\n"));
    z.start_file(record_name.as_str(), opts).unwrap();
    z.write_all(record.as_bytes()).unwrap();
    z.finish().unwrap();
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(out), stderr(out)))
}

fn verify_json(wheels: &[&Path]) -> (i32, serde_json::Value) {
    let mut args = vec!["verify", "--json"];
    args.extend(wheels.iter().map(|w| w.to_str().unwrap()));
    let out = wheelslim(&args);
    (code(&out), json(&out))
}

fn unresolved(v: &serde_json::Value) -> Vec<String> {
    let mut n: Vec<String> = v["unresolved"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["needed"].as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

fn rules(v: &serde_json::Value) -> Vec<String> {
    v["wheels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| w["violations"].as_array().unwrap().iter())
        .map(|x| x["rule"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn libraries_auditwheel_allows_verify_and_others_do_not() {
    let tmp = tempdir();
    let newer = [
        "libz.so.1",
        "libexpat.so.1",
        "libatomic.so.1",
        "libanl.so.1",
        "libmvec.so.1",
    ];
    let mut needed = newer.to_vec();
    needed.extend(["libm.so.6", "libc.so.6"]);
    let lib = lib_needing(tmp.path(), "libpolicy.so", &needed);
    let wheel = make_wheel(
        tmp.path(),
        "manylinux_2_28_x86_64",
        &[("demo/libpolicy.so", &lib)],
    );
    let (rc, v) = verify_json(&[&wheel]);
    assert_eq!(rc, 0, "{v:#}");
    assert_eq!(v["ok"], true);

    // manylinux1's policy (glibc 2.5) has libz, libatomic and libanl but not libexpat or
    // libmvec: the same library tagged for it is missing those two.
    let old_dir = tmp.path().join("old");
    std::fs::create_dir_all(&old_dir).unwrap();
    let old = make_wheel(
        &old_dir,
        "manylinux1_x86_64",
        &[("demo/libpolicy.so", &lib)],
    );
    let (rc, v) = verify_json(&[&old]);
    assert_eq!(rc, 1, "{v:#}");
    assert_eq!(unresolved(&v), ["libexpat.so.1", "libmvec.so.1"]);

    // A system library no policy lists is still reported, by name.
    let ssl_dir = tmp.path().join("ssl");
    std::fs::create_dir_all(&ssl_dir).unwrap();
    let ssl = lib_needing(&ssl_dir, "libusesssl.so", &["libssl.so.3", "libz.so.1"]);
    let w = make_wheel(
        &ssl_dir,
        "manylinux_2_28_x86_64",
        &[("demo/libusesssl.so", &ssl)],
    );
    let (rc, v) = verify_json(&[&w]);
    assert_eq!(rc, 1, "{v:#}");
    assert_eq!(unresolved(&v), ["libssl.so.3"]);
    let out = wheelslim(&["audit", "--json", w.to_str().unwrap()]);
    let a = json(&out);
    let needed = &a["wheels"][0]["elf_objects"][0]["needed"];
    let kinds: Vec<(&str, &str)> = needed
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap(),
                n["resolution"]["kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("libssl.so.3", "missing"), ("libz.so.1", "system")],
        "{a:#}"
    );
}

#[test]
fn musllinux_wheels_link_musl_libc_not_glibc() {
    let tmp = tempdir();
    let lib = lib_needing(
        tmp.path(),
        "libmusl.so",
        &["libc.musl-x86_64.so.1", "libz.so.1"],
    );
    let wheel = make_wheel(
        tmp.path(),
        "musllinux_1_2_x86_64",
        &[("demo/libmusl.so", &lib)],
    );
    let (rc, v) = verify_json(&[&wheel]);
    assert_eq!(rc, 0, "{v:#}");
    let out = wheelslim(&["audit", "--check", wheel.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("PyPI: would accept"),
        "{}",
        stdout(&out)
    );

    // glibc's libraries are not on a musl system.
    let g = tmp.path().join("g");
    std::fs::create_dir_all(&g).unwrap();
    let glibc = lib_needing(&g, "libglibc.so", &["libc.so.6", "libstdc++.so.6"]);
    let wheel = make_wheel(&g, "musllinux_1_2_x86_64", &[("demo/libglibc.so", &glibc)]);
    let (rc, v) = verify_json(&[&wheel]);
    assert_eq!(rc, 1, "{v:#}");
    assert_eq!(unresolved(&v), ["libc.so.6", "libstdc++.so.6"]);
}

#[test]
fn symbol_versions_are_checked_against_the_tags_policy() {
    let tmp = tempdir();
    let tool = glibc_2_34_executable(tmp.path());
    let cxx = cxx11_library(tmp.path());
    let files: [(&str, &[u8]); 2] = [("demo/tool", &tool), ("demo/libcxx11.so", &cxx)];
    let old = make_wheel(tmp.path(), "manylinux2014_x86_64", &files);
    let (rc, v) = verify_json(&[&old]);
    assert_eq!(rc, 1, "{v:#}");
    let violations = v["wheels"][0]["violations"].as_array().unwrap();
    let glibc = violations
        .iter()
        .find(|x| x["rule"] == "manylinux-glibc")
        .unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!(glibc["member"], "demo/tool");
    let msg = glibc["message"].as_str().unwrap();
    assert!(
        msg.contains("GLIBC_2.34") && msg.contains("2.17") && msg.contains("auditwheel 6.8.0"),
        "{msg}"
    );
    let cxx_v = violations
        .iter()
        .find(|x| {
            x["rule"] == "manylinux-symbol-version"
                && x["message"].as_str().unwrap().contains("needs GLIBCXX_")
        })
        .unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!(cxx_v["member"], "demo/libcxx11.so");
    let msg = cxx_v["message"].as_str().unwrap();
    assert!(
        msg.contains("GLIBCXX_3.4.") && msg.contains("GLIBCXX_3.4.19"),
        "{msg}"
    );

    // manylinux_2_34 (gcc 11's libstdc++, 3.4.29) promises both.
    let new_dir = tmp.path().join("new");
    std::fs::create_dir_all(&new_dir).unwrap();
    let new = make_wheel(&new_dir, "manylinux_2_34_x86_64", &files);
    let (rc, v) = verify_json(&[&new]);
    assert_eq!(rc, 0, "{v:#}");
}

#[test]
fn plain_linux_tags_are_not_uploadable() {
    let tmp = tempdir();
    let lib = lib_needing(tmp.path(), "libplain.so", &["libc.so.6"]);
    let wheel = make_wheel(tmp.path(), "linux_x86_64", &[("demo/libplain.so", &lib)]);
    let w = wheel.to_str().unwrap();

    let out = wheelslim(&["audit", "--check", w]);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("PyPI: WOULD REJECT"), "{text}");
    assert!(text.contains("[platform-tag] (PyPI)"), "{text}");
    assert!(text.contains("auditwheel repair"), "{text}");

    let (rc, v) = verify_json(&[&wheel]);
    assert_eq!(rc, 1, "{v:#}");
    assert_eq!(rules(&v), ["platform-tag"]);
    assert_eq!(v["wheels"][0]["violations"][0]["pypi"], true);

    // split passes the tag on to what it writes (the input had it: a warning, not a
    // refusal), and the outputs are not uploadable either.
    let out_dir = tmp.path().join("out");
    let out = wheelslim(&["split", "--json", w, "-w", out_dir.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let s = json(&out);
    let notes = s["notes"].as_array().unwrap();
    assert!(
        notes.iter().any(|n| n["severity"] == "warning"
            && n["message"].as_str().unwrap().contains("[platform-tag]")
            && n["hint"].as_str().unwrap().contains("auditwheel repair")),
        "{s:#}"
    );
    let written = s["outputs"][0]["path"].as_str().unwrap();
    let (rc, v) = verify_json(&[Path::new(written)]);
    assert_eq!(rc, 1, "{v:#}");
    assert_eq!(rules(&v), ["platform-tag"]);
}

#[test]
fn split_reports_what_the_input_already_violated_and_still_splits() {
    // The auditwheel-repaired demo (manylinux2014) plus an executable that needs glibc 2.34
    // and an aarch64 library: both violations are the input's, not the split's.
    let tmp = tempdir();
    let tool = glibc_2_34_executable(tmp.path());
    let a64 = std::fs::read(fixture("aarch64/libfix_a64.so")).unwrap();
    let input = tmp.path().join(
        std::path::Path::new(SLIMDEMO)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap(),
    );
    with_members(
        &fixture(SLIMDEMO),
        &input,
        &[
            ("slimdemo/bin/tool", &tool),
            ("slimdemo/npu/libkernel_a64.so", &a64),
        ],
    );
    let out_dir = tmp.path().join("out");
    let out = wheelslim(&[
        "split",
        "--json",
        input.to_str().unwrap(),
        "-w",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let s = json(&out);
    let warnings: Vec<&str> = s["notes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["severity"] == "warning")
        .map(|n| n["message"].as_str().unwrap())
        .collect();
    for rule in ["[manylinux-glibc]", "[wrong-architecture]"] {
        assert!(
            warnings
                .iter()
                .any(|w| w.contains(rule) && w.contains("already")),
            "{rule}: {warnings:#?}"
        );
    }
    // The aarch64 library is judged as what it is, not against x86_64's symbol lists.
    assert!(
        !warnings
            .iter()
            .any(|w| w.contains("[manylinux-symbol-version]")),
        "{warnings:#?}"
    );
    // The split did its work: a main wheel and a runtime wheel were written.
    let kinds: Vec<&str> = s["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"main") && kinds.contains(&"runtime"),
        "{kinds:?}"
    );
    assert!(!stderr(&out).contains("wheelslim bug"), "{}", stderr(&out));
    // Human output says the same on stderr.
    let out_dir2 = tmp.path().join("out2");
    let out = wheelslim(&[
        "split",
        input.to_str().unwrap(),
        "-w",
        out_dir2.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("warning:") && err.contains("slimdemo/bin/tool") && err.contains("GLIBC_2.34"),
        "{err}"
    );
}

#[test]
fn trim_is_not_refused_for_what_the_input_already_was() {
    // The CUDA fixture (its libraries need libcudart.so.13, which it does not bundle) plus an
    // aarch64 library under its x86_64 tag.
    let tmp = tempdir();
    let a64 = std::fs::read(fixture("aarch64/libfix_a64.so")).unwrap();
    let input = tmp.path().join(
        std::path::Path::new(CUDAFIX)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap(),
    );
    with_members(
        &fixture(CUDAFIX),
        &input,
        &[("cudafix/npu/libkernel_a64.so", &a64)],
    );
    let out_dir = tmp.path().join("out");
    let out = wheelslim(&[
        "trim",
        "--json",
        input.to_str().unwrap(),
        "-w",
        out_dir.to_str().unwrap(),
        "--sm",
        "90",
    ]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let t = json(&out);
    let notes = t["notes"].as_array().unwrap();
    assert!(
        notes.iter().any(|n| n["location"]
            .as_str()
            .unwrap()
            .ends_with("!cudafix/npu/libkernel_a64.so")
            && n["message"]
                .as_str()
                .unwrap()
                .contains("[wrong-architecture]")),
        "{t:#}"
    );
    // Links trim does not change are not listed as its fault.
    assert!(!stderr(&out).contains("libcudart"), "{}", stderr(&out));
    assert!(out_dir.join(input.file_name().unwrap()).exists());
}

#[test]
fn verify_with_the_input_as_baseline_agrees_with_split() {
    // The outputs of a split whose input already broke two rules (item 10): `verify` alone
    // fails them, `verify --baseline INPUT` calls them inherited and passes, as split did.
    let tmp = tempdir();
    let tool = glibc_2_34_executable(tmp.path());
    let a64 = std::fs::read(fixture("aarch64/libfix_a64.so")).unwrap();
    let name = Path::new(SLIMDEMO).file_name().unwrap().to_owned();
    let input = tmp.path().join("in").join(&name);
    std::fs::create_dir_all(input.parent().unwrap()).unwrap();
    with_members(
        &fixture(SLIMDEMO),
        &input,
        &[
            ("slimdemo/bin/tool", &tool),
            ("slimdemo/npu/libkernel_a64.so", &a64),
        ],
    );
    let out_dir = tmp.path().join("out");
    let s = wheelslim(&[
        "split",
        input.to_str().unwrap(),
        "-w",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(code(&s), 0, "{}", stderr(&s));
    let mut outs: Vec<PathBuf> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
        .collect();
    outs.sort();
    assert_eq!(outs.len(), 2, "{outs:?}");
    let outs: Vec<&str> = outs.iter().map(|p| p.to_str().unwrap()).collect();

    let (rc, alone) = verify_json(&outs.iter().map(Path::new).collect::<Vec<_>>());
    assert_eq!(rc, 1, "{alone:#}");
    assert!(rules(&alone).contains(&"wrong-architecture".to_string()));

    let mut args = vec!["verify", "--json", "--baseline", input.to_str().unwrap()];
    args.extend(outs.iter().copied());
    let o = wheelslim(&args);
    let v = json(&o);
    assert_eq!(code(&o), 0, "{v:#}");
    assert_eq!(v["ok"], true);
    let inherited: Vec<&str> = v["wheels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| w["inherited"].as_array().into_iter().flatten())
        .map(|x| x["rule"].as_str().unwrap())
        .collect();
    for rule in ["manylinux-glibc", "wrong-architecture"] {
        assert!(inherited.contains(&rule), "{rule}: {v:#}");
    }
    assert!(rules(&v).is_empty(), "{v:#}");
    // The same in text.
    let mut args = vec!["verify", "--baseline", input.to_str().unwrap()];
    args.extend(outs.iter().copied());
    let o = wheelslim(&args);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    assert!(
        stdout(&o).contains("inherited [wrong-architecture]"),
        "{}",
        stdout(&o)
    );

    // A baseline that did not have the violations excuses nothing.
    let clean = fixture(SLIMDEMO);
    let mut args = vec!["verify", "--json", "--baseline", clean.to_str().unwrap()];
    args.extend(outs.iter().copied());
    let o = wheelslim(&args);
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    assert!(rules(&json(&o)).contains(&"wrong-architecture".to_string()));
}
