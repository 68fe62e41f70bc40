//! One set of size rules for `split`, its `--dry-run`, `--json` and `trim` (issue 10 item 10).

use crate::common::*;

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

/// A dry run fails exactly as the real run would when a library is too big even alone.
#[test]
fn dry_run_fails_like_the_real_run_on_size() {
    let tmp = tempdir();
    let out = tmp.path().join("out");
    let w = fixture(SLIMDEMO);
    let args = ["split", s(&w), "-w", s(&out), "--max-size", "200KiB"];
    let real = wheelslim(&args);
    let mut dry_args = args.to_vec();
    dry_args.push("--dry-run");
    let dry = wheelslim(&dry_args);
    assert_eq!(code(&real), 2, "{}", stderr(&real));
    assert_eq!(code(&dry), 2, "{}", stderr(&dry));
    assert_eq!(stderr(&dry), stderr(&real));
    assert!(stderr(&dry).contains("cannot fit in a wheel even alone"));
    assert!(!out.exists() || files_in(&out).is_empty());
    // Under a limit with room, both succeed.
    let ok = wheelslim(&["split", s(&w), "-w", s(&out), "--dry-run"]);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
}

/// `split --json` prints a JSON document with the error on failure, and exits 2.
#[test]
fn split_json_reports_the_error() {
    let tmp = tempdir();
    let out = tmp.path().join("out");
    let w = fixture(SLIMDEMO);
    for dry in [false, true] {
        let mut args = vec![
            "--json",
            "split",
            s(&w),
            "-w",
            s(&out),
            "--max-size",
            "200KiB",
        ];
        if dry {
            args.push("--dry-run");
        }
        let o = wheelslim(&args);
        assert_eq!(code(&o), 2, "{}", stderr(&o));
        let v: serde_json::Value =
            serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)));
        assert_eq!(v["schema"], "wheelslim.split/1");
        assert_eq!(v["ok"], false);
        assert_eq!(v["dry_run"], dry);
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("slimdemo.libs/libcu"), "{msg}");
        assert!(msg.contains("even alone"), "{msg}");
        let hint = v["error"]["hint"].as_str().unwrap();
        assert!(hint.contains("MiB"), "{hint}");
    }
}

/// A host-only library: no `--sm` hint, but the limit to ask the index for, in MiB.
#[test]
fn no_trim_hint_for_a_library_without_device_code() {
    let tmp = tempdir();
    let o = wheelslim(&[
        "split",
        s(&fixture(SLIMDEMO)),
        "-w",
        s(&tmp.path().join("out")),
        "--max-size",
        "200KiB",
    ]);
    let err = stderr(&o);
    assert_eq!(code(&o), 2, "{err}");
    assert!(!err.contains("--sm"), "{err}");
    assert!(err.contains("no device code"), "{err}");
    assert!(err.contains("limit of at least 1 MiB"), "{err}");
    assert!(err.contains("200.0 KiB limit"), "{err}");
}

