//! Where each NEEDED entry resolves once wheels are installed, worked out the way glibc's
//! dynamic loader does it: already-loaded objects are matched by SONAME first; then an object
//! with DT_RUNPATH searches only its own RUNPATH, while one with only DT_RPATH searches its
//! RPATH and then the RPATH of the objects that loaded it; `$ORIGIN` is the folder of the object
//! whose entry it is; loading is breadth-first. Paths are relative to site-packages.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;

use crate::elf::{ElfInfo, Machine};
use crate::policy;

/// An ELF object as it will be installed.
#[derive(Debug, Clone)]
pub struct Object<'a> {
    /// Install path relative to site-packages (`pkg/_ext.so`).
    pub path: String,
    /// `wheel!member`, for messages.
    pub origin: String,
    pub elf: &'a ElfInfo,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Resolution {
    /// Found inside the installed set, at this path.
    Installed { path: String, via: String },
    /// Matched by SONAME to an object already loaded in this load.
    AlreadyLoaded { path: String },
    /// A system library the wheel's platform tag lets it leave to the system (auditwheel's
    /// policy for the tag).
    System,
    /// Provided by the machine (a GPU driver or system toolkit library); `by` says which rule.
    Provided { by: String },
    /// Not found; `searched` lists the folders looked in (after `$ORIGIN` expansion).
    Missing { searched: Vec<String> },
}

#[cfg(test)]
impl Resolution {
    fn is_ok(&self) -> bool {
        !matches!(self, Resolution::Missing { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    /// Install path of the object whose NEEDED this is.
    pub from: String,
    pub needed: String,
    pub resolution: Resolution,
}

/// A set of installed objects to resolve against.
pub struct Tree<'a> {
    objects: Vec<Object<'a>>,
    by_path: HashMap<String, usize>,
    /// What the platform provides (from the wheels' platform tags).
    system: policy::SystemLibraries,
}

/// Joins `$ORIGIN`-relative or relative entries to a base folder, resolving `.` and `..`.
/// Returns `None` when the path leaves site-packages or is absolute.
pub fn expand_entry(entry: &str, origin_dir: &str) -> Option<String> {
    let expanded =
        entry
            .replace("${ORIGIN}", "$ORIGIN")
            .replacen("$ORIGIN", &format!("/{origin_dir}"), 1);
    if !expanded.starts_with('/') || !entry.contains("ORIGIN") {
        return None;
    }
    normalize(&expanded)
}

/// Normalizes `/a/b/../c` to `a/c`; `None` if it climbs above the root.
pub fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    Some(parts.join("/"))
}

/// The folder part of an install path (`pkg/sub/x.so` → `pkg/sub`).
pub fn parent_dir(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(d, _)| d)
}

/// A `$ORIGIN`-relative path from folder `from` to folder `to` (both relative to the same root).
pub fn relative_rpath(from: &str, to: &str) -> String {
    let f: Vec<&str> = from.split('/').filter(|s| !s.is_empty()).collect();
    let t: Vec<&str> = to.split('/').filter(|s| !s.is_empty()).collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut out = String::from("$ORIGIN");
    for _ in common..f.len() {
        out.push_str("/..");
    }
    for p in &t[common..] {
        out.push('/');
        out.push_str(p);
    }
    out
}

