//! A library that `split` moves loses the search path entries that pointed into its old
//! folder when nothing it needs is left there; that must be said, not done silently.

use std::path::Path;
use std::process::Command;

use crate::common::{code, make_wheel, stderr, stdout, tempdir, wheelslim};
use crate::shrink_support::{need, run_out};

fn gcc(dir: &Path, src: &str, name: &str, args: &[&str]) -> Vec<u8> {
    need("gcc", "gcc");
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, src).unwrap();
    let out = dir.join(name);
    let (ok, o, e) = run_out(
        Command::new("gcc")
            .args(["-O2", "-fPIC", "-shared"])
            .args(args)
            .arg(&c)
            .arg("-o")
            .arg(&out),
    );
    assert!(ok, "gcc failed: {o}{e}");
    std::fs::read(out).unwrap()
}

#[test]
fn a_moved_library_s_dropped_runpath_origin_is_noted() {
    let dir = tempdir();
    let d = dir.path();
    let cudart = gcc(
        d,
        "int cudaRuntimeGetVersion(int *v) { *v = 12080; return 0; }\n",
        "libcudart.so.12",
        &[
            "-Wl,-soname,libcudart.so.12",
            "-Wl,--enable-new-dtags,-rpath,$ORIGIN",
        ],
    );
    let ext = gcc(
        d,
        "int cudaRuntimeGetVersion(int *); int demo_v(void) { int v = 0; cudaRuntimeGetVersion(&v); return v; }\n",
        "_ext.so",
        &[
            "-Wl,-rpath,$ORIGIN/../demo.libs",
            // The library comes before the object: gcc's default --as-needed would drop it.
            "-Wl,--no-as-needed",
            &format!("-L{}", d.display()),
            "-l:libcudart.so.12",
        ],
    );
    let (_, dynamic, _) = run_out(
        Command::new("readelf")
            .arg("-dW")
            .arg(d.join("libcudart.so.12")),
    );
    assert!(
        dynamic.contains("RUNPATH") && dynamic.contains("[$ORIGIN]"),
        "{dynamic}"
    );
    let whl = make_wheel(
        d,
        "manylinux_2_17_x86_64",
        &[
            ("demo/_ext.so", &ext),
            ("demo.libs/libcudart.so.12", &cudart),
        ],
    );
    let out = wheelslim(&[
        "split",
        "--dry-run",
        whl.to_str().unwrap(),
        "-w",
        d.join("out").to_str().unwrap(),
    ]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(code(&out), 0, "{text}");
    assert!(
        text.contains(
            "demo.libs/libcudart.so.12: search path entry `$ORIGIN` dropped: the library moves to"
        ),
        "{text}"
    );
}
