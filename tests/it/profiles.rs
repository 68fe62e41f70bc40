//! Profiles against real vendor file lists, and what `split`/`audit` do with vendor libraries
//! that must stay: a vendor's own wheel (`nvidia-curand-cu12`), libraries nothing links (loaded
//! by path), and look-alikes a project builds itself.

use std::path::{Path, PathBuf};
use std::process::Command;

use wheelslim::profile::{Profile, ProfileSet};

use crate::common::*;

/// `(rule, name)` lines of a file under fixtures/vendor-names/.
fn names(file: &str) -> Vec<(String, String)> {
    let path = root().join("fixtures/vendor-names").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut it = l.split_whitespace();
            let (Some(rule), Some(name), None) = (it.next(), it.next(), it.next()) else {
                panic!("{file}: bad line `{l}`");
            };
            (rule.to_string(), name.to_string())
        })
        .collect()
}

fn vendor_names() -> Vec<(String, String)> {
    let mut all = names("nvidia-wheels.txt");
    all.extend(names("linked.txt"));
    all.extend(names("documented.txt"));
    all
}

#[test]
fn real_vendor_names_match_their_rule() {
    let set = ProfileSet::built_in();
    let mut checked = 0;
    for (rule, name) in vendor_names() {
        if rule == "-" {
            let hits: Vec<String> = set
                .all_matches(&name, None)
                .map(|m| format!("{}/{}", m.profile.name, m.rule.name))
                .collect();
            assert!(
                hits.is_empty(),
                "{name} is no profile's, but {hits:?} match it"
            );
            continue;
        }
        let (profile, rule) = rule.split_once('/').unwrap();
        let (rule, companion) = match rule.strip_suffix('~') {
            Some(r) => (r, true),
            None => (rule, false),
        };
        let p = Profile::built_in(profile).unwrap();
        if companion {
            assert!(
                set.all_matches(&name, None).next().is_none(),
                "{name} must not match on its own"
            );
            let r = p.libraries.iter().find(|r| r.name == rule).unwrap();
            assert!(r.matches_companion(&name, None), "{profile}/{rule}: {name}");
        } else {
            let m = set
                .match_library(&name, None, p.cuda)
                .unwrap_or_else(|| panic!("{name}: no profile matches it (want {profile}/{rule})"));
            assert_eq!(
                (m.profile.name.as_str(), m.rule.name.as_str()),
                (profile, rule),
                "{name}"
            );
        }
        checked += 1;
    }
    assert!(checked > 250, "only {checked} names checked");
}

