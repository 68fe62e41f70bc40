//! Profiles: data (TOML) that says which vendor libraries exist and what to do with them.
//!
//! The built-in profiles in `profiles/` are embedded in the binary; a user file with the same
//! schema can be given by path. A library rule matches a shared object by its file name or its
//! SONAME after [normalization](libname): auditwheel's `-<hash8>` suffix is removed, and a
//! pattern matches the name or any shorter version of it (`libcudart.so.12` matches
//! `libcudart.so.12.8.90`; `libcuda.so` matches `libcuda.so.1`).

mod libname;
pub mod releases;

use std::path::Path;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

pub use libname::{soname_version, unhash, version_prefixes};

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("unknown profile `{name}` (built in: {known})")]
    Unknown { name: String, known: String },
    #[error("cannot read profile `{path}`: {err}")]
    Read { path: String, err: std::io::Error },
    #[error("profile `{source_name}` is not valid: {reason}")]
    Invalid { source_name: String, reason: String },
}

/// What to do with a library a profile matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Move it into a shared runtime wheel.
    Move,
    /// Move it into a runtime wheel, or with `--upstream` depend on an existing upstream wheel.
    Upstream,
    /// It must never be bundled (a driver or system-provided library).
    Forbid,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Move => "move",
            Action::Upstream => "upstream",
            Action::Forbid => "forbid",
        }
    }
}

/// Where an upstream wheel puts the library, and which versions of it to require.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// Distribution name; `{cuda}` stands for the CUDA major the wheel was built for.
    pub package: String,
    /// Folder inside site-packages that holds the library (`nvidia/cublas/lib`).
    pub folder: String,
    /// A PEP 440 specifier (`>=12,<13`). Without it the range comes from what the library is
    /// (see [`releases`]): `>=N[.M],<N+1`, one line per package, never one no release satisfies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// With `{cuda}` in `package`: the CUDA majors for which that package exists (`[11, 12,
    /// 13]`). For any other CUDA version there is no upstream wheel and the library moves into a
    /// runtime wheel instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cuda_majors: Vec<u32>,
}

impl Upstream {
    /// The distribution name for a wheel built for CUDA `cuda`, or `None` when it depends on a
    /// CUDA version that is unknown or has no such package. Never contains `{cuda}`.
    pub fn package_for(&self, cuda: Option<u32>) -> Option<String> {
        if !self.package.contains("{cuda}") {
            return Some(self.package.clone());
        }
        let c = cuda?;
        (self.cuda_majors.is_empty() || self.cuda_majors.contains(&c))
            .then(|| self.package.replace("{cuda}", &c.to_string()))
    }

    /// True when `project` (any spelling) is this upstream package, for some CUDA version.
    pub fn is_package(&self, project: &str) -> bool {
        let project = crate::wheel::normalize_name(project);
        let package = crate::wheel::normalize_name(&self.package);
        match package.split_once("{cuda}") {
            None => project == package,
            Some((head, tail)) => project
                .strip_prefix(head)
                .and_then(|r| r.strip_suffix(tail))
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    license: Option<String>,
    license_note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    patterns: Vec<String>,
    action: Action,
    #[serde(default)]
    license: Option<String>,
    #[serde(default)]
    license_note: Option<String>,
    #[serde(default)]
    upstream: Option<Upstream>,
    #[serde(default)]
    companions: Vec<String>,
}

/// What a `[[file]]` rule flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    /// A program (`ptxas`, `cuobjdump`): flagged only when the member is an ELF object.
    Executable,
    /// A static archive (`libcudart_static.a`).
    StaticArchive,
}

impl FileKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Executable => "executable",
            FileKind::StaticArchive => "static archive",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    name: String,
    kind: FileKind,
    patterns: Vec<String>,
    #[serde(default)]
    license: Option<String>,
    #[serde(default)]
    license_note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: String,
    description: String,
    #[serde(default)]
    cuda: Option<u32>,
    #[serde(default)]
    defaults: Defaults,
    #[serde(rename = "library", default)]
    libraries: Vec<RawRule>,
    #[serde(rename = "file", default)]
    files: Vec<RawFile>,
}

