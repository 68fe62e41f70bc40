//! `split --upstream` pins: one line per package, each a PEP 508 requirement that a release in the
//! committed snapshot of the index (profiles/upstream-releases.toml) satisfies, with the lower
//! bound taken from what the library really is (issue 10 item 13).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common::*;
use crate::profiles::{so, wheel};

/// package → its releases, as the snapshot lists them (read here with our own parsing).
fn snapshot() -> BTreeMap<String, Vec<String>> {
    let path = root().join("profiles/upstream-releases.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let value: toml::Value = toml::from_str(&text).unwrap();
    value["package"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let versions = p["versions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            (p["name"].as_str().unwrap().to_string(), versions)
        })
        .collect()
}

/// A PEP 440 release number; `None` for pre-releases and the like (never selected by a range).
fn release(v: &str) -> Option<Vec<u64>> {
    v.split('.').map(|p| p.parse().ok()).collect()
}

fn compare(a: &[u64], b: &[u64]) -> std::cmp::Ordering {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| a.get(i).unwrap_or(&0).cmp(b.get(i).unwrap_or(&0)))
        .find(|o| o.is_ne())
        .unwrap_or(std::cmp::Ordering::Equal)
}

/// Parses `name[spec,spec...]` (PEP 508 without extras or markers, which wheelslim never
/// writes): the name, then (operator, version) pairs. Panics with the line when it does not parse.
fn parse(req: &str) -> (String, Vec<(String, Vec<u64>)>) {
    let end = req
        .find(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
        .unwrap_or(req.len());
    let name = &req[..end];
    assert!(
        !name.is_empty()
            && name.chars().next().unwrap().is_ascii_alphanumeric()
            && name.chars().last().unwrap().is_ascii_alphanumeric(),
        "`{req}`: not a PEP 508 name"
    );
    let rest = req[end..].trim();
    let mut specs = Vec::new();
    if !rest.is_empty() {
        for clause in rest.split(',') {
            let clause = clause.trim();
            let op_len = clause
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or_else(|| panic!("`{req}`: clause `{clause}` has no version"));
            let (op, version) = clause.split_at(op_len);
            let op = op.trim();
            assert!(
                [">=", "<=", "<", ">", "==", "!=", "~="].contains(&op),
                "`{req}`: operator `{op}`"
            );
            let v = release(version.trim())
                .unwrap_or_else(|| panic!("`{req}`: version `{version}` is not a release number"));
            specs.push((op.to_string(), v));
        }
    }
    (name.to_string(), specs)
}

fn satisfies(v: &[u64], specs: &[(String, Vec<u64>)]) -> bool {
    specs.iter().all(|(op, s)| {
        let o = compare(v, s);
        match op.as_str() {
            ">=" => o.is_ge(),
            "<=" => o.is_le(),
            ">" => o.is_gt(),
            "<" => o.is_lt(),
            "==" => o.is_eq(),
            "!=" => o.is_ne(),
            // ~=X.Y means >=X.Y, ==X.*
            _ => o.is_ge() && v.len() >= s.len() - 1 && v[..s.len() - 1] == s[..s.len() - 1],
        }
    })
}

/// Every requirement line `split --upstream --dry-run` plans for a wheel.
fn pins(input: &Path) -> Vec<String> {
    let o = wheelslim(&[
        "split",
        "--json",
        "--dry-run",
        "--upstream",
        "--move-unlinked",
        input.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}: {}", input.display(), stderr(&o));
    let plan = &json(&o)["plan"];
    let mut out = Vec::new();
    for part in ["mains", "runtime_sets"] {
        for m in plan[part].as_array().unwrap() {
            let mut names = Vec::new();
            for r in m["requirements"].as_array().unwrap() {
                let r = r.as_str().unwrap().to_string();
                let name = parse(&r).0;
                assert!(!names.contains(&name), "two lines for {name}: {m}");
                names.push(name);
                out.push(r);
            }
        }
    }
    out
}

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

/// The CUPTI case: a framework bundles the toolkit's files under their own names
/// (`libcupti.so.2025.1.1`, an auditwheel-renamed 12.9 cudart) beside CUPTI's unversioned helpers.
fn framework(dir: &Path) -> PathBuf {
    let mut files = Vec::new();
    let libs: [(&str, &str); 4] = [
        ("libcupti.so.2025.1.1", "libcupti.so.12"),
        ("libnvperf_host.so", "libnvperf_host.so"),
        (
            "libcudart-53d54daa.so.12.9.79",
            "libcudart-53d54daa.so.12.9.79",
        ),
        ("libcublas.so.12", "libcublas.so.12"),
    ];
    for (file, soname) in libs {
        let data = so(dir, soname, &[]);
        files.push((format!("fw/lib/{file}"), data));
    }
    let ext = so(
        dir,
        "_fw.so",
        &[
            "libcupti.so.12",
            "libnvperf_host.so",
            "libcudart-53d54daa.so.12.9.79",
            "libcublas.so.12",
        ],
    );
    files.push(("fw/_fw.so".into(), ext));
    wheel(dir, "fw", "1.0", &files)
}

#[test]
fn pins_come_from_the_library_and_one_line_per_package() {
    let tmp = tempdir();
    let mut got = pins(&framework(tmp.path()));
    got.sort();
    assert_eq!(
        got,
        [
            "nvidia-cublas-cu12>=12,<13",
            "nvidia-cuda-cupti-cu12>=12.8,<13",
            "nvidia-cuda-runtime-cu12>=12.9,<13",
        ]
    );
}

#[test]
fn every_pin_parses_and_a_release_satisfies_it() {
    let tmp = tempdir();
    let index = snapshot();
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(root().join("fixtures/wheels"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
        .collect();
    inputs.sort();
    inputs.push(framework(tmp.path()));
    // One wheel per CUDA major with every vendor library the profiles know, under its real name.
    for (cuda, names) in [
        ("11", "cuda11"),
        ("12", "cuda12"),
        ("13", "cuda13"),
        ("cudnn", "cudnn"),
        ("nccl", "nccl"),
    ] {
        let d = tmp.path().join(cuda);
        std::fs::create_dir_all(&d).unwrap();
        let list = std::fs::read_to_string(root().join("fixtures/vendor-names/nvidia-wheels.txt"))
            .unwrap();
        let mut libs: Vec<String> = list
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(rule, n)| {
                rule.split('/').next() == Some(names) && n.contains(".so") && !rule.contains('~')
            })
            .map(|(_, n)| n.trim().to_string())
            .collect();
        libs.sort();
        libs.dedup();
        if names != "cuda11" && names != "cuda12" && names != "cuda13" {
            // cuDNN and NCCL wheels say their CUDA major through cudart.
            libs.push("libcudart.so.12".into());
        }
        let mut files = Vec::new();
        for n in &libs {
            files.push((format!("v/lib/{n}"), so(&d, n, &[])));
        }
        let refs: Vec<&str> = libs.iter().map(String::as_str).collect();
        files.push(("v/_v.so".into(), so(&d, "_v.so", &refs)));
        inputs.push(wheel(&d, &format!("v{cuda}"), "1.0", &files));
    }
    let mut checked = 0;
    for input in &inputs {
        for req in pins(input) {
            let (name, specs) = parse(&req);
            let releases = index.get(&name).unwrap_or_else(|| {
                panic!(
                    "{}: `{req}`: {name} is not in the snapshot",
                    input.display()
                )
            });
            assert!(
                releases
                    .iter()
                    .filter_map(|v| release(v))
                    .any(|v| satisfies(&v, &specs)),
                "{}: no release of {name} satisfies `{req}`",
                input.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} pins checked");
}
