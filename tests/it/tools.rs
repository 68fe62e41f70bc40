//! The outside tools the tests run, read from the one list that also drives the installer
//! (`scripts/test-tools.sh`). `need` refuses a tool that list does not name, so a test cannot
//! depend on something a fresh machine's `./test.sh` never installs; the checks below also scan
//! the test sources, so a call that no test happens to reach is caught as well.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{root, tool_env};

const INSTALLER: &str = include_str!("../../scripts/test-tools.sh");

/// The rows of one of the installer's lists (`NAME='` … `'`): (tool or path, packages).
fn list(name: &str) -> Vec<(&'static str, &'static str)> {
    let start = format!("{name}='");
    let mut lines = INSTALLER.lines().skip_while(|l| l.trim() != start);
    assert!(
        lines.next().is_some(),
        "scripts/test-tools.sh has no {name} list"
    );
    let rows: Vec<_> = lines
        .take_while(|l| l.trim() != "'")
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let l = l.trim();
            let (tool, packages) = l
                .split_once(char::is_whitespace)
                .unwrap_or_else(|| panic!("{name} row without a package: {l:?}"));
            (tool, packages.trim())
        })
        .collect();
    assert!(!rows.is_empty(), "scripts/test-tools.sh: {name} is empty");
    rows
}

fn debian_package(tool: &str) -> Option<&'static str> {
    list("DEBIAN_TOOLS")
        .into_iter()
        .find(|r| r.0 == tool)
        .map(|r| r.1)
}

/// The outside tool `tool` (a command on PATH, or an absolute path), which the Debian
/// `package`(s) provide. Fails the test when it is missing, and also when the installer's list
/// does not name it with exactly these packages: then `./test.sh` would not install it.
pub fn need(tool: &str, package: &str) -> PathBuf {
    match debian_package(tool) {
        None => panic!(
            "`{tool}` is not in DEBIAN_TOOLS of scripts/test-tools.sh, so ./test.sh never \
             installs it: add the line `{tool} {package}` there"
        ),
        Some(listed) if listed != package => panic!(
            "`{tool}`: the test says package `{package}`, scripts/test-tools.sh says `{listed}`: \
             make them the same"
        ),
        Some(_) => {}
    }
    let found = if tool.starts_with('/') {
        Some(PathBuf::from(tool)).filter(|p| p.exists())
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(tool))
                .find(|p| p.is_file())
        })
    };
    found.unwrap_or_else(|| {
        panic!("`{tool}` is missing: run ./test.sh, which installs it (apt-get install {package})")
    })
}

/// Every `.rs` file under tests/, with its text.
fn test_sources() -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(root().join("tests")).sort_by_file_name() {
        let entry = entry.unwrap();
        if entry.path().extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            out.push((entry.path().to_path_buf(), text));
        }
    }
    assert!(out.len() > 5, "found too few test sources: {out:?}");
    out
}

/// The string literal at the start of `s` (after blanks), if it is one without `{…}` holes.
fn literal(s: &str) -> Option<&str> {
    let s = s.trim_start().strip_prefix('"')?;
    let lit = &s[..s.find('"')?];
    (!lit.contains('{')).then_some(lit)
}

/// `text` with the inside of comments, string and char literals blanked out (same byte
/// offsets), so that searching it finds only code.
fn code_only(text: &str) -> Vec<u8> {
    let mut b = text.as_bytes().to_vec();
    let mut i = 0;
    let blank = |b: &mut Vec<u8>, from: usize, to: usize| {
        let to = to.min(b.len());
        b[from..to].iter_mut().for_each(|c| *c = b' ');
    };
    while i < b.len() {
        match (b[i], b.get(i + 1).copied()) {
            (b'/', Some(b'/')) => {
                let end = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |n| i + n);
                blank(&mut b, i, end);
                i = end;
            }
            (b'/', Some(b'*')) => {
                let end = text[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n + 2);
                blank(&mut b, i, end);
                i = end;
            }
            (b'r', Some(b'"' | b'#')) if i == 0 || !b[i - 1].is_ascii_alphanumeric() => {
                let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                if b.get(i + 1 + hashes) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let open = i + 2 + hashes;
                let close = format!("\"{}", "#".repeat(hashes));
                let end = text[open..].find(&close).map_or(b.len(), |n| open + n);
                blank(&mut b, open, end);
                i = end + close.len();
            }
            (b'"', _) => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                blank(&mut b, i + 1, j);
                i = j + 1;
            }
            (b'\'', Some(c)) => {
                // A char literal ('x', '\n', '"'), or a lifetime ('a), which is code.
                let len = if c == b'\\' {
                    b[i + 2..].iter().position(|&c| c == b'\'').map(|n| n + 2)
                } else {
                    let w = text[i + 1..].chars().next().map_or(1, char::len_utf8);
                    (b.get(i + 1 + w) == Some(&b'\'')).then_some(w)
                };
                match len {
                    Some(n) => {
                        blank(&mut b, i + 1, i + 1 + n);
                        i += n + 2;
                    }
                    None => i += 1,
                }
            }
            _ => i += 1,
        }
    }
    b
}

