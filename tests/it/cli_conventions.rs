//! Conventions users bring from other tools (issue 12 items 5 and 6): `[tool.wheelslim]` found
//! from the current folder up to the project's root, flags the command line can undo, mistakes
//! in the configuration that name the file and the key; folders as inputs, `-w` that is a file,
//! and moves and keeps by soname glob without a profile (`split --move`, `--keep`).

use std::path::Path;

use crate::common::*;
use crate::split::Venv;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn names(wheel: &Path) -> Vec<String> {
    read_zip(wheel).into_iter().map(|(n, _)| n).collect()
}

/// A project folder (with `.git`) inside `root`, holding `pyproject`, and a folder two levels
/// below it to run in.
fn project(root: &Path, pyproject: &str) -> std::path::PathBuf {
    let project = root.join("project");
    let deep = project.join("src/pkg");
    std::fs::create_dir_all(&deep).expect("mkdir");
    std::fs::create_dir(project.join(".git")).expect("mkdir .git");
    std::fs::write(project.join("pyproject.toml"), pyproject).expect("write");
    deep
}

#[test]
fn pyproject_is_found_upward_v_names_it_and_the_command_line_wins() {
    let tmp = tempdir();
    let deep = project(
        tmp.path(),
        "[project]\nname = \"x\"\n\n[tool.wheelslim.audit]\nmax-size = \"4KiB\"\ncheck = true\n",
    );
    let w = fixture(SLIMDEMO);
    let out = wheelslim_in(&["audit", "-v", s(&w)], &deep);
    assert_eq!(
        code(&out),
        1,
        "check and the 4 KiB limit apply\n{}",
        stderr(&out)
    );
    let said = stderr(&out);
    assert!(
        said.contains("configuration: [tool.wheelslim] of ../../pyproject.toml (")
            && said.contains("adds --check --max-size=4KiB"),
        "{said}"
    );
    // Either form of the flag, or the option, on the command line wins.
    let out = wheelslim_in(&["audit", "--no-check", s(&w)], &deep);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = wheelslim_in(&["audit", "--max-size", "1MiB", s(&w)], &deep);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // The last of --check / --no-check wins, as with any pair.
    let out = wheelslim_in(&["audit", "--no-check", "--check", s(&w)], &deep);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
}

#[test]
fn the_search_stops_at_the_project_root() {
    let tmp = tempdir();
    // Above the project's root: not the project's configuration.
    std::fs::write(
        tmp.path().join("pyproject.toml"),
        "[tool.wheelslim]\nmax-size = \"4KiB\"\ncheck = true\n",
    )
    .expect("write");
    let deep = project(tmp.path(), "[project]\nname = \"x\"\n");
    let w = fixture(SLIMDEMO);
    let out = wheelslim_in(&["audit", "-v", s(&w)], &deep);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("configuration: none (no pyproject.toml with [tool.wheelslim] from"),
        "{}",
        stderr(&out)
    );
    // Without -v nothing is said.
    let out = wheelslim_in(&["audit", s(&w)], &deep);
    assert!(!stderr(&out).contains("configuration"), "{}", stderr(&out));
}

#[test]
fn flags_from_the_configuration_are_undone_on_the_command_line() {
    let tmp = tempdir();
    let deep = project(
        tmp.path(),
        "[tool.wheelslim]\njson = true\n\n[tool.wheelslim.split]\ndry-run = true\n",
    );
    let w = fixture(SLIMDEMO);
    let out_dir = tmp.path().join("out");
    let out = wheelslim_in(&["split", s(&w), "-w", s(&out_dir)], &deep);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("JSON from json = true");
    assert_eq!(doc["dry_run"], true);
    assert!(files_in(&out_dir).is_empty(), "a dry run wrote something");
    let out = wheelslim_in(
        &[
            "split",
            s(&w),
            "-w",
            s(&out_dir),
            "--no-dry-run",
            "--no-json",
        ],
        &deep,
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("wrote "), "{}", stdout(&out));
    assert_eq!(files_in(&out_dir).len(), 2, "main and runtime wheel");
}