/// A `[[file]]` rule: vendor programs and static archives that are flagged with their licence
/// (`audit` lists them; `split` leaves them in place and says so). They are never moved: a
/// program is run by path and an archive is looked for where the build expects it.
#[derive(Debug, Clone, Serialize)]
pub struct FileRule {
    pub name: String,
    pub kind: FileKind,
    /// Exact file names (globs allowed, but the built-in profiles use none).
    pub patterns: Vec<String>,
    pub license: Option<String>,
    pub license_note: Option<String>,
    #[serde(skip)]
    matcher: GlobSet,
}

impl FileRule {
    /// True when a member's file name (the part after the last `/`) is one of the patterns.
    pub fn matches(&self, file_name: &str) -> bool {
        self.matcher.is_match(file_name)
    }
}

/// One library rule of a profile.
#[derive(Debug, Clone, Serialize)]
pub struct LibraryRule {
    pub name: String,
    pub patterns: Vec<String>,
    pub action: Action,
    /// SPDX licence expression (or `LicenseRef-...`).
    pub license: Option<String>,
    pub license_note: Option<String>,
    pub upstream: Option<Upstream>,
    /// Names too generic to match on their own (CUPTI's `libcheckpoint.so`): they belong to this
    /// rule only in a folder that also holds a library its `patterns` match.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub companions: Vec<String>,
    #[serde(skip)]
    matcher: GlobSet,
    #[serde(skip)]
    companion_matcher: GlobSet,
}

impl LibraryRule {
    fn matches_name(&self, name: &str) -> bool {
        let name = unhash(name);
        version_prefixes(&name)
            .iter()
            .any(|n| self.matcher.is_match(n))
    }

    /// True when a library's file name or SONAME is one of this rule's companions.
    pub fn matches_companion(&self, file_name: &str, soname: Option<&str>) -> bool {
        let hit = |name: &str| {
            version_prefixes(&unhash(name))
                .iter()
                .any(|n| self.companion_matcher.is_match(n))
        };
        hit(file_name) || soname.is_some_and(hit)
    }

    /// Indices into `patterns` (`companion` false) or `companions` (true) of the patterns that
    /// match a library name.
    pub fn pattern_hits(&self, name: &str, companion: bool) -> Vec<usize> {
        let set = if companion {
            &self.companion_matcher
        } else {
            &self.matcher
        };
        let mut hits: Vec<usize> = version_prefixes(&unhash(name))
            .iter()
            .flat_map(|n| set.matches(n))
            .collect();
        hits.sort_unstable();
        hits.dedup();
        hits
    }

    /// True when a library's file name or SONAME matches one of this rule's patterns.
    pub fn matches(&self, file_name: &str, soname: Option<&str>) -> bool {
        self.matches_name(file_name) || soname.is_some_and(|s| self.matches_name(s))
    }

    /// The public soname of a (possibly auditwheel-renamed) library this rule matches.
    ///
    /// auditwheel names its copies after the file (`libcudart-53d54daa.so.12.6.68`) and replaces
    /// the SONAME with that name, so the public soname (`libcudart.so.12`) is lost. The rule's
    /// patterns say it: the shortest version of the name that a pattern matches, not counting
    /// the bare `lib.so` unless that is the whole name.
    pub fn public_name(&self, file_name: &str) -> String {
        let name = unhash(file_name);
        let mut candidates = version_prefixes(&name);
        candidates.reverse();
        let bare_allowed = candidates.len() == 1;
        candidates
            .iter()
            .filter(|c| bare_allowed || c.contains(".so."))
            .find(|c| self.matcher.is_match(c.as_str()))
            .cloned()
            .unwrap_or(name)
    }
}

/// Globs over library names given on the command line (`split --move`, `--keep`). They match
/// as profile patterns do: the file name or the SONAME, auditwheel's `-<hash8>` removed, the name
/// or any shorter version of it (`libfoo.so` matches `libfoo-1a2b3c4d.so.1.2`).
#[derive(Debug, Clone, Default)]
pub struct NameGlobs {
    patterns: Vec<String>,
    set: GlobSet,
}

