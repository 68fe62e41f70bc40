//! `wheelslim audit` end to end.

#![allow(dead_code)] // The mirror structs exist to pin the schema; not every field is asserted.

use serde::Deserialize;

use crate::common::*;

/// A mirror of the `wheelslim.audit/1` JSON schema: unknown or missing fields fail the test, so
/// the schema is a contract.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Report {
    schema: String,
    max_size: u64,
    wheels: Vec<Wheel>,
    shared_across_wheels: Vec<Duplicate>,
    failed: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wheel {
    path: String,
    name: String,
    version: String,
    tags: Vec<String>,
    compressed_size: u64,
    installed_size: u64,
    members: usize,
    largest: Vec<serde_json::Value>,
    elf_objects: Vec<Elf>,
    vendor_libraries: Vec<Vendor>,
    licensed_files: Vec<serde_json::Value>,
    device_code: Vec<serde_json::Value>,
    duplicates: Vec<Duplicate>,
    violations: Vec<Violation>,
    pypi_ok: bool,
    #[serde(default)]
    to_fit: Option<serde_json::Value>,
    record: serde_json::Value,
    diagnostics: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Elf {
    member: String,
    machine: String,
    kind: String,
    soname: Option<String>,
    needed: Vec<Needed>,
    rpath: Vec<String>,
    runpath: Vec<String>,
    glibc: Option<String>,
    glibcxx: Option<String>,
    cxxabi: Option<String>,
    load_align: u64,
    stripped: bool,
    debug_bytes: u64,
    sections: Vec<serde_json::Value>,
    #[serde(default)]
    unsupported: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Needed {
    name: String,
    resolution: serde_json::Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Vendor {
    member: String,
    profile: String,
    library: String,
    action: String,
    license: Option<String>,
    license_note: Option<String>,
    #[serde(default)]
    upstream_package: Option<String>,
    size: u64,
    compressed_size: u64,
    linked: bool,
    split: serde_json::Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Duplicate {
    sha256: String,
    size: u64,
    copies: Vec<String>,
    wasted: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Violation {
    rule: String,
    pypi: bool,
    message: String,
}

fn audit_json(args: &[&str]) -> (i32, Report) {
    let mut all = vec!["audit", "--json"];
    all.extend_from_slice(args);
    let out = wheelslim(&all);
    let report: Report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}):\n{}\n{}", stdout(&out), stderr(&out)));
    (code(&out), report)
}

#[test]
fn auditwheel_shaped_wheel_shows_vendor_libraries_and_links() {
    let w = fixture(SLIMDEMO);
    let (code, r) = audit_json(&[w.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert_eq!(r.schema, "wheelslim.audit/1");
    assert_eq!(r.max_size, 100 * 1024 * 1024);
    assert!(r.failed.is_empty());
    let wheel = &r.wheels[0];
    assert_eq!(wheel.name, "slimdemo");
    assert_eq!(
        wheel.tags.len(),
        2,
        "compressed tag set expands: {:?}",
        wheel.tags
    );
    assert!(wheel.pypi_ok);
    assert_eq!(wheel.compressed_size, std::fs::metadata(&w).unwrap().len());
    let mut vendors: Vec<(&str, &str, &str)> = wheel
        .vendor_libraries
        .iter()
        .map(|v| (v.member.as_str(), v.library.as_str(), v.action.as_str()))
        .collect();
    vendors.sort();
    assert_eq!(
        vendors,
        [
            (
                "slimdemo.libs/libcublas-d368dffb.so.12",
                "cublas",
                "upstream"
            ),
            (
                "slimdemo.libs/libcudart-aa97f077.so.12",
                "cudart",
                "upstream"
            ),
        ]
    );
    assert!(
        wheel
            .vendor_libraries
            .iter()
            .all(|v| v.license.as_deref() == Some("LicenseRef-NVIDIA-Proprietary"))
    );
    let ext = wheel
        .elf_objects
        .iter()
        .find(|e| e.member == "slimdemo/_native.abi3.so")
        .expect("extension module listed");
    assert_eq!(ext.rpath, ["$ORIGIN/../slimdemo.libs"]);
    let cudart = ext
        .needed
        .iter()
        .find(|n| n.name == "libcudart-aa97f077.so.12")
        .unwrap();
    assert_eq!(cudart.resolution["kind"], "installed");
    assert_eq!(
        cudart.resolution["path"],
        "slimdemo.libs/libcudart-aa97f077.so.12"
    );
    // The vendor library depends on its sibling through $ORIGIN.
    let cublas = wheel
        .elf_objects
        .iter()
        .find(|e| e.member.contains("libcublas"))
        .unwrap();
    assert_eq!(cublas.soname.as_deref(), Some("libcublas-d368dffb.so.12"));
    assert_eq!(
        cublas
            .needed
            .iter()
            .find(|n| n.name.contains("cudart"))
            .unwrap()
            .resolution["kind"],
        "installed"
    );
}

#[test]
fn elf_facts_match_readelf() {
    // readelf (binutils) is the outside oracle for SONAME/NEEDED/RPATH and the load alignment.
    let tmp = tempdir();
    let w = fixture(SLIMDEMO);
    let (_, r) = audit_json(&[w.to_str().unwrap()]);
    for (name, data) in read_zip(&w) {
        if !name.contains(".so") {
            continue;
        }
        let path = tmp.path().join(name.replace('/', "_"));
        std::fs::write(&path, &data).unwrap();
        let dynamic = run(std::process::Command::new("readelf").arg("-dW").arg(&path));
        let ours = r.wheels[0]
            .elf_objects
            .iter()
            .find(|e| e.member == name)
            .unwrap();
        let mut needed = Vec::new();
        let mut rpath = Vec::new();
        for line in dynamic.lines() {
            let value = line
                .split('[')
                .nth(1)
                .and_then(|v| v.split(']').next())
                .unwrap_or("");
            if line.contains("(NEEDED)") {
                needed.push(value.to_string());
            } else if line.contains("(RPATH)") {
                rpath.extend(value.split(':').map(str::to_string));
            } else if line.contains("(SONAME)") {
                assert_eq!(ours.soname.as_deref(), Some(value), "{name}");
            }
        }
        let our_needed: Vec<&str> = ours.needed.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(our_needed, needed, "{name}");
        assert_eq!(ours.rpath, rpath, "{name}");
        let segs = run(std::process::Command::new("readelf").arg("-lW").arg(&path));
        let max_align = segs
            .lines()
            .filter(|l| l.trim_start().starts_with("LOAD"))
            .filter_map(|l| l.split_whitespace().last())
            .map(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).unwrap())
            .max()
            .unwrap();
        assert_eq!(ours.load_align, max_align, "{name}");
    }
}

#[test]
fn text_report_and_check_exit_codes() {
    let w = fixture(SLIMDEMO);
    let out = wheelslim(&["audit", w.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("PyPI: would accept"), "{text}");
    assert!(text.contains("cuda12/cudart"), "{text}");
    assert!(text.contains("LicenseRef-NVIDIA-Proprietary"), "{text}");

    // A tiny limit makes the size check fail: 0 without --check, 1 with it, and the report
    // says what would have to leave.
    let out = wheelslim(&["audit", "--max-size", "4KiB", w.to_str().unwrap()]);
    assert_eq!(code(&out), 0);
    let out = wheelslim(&[
        "audit",
        "--check",
        "--max-size",
        "4KiB",
        w.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 1);
    let text = stdout(&out);
    assert!(text.contains("[max-size] (PyPI)"), "{text}");
    assert!(text.contains("would move out"), "{text}");
    let (_, r) = audit_json(&["--max-size", "4KiB", w.to_str().unwrap()]);
    let fit = r.wheels[0].to_fit.as_ref().unwrap();
    assert!(fit["split_moves_out"].as_u64().unwrap() > 0);
    assert!(!r.wheels[0].pypi_ok);
}

#[test]
fn duplicates_across_wheels_are_found() {
    // The same wheel under two Python tags: every payload is shared.
    let tmp = tempdir();
    let a = tmp
        .path()
        .join("slimdemo-0.1.0-cp38-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl");
    let b = tmp
        .path()
        .join("slimdemo-0.1.0-cp39-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl");
    std::fs::copy(fixture(SLIMDEMO), &a).unwrap();
    std::fs::copy(fixture(SLIMDEMO), &b).unwrap();
    let (code, r) = audit_json(&[a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        r.shared_across_wheels.len() >= 3,
        "{:?}",
        r.shared_across_wheels
    );
    let cudart = r
        .shared_across_wheels
        .iter()
        .find(|d| {
            d.copies
                .iter()
                .any(|c| c.ends_with("libcudart-aa97f077.so.12"))
        })
        .unwrap();
    assert_eq!(cudart.copies.len(), 2);
    assert_eq!(cudart.wasted, cudart.size);
    assert_eq!(cudart.sha256.len(), 64);
}

#[test]
fn unopenable_wheels_exit_2_and_name_the_file() {
    let tmp = tempdir();
    let bad = tmp.path().join("broken-1.0-py3-none-any.whl");
    std::fs::write(&bad, b"this is not a zip file at all, just text").unwrap();
    let good = fixture(PUREFIX);
    let out = wheelslim(&["audit", bad.to_str().unwrap(), good.to_str().unwrap()]);
    assert_eq!(code(&out), 2);
    // The error goes to stderr, naming the file; the good wheel is still audited (stdout).
    let (text, err) = (stdout(&out), stderr(&out));
    assert!(err.contains("broken-1.0-py3-none-any.whl"), "{err}");
    assert!(err.contains("not a zip archive"), "{err}");
    assert!(!text.contains("not a zip archive"), "{text}");
    assert!(text.contains("purefix 1.0"), "{text}");
}

#[test]
fn profiles_command_lists_and_shows() {
    let out = wheelslim(&["profiles"]);
    assert_eq!(code(&out), 0);
    let text = stdout(&out);
    for p in [
        "cuda12",
        "cuda13",
        "cudnn",
        "nccl",
        "ascend-cann",
        "triton-shared",
        "rocm",
    ] {
        assert!(text.contains(p), "{p} missing:\n{text}");
    }
    let out = wheelslim(&["profiles", "show", "cuda13"]);
    assert!(stdout(&out).contains("nvidia/cu13/lib"));
    let out = wheelslim(&["profiles", "show", "nosuch"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("unknown profile `nosuch`"));
}

#[test]
fn pyproject_tool_wheelslim_supplies_defaults_and_the_command_line_wins() {
    let tmp = tempdir();
    std::fs::write(
        tmp.path().join("pyproject.toml"),
        "[project]\nname = \"x\"\n\n[tool.wheelslim]\nmax-size = \"4KiB\"\n",
    )
    .unwrap();
    let w = fixture(SLIMDEMO);
    let out = wheelslim_in(&["audit", "--check", w.to_str().unwrap()], tmp.path());
    assert_eq!(code(&out), 1, "the 4 KiB limit from pyproject.toml applies");
    let out = wheelslim_in(
        &[
            "audit",
            "--check",
            "--max-size",
            "1MiB",
            w.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert_eq!(code(&out), 0, "the command line wins: {}", stdout(&out));
}