/// `trim --max-size` is enforced: the output is named with its size and the limit, and nothing
/// is written.
#[test]
fn trim_enforces_max_size() {
    let tmp = tempdir();
    let out = tmp.path().join("out");
    let o = wheelslim(&[
        "trim",
        s(&fixture(CUDAFIX)),
        "-w",
        s(&out),
        "--sm",
        "90",
        "--max-size",
        "20KiB",
    ]);
    let err = stderr(&o);
    assert_eq!(code(&o), 2, "{err}");
    assert!(
        err.contains("cudafix-0.1.0-cp311-cp311-manylinux_2_34_x86_64.whl` would be"),
        "{err}"
    );
    assert!(err.contains("over the 20.0 KiB limit"), "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    assert!(err.contains("name fewer targets"), "{err}");
    assert!(!err.contains("(--sm/--gfx)"), "no --sm after --sm: {err}");
    assert!(!out.exists() || files_in(&out).is_empty());
    // Under a limit it fits, the same trim succeeds.
    let ok = wheelslim(&[
        "trim",
        s(&fixture(CUDAFIX)),
        "-w",
        s(&out),
        "--sm",
        "90",
        "--max-size",
        "1MiB",
    ]);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
    assert_eq!(files_in(&out).len(), 1);
}

/// A wheel whose moving library carries device code: `demo.libs/libcublas.so.12` is the
/// fixture's CUDA library `libfix_plain.so` under a name the cuda12 profile moves.
fn device_library_wheel(dir: &std::path::Path) -> std::path::PathBuf {
    let lib = read_zip(&fixture(CUDAFIX))
        .into_iter()
        .find(|(n, _)| n == "cudafix/libfix_plain.so")
        .unwrap()
        .1;
    make_wheel(
        dir,
        "manylinux_2_34_x86_64",
        &[
            ("demo/__init__.py", b""),
            ("demo.libs/libcublas.so.12", &lib),
        ],
    )
}

/// The split summary and `--json` give sizes after the trim, not before.
#[test]
fn split_reports_sizes_after_the_trim() {
    let tmp = tempdir();
    let w = device_library_wheel(tmp.path());
    let out = tmp.path().join("out");
    let o = wheelslim(&[
        "--json",
        "split",
        s(&w),
        "-w",
        s(&out),
        "--sm",
        "90",
        "--move-unlinked",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let t = &v["trimmed"][0];
    assert_eq!(t["member"], "demo.libs/libcublas.so.12", "{v}");
    let (before, after) = (
        t["zip_before"].as_u64().unwrap(),
        t["zip_after"].as_u64().unwrap(),
    );
    assert!(after > 0 && after < before, "{t}");
    let lib = &v["plan"]["runtime_sets"][0]["libraries"][0];
    assert_eq!(lib["size"], t["bytes_after"], "{v}");
    assert_eq!(lib["compressed_size"], t["zip_after"], "{v}");
    // The text summary says the trimmed size too.
    let out2 = tmp.path().join("out2");
    let o = wheelslim(&[
        "split",
        s(&w),
        "-w",
        s(&out2),
        "--sm",
        "90",
        "--move-unlinked",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = stdout(&o);
    let runtime = text.lines().find(|l| l.starts_with("runtime ")).unwrap();
    assert!(runtime.contains("60.7 KiB installed"), "{text}");
}

/// A device library too big even after `--sm`: the hint does not offer `--sm` again but fewer
/// targets or `--unmatched drop`; without `--sm` it offers a trim.
#[test]
fn hints_follow_the_options_given() {
    let tmp = tempdir();
    let w = device_library_wheel(tmp.path());
    let out = tmp.path().join("out");
    let base = [
        "split",
        s(&w),
        "-w",
        s(&out),
        "--move-unlinked",
        "--max-size",
        "258KiB",
    ];
    let o = wheelslim(&base);
    let err = stderr(&o);
    assert_eq!(code(&o), 2, "{err}");
    assert!(err.contains("trim its device code"), "{err}");
    let mut with_sm = base.to_vec();
    with_sm.extend(["--sm", "80,90"]);
    let o = wheelslim(&with_sm);
    let err = stderr(&o);
    assert_eq!(code(&o), 2, "{err}");
    assert!(!err.contains("--sm 80,90 /"), "{err}");
    assert!(err.contains("name fewer targets"), "{err}");
    assert!(err.contains("--unmatched drop"), "{err}");
    assert!(!out.exists() || files_in(&out).is_empty());
}

/// `audit` applies split's rule: a library split would refuse as too big alone makes the
/// advice "not enough", names the library, and gives the limit to ask for; `split` agrees.
#[test]
fn audit_does_not_promise_a_split_that_would_be_refused() {
    let tmp = tempdir();
    let w = fixture(SLIMDEMO);
    let o = wheelslim(&["audit", s(&w), "--max-size", "4KiB"]);
    let text = stdout(&o);
    assert!(text.contains("vendor libraries: not enough"), "{text}");
    assert!(
        text.contains("split would refuse slimdemo.libs/libcublas-d368dffb.so.12"),
        "{text}"
    );
    assert!(text.contains("no trim can help"), "{text}");
    assert!(text.contains("--max-size 1MiB"), "{text}");
    let o = wheelslim(&["--json", "audit", s(&w), "--max-size", "4KiB"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let fit = &v["wheels"][0]["to_fit"];
    assert_eq!(fit["fits_after_split"], false, "{fit}");
    assert_eq!(fit["too_big_alone"].as_array().unwrap().len(), 2, "{fit}");
    assert_eq!(fit["limit_without_trim_mib"], 1, "{fit}");
    let o = wheelslim(&[
        "split",
        s(&w),
        "-w",
        s(&tmp.path().join("o")),
        "--max-size",
        "4KiB",
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    // Under the limit audit names, split succeeds.
    let o = wheelslim(&[
        "split",
        s(&w),
        "-w",
        s(&tmp.path().join("o")),
        "--max-size",
        "1MiB",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

/// A main wheel whose staying members alone are over the limit: the dry run fails like the
/// real run, naming the members and the limit to ask for.
#[test]
fn dry_run_fails_when_the_main_wheel_cannot_fit() {
    let tmp = tempdir();
    let out = tmp.path().join("out");
    let w = fixture(PUREFIX);
    for dry in [true, false] {
        let mut args = vec!["split", s(&w), "-w", s(&out), "--max-size", "100"];
        if dry {
            args.push("--dry-run");
        }
        let o = wheelslim(&args);
        let err = stderr(&o);
        assert_eq!(code(&o), 2, "{err}");
        if dry {
            assert!(err.contains("with the members that stay"), "{err}");
            assert!(err.contains("purefix-1.0-py3-none-any.whl!"), "{err}");
            assert!(err.contains("--max-size 1MiB"), "{err}");
            assert!(!err.contains("--sm"), "{err}");
        }
    }
    assert!(!out.exists() || files_in(&out).is_empty());
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}
