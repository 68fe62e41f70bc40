//! `split --preload-hook`: the main package loads its runtime wheels' libraries itself, from
//! whichever `sys.path` entry they were installed into, before its extension modules load.
//!
//! Why a patched `__init__.py` and not a `.pth` file: a `.pth` file is read only in site
//! folders (not in a `--target` folder on `PYTHONPATH`, not under `python -S`), and it runs at
//! every interpreter start, whatever that interpreter goes on to import. The package's own
//! `__init__.py` runs exactly when the package is imported, wherever it was installed, and
//! before any of its extension modules. So the hook is a small module of its own,
//! `<package>/_wheelslim_preload.py`, imported by one line added to `<package>/__init__.py`
//! after its docstring and `from __future__` imports. A package that has no `__init__.py` (a
//! namespace package) is never given one: that would take the namespace from every other
//! distribution sharing it. The hook goes into the shallowest regular package above each
//! extension module instead, and an extension module with none above it is an error.

use std::collections::HashMap;

use crate::plan::RuntimeSet;

/// File name of the hook module inside each hooked package.
pub(super) const HOOK_MODULE: &str = "_wheelslim_preload";

/// The line added to a hooked `__init__.py`.
pub(super) const HOOK_LINE: &str =
    "from . import _wheelslim_preload  # added by wheelslim split --preload-hook\n";

/// The runtime libraries of `sets` as (folder under the site folder, file), every library
/// after the ones it needs. Variant libraries (`lib/gpu11.1/libnccl.so.2`) are left out: each
/// consumer finds its own variant by path, and loading one by soname would hide the others.
pub(super) fn load_order(sets: &[&RuntimeSet]) -> Vec<(String, String)> {
    let mut libs: Vec<(String, &str, Vec<&str>)> = Vec::new();
    for s in sets {
        for l in &s.libraries {
            if l.file.contains('/') || libs.iter().any(|(_, f, _)| *f == l.file) {
                continue;
            }
            libs.push((
                s.lib_dir(),
                l.file.as_str(),
                l.needed.iter().map(String::as_str).collect(),
            ));
        }
    }
    let index: HashMap<&str, usize> = libs
        .iter()
        .enumerate()
        .map(|(i, (_, f, _))| (*f, i))
        .collect();
    fn visit(
        i: usize,
        libs: &[(String, &str, Vec<&str>)],
        index: &HashMap<&str, usize>,
        done: &mut Vec<bool>,
        stack: &mut Vec<usize>,
        order: &mut Vec<usize>,
    ) {
        if done[i] || stack.contains(&i) {
            return;
        }
        stack.push(i);
        for n in &libs[i].2 {
            if let Some(&d) = index.get(n) {
                visit(d, libs, index, done, stack, order);
            }
        }
        stack.pop();
        done[i] = true;
        order.push(i);
    }
    let mut done = vec![false; libs.len()];
    let mut order = Vec::new();
    for i in 0..libs.len() {
        visit(i, &libs, &index, &mut done, &mut Vec::new(), &mut order);
    }
    order
        .into_iter()
        .map(|i| (libs[i].0.clone(), libs[i].1.to_string()))
        .collect()
}

/// The `__init__.py` (installed path) to hook for each extension module (installed path):
/// the shallowest one that exists above it, since Python imports every package above a module
/// before the module. `Err` names a module with no regular package above it.
pub(super) fn hooked_inits<'a>(
    modules: &[&'a str],
    inits: &std::collections::HashSet<&str>,
) -> Result<Vec<String>, &'a str> {
    let mut out: Vec<String> = Vec::new();
    for m in modules {
        let mut found = None;
        let mut prefix = String::new();
        let dirs: Vec<&str> = m.split('/').collect();
        for d in &dirs[..dirs.len().saturating_sub(1)] {
            prefix.push_str(d);
            prefix.push('/');
            let init = format!("{prefix}__init__.py");
            if inits.contains(init.as_str()) {
                found = Some(init);
                break;
            }
        }
        match found {
            Some(i) if !out.contains(&i) => out.push(i),
            Some(_) => {}
            None => return Err(m),
        }
    }
    out.sort();
    Ok(out)
}

