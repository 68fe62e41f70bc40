//! The runtime wheels' own files: `WHEEL`, `METADATA`, and the `__init__.py` with `preload()`.

use std::collections::{BTreeMap, HashMap};

use crate::plan::RuntimeSet;
use crate::wheel::headers::HeaderFile;

/// One runtime wheel: a set, or one part of a set that had to be divided.
pub(super) struct RuntimeWheel<'a> {
    pub set: &'a RuntimeSet,
    pub name: String,
    pub part: usize,
    pub parts: usize,
    pub libraries: Vec<usize>,
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

pub(super) fn runtime_metadata(rw: &RuntimeWheel, names: &BTreeMap<&str, Vec<String>>) -> String {
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
        fields.push(("License-Expression", set.licenses.join(" AND ")));
    }
    let mut h = HeaderFile::build(&fields, None);
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
        };
        let text = runtime_metadata(&rw, &BTreeMap::new());
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
}