impl<'a> Tree<'a> {
    /// A tree whose system libraries are those of any manylinux or musllinux platform.
    #[cfg(test)]
    fn new(objects: Vec<Object<'a>>) -> Tree<'a> {
        Tree::with_system(objects, policy::SystemLibraries::any_linux())
    }

    /// A tree whose system libraries are `system` (see
    /// [`policy::SystemLibraries::for_platforms`]).
    pub fn with_system(objects: Vec<Object<'a>>, system: policy::SystemLibraries) -> Tree<'a> {
        let by_path = objects
            .iter()
            .enumerate()
            .map(|(i, o)| (o.path.clone(), i))
            .collect();
        Tree {
            objects,
            by_path,
            system,
        }
    }

    pub fn objects(&self) -> &[Object<'a>] {
        &self.objects
    }

    fn find(&self, dir: &str, name: &str, machine: Machine) -> Option<usize> {
        let path = if dir.is_empty() {
            name.to_string()
        } else {
            format!("{dir}/{name}")
        };
        self.by_path
            .get(&path)
            .copied()
            .filter(|&i| self.objects[i].elf.machine == machine)
    }

    /// Simulates `dlopen(root)` in a process that has only system libraries loaded, and returns
    /// every NEEDED link of every object it loads. `provided` says whether a name is supplied by
    /// the machine (driver libraries), and by what.
    pub fn load(&self, root: usize, provided: &dyn Fn(&str) -> Option<String>) -> Vec<Link> {
        let mut links = Vec::new();
        // (object, RPATH folders inherited from the objects that loaded it)
        let mut queue: VecDeque<(usize, Vec<String>)> = VecDeque::new();
        let mut loaded: Vec<usize> = vec![root];
        queue.push_back((root, Vec::new()));
        while let Some((idx, inherited)) = queue.pop_front() {
            let obj = &self.objects[idx];
            let elf = obj.elf;
            let origin = parent_dir(&obj.path).to_string();
            let expand = |list: &[String]| -> Vec<Option<String>> {
                list.iter().map(|e| expand_entry(e, &origin)).collect()
            };
            let (search, chain): (Vec<Option<String>>, Vec<String>) = if !elf.runpath.is_empty() {
                (expand(&elf.runpath), Vec::new())
            } else {
                let own: Vec<Option<String>> = expand(&elf.rpath);
                let mut all = own.clone();
                all.extend(inherited.iter().cloned().map(Some));
                let chain = all.iter().flatten().cloned().collect();
                (all, chain)
            };
            for needed in &elf.needed {
                let resolution = if let Some(&i) = loaded.iter().find(|&&i| {
                    let o = &self.objects[i];
                    o.elf.soname.as_deref() == Some(needed.as_str())
                        || (o.elf.soname.is_none() && o.path.rsplit('/').next() == Some(needed))
                }) {
                    Resolution::AlreadyLoaded {
                        path: self.objects[i].path.clone(),
                    }
                } else if self.system.contains(needed) {
                    Resolution::System
                } else if needed.contains('/') {
                    Resolution::Missing {
                        searched: vec![format!("(path name {needed})")],
                    }
                } else {
                    let found = search.iter().flatten().find_map(|dir| {
                        self.find(dir, needed, elf.machine)
                            .map(|i| (i, dir.clone()))
                    });
                    match found {
                        Some((i, dir)) => {
                            loaded.push(i);
                            queue.push_back((i, chain.clone()));
                            Resolution::Installed {
                                path: self.objects[i].path.clone(),
                                via: dir,
                            }
                        }
                        None => match provided(needed) {
                            Some(by) => Resolution::Provided { by },
                            None => Resolution::Missing {
                                searched: search
                                    .iter()
                                    .zip(
                                        elf.runpath
                                            .iter()
                                            .chain(elf.rpath.iter())
                                            .chain(inherited.iter()),
                                    )
                                    .map(|(d, raw)| match d {
                                        Some(d) => format!("site-packages/{d}"),
                                        None => raw.clone(),
                                    })
                                    .collect(),
                            },
                        },
                    }
                };
                links.push(Link {
                    from: obj.path.clone(),
                    needed: needed.clone(),
                    resolution,
                });
            }
        }
        links
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(soname: &str, needed: &[&str], rpath: &[&str], runpath: &[&str]) -> ElfInfo {
        ElfInfo {
            machine: Machine::X86_64,
            kind: "shared-object",
            soname: (!soname.is_empty()).then(|| soname.to_string()),
            needed: needed.iter().map(|s| s.to_string()).collect(),
            rpath: rpath.iter().map(|s| s.to_string()).collect(),
            runpath: runpath.iter().map(|s| s.to_string()).collect(),
            interpreter: None,
            version_needs: vec![],
            glibc: None,
            glibcxx: None,
            cxxabi: None,
            sections: vec![],
            segments: vec![],
            load_align: 4096,
            has_symtab: false,
            has_debug_info: false,
        }
    }

    #[test]
    fn paths() {
        assert_eq!(
            expand_entry("$ORIGIN/../pkg.libs", "pkg"),
            Some("pkg.libs".into())
        );
        assert_eq!(expand_entry("${ORIGIN}", "pkg/sub"), Some("pkg/sub".into()));
        assert_eq!(expand_entry("$ORIGIN/../../..", "pkg"), None);
        assert_eq!(expand_entry("/usr/local/cuda/lib64", "pkg"), None);
        assert_eq!(
            relative_rpath("pkg/sub", "pkg_cuda12/lib"),
            "$ORIGIN/../../pkg_cuda12/lib"
        );
        assert_eq!(relative_rpath("pkg", "pkg"), "$ORIGIN");
    }

    #[test]
    fn runpath_is_not_inherited_but_rpath_is() {
        let ext = elf("", &["liba.so.1"], &["$ORIGIN/../libs"], &[]);
        let a_rpath = elf("liba.so.1", &["libb.so.1"], &[], &[]);
        let b = elf("libb.so.1", &["libc.so.6", "libcuda.so.1"], &[], &[]);
        let tree = Tree::new(vec![
            Object {
                path: "pkg/_ext.so".into(),
                origin: "w!pkg/_ext.so".into(),
                elf: &ext,
            },
            Object {
                path: "libs/liba.so.1".into(),
                origin: "w!a".into(),
                elf: &a_rpath,
            },
            Object {
                path: "libs/libb.so.1".into(),
                origin: "w!b".into(),
                elf: &b,
            },
        ]);
        let provided = |n: &str| (n == "libcuda.so.1").then(|| "driver".to_string());
        let links = tree.load(0, &provided);
        assert!(links.iter().all(|l| l.resolution.is_ok()), "{links:#?}");
        // liba found libb through the extension's RPATH (inherited).
        assert!(
            matches!(&links[1].resolution, Resolution::Installed { path, .. } if path == "libs/libb.so.1")
        );

        // With a RUNPATH on the extension, liba's lookups no longer see it.
        let ext_runpath = elf("", &["liba.so.1"], &[], &["$ORIGIN/../libs"]);
        let tree = Tree::new(vec![
            Object {
                path: "pkg/_ext.so".into(),
                origin: "w!x".into(),
                elf: &ext_runpath,
            },
            Object {
                path: "libs/liba.so.1".into(),
                origin: "w!a".into(),
                elf: &a_rpath,
            },
            Object {
                path: "libs/libb.so.1".into(),
                origin: "w!b".into(),
                elf: &b,
            },
        ]);
        let links = tree.load(0, &provided);
        assert!(
            matches!(links[1].resolution, Resolution::Missing { .. }),
            "{links:#?}"
        );
    }

    #[test]
    fn already_loaded_sonames_are_reused() {
        let ext = elf("", &["liba.so.1", "libb.so.1"], &["$ORIGIN"], &[]);
        let a = elf("liba.so.1", &["libb.so.1"], &[], &["/nowhere"]);
        let b = elf("libb.so.1", &[], &[], &[]);
        let tree = Tree::new(vec![
            Object {
                path: "p/_ext.so".into(),
                origin: "x".into(),
                elf: &ext,
            },
            Object {
                path: "p/liba.so.1".into(),
                origin: "a".into(),
                elf: &a,
            },
            Object {
                path: "p/libb.so.1".into(),
                origin: "b".into(),
                elf: &b,
            },
        ]);
        let links = tree.load(0, &|_| None);
        assert!(links.iter().all(|l| l.resolution.is_ok()), "{links:#?}");
        assert!(matches!(
            links[2].resolution,
            Resolution::AlreadyLoaded { .. }
        ));
    }
}