impl NameGlobs {
    /// Compiles `patterns`; `option` (`--move`) names them in errors.
    pub fn new(option: &str, patterns: &[String]) -> Result<NameGlobs, String> {
        let mut b = GlobSetBuilder::new();
        for p in patterns {
            if p.is_empty() {
                return Err(format!(
                    "{option} takes a library name or glob, not nothing"
                ));
            }
            if p.contains('/') {
                return Err(format!(
                    "{option} `{p}`: globs match library file names or sonames, not paths (write `{}`)",
                    p.rsplit('/').next().unwrap_or(p)
                ));
            }
            b.add(Glob::new(p).map_err(|e| format!("{option} `{p}`: {e}"))?);
        }
        let set = b.build().map_err(|e| format!("{option}: {e}"))?;
        Ok(NameGlobs {
            patterns: patterns.to_vec(),
            set,
        })
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The first pattern that matches a library's file name or SONAME.
    pub fn matching(&self, file_name: &str, soname: Option<&str>) -> Option<&str> {
        let mut hits: Vec<usize> = std::iter::once(file_name)
            .chain(soname)
            .flat_map(|n| version_prefixes(&unhash(n)))
            .flat_map(|n| self.set.matches(&n))
            .collect();
        hits.sort_unstable();
        hits.first().map(|&i| self.patterns[i].as_str())
    }
}

/// A loaded profile.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub name: String,
    pub description: String,
    /// The CUDA major this profile is for, when it is CUDA-version specific.
    pub cuda: Option<u32>,
    pub libraries: Vec<LibraryRule>,
    /// Programs and static archives flagged with their licence (`[[file]]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileRule>,
    /// `built-in` or the path of the file.
    pub origin: String,
    /// The TOML text it was loaded from.
    #[serde(skip)]
    pub text: String,
}

/// The built-in profiles, embedded at compile time.
const BUILT_IN: &[(&str, &str)] = &[
    ("cuda12", include_str!("../../profiles/cuda12.toml")),
    ("cuda13", include_str!("../../profiles/cuda13.toml")),
    ("cuda11", include_str!("../../profiles/cuda11.toml")),
    ("cuda10", include_str!("../../profiles/cuda10.toml")),
    ("cudnn", include_str!("../../profiles/cudnn.toml")),
    ("nccl", include_str!("../../profiles/nccl.toml")),
    (
        "ascend-cann",
        include_str!("../../profiles/ascend-cann.toml"),
    ),
    (
        "triton-shared",
        include_str!("../../profiles/triton-shared.toml"),
    ),
    ("rocm", include_str!("../../profiles/rocm.toml")),
    (
        "nvidia-tools",
        include_str!("../../profiles/nvidia-tools.toml"),
    ),
];

pub fn built_in_names() -> Vec<&'static str> {
    BUILT_IN.iter().map(|(n, _)| *n).collect()
}

