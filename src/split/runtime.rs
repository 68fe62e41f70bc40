//! The runtime wheels' own files: `WHEEL`, `METADATA`, and the `__init__.py` with `preload()`.

use std::collections::{BTreeMap, HashMap};

use crate::facts::WheelFacts;
use crate::plan::RuntimeSet;
use crate::wheel::Wheel;
use crate::wheel::headers::HeaderFile;

/// A licence file of an input that travels into a runtime wheel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LicenseCopy {
    /// The input wheel and member it is copied from.
    pub input: usize,
    pub member: String,
    /// Its path under the runtime wheel's `.dist-info/licenses/` (the `License-File` value).
    pub dest: String,
    pub sha256: [u8; 32],
}

/// True for a file name that holds licence text: `LICENSE`, `License.txt`, `NOTICE.md`,
/// `COPYING.LIB`, `EULA.txt`, `LICENSE-APACHE`, ... but not code that happens to start so.
pub(super) fn is_license_name(base: &str) -> bool {
    let lower = base.to_ascii_lowercase();
    let prefixed = [
        "license",
        "licence",
        "copying",
        "notice",
        "eula",
        "copyright",
    ]
    .iter()
    .any(|p| lower.starts_with(p));
    if !prefixed {
        return false;
    }
    let ext = lower.rsplit_once('.').map_or("", |(_, e)| e);
    !matches!(
        ext,
        "py" | "pyc"
            | "pyi"
            | "pyd"
            | "so"
            | "a"
            | "o"
            | "h"
            | "hpp"
            | "c"
            | "cc"
            | "cpp"
            | "json"
            | "toml"
            | "cfg"
            | "sh"
            | "bin"
            | "cubin"
            | "ptx"
            | "fatbin"
    ) && !lower.contains(".so.")
}

/// Licence files are small text; anything bigger is not what we mean.
const LICENSE_MAX: u64 = 4 * 1024 * 1024;

/// The licence files that came with a set's libraries: every file under each source wheel's
/// `.dist-info/licenses/` (Metadata 2.4), licence-named files directly in its `.dist-info`
/// (older wheels: NVIDIA's `License.txt`), and licence-named files in the folders that hold a
/// moved library and in each folder above it. Sorted and without duplicates; two different
/// files that would land on one path keep both (`-2`, `-3` before the extension).
pub(super) fn license_files(set: &RuntimeSet, inputs: &[(Wheel, WheelFacts)]) -> Vec<LicenseCopy> {
    let mut found: Vec<LicenseCopy> = Vec::new();
    let mut push = |input: usize, member: &str, dest: String, sha256: [u8; 32]| {
        if found.iter().any(|c| c.sha256 == sha256 && c.dest == dest) {
            return;
        }
        let mut dest = dest;
        let mut n = 2;
        while found.iter().any(|c| c.dest == dest) {
            let (stem, ext) = match dest.rsplit_once('.') {
                Some((s, e)) if !s.is_empty() && !s.ends_with('/') && !e.contains('/') => {
                    (s.to_string(), format!(".{e}"))
                }
                _ => (dest.clone(), String::new()),
            };
            let stem = stem.trim_end_matches(&format!("-{}", n - 1)).to_string();
            dest = format!("{stem}-{n}{ext}");
            n += 1;
        }
        found.push(LicenseCopy {
            input,
            member: member.to_string(),
            dest,
            sha256,
        });
    };
    let mut inputs_used: Vec<usize> = set.libraries.iter().map(|l| l.input).collect();
    inputs_used.sort_unstable();
    inputs_used.dedup();
    for &i in &inputs_used {
        let Some((wheel, facts)) = inputs.get(i) else {
            continue;
        };
        // Folders that hold a moved library of this input, and every folder above them.
        let mut folders: Vec<String> = Vec::new();
        for l in set.libraries.iter().filter(|l| l.input == i) {
            let mut m = l.member.as_str();
            while let Some((dir, _)) = m.rsplit_once('/') {
                if !folders.iter().any(|f| f == dir) {
                    folders.push(dir.to_string());
                }
                m = dir;
            }
        }
        let licenses_dir = format!("{}/licenses/", wheel.dist_info);
        let dist_prefix = format!("{}/", wheel.dist_info);
        let mut members: Vec<_> = facts
            .members
            .iter()
            .filter(|f| f.size <= LICENSE_MAX && f.elf().is_none() && f.device.is_none())
            .filter_map(|f| f.sha256.map(|h| (f.name.as_str(), h)))
            .collect();
        members.sort();
        for (name, sha) in members {
            if wheel
                .archive
                .member(name)
                .is_none_or(|m| m.is_dir || m.is_symlink || m.problem.is_some())
            {
                continue;
            }
            let (dir, base) = name.rsplit_once('/').unwrap_or(("", name));
            if let Some(rel) = name.strip_prefix(&licenses_dir) {
                if !rel.is_empty() {
                    push(i, name, rel.to_string(), sha);
                }
            } else if name.starts_with(&dist_prefix) {
                if dir == wheel.dist_info && is_license_name(base) {
                    push(i, name, base.to_string(), sha);
                }
            } else if is_license_name(base) && folders.iter().any(|f| f == dir) {
                push(i, name, name.to_string(), sha);
            }
        }
    }
    found.sort_by(|a, b| a.dest.cmp(&b.dest));
    found
}

