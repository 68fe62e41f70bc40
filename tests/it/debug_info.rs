//! Debug information in libraries (issue 10 item 17): `audit` reports the bytes of
//! non-allocated `.debug_*` sections per object, in text and JSON, and in its size guidance.
//! readelf is the oracle for the numbers.

use std::path::Path;
use std::process::Command;

use crate::common::*;
use crate::shrink_support::{need, run_out};

/// A shared library built by gcc with the given flags.
fn library(dir: &Path, name: &str, flags: &[&str]) -> Vec<u8> {
    need("gcc", "gcc");
    let src = dir.join(format!("{name}.c"));
    let mut code = String::new();
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
}