impl Profile {
    /// Parses a profile from TOML text. `origin` names it in messages.
    pub fn parse(text: &str, origin: &str) -> Result<Profile, ProfileError> {
        let invalid = |reason: String| ProfileError::Invalid {
            source_name: origin.to_string(),
            reason,
        };
        let raw: RawProfile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if raw.libraries.is_empty() && raw.files.is_empty() {
            return Err(invalid(
                "it lists no `[[library]]` and no `[[file]]`".into(),
            ));
        }
        let mut libraries = Vec::with_capacity(raw.libraries.len());
        for r in raw.libraries {
            if r.patterns.is_empty() {
                return Err(invalid(format!("library `{}` has no patterns", r.name)));
            }
            let glob_set = |patterns: &[String]| -> Result<GlobSet, ProfileError> {
                let mut b = GlobSetBuilder::new();
                for p in patterns {
                    if p.contains('/') {
                        return Err(invalid(format!(
                            "pattern `{p}` of library `{}` contains `/`: patterns match file names",
                            r.name
                        )));
                    }
                    let glob = Glob::new(p).map_err(|e| {
                        invalid(format!("pattern `{p}` of library `{}`: {e}", r.name))
                    })?;
                    b.add(glob);
                }
                b.build()
                    .map_err(|e| invalid(format!("library `{}`: {e}", r.name)))
            };
            let matcher = glob_set(&r.patterns)?;
            let companion_matcher = glob_set(&r.companions)?;
            if r.action == Action::Upstream && r.upstream.is_none() {
                return Err(invalid(format!(
                    "library `{}` has action `upstream` but no `upstream = {{ package, folder }}`",
                    r.name
                )));
            }
            if let Some(u) = &r.upstream {
                if u.package.trim().is_empty() || u.folder.trim().is_empty() {
                    return Err(invalid(format!(
                        "library `{}`: upstream package and folder must not be empty",
                        r.name
                    )));
                }
                if u.folder.starts_with('/') || u.folder.split('/').any(|c| c == "..") {
                    return Err(invalid(format!(
                        "library `{}`: upstream folder `{}` must be relative to site-packages",
                        r.name, u.folder
                    )));
                }
            }
            libraries.push(LibraryRule {
                license: r.license.or_else(|| raw.defaults.license.clone()),
                license_note: r.license_note.or_else(|| raw.defaults.license_note.clone()),
                name: r.name,
                patterns: r.patterns,
                action: r.action,
                upstream: r.upstream,
                companions: r.companions,
                matcher,
                companion_matcher,
            });
        }
        let mut files = Vec::with_capacity(raw.files.len());
        for f in raw.files {
            if f.patterns.is_empty() {
                return Err(invalid(format!("file `{}` has no patterns", f.name)));
            }
            let mut b = GlobSetBuilder::new();
            for p in &f.patterns {
                if p.contains('/') {
                    return Err(invalid(format!(
                        "pattern `{p}` of file `{}` contains `/`: patterns match file names",
                        f.name
                    )));
                }
                b.add(
                    Glob::new(p)
                        .map_err(|e| invalid(format!("pattern `{p}` of file `{}`: {e}", f.name)))?,
                );
            }
            let matcher = b
                .build()
                .map_err(|e| invalid(format!("file `{}`: {e}", f.name)))?;
            files.push(FileRule {
                license: f.license.or_else(|| raw.defaults.license.clone()),
                license_note: f.license_note.or_else(|| raw.defaults.license_note.clone()),
                name: f.name,
                kind: f.kind,
                patterns: f.patterns,
                matcher,
            });
        }
        Ok(Profile {
            name: raw.name,
            description: raw.description,
            cuda: raw.cuda,
            libraries,
            files,
            origin: origin.to_string(),
            text: text.to_string(),
        })
    }

    /// A profile made on the fly from globs (`split --move`): one `move` rule per glob, named
    /// after it, with no licence and no upstream package.
    pub fn ad_hoc(name: &str, origin: &str, globs: &NameGlobs) -> Profile {
        let libraries = globs
            .patterns
            .iter()
            .map(|p| {
                let mut b = GlobSetBuilder::new();
                // The glob compiled once already, in `NameGlobs::new`.
                if let Ok(g) = Glob::new(p) {
                    b.add(g);
                }
                LibraryRule {
                    name: p.clone(),
                    patterns: vec![p.clone()],
                    action: Action::Move,
                    license: None,
                    license_note: None,
                    upstream: None,
                    companions: Vec::new(),
                    matcher: b.build().unwrap_or_else(|_| GlobSet::empty()),
                    companion_matcher: GlobSet::empty(),
                }
            })
            .collect();
        Profile {
            name: name.to_string(),
            description: format!("libraries named by {origin}"),
            cuda: None,
            libraries,
            files: Vec::new(),
            origin: origin.to_string(),
            text: String::new(),
        }
    }

    pub fn built_in(name: &str) -> Result<Profile, ProfileError> {
        let (_, text) =
            BUILT_IN
                .iter()
                .find(|(n, _)| *n == name)
                .ok_or_else(|| ProfileError::Unknown {
                    name: name.to_string(),
                    known: built_in_names().join(", "),
                })?;
        Profile::parse(text, "built-in")
    }

    /// A built-in name, or a path to a TOML file (anything with `/` or ending in `.toml`).
    pub fn load(spec: &str) -> Result<Profile, ProfileError> {
        if spec.contains('/') || spec.ends_with(".toml") {
            let text =
                crate::input::read_text(Path::new(spec)).map_err(|err| ProfileError::Read {
                    path: spec.to_string(),
                    err,
                })?;
            Profile::parse(&text, spec)
        } else {
            Profile::built_in(spec)
        }
    }

    pub fn all_built_in() -> Vec<Profile> {
        // PANIC SAFETY: the built-in profiles are checked by a unit test.
        BUILT_IN
            .iter()
            .map(|(_, t)| Profile::parse(t, "built-in").expect("built-in profiles parse"))
            .collect()
    }