/// One runtime wheel: a set, or one part of a set that had to be divided.
pub(super) struct RuntimeWheel<'a> {
    pub set: &'a RuntimeSet,
    pub name: String,
    pub part: usize,
    pub parts: usize,
    pub libraries: Vec<usize>,
    /// Device-code companions in this wheel: (index of their host in the set's libraries,
    /// index of the companion in its host's rewrite).
    pub companions: Vec<(usize, usize)>,
}

pub(super) fn runtime_wheel_file(set: &RuntimeSet) -> String {
    let mut h = HeaderFile::build(
        &[
            ("Wheel-Version", "1.0".to_string()),
            (
                "Generator",
                format!("wheelslim {}", env!("CARGO_PKG_VERSION")),
            ),
            ("Root-Is-Purelib", "false".to_string()),
        ],
        None,
    );
    for p in &set.platforms {
        h.add("Tag", &format!("py3-none-{p}"));
    }
    h.to_text()
}

/// The project a set was split out of: its name less the `-runtime-{profile}` the planner
/// appended. Only that last part is taken off: the project's own name may hold `-runtime-`
/// (`nvidia-cuda-runtime-cu12`).
fn project_of(set: &RuntimeSet) -> &str {
    let suffix = format!("-runtime-{}", set.profile);
    if let Some(p) = set.name.strip_suffix(&suffix) {
        return p;
    }
    // A name the planner extended after the profile (a variant): still the last `-runtime-`.
    set.name
        .rfind("-runtime-")
        .map_or(set.name.as_str(), |at| &set.name[..at])
}

