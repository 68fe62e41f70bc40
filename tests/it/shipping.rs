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