    /// The first rule of this profile matching a library's file name or SONAME.
    pub fn match_library(&self, file_name: &str, soname: Option<&str>) -> Option<&LibraryRule> {
        self.libraries
            .iter()
            .find(|r| r.matches_name(file_name) || soname.is_some_and(|s| r.matches_name(s)))
    }
}

/// A program or static archive matched by a profile's `[[file]]` rule.
#[derive(Debug, Clone, Copy)]
pub struct FileMatch<'a> {
    pub profile: &'a Profile,
    pub rule: &'a FileRule,
}

/// A library matched by a profile.
#[derive(Debug, Clone, Copy)]
pub struct Match<'a> {
    pub profile: &'a Profile,
    pub rule: &'a LibraryRule,
}

/// An ordered set of profiles.
#[derive(Debug, Clone)]
pub struct ProfileSet {
    pub profiles: Vec<Profile>,
}

impl ProfileSet {
    pub fn built_in() -> ProfileSet {
        ProfileSet {
            profiles: Profile::all_built_in(),
        }
    }

    pub fn load(specs: &[String]) -> Result<ProfileSet, ProfileError> {
        let profiles = specs
            .iter()
            .map(|s| Profile::load(s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ProfileSet { profiles })
    }

    /// The first `[[file]]` rule matching a member's file name, in profile order.
    pub fn match_file(&self, file_name: &str) -> Option<FileMatch<'_>> {
        self.profiles.iter().find_map(|p| {
            p.files
                .iter()
                .find(|r| r.matches(file_name))
                .map(|rule| FileMatch { profile: p, rule })
        })
    }

    /// Every profile's first rule matching a library, in profile order.
    pub fn all_matches<'s>(
        &'s self,
        file_name: &'s str,
        soname: Option<&'s str>,
    ) -> impl Iterator<Item = Match<'s>> + 's {
        self.profiles.iter().filter_map(move |p| {
            p.match_library(file_name, soname)
                .map(|rule| Match { profile: p, rule })
        })
    }

    /// The rule matching a library. When several profiles match (CUDA 12 and 13 share some
    /// sonames), the one for `cuda_major` wins, then the first in order.
    pub fn match_library(
        &self,
        file_name: &str,
        soname: Option<&str>,
        cuda_major: Option<u32>,
    ) -> Option<Match<'_>> {
        let mut hits = self.profiles.iter().filter_map(|p| {
            p.match_library(file_name, soname)
                .map(|rule| Match { profile: p, rule })
        });
        let first = hits.next()?;
        if first.profile.cuda.is_none() || first.profile.cuda == cuda_major {
            return Some(first);
        }
        Some(hits.find(|m| m.profile.cuda == cuda_major).unwrap_or(first))
    }
}

/// The CUDA major version a set of libraries was built for, from the CUDA runtime sonames
/// among them (`libcudart.so.12` → 12).
pub fn detect_cuda_major<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<u32> {
    let mut found = None;
    for n in names {
        let n = unhash(n);
        for stem in [
            "libcudart.so.",
            "libcublas.so.",
            "libnvrtc.so.",
            "libcublasLt.so.",
        ] {
            if let Some(v) = n.strip_prefix(stem)
                && let Some(major) = v.split('.').next().and_then(|m| m.parse::<u32>().ok())
            {
                // libcublas.so.12 is CUDA 12; its major tracks the toolkit's.
                found = Some(found.map_or(major, |f: u32| f.max(major)));
            }
        }
    }
    found
}

