//! Wheel filenames: `{dist}-{version}(-{build})?-{python}-{abi}-{platform}(-{variant})?.whl`.
//!
//! Tag sets may be compressed (`py2.py3`, `manylinux2014_x86_64.manylinux_2_17_x86_64`); the
//! optional trailing variant label follows PEP 825 (draft).

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid wheel filename {filename:?}: {reason}")]
pub struct FilenameError {
    pub filename: String,
    pub reason: String,
}

/// A parsed wheel filename. `Display` gives back the canonical text (tag sets sorted).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WheelFilename {
    /// Distribution name as written in the filename (`_` for separators).
    pub name: String,
    pub version: String,
    pub build: Option<String>,
    pub python: Vec<String>,
    pub abi: Vec<String>,
    pub platform: Vec<String>,
    /// PEP 825 variant label, if any.
    pub variant: Option<String>,
}

fn is_tag_atom(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

fn split_tags(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.split('.').map(str::to_string).collect();
    v.sort();
    v.dedup();
    v
}

impl WheelFilename {
    /// The normalized project name (PEP 503: lowercase, runs of `-_.` become `-`).
    pub fn normalized_name(&self) -> String {
        normalize_name(&self.name)
    }

    /// Every `python-abi-platform` tag the compressed tag sets stand for.
    pub fn tags(&self) -> Vec<String> {
        let mut out = Vec::new();
        for p in &self.python {
            for a in &self.abi {
                for pl in &self.platform {
                    out.push(format!("{p}-{a}-{pl}"));
                }
            }
        }
        out
    }

    /// The `{name}-{version}` prefix of the `.dist-info` folder.
    pub fn dist_info_prefix(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }
}

/// PEP 503 normalization.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if c == '-' || c == '_' || c == '.' {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// The form of a name used in filenames and `.dist-info` folders (PEP 427 / binary
/// distribution format: runs of `-_.` become `_`, lowercase).
pub fn filename_safe_name(name: &str) -> String {
    normalize_name(name).replace('-', "_")
}

impl FromStr for WheelFilename {
    type Err = FilenameError;

    fn from_str(filename: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| FilenameError {
            filename: filename.to_string(),
            reason: reason.to_string(),
        };
        let stem = filename
            .strip_suffix(".whl")
            .ok_or_else(|| err("does not end in `.whl`"))?;
        if stem.contains('/') || stem.contains('\\') {
            return Err(err("contains a path separator"));
        }
        let parts: Vec<&str> = stem.split('-').collect();
        let (name, version, build, py, abi, plat, variant) = match parts.as_slice() {
            [n, v, p, a, pl] => (*n, *v, None, *p, *a, *pl, None),
            [n, v, b, p, a, pl] if b.starts_with(|c: char| c.is_ascii_digit()) => {
                (*n, *v, Some(*b), *p, *a, *pl, None)
            }
            [n, v, p, a, pl, var] => (*n, *v, None, *p, *a, *pl, Some(*var)),
            [n, v, b, p, a, pl, var] => (*n, *v, Some(*b), *p, *a, *pl, Some(*var)),
            _ => {
                return Err(err(
                    "expected `{name}-{version}(-{build})?-{python}-{abi}-{platform}.whl`",
                ));
            }
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        {
            return Err(err(
                "the distribution name has characters other than letters, digits, `_` and `.`",
            ));
        }
        // PEP 508: a name starts and ends with a letter or digit (`..` is no project).
        if !name.starts_with(|c: char| c.is_ascii_alphanumeric())
            || !name.ends_with(|c: char| c.is_ascii_alphanumeric())
        {
            return Err(err(
                "the distribution name does not start and end with a letter or digit",
            ));
        }
        if version.is_empty()
            || !version.bytes().all(|b| {
                b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'+' || b == b'!'
            })
        {
            return Err(err("the version is empty or has unexpected characters"));
        }
        if let Some(b) = build
            && !is_tag_atom(b)
        {
            return Err(err("the build tag has unexpected characters"));
        }
        for (what, set) in [("python", py), ("abi", abi), ("platform", plat)] {
            if !set.split('.').all(is_tag_atom) {
                return Err(err(&format!(
                    "the {what} tag {set:?} is not a valid tag set"
                )));
            }
        }
        if let Some(v) = variant
            && !v
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
        {
            return Err(err(
                "the variant label has characters other than `0-9a-z_.`",
            ));
        }
        Ok(WheelFilename {
            name: name.to_string(),
            version: version.to_string(),
            build: build.map(str::to_string),
            python: split_tags(py),
            abi: split_tags(abi),
            platform: split_tags(plat),
            variant: variant.map(str::to_string),
        })
    }
}

impl fmt::Display for WheelFilename {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.name, self.version)?;
        if let Some(b) = &self.build {
            write!(f, "-{b}")?;
        }
        write!(
            f,
            "-{}-{}-{}",
            self.python.join("."),
            self.abi.join("."),
            self.platform.join(".")
        )?;
        if let Some(v) = &self.variant {
            write!(f, "-{v}")?;
        }
        f.write_str(".whl")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names that normalize to nothing or to separators are no project names (they would name
    /// output files and folders).
    #[test]
    fn names_start_and_end_with_a_letter_or_digit() {
        for bad in [
            "..-1.0-py3-none-any.whl",
            "_x-1.0-py3-none-any.whl",
            "x.-1.0-py3-none-any.whl",
        ] {
            assert!(bad.parse::<WheelFilename>().is_err(), "{bad}");
        }
        assert!(
            "a.b_c-1.0-py3-none-any.whl"
                .parse::<WheelFilename>()
                .is_ok()
        );
    }

    #[test]
    fn parses_compressed_tags_and_build() {
        let f: WheelFilename =
            "torch-2.9.1-1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
                .parse()
                .unwrap();
        assert_eq!(f.build.as_deref(), Some("1"));
        assert_eq!(
            f.platform,
            vec!["manylinux2014_x86_64", "manylinux_2_17_x86_64"]
        );
        assert_eq!(f.tags().len(), 2);
        assert_eq!(
            f.to_string(),
            "torch-2.9.1-1-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"
        );
    }

    #[test]
    fn parses_variant_label() {
        let f: WheelFilename = "x-1.0-py3-none-linux_x86_64-cu128.whl".parse().unwrap();
        assert_eq!(f.variant.as_deref(), Some("cu128"));
        assert_eq!(f.build, None);
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "x-1.0-py3-none.whl",
            "x-1.0-py3-none-any.zip",
            "../x-1.0-py3-none-any.whl",
            "x-1.0-py3-none-any/../..whl",
            "x-1.0-py3-none-a$y.whl",
        ] {
            assert!(bad.parse::<WheelFilename>().is_err(), "{bad}");
        }
    }

    #[test]
    fn normalizes_names() {
        assert_eq!(normalize_name("Foo.Bar__baz"), "foo-bar-baz");
        assert_eq!(filename_safe_name("Foo.Bar-baz"), "foo_bar_baz");
    }
}