/// True for a file name that is a Python extension module rather than a library it loads
/// (`_native.abi3.so`, `core.cpython-312-x86_64-linux-gnu.so`, not `libfoo.so`/`libfoo.so.1`).
pub(super) fn is_extension_module(file_name: &str) -> bool {
    file_name.ends_with(".so") && !file_name.starts_with("lib")
}

/// The hook module for a package `depth` folders below its site folder (`slimdemo`: 1).
pub(super) fn hook_module(
    libraries: &[(String, String)],
    depth: usize,
    runtimes: &[String],
) -> String {
    let list: String = libraries
        .iter()
        .map(|(dir, file)| format!("    ({dir:?}, {file:?}),\n"))
        .collect();
    let names = runtimes.join(", ");
    format!(
        r#""""Loads the libraries this package needs from its runtime wheels ({names}).

Written by `wheelslim split --preload-hook` and imported first by this package's __init__.py.
The extension modules find the libraries through an RPATH into the folder this package was
installed into. When the runtime wheels were installed into another sys.path entry (a user
site, a --target folder on PYTHONPATH), each library is loaded from there by absolute path
instead, dependencies first; the dynamic loader then reuses it by soname. When every library
is where the RPATH points, nothing is loaded here.
"""

import ctypes
import os
import sys

# (folder under a sys.path entry, file), every library after the ones it needs.
LIBRARIES = [
{list}]
# How many folders this package is below the folder it was installed into.
_DEPTH = {depth}


def _site():
    site = os.path.dirname(os.path.abspath(__file__))
    for _ in range(_DEPTH):
        site = os.path.dirname(site)
    return site


def _find(folder, name):
    for entry in sys.path:
        # The current folder ("") is not searched: libraries are not loaded from wherever
        # Python happens to be started.
        if not isinstance(entry, str) or not entry:
            continue
        path = os.path.join(entry, folder, name)
        if os.path.isfile(path):
            return os.path.abspath(path)
    return None


def _preload():
    site = _site()
    if all(os.path.isfile(os.path.join(site, d, n)) for d, n in LIBRARIES):
        return []
    handles = []
    for folder, name in LIBRARIES:
        beside = os.path.join(site, folder, name)
        path = beside if os.path.isfile(beside) else _find(folder, name)
        if path is not None:
            handles.append(ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL))
    return handles


HANDLES = _preload()
"#
    )
}

/// Where the hook line goes in an `__init__.py`: after a BOM, leading comments and blank
/// lines, the module docstring and any `from __future__` imports. `None` when the start of the
/// file is not plain enough to be sure (a string that is not a whole statement on its own
/// lines, a `from __future__` import this reader cannot follow).
pub(super) fn insertion_point(src: &[u8]) -> Option<usize> {
    let mut at = if src.starts_with(b"\xef\xbb\xbf") {
        3
    } else {
        0
    };
    at = skip_blank_and_comments(src, at);
    if let Some(end) = string_statement(src, at) {
        at = skip_blank_and_comments(src, end);
    }
    while let Some(end) = future_import(src, at)? {
        at = skip_blank_and_comments(src, end);
    }
    Some(at)
}

/// The `__init__.py` with the hook line added, or `None` (see [`insertion_point`]).
pub(super) fn patch_init(src: &[u8]) -> Option<Vec<u8>> {
    let at = insertion_point(src)?;
    let mut out = Vec::with_capacity(src.len() + HOOK_LINE.len() + 1);
    out.extend_from_slice(&src[..at]);
    let bom = if src.starts_with(b"\xef\xbb\xbf") {
        3
    } else {
        0
    };
    if at > bom && src[at - 1] != b'\n' {
        out.push(b'\n');
    }
    out.extend_from_slice(HOOK_LINE.as_bytes());
    out.extend_from_slice(&src[at..]);
    Some(out)
}

/// The start of the first line at or after `at` that is not blank or a comment.
fn skip_blank_and_comments(src: &[u8], mut at: usize) -> usize {
    while at < src.len() {
        let end = line_end(src, at);
        let line = &src[at..end];
        let text = line
            .iter()
            .skip_while(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\x0c'));
        match text.clone().next() {
            None | Some(b'\n') | Some(b'#') => at = end,
            _ => return at,
        }
    }
    at
}

/// The index just past the `\n` that ends the line holding `at` (or the end of the file).
fn line_end(src: &[u8], at: usize) -> usize {
    src[at..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(src.len(), |n| at + n + 1)
}

/// When a line starting at `at` is a string literal standing alone (a docstring), the index
/// past the line it ends on.
fn string_statement(src: &[u8], at: usize) -> Option<usize> {
    let mut i = at;
    // At most two prefix letters (r, b, u, f, and their pairs).
    while i < src.len() && i - at < 2 && b"rRbBuUfF".contains(&src[i]) {
        i += 1;
    }
    let quote = *src.get(i)?;
    if quote != b'"' && quote != b'\'' {
        return None;
    }
    let triple = src.get(i..i + 3) == Some(&[quote; 3][..]);
    i += if triple { 3 } else { 1 };
    loop {
        let c = *src.get(i)?;
        if c == b'\\' {
            i += 2;
        } else if triple && src.get(i..i + 3) == Some(&[quote; 3][..]) {
            i += 3;
            break;
        } else if !triple && c == quote {
            i += 1;
            break;
        } else if !triple && c == b'\n' {
            return None;
        } else {
            i += 1;
        }
    }
    // Only blanks or a comment may follow on its last line.
    let end = line_end(src, i);
    let rest = &src[i..end];
    let rest = rest
        .iter()
        .position(|&c| c == b'#')
        .map_or(rest, |p| &rest[..p]);
    rest.iter().all(|c| c.is_ascii_whitespace()).then_some(end)
}

/// `Some(Some(end))` when a `from __future__ import ...` statement starts at `at`,
/// `Some(None)` when something else does, `None` when it is one this reader cannot follow.
fn future_import(src: &[u8], at: usize) -> Option<Option<usize>> {
    let rest = &src[at..];
    let Some(after) = rest.strip_prefix(b"from") else {
        return Some(None);
    };
    let words: Vec<&[u8]> = after
        .split(|c| *c == b' ' || *c == b'\t')
        .filter(|w| !w.is_empty())
        .take(2)
        .collect();
    if !matches!(after.first(), Some(b' ' | b'\t')) || words.first() != Some(&&b"__future__"[..]) {
        return Some(None);
    }
    let mut end = line_end(src, at);
    let line = &src[at..end];
    if line.contains(&b'(') {
        let close = src[at..].iter().position(|&c| c == b')')?;
        end = line_end(src, at + close);
        let tail = &src[at + close + 1..end];
        if !tail.iter().all(|c| c.is_ascii_whitespace()) {
            return None;
        }
    } else if line.contains(&b'\\') || line.contains(&b';') {
        return None;
    }
    Some(Some(end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patched(src: &str) -> Option<String> {
        patch_init(src.as_bytes()).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn the_hook_goes_after_docstring_comments_and_future_imports() {
        let line = HOOK_LINE;
        assert_eq!(patched("").unwrap(), line);
        assert_eq!(patched("import x\n").unwrap(), format!("{line}import x\n"));
        assert_eq!(
            patched("# -*- coding: latin-1 -*-\n\nimport x\n").unwrap(),
            format!("# -*- coding: latin-1 -*-\n\n{line}import x\n")
        );
        assert_eq!(
            patched("\"\"\"Doc.\n\nMore \\\"\"\" here.\n\"\"\"  # c\nimport x\n").unwrap(),
            format!("\"\"\"Doc.\n\nMore \\\"\"\" here.\n\"\"\"  # c\n{line}import x\n")
        );
        assert_eq!(
            patched("r'doc'\nfrom __future__ import annotations\nfrom __future__ import (\n  division,\n)\n\nimport x\n").unwrap(),
            format!("r'doc'\nfrom __future__ import annotations\nfrom __future__ import (\n  division,\n)\n\n{line}import x\n")
        );
        // No newline at the end of the docstring's line.
        assert_eq!(patched("'''doc'''").unwrap(), format!("'''doc'''\n{line}"));
        // A BOM stays first.
        assert_eq!(
            patched("\u{feff}import x\n").unwrap(),
            format!("\u{feff}{line}import x\n")
        );
        // A string that is not a statement of its own is code: the hook goes before it.
        assert_eq!(
            patched("'a'.join([])\n").unwrap(),
            format!("{line}'a'.join([])\n")
        );
        // `from __futures__` / `from x` are not future imports.
        assert_eq!(
            patched("from x import y\n").unwrap(),
            format!("{line}from x import y\n")
        );
    }

    #[test]
    fn the_shallowest_regular_package_gets_the_hook() {
        let inits: std::collections::HashSet<&str> =
            ["a/__init__.py", "a/b/__init__.py", "ns/pkg/__init__.py"].into();
        assert_eq!(
            hooked_inits(&["a/b/_x.so", "a/_y.so", "ns/pkg/sub/_z.so"], &inits).unwrap(),
            ["a/__init__.py", "ns/pkg/__init__.py"]
        );
        // A namespace package's module, and a top-level module, have no package to hook.
        assert_eq!(hooked_inits(&["ns/_z.so"], &inits), Err("ns/_z.so"));
        assert_eq!(hooked_inits(&["_top.abi3.so"], &inits), Err("_top.abi3.so"));
        assert!(is_extension_module("_native.abi3.so"));
        assert!(is_extension_module("core.cpython-312-x86_64-linux-gnu.so"));
        assert!(!is_extension_module("libfoo.so"));
        assert!(!is_extension_module("_x.so.1"));
    }

    #[test]
    fn an_unclear_start_is_refused() {
        assert!(patched("from __future__ import a; import b\n").is_none());
        assert!(patched("from __future__ import \\\n  a\n").is_none());
        assert!(patched("from __future__ import (a\n").is_none());
    }

    #[test]
    fn libraries_load_after_what_they_need() {
        use crate::plan::{ElfEdit, LibraryPlan};
        let lib = |file: &str, needed: &[&str]| LibraryPlan {
            file: file.into(),
            input: 0,
            member: format!("x.libs/{file}"),
            size: 1,
            compressed_size: 1,
            sha256: [0; 32],
            edit: ElfEdit::default(),
            needed: needed.iter().map(|s| s.to_string()).collect(),
            rule: "r".into(),
        };
        let set = |package: &str, libraries: Vec<LibraryPlan>| RuntimeSet {
            key: package.into(),
            name: package.into(),
            version: "1".into(),
            package: package.into(),
            platforms: vec![],
            profile: "p".into(),
            libraries,
            licenses: vec![],
            license_notes: vec![],
            requirements: vec![],
        };
        let cudnn = set(
            "x_runtime_cudnn",
            vec![lib("libcudnn.so.9", &["libcublas.so.12", "libc.so.6"])],
        );
        let cuda = set(
            "x_runtime_cuda12",
            vec![
                lib("libcublas.so.12", &["libcudart.so.12"]),
                lib("libcudart.so.12", &[]),
                lib("gpu11.1/libnccl.so.2", &[]),
            ],
        );
        assert_eq!(
            load_order(&[&cudnn, &cuda]),
            [
                (
                    "x_runtime_cuda12/lib".to_string(),
                    "libcudart.so.12".to_string()
                ),
                ("x_runtime_cuda12/lib".into(), "libcublas.so.12".into()),
                ("x_runtime_cudnn/lib".into(), "libcudnn.so.9".into()),
            ]
        );
    }
}