/// Every pattern of every built-in profile is there for a name a vendor really ships: a pattern
/// nothing in the lists needs is a pattern that can only hit someone else's library.
#[test]
fn every_pattern_matches_a_listed_vendor_name() {
    let listed = vendor_names();
    let mut missing = Vec::new();
    for p in Profile::all_built_in() {
        for r in &p.libraries {
            let key = format!("{}/{}", p.name, r.name);
            for (companion, patterns) in [(false, &r.patterns), (true, &r.companions)] {
                for (i, pat) in patterns.iter().enumerate() {
                    // A name listed for a rule of the same name in any profile counts (the
                    // driver rule is the same in every CUDA profile), if the pattern matches it.
                    let want = format!("/{}{}", r.name, if companion { "~" } else { "" });
                    let hit = listed.iter().any(|(k, n)| {
                        k.ends_with(&want) && r.pattern_hits(n, companion).contains(&i)
                    });
                    if !hit {
                        missing.push(format!("{key}: `{pat}`"));
                    }
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "patterns no listed vendor name needs:\n{}",
        missing.join("\n")
    );
}

#[test]
fn project_built_look_alikes_match_no_profile() {
    let set = ProfileSet::built_in();
    let lookalikes =
        std::fs::read_to_string(root().join("fixtures/vendor-names/lookalikes.txt")).unwrap();
    let mut n = 0;
    for name in lookalikes
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let hits: Vec<String> = set
            .all_matches(name, None)
            .map(|m| {
                format!(
                    "{}/{} ({})",
                    m.profile.name,
                    m.rule.name,
                    m.rule.action.as_str()
                )
            })
            .collect();
        assert!(hits.is_empty(), "project library {name} matched {hits:?}");
        // auditwheel's renamed copy must not match either.
        let hashed = name.replacen(".so", "-0123abcd.so", 1);
        assert!(set.all_matches(&hashed, None).next().is_none(), "{hashed}");
        n += 1;
    }
    assert!(n > 150, "only {n} look-alikes");
}

#[test]
fn no_upstream_package_keeps_a_placeholder() {
    for p in Profile::all_built_in() {
        for r in &p.libraries {
            let Some(up) = &r.upstream else { continue };
            for cuda in [None, Some(10), Some(11), Some(12), Some(13)] {
                if let Some(pkg) = up.package_for(cuda) {
                    assert!(!pkg.contains('{'), "{}/{}: {pkg}", p.name, r.name);
                }
            }
        }
    }
    let cudnn = Profile::built_in("cudnn").unwrap();
    let up = cudnn.libraries[0].upstream.as_ref().unwrap();
    assert_eq!(
        up.package_for(Some(12)).as_deref(),
        Some("nvidia-cudnn-cu12")
    );
    assert_eq!(
        up.package_for(Some(10)),
        None,
        "there is no nvidia-cudnn-cu10"
    );
    assert!(up.is_package("nvidia_cudnn_cu11") && !up.is_package("nvidia-cudnn-cu"));
}

/// AMD's ROCm SDK wheels are not on PyPI (only placeholders of a few hundred bytes there), so
/// the rocm profile must name no upstream package: a main wheel on PyPI cannot require one.
#[test]
fn rocm_libraries_have_no_upstream_package_on_pypi() {
    let rocm = Profile::built_in("rocm").unwrap();
    assert!(!rocm.libraries.is_empty());
    for r in &rocm.libraries {
        assert!(
            r.upstream.is_none() && r.action != wheelslim::profile::Action::Upstream,
            "rocm/{}: upstream {:?}",
            r.name,
            r.upstream
        );
    }
    assert!(
        rocm.text.contains("rocm-sdk-core") && rocm.text.contains("placeholder"),
        "the profile says why it has no upstream"
    );
}

// ---- wheels made of small real shared objects, built here with the C compiler ----

/// Builds a tiny x86_64 shared object named `soname` whose DT_NEEDED are the given libraries'
/// SONAMEs (they must have been built first, in `dir`).
pub(crate) fn so(dir: &Path, soname: &str, needed: &[&str]) -> Vec<u8> {
    let src = dir.join("x.c");
    std::fs::write(&src, format!("int fixture_{} = 1;\n", soname.len())).unwrap();
    let out = dir.join(soname);
    let mut cmd = Command::new(crate::tools::need("gcc", "gcc"));
    cmd.args(["-shared", "-nostdlib", "-fPIC", "-o"])
        .arg(&out)
        .arg(format!("-Wl,-soname,{soname}"))
        .arg("-Wl,--no-as-needed")
        .arg(&src);
    for n in needed {
        cmd.arg(dir.join(n));
    }
    run(&mut cmd);
    std::fs::read(&out).unwrap()
}

/// Writes a wheel of project `name` (dist-info and file name spelled as pip does).
pub(crate) fn wheel(dir: &Path, name: &str, version: &str, files: &[(String, Vec<u8>)]) -> PathBuf {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    use std::io::Write;
    let dist = name.replace('-', "_");
    let tag = "py3-none-manylinux2014_x86_64";
    let path = dir.join(format!("{dist}-{version}-{tag}.whl"));
    let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default());
    let info = format!("{dist}-{version}.dist-info");
    let mut all = files.to_vec();
    all.push((
        format!("{info}/METADATA"),
        format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n").into_bytes(),
    ));
    all.push((
        format!("{info}/WHEEL"),
        format!("Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: {tag}\n")
            .into_bytes(),
    ));
    let mut record = String::new();
    for (n, d) in &all {
        z.start_file(n.as_str(), opts).unwrap();
        z.write_all(d).unwrap();
        let h = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(d));
        record.push_str(&format!("{n},sha256={h},{}\n", d.len()));
    }
    record.push_str(&format!("{info}/RECORD,,\n"));
    z.start_file(format!("{info}/RECORD"), opts).unwrap();
    z.write_all(record.as_bytes()).unwrap();
    z.finish().unwrap();
    path
}

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}):\n{}\n{}", stdout(o), stderr(o)))
}

fn outputs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn member<'a>(zip: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    zip.iter()
        .find(|(n, _)| n == name)
        .map(|(_, d)| d.as_slice())
}

fn metadata(zip: &[(String, Vec<u8>)]) -> String {
    zip.iter()
        .find(|(n, _)| n.ends_with(".dist-info/METADATA"))
        .map(|(_, d)| String::from_utf8(d.clone()).unwrap())
        .unwrap()
}

