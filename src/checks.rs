//! Checks shared by `audit`, `verify` and `split`'s self-check: PyPI's upload rules and the
//! promises a platform tag makes.

use serde::Serialize;

use crate::facts::MemberFacts;
use crate::policy;
use crate::wheel::zip::ZipFinding;
use crate::wheel::{Wheel, ZipError};

/// PyPI's default per-file upload limit (warehouse `MAX_FILESIZE`).
pub const PYPI_MAX_FILESIZE: u64 = 100 * 1024 * 1024;
/// Warehouse rejects wheels whose uncompressed/compressed ratio exceeds this...
pub const COMPRESSION_RATIO_THRESHOLD: f64 = 50.0;
/// ...when the uncompressed size is above this.
pub const COMPRESSION_RATIO_MIN_SIZE: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Stable rule id (`max-size`, `compression-ratio`, ...).
    pub rule: &'static str,
    /// True for rules PyPI enforces at upload; false for install-time checks.
    pub pypi: bool,
    pub message: String,
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// PyPI's upload rules, as warehouse applies them to a wheel file.
pub fn upload_checks(wheel: &Wheel, installed_size: u64, max_size: u64) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut v = |rule, pypi, message: String| {
        out.push(Violation {
            rule,
            pypi,
            message,
        })
    };
    let compressed_size = wheel.archive.file_len();
    if compressed_size > max_size {
        v(
            "max-size",
            true,
            format!(
                "the wheel is {compressed_size} bytes ({:.1} MiB), over the {max_size} byte ({:.1} MiB) limit",
                mib(compressed_size),
                mib(max_size)
            ),
        );
    }
    if installed_size > COMPRESSION_RATIO_MIN_SIZE && compressed_size > 0 {
        let ratio = installed_size as f64 / compressed_size as f64;
        if ratio > COMPRESSION_RATIO_THRESHOLD {
            v(
                "compression-ratio",
                true,
                format!(
                    "uncompressed/compressed ratio is {ratio:.1}, above PyPI's {COMPRESSION_RATIO_THRESHOLD} for wheels over 64 MiB uncompressed"
                ),
            );
        }
    }
    for f in wheel.archive.findings() {
        match f {
            ZipFinding::UnsupportedMethod { member, method } => v(
                "compression-method",
                true,
                format!(
                    "`{member}` uses compression method {method}; PyPI accepts only STORED and DEFLATE"
                ),
            ),
            ZipFinding::DataDescriptor { member } => v(
                "data-descriptor",
                true,
                format!("`{member}` has a data descriptor; PyPI rejects them"),
            ),
            ZipFinding::DuplicateName { member } => v(
                "duplicate-name",
                true,
                format!("`{member}` appears more than once"),
            ),
            ZipFinding::Comment { bytes } => v(
                "zip-comment",
                true,
                format!("the archive has a {bytes}-byte comment; PyPI rejects it"),
            ),
            ZipFinding::TrailingData { bytes } => v(
                "trailing-data",
                true,
                format!("{bytes} bytes follow the end of the archive"),
            ),
            ZipFinding::LeadingData { bytes } => v(
                "unexpected-data",
                true,
                format!("{bytes} unexplained bytes sit before or inside the central directory"),
            ),
            ZipFinding::Symlink { member } => v(
                "symlink",
                false,
                format!("`{member}` is a symlink; installers write it as a regular file"),
            ),
            ZipFinding::Zip64 => {}
        }
    }
    for m in wheel.archive.members() {
        if let Some(p) = &m.problem {
            let rule = match p {
                ZipError::LocalHeaderMismatch { .. } | ZipError::BadLocalHeader(_) => {
                    "local-header"
                }
                ZipError::UnsafeName { .. } | ZipError::NameNotUtf8 => "unsafe-name",
                // Reported above from the archive's findings.
                ZipError::DuplicateName | ZipError::UnsupportedMethod(_) => continue,
                _ => "unreadable-member",
            };
            v(rule, true, format!("`{}`: {p}", m.name));
        }
    }
    out
}

/// What the platform tag promises: the glibc it names covers what the objects need, and the
/// objects are for the tagged CPU.
pub fn platform_checks(wheel: &Wheel, members: &[MemberFacts]) -> Vec<Violation> {
    let mut out = Vec::new();
    let promised = wheel
        .filename
        .platform
        .iter()
        .filter_map(|p| policy::tag_glibc(p))
        .min();
    if let Some(promised) = promised {
        for m in members {
            if let Some(info) = m.host_elf()
                && let Some(need) = info.glibc.as_deref().and_then(policy::parse_glibc)
                && need > promised
            {
                out.push(Violation {
                    rule: "manylinux-glibc",
                    pypi: false,
                    message: format!(
                        "`{}` needs GLIBC_{}.{} but the platform tag promises glibc {}.{}",
                        m.name, need.0, need.1, promised.0, promised.1
                    ),
                });
            }
        }
    }
    let arch = wheel
        .filename
        .platform
        .iter()
        .find_map(|p| policy::tag_arch(p));
    if let Some(arch) = arch {
        for m in members {
            if let Some(info) = m.host_elf()
                && info.machine.platform_arch().is_some_and(|a| a != arch)
            {
                out.push(Violation {
                    rule: "wrong-architecture",
                    pypi: false,
                    message: format!(
                        "`{}` is {} but the wheel is tagged {arch}",
                        m.name, info.machine
                    ),
                });
            }
        }
    }
    out
}
