//! The audit's device-code matrix against NVIDIA's own `cuobjdump` (installed by ./test.sh from
//! the PyPI wheel `nvidia-cuda-cuobjdump`).

use std::collections::BTreeMap;

use crate::common::*;

#[test]
fn device_matrix_matches_cuobjdump_on_every_cuda_fixture() {
    let tmp = tempdir();
    let w = fixture(CUDAFIX);
    let out = wheelslim(&["audit", "--json", w.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let device = report["wheels"][0]["device_code"].as_array().unwrap();
    let members = read_zip(&w);
    let mut checked = 0;
    for d in device {
        let member = d["member"].as_str().unwrap();
        if member.ends_with(".ptx") {
            continue; // cuobjdump does not read PTX text files
        }
        let data = &members.iter().find(|(n, _)| n == member).unwrap().1;
        let path = tmp.path().join(member.replace('/', "_"));
        std::fs::write(&path, data).unwrap();
        let theirs = cuobjdump_counts(&path);
        let mut ours = BTreeMap::new();
        for row in d["rows"].as_array().unwrap() {
            let arch = row["arch"].as_str().unwrap();
            // cuobjdump names family cubins without the `f`.
            let arch = arch
                .strip_suffix('f')
                .filter(|_| arch.starts_with("sm_"))
                .unwrap_or(arch);
            *ours.entry(arch.to_string()).or_insert(0) += row["entries"].as_u64().unwrap() as usize;
        }
        assert_eq!(ours, theirs, "{member}");
        // Stored bytes of the rows add up to no more than the sections.
        let rows: u64 = d["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["stored_bytes"].as_u64().unwrap())
            .sum();
        assert!(rows <= d["stored_bytes"].as_u64().unwrap(), "{member}");
        // A trim to a single architecture keeps less than everything.
        for t in d["trims"].as_array().unwrap() {
            assert!(
                t["kept_bytes"].as_u64().unwrap() < d["stored_bytes"].as_u64().unwrap(),
                "{member} {t}"
            );
        }
        checked += 1;
    }
    // Six shared-object variants plus the loose cubin and fatbin.
    assert_eq!(checked, 8);
}

#[test]
fn aarch64_and_ppc64le_fatbins_match_cuobjdump() {
    for (rel, platform) in [
        ("aarch64/libfix_a64.so", "manylinux_2_17_aarch64"),
        ("ppc64le/libfix_ppc64le.so", "manylinux_2_17_ppc64le"),
    ] {
        let tmp = tempdir();
        let wheel = make_wheel(
            tmp.path(),
            platform,
            &[("demo/libfix.so", &std::fs::read(fixture(rel)).unwrap())],
        );
        let out = wheelslim(&["audit", "--json", wheel.to_str().unwrap()]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let w = &report["wheels"][0];
        let elf = &w["elf_objects"][0];
        assert_eq!(elf["machine"], platform.rsplit('_').next().unwrap());
        let d = &w["device_code"][0];
        let mut ours = BTreeMap::new();
        for row in d["rows"].as_array().unwrap() {
            ours.insert(
                row["arch"].as_str().unwrap().to_string(),
                row["entries"].as_u64().unwrap() as usize,
            );
        }
        assert_eq!(ours, cuobjdump_counts(&fixture(rel)), "{rel}");
        if platform.contains("aarch64") {
            assert_eq!(elf["load_align"], 0x10000);
        }
    }
}

#[test]
fn hip_bundles_are_listed_per_target() {
    let out = wheelslim(&["audit", "--json", fixture(HIPFIX).to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let device = report["wheels"][0]["device_code"].as_array().unwrap();
    for lib in ["hipfix/libhipfix.so", "hipfix/libhipfix_ccob.so"] {
        let d = device.iter().find(|d| d["member"] == lib).unwrap();
        assert_eq!(d["kind"], "hip");
        let archs: Vec<&str> = d["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["arch"].as_str().unwrap())
            .collect();
        assert_eq!(archs, ["gfx90a", "gfx942", "gfx1100", "host"], "{lib}");
        assert_eq!(d["trims"].as_array().unwrap().len(), 3);
    }
}