/// NVIDIA's own component wheels keep their library, with and without `--upstream`, and never
/// require themselves.
#[test]
fn a_vendors_own_wheel_keeps_its_library() {
    let tmp = tempdir();
    for (project, version, folder, soname) in [
        (
            "nvidia-curand-cu12",
            "10.3.7.77",
            "nvidia/curand/lib",
            "libcurand.so.10",
        ),
        (
            "nvidia-cuda-runtime-cu12",
            "12.8.90",
            "nvidia/cuda_runtime/lib",
            "libcudart.so.12",
        ),
        (
            "nvidia-nccl-cu12",
            "2.27.3",
            "nvidia/nccl/lib",
            "libnccl.so.2",
        ),
        (
            "nvidia-cublas",
            "13.1.0.3",
            "nvidia/cu13/lib",
            "libcublas.so.13",
        ),
    ] {
        let work = tmp.path().join(project);
        std::fs::create_dir_all(&work).unwrap();
        let lib = so(&work, soname, &[]);
        let member_name = format!("{folder}/{soname}");
        let input = wheel(
            &work,
            project,
            version,
            &[(member_name.clone(), lib.clone())],
        );
        for upstream in [false, true] {
            let out = work.join(format!("out-{upstream}"));
            let mut args = vec!["split", "--json", input.to_str().unwrap(), "-w"];
            args.push(out.to_str().unwrap());
            if upstream {
                args.push("--upstream");
            }
            let o = wheelslim(&args);
            assert_eq!(code(&o), 0, "{project}: {}{}", stdout(&o), stderr(&o));
            let report = json(&o);
            let main = &report["plan"]["mains"][0];
            assert_eq!(main["removed"], serde_json::json!([]), "{project}: {main}");
            assert_eq!(main["kept"][0]["member"], member_name.as_str(), "{main}");
            assert_eq!(main["kept"][0]["fate"], "own-package", "{main}");
            assert_eq!(report["plan"]["runtime_sets"], serde_json::json!([]));
            // Only the main wheel is written, with the library byte for byte.
            let written = outputs(&out);
            assert_eq!(written, [input.file_name().unwrap().to_str().unwrap()]);
            let zip = read_zip(&out.join(&written[0]));
            assert_eq!(
                member(&zip, &member_name),
                Some(lib.as_slice()),
                "{project}"
            );
            let meta = metadata(&zip);
            assert!(!meta.contains("Requires-Dist"), "{project}: {meta}");
        }
        // The people's summary says so.
        let o = wheelslim(&["split", "--dry-run", input.to_str().unwrap()]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert!(
            stdout(&o).contains(&format!("keep     {member_name}"))
                && stdout(&o).contains("own upstream package"),
            "{}",
            stdout(&o)
        );
    }
}

/// The profiler case: CUPTI that Python opens by path stays where it is (audit and split say
/// so); NVRTC's builtins, which libnvrtc opens itself, leave with libnvrtc; a project's own
/// libcheckpoint.so is not CUPTI's.
fn profiler_wheel(dir: &Path) -> PathBuf {
    let libs = [
        ("libcudart.so.12", vec![]),
        ("libnvrtc.so.12", vec![]),
        ("libnvrtc-builtins.so.12.8", vec![]),
        ("libcupti.so.12", vec![]),
        ("libnvperf_host.so", vec![]),
        ("libcheckpoint.so", vec![]),
    ];
    let mut files = Vec::new();
    for (n, needed) in &libs {
        let data = so(dir, n, needed);
        let folder = if n.contains("cupti") || n.contains("nvperf") || *n == "libcheckpoint.so" {
            "profdemo/cupti"
        } else {
            "profdemo/lib"
        };
        files.push((format!("{folder}/{n}"), data));
    }
    // The project's own checkpoint library, linked by its extension, in another folder.
    std::fs::create_dir_all(dir.join("own")).unwrap();
    let own = so(&dir.join("own"), "libcheckpoint.so", &[]);
    files.push(("profdemo/ckpt/libcheckpoint.so".into(), own));
    let ext = {
        let src = dir.join("x.c");
        std::fs::write(&src, "int ext = 1;\n").unwrap();
        let out = dir.join("_ext.so");
        run(Command::new(crate::tools::need("gcc", "gcc"))
            .args(["-shared", "-nostdlib", "-fPIC", "-o"])
            .arg(&out)
            .arg("-Wl,--no-as-needed")
            .arg(&src)
            .arg(dir.join("libcudart.so.12"))
            .arg(dir.join("libnvrtc.so.12"))
            .arg(dir.join("own/libcheckpoint.so"))
            .arg("-Wl,-rpath,$ORIGIN/lib:$ORIGIN/ckpt"));
        std::fs::read(&out).unwrap()
    };
    files.push(("profdemo/_ext.so".into(), ext));
    files.sort();
    wheel(dir, "profdemo", "1.0", &files)
}

#[test]
fn unlinked_libraries_stay_unless_asked() {
    let tmp = tempdir();
    let input = profiler_wheel(tmp.path());
    let inp = input.to_str().unwrap();

    // audit says what split will do.
    let o = wheelslim(&["audit", "--json", inp]);
    let report = json(&o);
    let vendor = report["wheels"][0]["vendor_libraries"]
        .as_array()
        .unwrap()
        .clone();
    let fate = |m: &str| {
        vendor
            .iter()
            .find(|v| v["member"] == m)
            .map(|v| v["split"]["fate"].as_str().unwrap().to_string())
    };
    assert_eq!(
        fate("profdemo/cupti/libcupti.so.12").as_deref(),
        Some("unlinked")
    );
    assert_eq!(
        fate("profdemo/cupti/libcheckpoint.so").as_deref(),
        Some("unlinked")
    );
    assert_eq!(
        fate("profdemo/lib/libnvrtc.so.12").as_deref(),
        Some("leaves")
    );
    assert_eq!(
        fate("profdemo/lib/libnvrtc-builtins.so.12.8").as_deref(),
        Some("leaves-with")
    );
    assert_eq!(fate("profdemo/ckpt/libcheckpoint.so"), None, "{vendor:?}");
    let text = wheelslim(&["audit", inp]);
    assert!(
        stdout(&text).contains("stays: no ELF object in the wheel links it"),
        "{}",
        stdout(&text)
    );

    // split keeps CUPTI, moves the rest.
    let out = tmp.path().join("out");
    let o = wheelslim(&["split", "--json", inp, "-w", out.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let report = json(&o);
    let main = &report["plan"]["mains"][0];
    let mut kept: Vec<&str> = main["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["member"].as_str().unwrap())
        .collect();
    kept.sort();
    assert_eq!(
        kept,
        [
            "profdemo/cupti/libcheckpoint.so",
            "profdemo/cupti/libcupti.so.12",
            "profdemo/cupti/libnvperf_host.so"
        ]
    );
    let moved: Vec<&str> = main["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["member"].as_str().unwrap())
        .collect();
    assert_eq!(
        moved,
        [
            "profdemo/lib/libcudart.so.12",
            "profdemo/lib/libnvrtc-builtins.so.12.8",
            "profdemo/lib/libnvrtc.so.12"
        ]
    );
    let zip = read_zip(&out.join(input.file_name().unwrap()));
    for m in kept.iter().chain(["profdemo/ckpt/libcheckpoint.so"].iter()) {
        assert!(member(&zip, m).is_some(), "{m} left the main wheel");
    }
    assert!(
        stderr(&o).contains("kept in place (cuda12/cupti)"),
        "{}",
        stderr(&o)
    );

    // --move-unlinked moves CUPTI too, its companion with it; the project's own stays.
    let out2 = tmp.path().join("out2");
    let o = wheelslim(&[
        "split",
        "--json",
        "--move-unlinked",
        inp,
        "-w",
        out2.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let report = json(&o);
    let main = &report["plan"]["mains"][0];
    assert_eq!(main["kept"], serde_json::json!([]), "{main}");
    assert_eq!(main["removed"].as_array().unwrap().len(), 6, "{main}");
    let zip = read_zip(&out2.join(input.file_name().unwrap()));
    assert!(member(&zip, "profdemo/ckpt/libcheckpoint.so").is_some());
    assert!(member(&zip, "profdemo/cupti/libcheckpoint.so").is_none());
}

/// What a forbid rule removes is in the summary (text and JSON), not only in a warning; a
/// framework's own libraries with CANN-like names stay.
#[test]
fn forbidden_removals_are_listed_and_look_alikes_stay() {
    let tmp = tempdir();
    let d = tmp.path();
    let mut files = Vec::new();
    for n in [
        "libhccl.so",
        "libhccl_plugin.so",
        "libcust_opapi.so",
        "libcuda.so.1",
    ] {
        files.push((format!("fw/lib/{n}"), so(d, n, &[])));
    }
    let ext = so(
        d,
        "libfw_core.so",
        &[
            "libhccl.so",
            "libhccl_plugin.so",
            "libcust_opapi.so",
            "libcuda.so.1",
        ],
    );
    files.push(("fw/lib/libfw_core.so".into(), ext));
    let input = wheel(d, "fw", "2.0", &files);
    let out = d.join("out");
    let args = [
        "split",
        input.to_str().unwrap(),
        "-w",
        out.to_str().unwrap(),
    ];
    let o = wheelslim(&args);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = stdout(&o);
    for removed in ["fw/lib/libhccl.so", "fw/lib/libcuda.so.1"] {
        assert!(text.contains(&format!("remove   {removed} (")), "{text}");
    }
    let zip = read_zip(&out.join(input.file_name().unwrap()));
    assert!(member(&zip, "fw/lib/libhccl.so").is_none());
    assert!(member(&zip, "fw/lib/libcuda.so.1").is_none());
    assert!(member(&zip, "fw/lib/libhccl_plugin.so").is_some());
    assert!(member(&zip, "fw/lib/libcust_opapi.so").is_some());

    let o = wheelslim(&["split", "--json", "--dry-run", input.to_str().unwrap()]);
    let report = json(&o);
    let removed = report["plan"]["mains"][0]["removed"].as_array().unwrap();
    let mut forbidden: Vec<&str> = removed
        .iter()
        .filter(|r| r["to"] == "forbidden")
        .map(|r| r["member"].as_str().unwrap())
        .collect();
    forbidden.sort();
    assert_eq!(forbidden, ["fw/lib/libcuda.so.1", "fw/lib/libhccl.so"]);
    assert_eq!(removed.len(), 2, "{removed:?}");

    // `--keep` wins over a forbid rule, as asked, but says what that keeps.
    let kept = d.join("kept");
    let o = wheelslim(&[
        "split",
        input.to_str().unwrap(),
        "-w",
        kept.to_str().unwrap(),
        "--keep",
        "libcuda.so.1",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.lines().any(|l| l.starts_with("warning: ")
            && l.contains(
                "fw/lib/libcuda.so.1: --keep libcuda.so.1 keeps it in the main wheel, but"
            )
            && l.contains("forbids bundling it")),
        "{err}"
    );
    let zip = read_zip(&kept.join(input.file_name().unwrap()));
    assert!(member(&zip, "fw/lib/libcuda.so.1").is_some());
    assert!(member(&zip, "fw/lib/libhccl.so").is_none());
}

/// A CUDA 10.2 wheel has no upstream wheels: `--upstream` must not point it at `-cu12`
/// packages (it once required `nvidia-nvtx-cu12>=12,<13`); its libraries move instead. A CUDA
/// 11 wheel gets `-cu11` packages.
#[test]
fn old_cuda_wheels_get_their_own_profiles() {
    let tmp = tempdir();
    for (cuda, cudart, expect) in [
        ("10", "libcudart.so.10.2", None),
        ("11", "libcudart.so.11.0", Some("nvidia-nvtx-cu11>=11,<12")),
    ] {
        let d = tmp.path().join(cuda);
        std::fs::create_dir_all(&d).unwrap();
        let mut files = Vec::new();
        for n in [cudart, "libnvToolsExt.so.1"] {
            files.push((format!("old/lib/{n}"), so(&d, n, &[])));
        }
        let ext = so(&d, "libold_core.so", &[cudart, "libnvToolsExt.so.1"]);
        files.push(("old/lib/libold_core.so".into(), ext));
        let input = wheel(&d, "old", "1.0", &files);
        let o = wheelslim(&[
            "split",
            "--json",
            "--dry-run",
            "--upstream",
            input.to_str().unwrap(),
        ]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let report = json(&o);
        let main = &report["plan"]["mains"][0];
        let reqs: Vec<&str> = main["requirements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        assert!(
            reqs.iter().all(|r| !r.contains("cu12") && !r.contains('{')),
            "CUDA {cuda}: {reqs:?}"
        );
        match expect {
            None => {
                assert!(reqs.is_empty(), "{reqs:?}");
                let to: Vec<&str> = main["removed"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["to"].as_str().unwrap())
                    .collect();
                assert_eq!(to, ["runtime", "runtime"], "{main}");
            }
            Some(r) => assert!(reqs.contains(&r), "{reqs:?}"),
        }
    }
}
