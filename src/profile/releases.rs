//! Version ranges for upstream requirements (`split --upstream`), from what a library really is.
//!
//! A library's file name does not always carry its package's version: CUPTI's is the CUPTI
//! release (`libcupti.so.2025.1.1`, shipped by `nvidia-cuda-cupti-cu12` 12.8.90), and NVIDIA's own
//! wheels hold only the soname (`libcudart.so.12`). `profiles/upstream-releases.toml` lists the
//! releases the index has for every upstream package the profiles name, and a table of library
//! files whose version is not their package's. A range is only emitted when some listed release
//! satisfies it, and the libraries of one package give one requirement line.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

use super::libname::{soname_version, unhash, version_prefixes};

const DATA: &str = include_str!("../../profiles/upstream-releases.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPackage {
    name: String,
    versions: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLibrary {
    package: String,
    file: String,
    package_version: String,
    #[allow(dead_code)]
    source: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDigest {
    package: String,
    #[allow(dead_code)]
    file: String,
    sha256: String,
    package_version: String,
    #[allow(dead_code)]
    source: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReleases {
    #[serde(rename = "digest", default)]
    digests: Vec<RawDigest>,
    #[serde(rename = "package", default)]
    packages: Vec<RawPackage>,
    #[serde(rename = "library", default)]
    libraries: Vec<RawLibrary>,
}

/// The release numbers of a version (`12.8.90` → `[12, 8, 90]`); `None` for anything else
/// (pre-releases, local versions), which a plain range never selects anyway.
pub fn release(v: &str) -> Option<Vec<u64>> {
    let parts: Vec<u64> = v
        .split('.')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    (!parts.is_empty()).then_some(parts)
}

/// PEP 440 comparison of release numbers (missing parts are zero).
fn cmp(a: &[u64], b: &[u64]) -> std::cmp::Ordering {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| {
            a.get(i)
                .copied()
                .unwrap_or(0)
                .cmp(&b.get(i).copied().unwrap_or(0))
        })
        .find(|o| o.is_ne())
        .unwrap_or(std::cmp::Ordering::Equal)
}

/// `>=lower` and, when set, `<upper` (a major).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub lower: Vec<u64>,
    pub upper: Option<u64>,
}

impl Range {
    /// `>=12.8,<13` from `12.8.90`: the major and minor it was built against, up to the next
    /// major.
    pub fn from_version(v: &str) -> Option<Range> {
        let parts = release(v)?;
        Some(Range {
            lower: parts.iter().take(2).copied().collect(),
            upper: Some(parts[0] + 1),
        })
    }

    pub fn contains(&self, v: &[u64]) -> bool {
        cmp(v, &self.lower).is_ge() && self.upper.is_none_or(|u| cmp(v, &[u]).is_lt())
    }

    fn intersect(&self, o: &Range) -> Range {
        let lower = if cmp(&self.lower, &o.lower).is_ge() {
            self.lower.clone()
        } else {
            o.lower.clone()
        };
        let upper = match (self.upper, o.upper) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Range { lower, upper }
    }

    pub fn spec(&self) -> String {
        let lower: Vec<String> = self.lower.iter().map(u64::to_string).collect();
        match self.upper {
            Some(u) => format!(">={},<{u}", lower.join(".")),
            None => format!(">={}", lower.join(".")),
        }
    }
}

/// Known releases of upstream packages, and library files whose version is not their package's.
#[derive(Debug, Default)]
pub struct Releases {
    packages: BTreeMap<String, Vec<Vec<u64>>>,
    /// (package, file) → package version.
    libraries: BTreeMap<(String, String), String>,
    /// (package, sha256 in hex) → the lowest release shipping those bytes.
    digests: BTreeMap<(String, String), Vec<u64>>,
}

impl Releases {
    pub fn parse(text: &str) -> Result<Releases, String> {
        let raw: RawReleases = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut r = Releases::default();
        for p in raw.packages {
            let vs = p.versions.iter().filter_map(|v| release(v)).collect();
            r.packages.insert(crate::wheel::normalize_name(&p.name), vs);
        }
        for l in raw.libraries {
            if release(&l.package_version).is_none() {
                return Err(format!(
                    "{}: package_version `{}` is not a release number",
                    l.file, l.package_version
                ));
            }
            r.libraries.insert(
                (crate::wheel::normalize_name(&l.package), l.file),
                l.package_version,
            );
        }
        for d in raw.digests {
            let v = release(&d.package_version).ok_or_else(|| {
                format!(
                    "{}: package_version `{}` is not a release number",
                    d.file, d.package_version
                )
            })?;
            let key = (
                crate::wheel::normalize_name(&d.package),
                d.sha256.to_ascii_lowercase(),
            );
            let slot = r.digests.entry(key).or_insert_with(|| v.clone());
            if cmp(&v, slot).is_lt() {
                *slot = v;
            }
        }
        Ok(r)
    }

    /// The embedded table.
    pub fn built_in() -> &'static Releases {
        static R: OnceLock<Releases> = OnceLock::new();
        // PANIC SAFETY: the embedded table is checked by a unit test.
        R.get_or_init(|| Releases::parse(DATA).expect("profiles/upstream-releases.toml parses"))
    }

    /// The releases the index lists for `package`, when known.
    pub fn versions(&self, package: &str) -> Option<&[Vec<u64>]> {
        self.packages
            .get(&crate::wheel::normalize_name(package))
            .map(Vec::as_slice)
    }

    /// True unless the package's releases are known and none is in `range`.
    pub fn satisfiable(&self, package: &str, range: &Range) -> bool {
        self.versions(package)
            .is_none_or(|vs| vs.iter().any(|v| range.contains(v)))
    }

    /// The range one library of `package` asks for, from its bytes, file name and SONAME: the
    /// release whose wheel holds exactly these bytes, else the table's entry for the file, else the file's version when it belongs to the soname's series
    /// (`libcudart.so.12.8.90` with soname `libcudart.so.12`), else the soname's major. `None`
    /// when the library says nothing the package's releases can satisfy.
    pub fn library_range(
        &self,
        package: &str,
        file_name: &str,
        soname: Option<&str>,
        sha256: Option<&[u8; 32]>,
    ) -> Option<Range> {
        let file = unhash(file_name);
        let key = crate::wheel::normalize_name(package);
        if let Some(h) = sha256 {
            let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
            if let Some(v) = self.digests.get(&(key.clone(), hex)) {
                return Some(Range {
                    lower: v.iter().take(2).copied().collect(),
                    upper: Some(v[0] + 1),
                });
            }
        }
        for name in version_prefixes(&file) {
            if let Some(v) = self.libraries.get(&(key.clone(), name)) {
                return Range::from_version(v);
            }
        }
        let file_version = soname_version(&file).and_then(release);
        let soname_major = soname
            .map(unhash)
            .and_then(|s| soname_version(&s).and_then(release))
            .map(|v| v[0]);
        let mut candidates = Vec::new();
        if let Some(v) = &file_version
            && soname_major.is_none_or(|m| m == v[0])
        {
            candidates.push(Range {
                lower: v.iter().take(2).copied().collect(),
                upper: Some(v[0] + 1),
            });
        }
        if let Some(m) = soname_major.or(file_version.map(|v| v[0])) {
            candidates.push(Range {
                lower: vec![m],
                upper: Some(m + 1),
            });
        }
        candidates
            .into_iter()
            .find(|r| self.satisfiable(package, r))
    }

    /// One range for all the libraries of a package: the narrowest that still has a release,
    /// taking the tightest lower bounds first. `None` when no library says anything.
    pub fn merge(&self, package: &str, ranges: &[Range]) -> Option<Range> {
        let mut sorted: Vec<&Range> = ranges.iter().collect();
        sorted.sort_by(|a, b| cmp(&b.lower, &a.lower).then(a.upper.cmp(&b.upper)));
        let mut out: Option<Range> = None;
        for r in sorted {
            let next = out.as_ref().map_or(r.clone(), |o| o.intersect(r));
            if self.satisfiable(package, &next) {
                out = Some(next);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_parses_and_knows_the_profiles_packages() {
        let r = Releases::built_in();
        for p in crate::profile::Profile::all_built_in() {
            for rule in &p.libraries {
                let Some(up) = &rule.upstream else { continue };
                for cuda in [None, Some(11), Some(12), Some(13)] {
                    if let Some(name) = up.package_for(cuda) {
                        assert!(r.versions(&name).is_some(), "{}: {name}", p.name);
                    }
                }
            }
        }
    }

    #[test]
    fn ranges_come_from_what_the_library_is() {
        let r = Releases::built_in();
        let spec =
            |p: &str, f: &str, s: Option<&str>| r.library_range(p, f, s, None).map(|x| x.spec());
        // CUPTI's own release number maps to the wheel that holds the same bytes.
        assert_eq!(
            spec(
                "nvidia-cuda-cupti-cu12",
                "libcupti.so.2025.1.1",
                Some("libcupti.so.12")
            )
            .as_deref(),
            Some(">=12.8,<13")
        );
        // A year version nobody mapped falls back to the soname's major, never `>=2025`.
        assert_eq!(
            spec(
                "nvidia-cuda-cupti-cu12",
                "libcupti.so.2031.1.0",
                Some("libcupti.so.12")
            )
            .as_deref(),
            Some(">=12,<13")
        );
        // A 12.9 cudart does not accept 12.0.
        assert_eq!(
            spec(
                "nvidia-cuda-runtime-cu12",
                "libcudart-53d54daa.so.12.9.79",
                None
            )
            .as_deref(),
            Some(">=12.9,<13")
        );
        // A series with no release at all says nothing.
        assert_eq!(
            spec(
                "nvidia-nvshmem-cu12",
                "nvshmem_transport_ibrc.so.7",
                Some("nvshmem_transport_ibrc.so.7")
            ),
            None
        );
        let merged = r
            .merge(
                "nvidia-cuda-cupti-cu12",
                &[
                    Range::from_version("12").unwrap(),
                    Range::from_version("12.8").unwrap(),
                    Range::from_version("2025.1").unwrap(),
                ],
            )
            .unwrap();
        assert_eq!(merged.spec(), ">=12.8,<13");
    }

    #[test]
    fn the_bytes_of_an_nvidia_library_name_its_release() {
        let text = "[[package]]\nname = 'nvidia-cuda-runtime-cu12'\nversions = ['12.0.146', '12.9.79']\n\n[[digest]]\npackage = 'nvidia-cuda-runtime-cu12'\nfile = 'libcudart.so.12'\nsha256 = '0101010101010101010101010101010101010101010101010101010101010101'\npackage_version = '12.9.79'\nsource = 'test'\n";
        let r = Releases::parse(text).unwrap();
        let known = [1u8; 32];
        let spec = |h: &[u8; 32]| {
            r.library_range(
                "nvidia-cuda-runtime-cu12",
                "libcudart.so.12",
                Some("libcudart.so.12"),
                Some(h),
            )
            .map(|x| x.spec())
        };
        // A 12.9 cudart, known by its bytes, does not accept 12.0.
        assert_eq!(spec(&known).as_deref(), Some(">=12.9,<13"));
        assert_eq!(spec(&[2u8; 32]).as_deref(), Some(">=12,<13"));
        // The embedded table has real digests.
        assert!(Releases::built_in().digests.len() >= 10);
    }
}
