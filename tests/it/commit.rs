//! Outputs are committed all or nothing, and nothing that was there before is lost: a shared
//! runtime wheel is never replaced by a different one, a failed rename puts back what earlier
//! renames replaced, an interrupted run leaves no temporary file, and an input that changes
//! while it is read is an error.
//!
//! The runs that must be caught mid-write use `WHEELSLIM_TEST_PAUSE_BEFORE_COPY` (a test-only
//! hook: the first raw copy creates the named file and waits until it is removed), so they
//! act at a known point rather than racing a timer.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

const MAIN_NAME: &str = "slimdemo-0.1.0-cp38-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl";
const RUNTIME_NAME: &str =
    "slimdemo_runtime_cuda12-0.1.0-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// What wheelslim left of its own in `dir`: temporary files and backups.
fn leftovers(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| n.starts_with(".wheelslim-"))
        .collect()
}

fn split(args: &[&str]) -> std::process::Output {
    let mut all = vec!["split"];
    all.extend_from_slice(args);
    wheelslim(&all)
}

/// The slimdemo fixture as the cp38 build, and the same build as cp39 (identical libraries).
fn two_builds(dir: &Path) -> (PathBuf, PathBuf) {
    let a = dir.join(MAIN_NAME);
    let b = dir.join(MAIN_NAME.replace("cp38", "cp39"));
    std::fs::copy(fixture(SLIMDEMO), &a).unwrap();
    std::fs::copy(fixture(SLIMDEMO), &b).unwrap();
    (a, b)
}

#[test]
fn a_runtime_wheel_with_other_content_is_never_replaced() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempdir();
    let (a, same) = two_builds(tmp.path());
    // A third build that bundled a different copy of libcudart.
    let other = tmp.path().join(MAIN_NAME.replace("cp38", "cp310"));
    rewrite_wheel(&fixture(SLIMDEMO), &other, |name, mut data| {
        if name.contains("libcudart") {
            data.extend_from_slice(b"another build");
        }
        data
    });
    let rt = tmp.path().join("runtime");
    let rt_wheel = rt.join(RUNTIME_NAME);
    let o = split(&[
        s(&a),
        "-w",
        s(&tmp.path().join("a")),
        "--runtime-dir",
        s(&rt),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let before = std::fs::read(&rt_wheel).unwrap();
    let ino = std::fs::metadata(&rt_wheel).unwrap().ino();

    // Per-build splits into one runtime folder: the different copy is refused, naming the
    // existing file, what differs and where the new copy comes from.
    let out_other = tmp.path().join("other");
    let o = split(&[s(&other), "-w", s(&out_other), "--runtime-dir", s(&rt)]);
    assert_eq!(code(&o), 2, "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("`{}` already exists", rt_wheel.display())),
        "{err}"
    );
    assert!(err.contains("libcudart-aa97f077.so.12: differs"), "{err}");
    assert!(
        err.contains(&format!(
            "{}!slimdemo.libs/libcudart-aa97f077.so.12",
            other.display()
        )),
        "{err}"
    );
    assert!(err.contains("--runtime-dir"), "says what to do: {err}");
    assert_eq!(std::fs::read(&rt_wheel).unwrap(), before);
    assert_eq!(names(&rt), [RUNTIME_NAME]);
    // All or nothing: its main wheel was not written either.
    assert_eq!(names(&out_other), Vec::<String>::new());

    // The same copy is fine, and the runtime wheel is left as it is (not rewritten).
    let out_same = tmp.path().join("same");
    let o = split(&[s(&same), "-w", s(&out_same), "--runtime-dir", s(&rt)]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(std::fs::read(&rt_wheel).unwrap(), before);
    assert_eq!(std::fs::metadata(&rt_wheel).unwrap().ino(), ino);
    assert_eq!(names(&out_same), [MAIN_NAME.replace("cp38", "cp39")]);
    assert_eq!(names(&rt), [RUNTIME_NAME]);
}

#[test]
fn main_wheels_are_replaced_by_a_rerun() {
    let tmp = tempdir();
    let (a, _) = two_builds(tmp.path());
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join(MAIN_NAME), b"from an earlier run").unwrap();
    let o = split(&[s(&a), "-w", s(&out)]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_ne!(
        std::fs::read(out.join(MAIN_NAME)).unwrap(),
        b"from an earlier run"
    );
    assert_eq!(names(&out), [MAIN_NAME, RUNTIME_NAME]);
}

#[test]
fn a_rename_failing_midway_puts_back_the_previous_outputs() {
    let tmp = tempdir();
    let (a, b) = two_builds(tmp.path());
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    // Good outputs of an earlier run; the second main wheel's name is taken by a folder, so its
    // rename fails after the first one has replaced its target.
    std::fs::write(out.join(MAIN_NAME), b"earlier main").unwrap();
    std::fs::write(out.join(RUNTIME_NAME), b"earlier runtime").unwrap();
    let blocked = out.join(b.file_name().unwrap());
    std::fs::create_dir(&blocked).unwrap();
    std::fs::write(blocked.join("keep"), b"x").unwrap();
    // The runtime wheel goes to its own folder, so the conflict check does not stop the run
    // before the renames.
    let rt = tmp.path().join("rt");
    let o = split(&[s(&a), s(&b), "-w", s(&out), "--runtime-dir", s(&rt)]);
    assert_eq!(code(&o), 2, "{}", stdout(&o));
    let err = stderr(&o);
    assert!(err.contains(&blocked.display().to_string()), "{err}");
    assert_eq!(std::fs::read(out.join(MAIN_NAME)).unwrap(), b"earlier main");
    assert_eq!(
        std::fs::read(out.join(RUNTIME_NAME)).unwrap(),
        b"earlier runtime"
    );
    assert_eq!(std::fs::read(blocked.join("keep")).unwrap(), b"x");
    assert_eq!(leftovers(&out), Vec::<String>::new());
    assert_eq!(names(&rt), Vec::<String>::new());
}

/// Starts a split that stops at its first raw copy, and waits until it is there.
fn paused_split(inputs: &[&Path], out: &Path, marker: &Path) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wheelslim"))
        .arg("split")
        .args(inputs)
        .args(["-w", s(out)])
        .env("WHEELSLIM_NO_PROGRESS", "1")
        .env("WHEELSLIM_TEST_PAUSE_BEFORE_COPY", marker)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !marker.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            let o = child.wait_with_output().unwrap();
            panic!(
                "split ended ({status}) before writing:\n{}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "split did not reach its first copy"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

fn interrupted_run_leaves_nothing(signal: &str, expected: i32) {
    let tmp = tempdir();
    let (a, _) = two_builds(tmp.path());
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join(MAIN_NAME), b"earlier main").unwrap();
    let marker = tmp.path().join("paused");
    let child = paused_split(&[&a], &out, &marker);
    assert!(
        !leftovers(&out).is_empty(),
        "an output is being written: {:?}",
        names(&out)
    );
    run(Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string()));
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(expected), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no output was written or replaced"),
        "{}",
        stderr(&o)
    );
    assert_eq!(names(&out), [MAIN_NAME]);
    assert_eq!(std::fs::read(out.join(MAIN_NAME)).unwrap(), b"earlier main");
}

