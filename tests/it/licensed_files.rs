//! NVIDIA programs and static archives in wheels (issue 10 item 15): `audit` flags each with
//! its licence (text and JSON), and `split` leaves them in place and says so in its summary.

use std::path::Path;

use wheelslim::profile::{Profile, ProfileSet};

use crate::common::*;

/// `(rule, name)` lines of fixtures/vendor-names/nvidia-files.txt.
fn listed() -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(root().join("fixtures/vendor-names/nvidia-files.txt")).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (r, n) = l.split_once(' ').unwrap();
            (r.to_string(), n.trim().to_string())
        })
        .collect()
}

#[test]
fn listed_names_hit_their_rule_and_every_pattern_is_listed() {
    let set = ProfileSet::built_in();
    let names = listed();
    for (rule, name) in &names {
        let hit = set.match_file(name);
        if rule == "-" {
            assert!(hit.is_none(), "{name} should match no file rule");
            continue;
        }
        let hit = hit.unwrap_or_else(|| panic!("{name} matches no file rule"));
        assert_eq!(&format!("{}/{}", hit.profile.name, hit.rule.name), rule);
        assert!(hit.rule.license.as_deref().unwrap().contains("NVIDIA"));
    }
    let tools = Profile::built_in("nvidia-tools").unwrap();
    for r in &tools.files {
        for p in &r.patterns {
            assert!(
                names.iter().any(|(_, n)| n == p),
                "pattern {p} of {} is in no list",
                r.name
            );
        }
    }
    // A project's own programs and archives are not NVIDIA's.
    for own in [
        "libfoo_static.a",
        "mytool",
        "ptxas.py",
        "libcudart.so.12",
        "nvcc.profile",
    ] {
        assert!(set.match_file(own).is_none(), "{own}");
    }
}

fn program(dir: &Path) -> Vec<u8> {
    let src = dir.join("main.c");
    std::fs::write(&src, "int main(void) { return 0; }\n").unwrap();
    let out = dir.join("prog");
    let o = std::process::Command::new(crate::tools::need("gcc", "gcc"))
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::read(out).unwrap()
}

#[test]
fn audit_flags_programs_and_archives_and_split_keeps_them_with_a_note() {
    let tmp = tempdir();
    let exe = program(tmp.path());
    let archive = b"!<arch>\n".to_vec();
    let whl = make_wheel(
        tmp.path(),
        "manylinux_2_17_x86_64",
        &[
            ("demo/bin/ptxas", &exe),
            ("demo/bin/nvdisasm", &exe),
            // A text file named like a program is not one.
            ("demo/bin/cuobjdump", b"#!/bin/sh\necho not the tool\n"),
            ("demo/lib/libcudart_static.a", &archive),
            ("demo/lib/libdemo_static.a", &archive),
        ],
    );
    let p = whl.to_str().unwrap();
    let j = wheelslim(&["audit", "--json", p]);
    assert_eq!(code(&j), 0, "{}", stderr(&j));
    let j: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    let files = j["wheels"][0]["licensed_files"].as_array().unwrap();
    let mut members: Vec<(&str, &str)> = files
        .iter()
        .map(|f| (f["member"].as_str().unwrap(), f["kind"].as_str().unwrap()))
        .collect();
    members.sort();
    assert_eq!(
        members,
        [
            ("demo/bin/nvdisasm", "executable"),
            ("demo/bin/ptxas", "executable"),
            ("demo/lib/libcudart_static.a", "static-archive"),
        ]
    );
    for f in files {
        assert_eq!(f["license"], "LicenseRef-NVIDIA-Proprietary", "{f:#}");
        assert!(f["license_note"].as_str().unwrap().contains("EULA"));
    }
    let text = stdout(&wheelslim(&["audit", p]));
    assert!(
        text.contains("Vendor programs and static archives"),
        "{text}"
    );
    let line = text
        .lines()
        .find(|l| l.contains("demo/bin/ptxas") && l.contains("nvidia-tools/"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("LicenseRef-NVIDIA-Proprietary"), "{line}");

    // split leaves them in place: in the summary, in --json and in the wheel itself.
    let out = tmp.path().join("out");
    let o = wheelslim(&["split", p, "-w", out.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let summary = stdout(&o);
    for m in [
        "demo/bin/ptxas",
        "demo/bin/nvdisasm",
        "demo/lib/libcudart_static.a",
    ] {
        assert!(
            summary
                .lines()
                .any(|l| l.contains("keep") && l.contains(m) && l.contains("licence")),
            "{m}: {summary}"
        );
    }
    assert!(
        stderr(&o).contains("kept in place (nvidia-tools/compiler"),
        "{}",
        stderr(&o)
    );
    let zip = read_zip(&out.join(whl.file_name().unwrap()));
    for m in [
        "demo/bin/ptxas",
        "demo/lib/libcudart_static.a",
        "demo/bin/cuobjdump",
    ] {
        assert!(zip.iter().any(|(n, _)| n == m), "{m} left the wheel");
    }
    let j = wheelslim(&[
        "split",
        "--json",
        "--dry-run",
        p,
        "-w",
        out.to_str().unwrap(),
    ]);
    let j: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    assert_eq!(
        j["plan"]["mains"][0]["licensed"].as_array().unwrap().len(),
        3,
        "{j:#}"
    );
}
