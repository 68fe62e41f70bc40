//! Reports stay readable on wheels of thousands of loose device files (issue 10 item 19):
//! `audit` sums them per folder unless `-v` is given; `--json` keeps every file.

use crate::common::*;

fn many_cubins(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
    let cubin = std::fs::read(fixture("cuda/loose/fix_sm80.cubin")).unwrap();
    let names: Vec<String> = (0..n)
        .map(|i| format!("demo/kernels/k{i:05}_sm80.cubin"))
        .chain((0..n / 2).map(|i| format!("demo/more/m{i:05}_sm80.cubin")))
        .collect();
    let files: Vec<(&str, &[u8])> = names
        .iter()
        .map(|n| (n.as_str(), cubin.as_slice()))
        .collect();
    make_wheel(dir, "manylinux_2_17_x86_64", &files)
}

#[test]
fn audit_of_thousands_of_loose_cubins_is_bounded() {
    let tmp = tempdir();
    let whl = many_cubins(tmp.path(), 2000);
    let p = whl.to_str().unwrap();
    let o = wheelslim(&["audit", p]);
    assert!(code(&o) <= 1, "{}", stderr(&o));
    let text = stdout(&o);
    let lines = text.lines().count();
    assert!(lines < 80, "{lines} lines:\n{text}");
    assert!(text.contains("demo/kernels/ (2000 loose files)"), "{text}");
    assert!(text.contains("demo/more/ (1000 loose files)"), "{text}");
    // The group's row sums its files' entries.
    let row = text
        .lines()
        .skip_while(|l| !l.contains("demo/kernels/ (2000 loose files)"))
        .find(|l| l.trim_start().starts_with("sm_80"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(row.split_whitespace().any(|w| w == "2000"), "{row}");

    let v = wheelslim(&["audit", "-v", p]);
    let full = stdout(&v);
    for name in [
        "demo/kernels/k00000_sm80.cubin",
        "demo/kernels/k01999_sm80.cubin",
        "demo/more/m00999_sm80.cubin",
    ] {
        assert!(full.contains(name), "{name} missing under -v");
    }
    assert!(full.lines().count() > 3000, "{}", full.lines().count());

    let j = wheelslim(&["audit", "--json", p]);
    let report: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    let device = report["wheels"][0]["device_code"].as_array().unwrap();
    assert_eq!(device.len(), 3000);
}

#[test]
fn trim_of_thousands_of_loose_fatbins_is_bounded() {
    let tmp = tempdir();
    let fatbin = std::fs::read(fixture("cuda/loose/fix_sm80_sm90_compute90.fatbin")).unwrap();
    let names: Vec<String> = (0..2000)
        .map(|i| format!("demo/kernels/k{i:05}.fatbin"))
        .collect();
    let files: Vec<(&str, &[u8])> = names
        .iter()
        .map(|n| (n.as_str(), fatbin.as_slice()))
        .collect();
    let whl = make_wheel(tmp.path(), "manylinux_2_17_x86_64", &files);
    let p = whl.to_str().unwrap();
    let out = tmp.path().join("out");
    let o = wheelslim(&["trim", "--sm", "90", p, "-w", out.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.lines().count() < 200,
        "{} lines:\n{text}",
        text.lines().count()
    );
    assert!(text.contains("… and 1980 more members:"), "{text}");
    let out2 = tmp.path().join("out2");
    let v = wheelslim(&["trim", "-v", "--sm", "90", p, "-w", out2.to_str().unwrap()]);
    assert_eq!(code(&v), 0, "{}", stderr(&v));
    let full = stdout(&v);
    assert!(full.contains("demo/kernels/k01999.fatbin"), "{full}");
    assert!(!full.contains("more members"), "{full}");
}