#[test]
fn sigint_while_writing_removes_the_temporary_files() {
    interrupted_run_leaves_nothing("INT", 130);
}

#[test]
fn sigterm_while_writing_removes_the_temporary_files() {
    interrupted_run_leaves_nothing("TERM", 143);
}

#[test]
fn a_rerun_removes_what_a_killed_run_left() {
    let tmp = tempdir();
    let (a, _) = two_builds(tmp.path());
    let out = tmp.path().join("out");
    let marker = tmp.path().join("paused");
    let mut child = paused_split(&[&a], &out, &marker);
    let pid = child.id();
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let left = leftovers(&out);
    assert!(!left.is_empty(), "SIGKILL leaves the temporary file");
    assert!(
        left.iter()
            .all(|n| n.starts_with(&format!(".wheelslim-{pid}-"))),
        "{left:?}"
    );
    // Someone else's file of a similar name is not ours to remove.
    std::fs::write(out.join(".wheelslim-foreign.tmp"), b"not ours").unwrap();
    let o = split(&[s(&a), "-w", s(&out)]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        names(&out),
        [".wheelslim-foreign.tmp", MAIN_NAME, RUNTIME_NAME]
    );
}

#[test]
fn an_input_changed_while_split_runs_is_an_error() {
    use std::os::unix::fs::FileExt;
    let tmp = tempdir();
    let (a, _) = two_builds(tmp.path());
    // An old modification time, so the rewrite below moves it whatever the clock's grain.
    let old = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    std::fs::File::options()
        .write(true)
        .open(&a)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let out = tmp.path().join("out");
    let marker = tmp.path().join("paused");
    let child = paused_split(&[&a], &out, &marker);
    // A build rewrites the wheel in place (same size) while split copies from it.
    let len = std::fs::metadata(&a).unwrap().len();
    let f = std::fs::File::options().write(true).open(&a).unwrap();
    f.write_all_at(b"rebuilt", len / 2).unwrap();
    drop(f);
    std::fs::remove_file(&marker).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("{}!", a.display())),
        "names the wheel: {err}"
    );
    assert!(
        err.contains("changed while wheelslim was reading it"),
        "{err}"
    );
    assert_eq!(names(&out), Vec::<String>::new());
}
