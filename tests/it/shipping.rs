//! What ships around the binary: shell completions, the man page and the examples in `--help`,
//! all generated from the same clap definitions.

use std::process::Command;

use crate::common::{code, stderr, stdout, tempdir, wheelslim};
use crate::tools::need;

const COMMANDS: [&str; 5] = ["audit", "split", "trim", "verify", "profiles"];

#[test]
fn completions_name_every_command_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let o = wheelslim(&["completions", shell]);
        assert_eq!(code(&o), 0, "{shell}: {}", stderr(&o));
        let script = stdout(&o);
        assert!(script.len() > 500, "{shell}: only {} bytes", script.len());
        for cmd in COMMANDS {
            assert!(script.contains(cmd), "{shell} completion lacks `{cmd}`");
        }
        // Options only some commands have are completed too.
        assert!(script.contains("max-members"), "{shell}: no --max-members");
    }
    let o = wheelslim(&["completions", "tcsh"]);
    assert_eq!(code(&o), 2, "an unknown shell is refused");
}

#[test]
fn bash_completion_parses() {
    let bash = need("bash", "bash");
    let dir = tempdir();
    let path = dir.path().join("wheelslim.bash");
    std::fs::write(&path, stdout(&wheelslim(&["completions", "bash"]))).unwrap();
    let o = Command::new(&bash).arg("-n").arg(&path).output().unwrap();
    assert!(o.status.success(), "bash -n: {}", stderr(&o));
    // Sourcing it registers the completion function for `wheelslim`.
    let o = Command::new(&bash)
        .arg("-c")
        .arg(format!(
            "source '{}' && complete -p wheelslim",
            path.display()
        ))
        .output()
        .unwrap();
    assert!(o.status.success(), "source: {}", stderr(&o));
    assert!(stdout(&o).contains("wheelslim"), "{}", stdout(&o));
}