/// The arguments of each call of `name` in `text` (not its definition), split at top-level
/// commas; string literals among them come back whole.
fn calls<'a>(text: &'a str, name: &str) -> Vec<Vec<&'a str>> {
    let code = code_only(text);
    let pat = format!("{name}(");
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(n) = code[from..]
        .windows(pat.len())
        .position(|w| w == pat.as_bytes())
    {
        let at = from + n;
        from = at + pat.len();
        if code[..at]
            .last()
            .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.')
            || code[..at].ends_with(b"fn ")
        {
            continue;
        }
        let (mut depth, mut args, mut start) = (0i32, Vec::new(), from);
        for (i, &c) in code.iter().enumerate().skip(from) {
            match c {
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' if depth > 0 => depth -= 1,
                b')' => {
                    args.push(&text[start..i]);
                    break;
                }
                b',' if depth == 0 => {
                    args.push(&text[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        args.retain(|a| !a.trim().is_empty());
        out.push(args);
    }
    out
}

fn rel(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

#[test]
fn every_need_in_the_tests_names_a_tool_the_installer_lists() {
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (path, text) in test_sources() {
        for args in calls(&text, "need") {
            let (Some(tool), Some(package)) = (args.first(), args.get(1)) else {
                wrong.push(format!(
                    "{}: need({args:?}) without two arguments",
                    rel(&path)
                ));
                continue;
            };
            // A computed tool name (format!, a variable) is checked when the call runs.
            let Some(tool) = literal(tool) else { continue };
            checked += 1;
            match (debian_package(tool), literal(package)) {
                (None, _) => wrong.push(format!("{}: `{tool}` is not listed", rel(&path))),
                (Some(l), Some(p)) if l != p => wrong.push(format!(
                    "{}: `{tool}` with package `{p}`, the list says `{l}`",
                    rel(&path)
                )),
                _ => {}
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "fix scripts/test-tools.sh or the test:\n{wrong:#?}"
    );
    assert!(
        checked >= 10,
        "only {checked} literal need(...) calls found"
    );
}

/// A tool run by name without `need` must still be one the installer provides.
#[test]
fn every_program_the_tests_run_by_name_is_listed() {
    let mut wrong = Vec::new();
    let mut checked = 0;
    for (path, text) in test_sources() {
        for args in calls(&text, "Command::new") {
            let Some(tool) = args.first().and_then(|a| literal(a)) else {
                continue;
            };
            checked += 1;
            if debian_package(tool).is_none() {
                wrong.push(format!("{}: Command::new(\"{tool}\")", rel(&path)));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "not in DEBIAN_TOOLS of scripts/test-tools.sh:\n{wrong:#?}"
    );
    assert!(
        checked >= 10,
        "only {checked} Command::new(\"…\") calls found"
    );
}

#[test]
fn need_refuses_a_tool_the_installer_does_not_list() {
    // Through variables, so that the source scan above does not flag these on purpose bad calls.
    let (sed, elfutils) = ("sed", "elfutils");
    let unlisted = std::panic::catch_unwind(|| need(sed, sed)).unwrap_err();
    let msg = unlisted.downcast_ref::<String>().unwrap();
    assert!(
        msg.contains("not in DEBIAN_TOOLS") && msg.contains("`sed sed`"),
        "{msg}"
    );
    let other = std::panic::catch_unwind(|| need("readelf", elfutils)).unwrap_err();
    let msg = other.downcast_ref::<String>().unwrap();
    assert!(msg.contains("says `binutils`"), "{msg}");
    assert!(need("readelf", "binutils").is_file());
}

/// The source scan itself: it must see through formatting, skip computed names, and ignore
/// comments and strings.
#[test]
fn the_call_scanner_reads_arguments_across_lines() {
    let text = "fn need(tool: &str, package: &str) {}\n\
                need(\n    \"a-b\",\n    \"p, q\",\n);\n\
                let x = need(&format!(\"{x}-gcc\"), \"g\");\n\
                // need(\"comment\", \"c\")\n\
                /* need(\"block\", \"c\") */ let c = ('\"', '(', 'x');\n\
                let s = \"need(\\\"string\\\", 1)\"; let r = r#\"need(\"raw\")\"#;\n\
                fn f<'a>(v: &'a str) { crate::tools::need(v, \"v\") }\n\
                y.need(\"no\", \"no\"); reneed(\"no\", \"no\");";
    let got = calls(text, "need");
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(
        (literal(got[0][0]), literal(got[0][1])),
        (Some("a-b"), Some("p, q"))
    );
    assert_eq!((literal(got[1][0]), literal(got[1][1])), (None, Some("g")));
    assert_eq!((got[2][0].trim(), literal(got[2][1])), ("v", Some("v")));
}

/// The PyPI oracles the tests find through ./test.sh's environment are the pinned ones.
#[test]
fn the_cuda_oracles_are_the_pinned_wheels() {
    let pypi = list("PYPI_TOOLS");
    let pin = |path: &str| {
        pypi.iter()
            .find(|r| r.0 == path)
            .and_then(|r| r.1.split_once("=="))
            .unwrap_or_else(|| panic!("PYPI_TOOLS has no pinned {path}"))
    };
    let cuobjdump = tool_env("WHEELSLIM_CUOBJDUMP");
    assert!(
        cuobjdump.ends_with("nvidia/cu13/bin/cuobjdump"),
        "{}",
        cuobjdump.display()
    );
    let (_, version) = pin("nvidia/cu13/bin/cuobjdump");
    let out = Command::new(&cuobjdump).arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("V{version}")),
        "wanted {version}:\n{text}"
    );
    let (name, version) = pin("nvidia/cu13/lib/libcudart.so.13");
    let lib = tool_env("WHEELSLIM_CUDA_LIB");
    assert!(lib.join("libcudart.so.13").exists(), "{}", lib.display());
    let site = lib
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .unwrap();
    let dist = site.join(format!("{}-{version}.dist-info", name.replace('-', "_")));
    assert!(
        dist.is_dir(),
        "{} is missing: not the pinned runtime",
        dist.display()
    );
}
