//! `wheelslim verify` end to end.

use crate::common::*;

#[test]
fn auditwheel_output_verifies() {
    let out = wheelslim(&["verify", fixture(SLIMDEMO).to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("3 ELF object(s) checked: OK"));
}

#[test]
fn unresolvable_needed_fails_with_exit_1() {
    // The pre-repair wheel needs libcudart.so.12 and bundles nothing.
    let w = fixture("wheels/slimdemo-0.1.0-cp38-abi3-linux_x86_64.whl");
    let out = wheelslim(&["verify", "--json", w.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema"], "wheelslim.verify/1");
    assert_eq!(v["ok"], false);
    let needed: Vec<&str> = v["unresolved"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["needed"].as_str().unwrap())
        .collect();
    assert!(
        needed.contains(&"libcudart.so.12") && needed.contains(&"libcublas.so.12"),
        "{needed:?}"
    );
}