#[test]
fn man_page_renders() {
    let o = wheelslim(&["man"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let page = stdout(&o);
    assert!(page.contains(".TH wheelslim 1"), "no .TH header:\n{page}");
    let dir = tempdir();
    let path = dir.path().join("wheelslim.1");
    std::fs::write(&path, &page).unwrap();
    let man = need("man", "man-db");
    let o = Command::new(&man)
        .arg("-l")
        .arg(&path)
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .unwrap();
    assert!(o.status.success(), "man -l: {}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("SYNOPSIS"), "{text}");
    for cmd in COMMANDS {
        assert!(text.contains(cmd), "man page lacks `{cmd}`:\n{text}");
    }
}

#[test]
fn every_command_help_shows_examples_and_headings() {
    for cmd in COMMANDS {
        for flag in ["-h", "--help"] {
            let o = wheelslim(&[cmd, flag]);
            assert_eq!(code(&o), 0, "{cmd} {flag}: {}", stderr(&o));
            let help = stdout(&o);
            assert!(help.contains("Examples:"), "{cmd} {flag}:\n{help}");
            assert!(
                help.contains(&format!("  wheelslim {cmd}")),
                "{cmd} {flag}: no example of itself:\n{help}"
            );
            assert!(help.contains("Global options:"), "{cmd} {flag}:\n{help}");
            let reads_archives = cmd != "profiles";
            assert_eq!(
                help.contains("Archive limits:") && help.contains("--max-members"),
                reads_archives,
                "{cmd} {flag}:\n{help}"
            );
            assert_eq!(help.contains("--max-inflated"), reads_archives, "{cmd}");
        }
    }
    let split = stdout(&wheelslim(&["split", "--help"]));
    assert!(split.contains("repair-wheel-command"), "{split}");
    let audit = stdout(&wheelslim(&["audit", "--help"]));
    assert!(audit.contains("audit --json"), "{audit}");
    let trim = stdout(&wheelslim(&["trim", "--help"]));
    assert!(trim.contains("trim --sm"), "{trim}");
    // The top level takes no archive limits any more.
    let o = wheelslim(&["--max-members", "5", "profiles"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
}

/// `pip wheel .` (maturin, `bindings = "bin"`) with the release settings of README's
/// "Releasing", for `target`, with `cc` compiling zstd's C code and linking: the one wheel built.
fn release_wheel(target: &str, cc: &std::path::Path, out: &std::path::Path) -> std::path::PathBuf {
    let maturin = crate::common::tool_env("WHEELSLIM_MATURIN");
    let bin = maturin.parent().expect("maturin's folder");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let triple = target.replace('-', "_");
    let mut build = Command::new(bin.join("python"));
    if !target.starts_with("x86_64") {
        // Cross: link with the cross gcc too (Rust brings its own musl crt and libc). On x86_64
        // the default linker does; musl-gcc there would mix in the system musl and crash.
        build.env(format!("CARGO_TARGET_{}_LINKER", triple.to_uppercase()), cc);
    }
    let build = build
        .args([
            "-m",
            "pip",
            "wheel",
            "--no-build-isolation",
            "--no-deps",
            "-q",
            "-w",
        ])
        .arg(out)
        .arg(crate::common::root())
        .env("PATH", &path)
        .env(format!("CC_{triple}"), cc)
        .env(
            "MATURIN_PEP517_ARGS",
            format!("--locked --target {target} --compatibility manylinux2014 musllinux_1_1"),
        )
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "pip wheel . ({target}): {}",
        stderr(&build)
    );
    let wheels: Vec<_> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
        .collect();
    assert_eq!(wheels.len(), 1, "{wheels:?}");
    let name = wheels[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.starts_with("wheelslim-0.1.0-py3-none-"), "{name}");
    let arch = target.split('-').next().unwrap();
    for tag in ["manylinux_2_17", "manylinux2014", "musllinux_1_1"] {
        assert!(
            name.contains(&format!("{tag}_{arch}")),
            "{name} lacks {tag}_{arch}"
        );
    }
    wheels[0].clone()
}

/// Static: no interpreter, no NEEDED, no GLIBC symbol versions (runs on glibc 2.17 and musl).
fn assert_static(readelf: &std::path::Path, exe: &std::path::Path) {
    let dynamic = crate::common::run(Command::new(readelf).arg("-dW").arg(exe));
    assert!(!dynamic.contains("(NEEDED)"), "{dynamic}");
    let versions = crate::common::run(Command::new(readelf).arg("-VW").arg(exe));
    assert!(!versions.contains("GLIBC"), "{versions}");
    let headers = crate::common::run(Command::new(readelf).arg("-lW").arg(exe));
    assert!(!headers.contains("program interpreter"), "{headers}");
    assert!(headers.contains("LOAD"), "{headers}");
}

/// The x86_64 release wheel installs into a fresh venv and works there. The build reuses
/// target/ (the first one takes minutes).
#[test]
fn release_wheel_is_static_and_installs_into_a_fresh_venv() {
    let musl_gcc = need("musl-gcc", "musl-tools");
    let readelf = need("readelf", "binutils");
    let out = tempdir();
    let wheel = release_wheel("x86_64-unknown-linux-musl", &musl_gcc, out.path());
    let venv = crate::split::Venv::new(out.path(), "venv");
    venv.pip_install(&["--no-deps", wheel.to_str().unwrap()]);
    let exe = venv.python().with_file_name("wheelslim");
    let version = crate::common::run(Command::new(&exe).arg("--version"));
    assert_eq!(version.trim(), "wheelslim 0.1.0");
    let audit = Command::new(&exe)
        .args(["audit", "--json", "--no-progress"])
        .arg(crate::common::fixture(crate::common::PUREFIX))
        .output()
        .unwrap();
    assert_eq!(code(&audit), 0, "{}", stderr(&audit));
    let json: serde_json::Value = serde_json::from_slice(&audit.stdout).expect("audit JSON");
    assert!(json.to_string().contains("purefix"), "{json}");
    assert_static(&readelf, &exe);
}

/// The aarch64 release wheel (Debian's aarch64-linux-gnu-gcc compiles zstd and links against
/// Rust's own musl) holds a static binary that runs under qemu.
#[test]
fn aarch64_release_wheel_runs_under_qemu() {
    let cc = need(
        "aarch64-linux-gnu-gcc",
        "gcc-aarch64-linux-gnu libc6-dev-arm64-cross",
    );
    let qemu = need("qemu-aarch64-static", "qemu-user-static");
    let readelf = need("readelf", "binutils");
    let out = tempdir();
    let wheel = release_wheel("aarch64-unknown-linux-musl", &cc, out.path());
    let unpacked = out.path().join("unpacked");
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&wheel).unwrap()).unwrap();
    archive.extract(&unpacked).unwrap();
    let exe = unpacked.join("wheelslim-0.1.0.data/scripts/wheelslim");
    assert!(exe.is_file(), "no scripts/wheelslim in {}", wheel.display());
    assert_static(&readelf, &exe);
    let header = crate::common::run(Command::new(&readelf).arg("-hW").arg(&exe));
    assert!(header.contains("AArch64"), "{header}");
    let version = crate::common::run(Command::new(&qemu).arg(&exe).arg("--version"));
    assert_eq!(version.trim(), "wheelslim 0.1.0");
    let audit = Command::new(&qemu)
        .arg(&exe)
        .args(["audit", "--json", "--no-progress"])
        .arg(crate::common::fixture(crate::common::PUREFIX))
        .output()
        .unwrap();
    assert_eq!(code(&audit), 0, "{}", stderr(&audit));
}