/// The provider check for NEEDED names not found in the wheel: libraries that profiles say the
/// machine supplies (`forbid`: drivers, system toolkits).
pub fn provided_by_machine<'a>(
    profiles: &'a ProfileSet,
    cuda: Option<u32>,
) -> impl Fn(&str) -> Option<String> + 'a {
    move |name: &str| {
        profiles
            .match_library(name, None, cuda)
            .filter(|m| m.rule.action == Action::Forbid)
            .map(|m| format!("{} ({})", m.rule.name, m.profile.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_profiles_parse_and_cover_the_drivers() {
        let all = Profile::all_built_in();
        assert_eq!(all.len(), 10);
        let set = ProfileSet::built_in();
        for driver in ["libcuda.so.1", "libnvidia-ml.so.1", "libascend_hal.so"] {
            let m = set.match_library(driver, None, None).unwrap();
            assert_eq!(m.rule.action, Action::Forbid, "{driver}");
        }
    }

    #[test]
    fn matches_versioned_and_hashed_names() {
        let p = Profile::built_in("cuda12").unwrap();
        let r = p.match_library("libcudart-80664282.so.12", None).unwrap();
        assert_eq!(r.name, "cudart");
        assert_eq!(
            p.match_library("libcudart.so.12.8.90", None).unwrap().name,
            "cudart"
        );
        assert!(p.match_library("libcudart.so.13", None).is_none());
        assert_eq!(
            p.match_library("libnvrtc-builtins-4730a239.so.12.8", None)
                .unwrap()
                .name,
            "nvrtc"
        );
        // Matching by SONAME when the file was renamed.
        assert_eq!(
            p.match_library("renamed.so", Some("libcublasLt.so.12"))
                .unwrap()
                .name,
            "cublas"
        );
        assert!(p.match_library("libcudart_static.a", None).is_none());
    }

    #[test]
    fn public_names_come_from_the_patterns() {
        let p = Profile::built_in("cuda12").unwrap();
        let name = |f: &str| p.match_library(f, None).unwrap().public_name(f);
        assert_eq!(name("libcudart-53d54daa.so.12.6.68"), "libcudart.so.12");
        assert_eq!(name("libcudart-aa97f077.so.12"), "libcudart.so.12");
        assert_eq!(name("libnvrtc-a1f1e7d6.so.12.6.85"), "libnvrtc.so.12");
        assert_eq!(
            name("libnvrtc-builtins-a1d5fce3.so.12.6.85"),
            "libnvrtc-builtins.so.12.6"
        );
        assert_eq!(name("libcublasLt.so.12.9.1.4"), "libcublasLt.so.12");
        let driver = p.match_library("libcuda-1a2b3c4d.so.1", None).unwrap();
        assert_eq!(driver.public_name("libcuda-1a2b3c4d.so.1"), "libcuda.so.1");
    }

    #[test]
    fn cuda_major_breaks_ties_between_profiles() {
        let set = ProfileSet::built_in();
        let m = set
            .match_library("libcurand.so.10", None, Some(13))
            .unwrap();
        assert_eq!(m.profile.name, "cuda13");
        let m = set
            .match_library("libcurand.so.10", None, Some(12))
            .unwrap();
        assert_eq!(m.profile.name, "cuda12");
        assert_eq!(
            detect_cuda_major(["libfoo.so", "libcudart-1a2b3c4d.so.13"]),
            Some(13)
        );
    }

    #[test]
    fn name_globs_match_as_patterns_do() {
        let g = NameGlobs::new("--move", &["libfoo.so".into(), "libbar*".into()]).unwrap();
        assert_eq!(
            g.matching("libfoo-1a2b3c4d.so.1.2", None),
            Some("libfoo.so")
        );
        assert_eq!(
            g.matching("renamed.so", Some("libbar_x.so.3")),
            Some("libbar*")
        );
        assert_eq!(g.matching("libfoo2.so", None), None);
        assert!(NameGlobs::new("--keep", &["lib/libfoo.so".into()]).is_err());
        assert!(NameGlobs::new("--keep", &["libfoo[".into()]).is_err());
        let p = Profile::ad_hoc("extra", "--move", &g);
        assert_eq!(p.match_library("libbar.so", None).unwrap().name, "libbar*");
        assert_eq!(
            p.match_library("libbar.so", None).unwrap().action,
            Action::Move
        );
    }

    #[test]
    fn rejects_bad_profiles() {
        for bad in [
            "name='x'\ndescription='d'\n",
            "name='x'\ndescription='d'\n[[library]]\nname='a'\npatterns=[]\naction='move'\n",
            "name='x'\ndescription='d'\n[[library]]\nname='a'\npatterns=['a/b']\naction='move'\n",
            "name='x'\ndescription='d'\n[[library]]\nname='a'\npatterns=['x']\naction='upstream'\n",
            "name='x'\ndescription='d'\n[[library]]\nname='a'\npatterns=['x']\naction='explode'\n",
            "name='x'\ndescription='d'\nbogus=1\n[[library]]\nname='a'\npatterns=['x']\naction='move'\n",
        ] {
            assert!(Profile::parse(bad, "test").is_err(), "{bad}");
        }
    }
}