/// The profile licences of a set as one SPDX expression: each part in parentheses when it is a
/// compound with `OR`, so that `AND` binds as meant.
fn license_expression(licenses: &[String]) -> String {
    if licenses.len() == 1 {
        return licenses[0].clone();
    }
    licenses
        .iter()
        .map(|l| {
            if l.contains(" OR ") || l.contains(" or ") {
                format!("({l})")
            } else {
                l.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

pub(super) fn runtime_metadata(
    rw: &RuntimeWheel,
    names: &BTreeMap<&str, Vec<String>>,
    license_files: &[LicenseCopy],
) -> String {
    let set = rw.set;
    let files: Vec<&str> = rw
        .libraries
        .iter()
        .map(|&i| set.libraries[i].file.as_str())
        .collect();
    let project = project_of(set);
    let mut fields = vec![
        ("Metadata-Version", "2.4".to_string()),
        ("Name", rw.name.clone()),
        ("Version", set.version.clone()),
        (
            "Summary",
            format!(
                "Vendor libraries of {project} {} ({} profile), shared by every Python version",
                set.version, set.profile
            ),
        ),
    ];
    if !set.licenses.is_empty() {
        fields.push(("License-Expression", license_expression(&set.licenses)));
    }
    let mut h = HeaderFile::build(&fields, None);
    for f in license_files {
        h.add("License-File", &f.dest);
    }
    // Other parts of the same set install into the same folder; they travel together.
    if rw.parts > 1 {
        for other in names.get(set.key.as_str()).into_iter().flatten() {
            if *other != rw.name {
                h.add("Requires-Dist", &format!("{other}=={}", set.version));
            }
        }
    }
    for r in &set.requirements {
        h.add("Requires-Dist", r);
    }
    h.add("Description-Content-Type", "text/markdown");
    let mut body = format!(
        "# {}\n\nShared vendor libraries split out of `{project}` {} by wheelslim, installed into `{}`.\n\n",
        rw.name,
        set.version,
        set.lib_dir()
    );
    for f in &files {
        body.push_str(&format!("- `{f}`\n"));
    }
    if !set.license_notes.is_empty() {
        body.push_str("\nLicences:\n\n");
        for n in &set.license_notes {
            body.push_str(&format!("- {n}\n"));
        }
    }
    if !license_files.is_empty() {
        body.push_str(
            "\nThe licence files that came with these libraries are in `.dist-info/licenses/`:\n\n",
        );
        for f in license_files {
            body.push_str(&format!("- `{}`\n", f.dest));
        }
    }
    let mut text = h.to_text();
    text.push('\n');
    text.push_str(&body);
    text
}

/// The runtime package's `__init__.py`: says what it holds and offers `preload()`.
pub(super) fn preload_module(set: &RuntimeSet) -> String {
    // Dependencies first, so each library finds the ones it needs already loaded.
    let mut order: Vec<&str> = Vec::new();
    let deps: HashMap<&str, Vec<&str>> = set
        .libraries
        .iter()
        .map(|l| {
            let needs: Vec<&str> = l
                .needed
                .iter()
                .filter(|n| set.libraries.iter().any(|o| &o.file == *n))
                .map(String::as_str)
                .collect();
            (l.file.as_str(), needs)
        })
        .collect();
    fn visit<'a>(
        n: &'a str,
        deps: &HashMap<&'a str, Vec<&'a str>>,
        order: &mut Vec<&'a str>,
        stack: &mut Vec<&'a str>,
    ) {
        if order.contains(&n) || stack.contains(&n) {
            return;
        }
        stack.push(n);
        for d in deps.get(n).into_iter().flatten() {
            visit(d, deps, order, stack);
        }
        stack.pop();
        order.push(n);
    }
    for l in &set.libraries {
        visit(&l.file, &deps, &mut order, &mut Vec::new());
    }
    let list: String = order.iter().map(|f| format!("    {f:?},\n")).collect();
    format!(
        r#""""Vendor libraries shared by every Python version of this project (wheelslim, {profile} profile).

The libraries live in the `lib` folder next to this file, and the project's extension modules
find them through their RPATH. When this package is installed into a different site-packages
folder than the project that uses it (user site vs. virtualenv, purelib vs. platlib), call
`preload()` before importing that project: it loads every library here by absolute path, and the
dynamic loader then reuses them by soname.
"""

import ctypes
import os

LIB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib")
LIBRARIES = [
{list}]
_handles = []


def preload():
    """Load every bundled library (dependencies first); safe to call more than once."""
    if not _handles:
        for name in LIBRARIES:
            path = os.path.join(LIB_DIR, name)
            if os.path.exists(path):
                _handles.append(ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL))
    return list(_handles)
"#,
        profile = set.profile,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str, profile: &str) -> RuntimeSet {
        RuntimeSet {
            key: format!("{name}@12.8.90@x"),
            name: name.to_string(),
            version: "12.8.90".into(),
            package: name.replace('-', "_"),
            platforms: vec!["manylinux_2_17_x86_64".into()],
            profile: profile.into(),
            libraries: Vec::new(),
            licenses: Vec::new(),
            license_notes: Vec::new(),
            requirements: Vec::new(),
        }
    }

    fn summary(s: &RuntimeSet) -> String {
        let rw = RuntimeWheel {
            set: s,
            name: s.name.clone(),
            part: 0,
            parts: 1,
            libraries: Vec::new(),
            companions: Vec::new(),
        };
        let text = runtime_metadata(&rw, &BTreeMap::new(), &[]);
        text.lines()
            .find_map(|l| l.strip_prefix("Summary: "))
            .unwrap()
            .to_string()
    }

    #[test]
    fn summary_names_the_whole_project() {
        let s = set("nvidia-cuda-runtime-cu12-runtime-cuda12", "cuda12");
        assert_eq!(
            summary(&s),
            "Vendor libraries of nvidia-cuda-runtime-cu12 12.8.90 (cuda12 profile), shared by every Python version"
        );
        assert_eq!(
            project_of(&set("slimdemo-runtime-cuda12", "cuda12")),
            "slimdemo"
        );
        assert_eq!(
            project_of(&set("my-runtime-tools-runtime-rocm-gpu2", "rocm")),
            "my-runtime-tools"
        );
        assert_eq!(project_of(&set("odd", "cuda12")), "odd");
    }

    #[test]
    fn licence_names_and_expressions() {
        for yes in [
            "LICENSE",
            "License.txt",
            "LICENCE.md",
            "NOTICE",
            "COPYING.LIB",
            "EULA.txt",
            "LICENSE-APACHE",
        ] {
            assert!(is_license_name(yes), "{yes}");
        }
        for no in [
            "license_check.py",
            "libnotice.so.1",
            "notice.so.2",
            "README",
            "licenses.json",
            "mylicense",
        ] {
            assert!(!is_license_name(no), "{no}");
        }
        assert_eq!(license_expression(&["MIT".into()]), "MIT");
        assert_eq!(
            license_expression(&[
                "LicenseRef-NVIDIA-Proprietary".into(),
                "MIT OR BSD-3-Clause".into()
            ]),
            "LicenseRef-NVIDIA-Proprietary AND (MIT OR BSD-3-Clause)"
        );
    }
}
