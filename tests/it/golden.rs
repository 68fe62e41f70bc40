//! Behaviour pinned by hashes: every command over every fixture wheel, with the option sets the
//! redesign of issue 13 must not change, and the sha256 of everything each run produces (exit
//! code, stdout, stderr, every file written) compared with `tests/golden/outputs.sha256`.
//!
//! The outputs are deterministic (`SOURCE_DATE_EPOCH` fixed, the same bytes at any `-j`), so a
//! changed line means a changed behaviour. When the change is meant (a new field, a fixed
//! message), rewrite the list with `scripts/golden.sh --update` and let the diff of
//! `tests/golden/outputs.sha256` show in review which runs it touched.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::common::{root, tempdir};

const LIST: &str = "tests/golden/outputs.sha256";

/// The option sets: (name of the case, arguments before the wheel). A case that writes names
/// `-w out`; everything under `out/` is hashed.
const CASES: &[(&str, &[&str])] = &[
    ("audit", &["audit"]),
    ("audit-json", &["--json", "audit"]),
    ("verify-json", &["--json", "verify"]),
    ("split", &["split", "-w", "out"]),
    ("split-unhash", &["split", "--unhash", "-w", "out"]),
    ("split-upstream", &["split", "--upstream", "-w", "out"]),
    (
        "split-sm-gfx",
        &["split", "--sm", "80,90", "--gfx", "gfx90a", "-w", "out"],
    ),
    (
        "split-canonical",
        &["split", "--canonical-runtime", "-w", "out"],
    ),
    (
        "split-dry-run-json",
        &["--json", "split", "--dry-run", "-w", "out"],
    ),
    ("trim-sm90", &["trim", "--sm", "90", "-w", "out"]),
    (
        "trim-zero-only",
        &[
            "trim",
            "--sm",
            "90",
            "--gfx",
            "gfx90a",
            "--zero-only",
            "-w",
            "out",
        ],
    ),
    (
        "trim-dry-run-json",
        &["--json", "trim", "--sm", "80", "--dry-run", "-w", "out"],
    ),
];

fn sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Every file under `dir`, by its path relative to `dir` ('/'-separated), in sorted order.
fn files_under(dir: &Path, rel: &str, out: &mut BTreeMap<String, String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let e = e.expect("read dir entry");
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let path = e.path();
        if path.is_dir() {
            files_under(&path, &rel, out);
        } else {
            out.insert(rel, sha256(&std::fs::read(&path).expect("read output")));
        }
    }
}

/// Runs one case over one wheel in a fresh folder holding only `in/<wheel>`, so that every path
/// the outputs print is relative and the same on any machine.
fn run_case(args: &[&str], wheels: &[&Path], key: &str, lines: &mut Vec<String>) {
    let tmp = tempdir();
    std::fs::create_dir(tmp.path().join("in")).expect("mkdir in");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wheelslim"));
    cmd.args(args)
        .current_dir(tmp.path())
        .env("SOURCE_DATE_EPOCH", "315532800")
        .env("WHEELSLIM_NO_PROGRESS", "1");
    for w in wheels {
        let name = w.file_name().expect("wheel name");
        std::fs::copy(w, tmp.path().join("in").join(name)).expect("copy wheel");
        cmd.arg(Path::new("in").join(name));
    }
    let out = cmd.output().expect("run wheelslim");
    let code = out.status.code().map_or("signal".into(), |c| c.to_string());
    lines.push(format!("exit {code:<58} {key}"));
    lines.push(format!("{}  {key} stdout", sha256(&out.stdout)));
    lines.push(format!("{}  {key} stderr", sha256(&out.stderr)));
    let mut files = BTreeMap::new();
    files_under(&tmp.path().join("out"), "", &mut files);
    for (rel, hash) in files {
        lines.push(format!("{hash}  {key} out/{rel}"));
    }
}

fn fixture_wheels() -> Vec<std::path::PathBuf> {
    let mut wheels: Vec<_> = std::fs::read_dir(root().join("fixtures/wheels"))
        .expect("fixtures/wheels")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
        .collect();
    wheels.sort();
    wheels
}

/// The whole list, as `tests/golden/outputs.sha256` holds it.
fn current() -> String {
    let wheels = fixture_wheels();
    assert!(wheels.len() >= 5, "fixtures/wheels lost wheels: {wheels:?}");
    let mut lines = vec![
        "# sha256 of every run's stdout, stderr and outputs; see tests/it/golden.rs.".to_string(),
        "# Rewrite with `scripts/golden.sh --update` when a change is meant.".to_string(),
    ];
    for (case, args) in CASES {
        for w in &wheels {
            let stem = w.file_stem().expect("stem").to_string_lossy();
            run_case(args, &[w.as_path()], &format!("{case} {stem}"), &mut lines);
        }
    }
    // The two builds of one project split together share one runtime wheel.
    let slimdemo: Vec<&Path> = wheels
        .iter()
        .filter(|w| {
            w.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("slimdemo-"))
        })
        .map(|w| w.as_path())
        .collect();
    assert_eq!(slimdemo.len(), 2, "the two slimdemo fixture wheels");
    run_case(
        &["split", "--unhash", "-w", "out"],
        &slimdemo,
        "split-unhash slimdemo-both",
        &mut lines,
    );
    lines.push(String::new());
    lines.join("\n")
}

#[test]
fn outputs_match_the_pinned_hashes() {
    let got = current();
    let path = root().join(LIST);
    if std::env::var_os("WHEELSLIM_GOLDEN_UPDATE").is_some() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir tests/golden");
        std::fs::write(&path, &got).expect("write the golden list");
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{LIST}: {e}; create it with scripts/golden.sh --update"));
    if got != want {
        let want_lines: std::collections::BTreeSet<&str> = want.lines().collect();
        let got_lines: std::collections::BTreeSet<&str> = got.lines().collect();
        let mut diff = String::new();
        for l in want_lines.difference(&got_lines) {
            let _ = writeln!(diff, "- {l}");
        }
        for l in got_lines.difference(&want_lines) {
            let _ = writeln!(diff, "+ {l}");
        }
        panic!(
            "outputs differ from {LIST} (- pinned, + now):\n{diff}\nIf the change is meant, \
             run scripts/golden.sh --update and commit the list with the change."
        );
    }
}

/// The hashes are only an oracle if a second run writes the same bytes, at another `-j` too.
#[test]
fn a_second_run_at_another_job_count_writes_the_same_bytes() {
    let wheels = fixture_wheels();
    let slimdemo = wheels
        .iter()
        .find(|w| w.to_string_lossy().contains("manylinux2014"))
        .expect("slimdemo fixture");
    let mut a = Vec::new();
    let mut b = Vec::new();
    run_case(
        &["-j", "1", "split", "--unhash", "-w", "out"],
        &[slimdemo],
        "k",
        &mut a,
    );
    run_case(
        &["-j", "4", "split", "--unhash", "-w", "out"],
        &[slimdemo],
        "k",
        &mut b,
    );
    assert!(a.len() > 4, "split wrote no outputs: {a:?}");
    assert_eq!(a, b);
}