#[test]
fn configuration_mistakes_name_the_file_and_the_key() {
    let w = fixture(SLIMDEMO);
    let cases = [
        (
            "[tool.wheelslim.split]\nunhash = \"yes\"\n",
            "error: ../../pyproject.toml: `unhash` in [tool.wheelslim.split] must be true or false, not the string \"yes\"",
        ),
        (
            "[tool.wheelslim]\nmax-size = \"ten\"\n",
            "error: ../../pyproject.toml: `max-size` in [tool.wheelslim]: \"ten\" is not a size",
        ),
        (
            "[tool.wheelslim.split]\nlargest = 5\n",
            "error: ../../pyproject.toml: `largest` in [tool.wheelslim.split] is not an option of `wheelslim split` but of `audit`: move it to [tool.wheelslim.audit]",
        ),
        (
            "[tool.wheelslim]\nmax-sise = \"1MiB\"\n",
            "error: ../../pyproject.toml: `max-sise` in [tool.wheelslim] is not an option of any wheelslim command",
        ),
        (
            "[tool.wheelslim.split]\nmove = \"lib/libfoo.so\"\n",
            // Values are checked by the option's own parser, then by the command.
            "error: --move `lib/libfoo.so`: globs match library file names or sonames, not paths",
        ),
    ];
    for (py, says) in cases {
        let tmp = tempdir();
        let deep = project(tmp.path(), py);
        // The split table's mistakes are errors whichever command runs, except the last,
        // which only split itself judges.
        let cmd = if py.contains("move =") {
            "split"
        } else {
            "audit"
        };
        let out_dir = tmp.path().join("out");
        let mut args = vec![cmd, s(&w)];
        if cmd == "split" {
            args.extend(["-w", s(&out_dir)]);
        }
        let out = wheelslim_in(&args, &deep);
        assert_eq!(code(&out), 2, "{py}\n{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.starts_with(says), "{py}\n{err}");
        assert!(
            !err.contains("Usage:"),
            "looks like a command-line error:\n{err}"
        );
        assert!(stdout(&out).is_empty(), "{py}\n{}", stdout(&out));
        assert!(files_in(&out_dir).is_empty());
    }
}

/// A folder stands for the wheels directly in it, in name order; a folder without any is an
/// error for every command.
#[test]
fn folders_stand_for_the_wheels_in_them() {
    let tmp = tempdir();
    let dist = tmp.path().join("dist");
    std::fs::create_dir_all(dist.join("old")).expect("mkdir");
    let names_in = [
        "slimdemo-0.1.0-cp38-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        "purefix-1.0-py3-none-any.whl",
    ];
    for (n, src) in names_in.iter().zip([SLIMDEMO, PUREFIX]) {
        std::fs::copy(fixture(src), dist.join(n)).expect("copy");
    }
    // Not searched: a subfolder, a hidden file, a file that is not a wheel.
    std::fs::copy(
        fixture(CUDAFIX),
        dist.join("old")
            .join("cudafix-0.1.0-cp311-cp311-manylinux_2_34_x86_64.whl"),
    )
    .expect("copy");
    std::fs::copy(
        fixture(HIPFIX),
        dist.join(".hipfix-0.1.0-cp311-cp311-manylinux_2_34_x86_64.whl"),
    )
    .expect("copy");
    std::fs::write(dist.join("notes.txt"), "x").expect("write");

    let out = wheelslim(&["audit", "--json", s(&dist)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let paths: Vec<String> = doc["wheels"]
        .as_array()
        .expect("wheels")
        .iter()
        .map(|w| w["path"].as_str().expect("path").to_string())
        .collect();
    assert_eq!(
        paths,
        [
            dist.join("purefix-1.0-py3-none-any.whl")
                .display()
                .to_string(),
            dist.join(names_in[0]).display().to_string(),
        ]
    );
    // The same wheel named twice, by the folder and by its path, is read once.
    let out = wheelslim(&["verify", s(&dist), s(&dist.join(names_in[1]))]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let out_dir = tmp.path().join("out");
    let out = wheelslim(&["split", s(&dist), "-w", s(&out_dir)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        files_in(&out_dir),
        [
            "purefix-1.0-py3-none-any.whl",
            names_in[0],
            "slimdemo_runtime_cuda12-0.1.0-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        ]
    );
    let trimmed = tmp.path().join("trimmed");
    let out = wheelslim(&[
        "trim",
        "--sm",
        "90",
        "--dry-run",
        s(&dist.join("old")),
        "-w",
        s(&trimmed),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("cudafix"), "{}", stdout(&out));

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    std::fs::create_dir(empty.join("sub")).expect("mkdir");
    for cmd in ["audit", "verify", "split", "trim"] {
        let mut args = vec![cmd, s(&empty)];
        if cmd == "split" || cmd == "trim" {
            args.extend(["-w", s(&out_dir)]);
        }
        if cmd == "trim" {
            args.extend(["--sm", "90"]);
        }
        let out = wheelslim(&args);
        assert_eq!(code(&out), 2, "{cmd}\n{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.starts_with(&format!(
                "error: {}: a folder with no wheels (`*.whl` files) in it\n  hint: ",
                empty.display()
            )),
            "{cmd}\n{err}"
        );
        assert!(err.contains("not in its subfolders"), "{cmd}\n{err}");
    }
}

#[test]
fn an_output_folder_that_is_a_file_is_refused_with_a_hint() {
    let tmp = tempdir();
    let w = fixture(SLIMDEMO);
    let file = tmp.path().join("pkg-1.0-py3-none-any.whl");
    std::fs::write(&file, b"not a folder").expect("write");
    let cases: [Vec<&str>; 4] = [
        vec!["split", s(&w), "-w", s(&file)],
        vec!["split", s(&w), "--dry-run", "-w", s(&file)],
        vec!["trim", s(&w), "--sm", "90", "--wheel-dir", s(&file)],
        vec![
            "split",
            s(&w),
            "-w",
            s(tmp.path()),
            "--runtime-dir",
            s(&file),
        ],
    ];
    for args in cases {
        let out = wheelslim(&args);
        assert_eq!(code(&out), 2, "{args:?}\n{}", stderr(&out));
        let option = if args.contains(&"--runtime-dir") {
            "--runtime-dir"
        } else {
            "-w"
        };
        let err = stderr(&out);
        assert!(
            err.starts_with(&format!(
                "error: {option} {}: it is a file, not a folder\n  hint: {option} takes the folder to write the wheels into (made if missing), such as `{option} {}`",
                file.display(),
                tmp.path().display()
            )),
            "{args:?}\n{err}"
        );
        assert_eq!(std::fs::read(&file).expect("read"), b"not a folder");
    }
    // Inside a file, too.
    let out = wheelslim(&["split", s(&w), "-w", s(&file.join("sub"))]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains(&format!("`{}` is a file, not a folder", file.display())),
        "{}",
        stderr(&out)
    );
    assert_eq!(files_in(tmp.path()), ["pkg-1.0-py3-none-any.whl"]);
}

const CUDAFIX_NAME: &str = "cudafix-0.1.0-cp311-cp311-manylinux_2_34_x86_64.whl";
const EXTRA_NAME: &str = "cudafix_runtime_extra-0.1.0-py3-none-manylinux_2_34_x86_64.whl";

/// `--move` takes a library no profile lists (one nothing links, too) into the runtime wheel
/// `{project}-runtime-extra`; the dry run and the summary show it, and so does the JSON plan.
#[test]
fn move_takes_an_unlisted_library_into_the_extra_runtime_wheel() {
    let tmp = tempdir();
    let w = fixture(CUDAFIX);
    let out = wheelslim(&[
        "split",
        s(&w),
        "--dry-run",
        "--move",
        "libfix_plain.so",
        "--move",
        "libnone*",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let plan = stdout(&out);
    assert!(
        plan.contains("ad hoc: --move libfix_plain.so, --move libnone*\n"),
        "{plan}"
    );
    assert!(
        plan.contains("  move     cudafix/libfix_plain.so → cudafix-runtime-extra: lib/libfix_plain.so (--move libfix_plain.so)\n"),
        "{plan}"
    );
    assert!(
        stderr(&out).contains("warning: --move libnone* names no library"),
        "{}",
        stderr(&out)
    );
    let out = wheelslim(&[
        "split",
        s(&w),
        "--dry-run",
        "--json",
        "--move",
        "libfix_plain.so",
    ]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["plan"]["ad_hoc"]["move"][0], "libfix_plain.so");
    assert_eq!(
        doc["plan"]["mains"][0]["removed"][0]["moved_by"],
        "libfix_plain.so"
    );

    // From [tool.wheelslim.split] the same, written.
    let deep = project(
        tmp.path(),
        "[tool.wheelslim.split]\nmove = [\"libfix_plain*\"]\n",
    );
    let out_dir = tmp.path().join("out");
    let out = wheelslim_in(&["split", s(&w), "-w", s(&out_dir)], &deep);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("(--move libfix_plain*)"),
        "{}",
        stdout(&out)
    );
    assert_eq!(files_in(&out_dir), [CUDAFIX_NAME, EXTRA_NAME]);
    let main = names(&out_dir.join(CUDAFIX_NAME));
    assert!(
        !main.iter().any(|n| n.ends_with("libfix_plain.so")),
        "{main:?}"
    );
    assert!(
        main.iter().any(|n| n == "cudafix/libfix_default.so"),
        "{main:?}"
    );
    let extra = names(&out_dir.join(EXTRA_NAME));
    assert!(
        extra
            .iter()
            .any(|n| n == "cudafix_runtime_extra/lib/libfix_plain.so"),
        "{extra:?}"
    );
    let out = wheelslim(&["verify", s(&out_dir)]);
    assert_ne!(code(&out), 2, "{}", stderr(&out));
}

/// `--keep` holds a library a profile would move in the main wheel; what moves still finds it,
/// as pip installing both wheels and calling into the extension shows.
#[test]
fn keep_holds_a_profile_library_in_the_main_wheel() {
    let tmp = tempdir();
    let w = fixture(SLIMDEMO);
    let (main_dir, rt_dir) = (tmp.path().join("dist"), tmp.path().join("runtime"));
    let out = wheelslim(&[
        "split",
        s(&w),
        "--keep",
        "libcublas.so.12",
        "-w",
        s(&main_dir),
        "--runtime-dir",
        s(&rt_dir),
        "--unhash",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let summary = stdout(&out);
    assert!(
        summary.contains("ad hoc: --keep libcublas.so.12\n"),
        "{summary}"
    );
    assert!(
        summary.contains("  keep     slimdemo.libs/libcublas-d368dffb.so.12 (cuda12/cublas: --keep libcublas.so.12 keeps it in the main wheel)"),
        "{summary}"
    );
    let main_name = "slimdemo-0.1.0-cp38-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl";
    let rt_name =
        "slimdemo_runtime_cuda12-0.1.0-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl";
    assert!(
        names(&main_dir.join(main_name))
            .contains(&"slimdemo.libs/libcublas-d368dffb.so.12".to_string())
    );
    let rt = names(&rt_dir.join(rt_name));
    assert!(
        rt.contains(&"slimdemo_runtime_cuda12/lib/libcudart.so.12".to_string()),
        "{rt:?}"
    );
    assert!(!rt.iter().any(|n| n.contains("cublas")), "{rt:?}");
    let venv = Venv::new(tmp.path(), "venv");
    venv.pip_install(&[
        "--find-links",
        s(&main_dir),
        "--find-links",
        s(&rt_dir),
        "slimdemo",
    ]);
    assert_eq!(
        venv.call_slimdemo("").expect("import"),
        "12080 120904 12080"
    );

    // Both at once is a contradiction.
    let out = wheelslim(&[
        "split",
        s(&w),
        "--dry-run",
        "--keep",
        "libx*",
        "--move",
        "libx*",
    ]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("`libx*` is given to both --move and --keep"),
        "{}",
        stderr(&out)
    );
}
