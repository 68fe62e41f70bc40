//! Checks shared by `audit`, `verify` and `split`'s self-check: PyPI's upload rules and the
//! promises a platform tag makes.

use std::collections::BTreeMap;

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
    /// The member the violation is about, when it is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
}

impl Violation {
    pub fn new(rule: &'static str, pypi: bool, message: String) -> Violation {
        Violation {
            rule,
            pypi,
            message,
            member: None,
        }
    }

    pub fn about(mut self, member: &str) -> Violation {
        self.member = Some(member.to_string());
        self
    }

    /// What identifies a violation across `split` and `trim`: the rule, and the file name of
    /// the member without auditwheel's hash (a library keeps it when it moves to a runtime
    /// wheel or is unhashed). An output violation with the key of one its input already had
    /// is not the rewrite's doing.
    pub fn key(&self) -> (String, String) {
        let file = self
            .member
            .as_deref()
            .map(|m| crate::profile::unhash(m.rsplit('/').next().unwrap_or(m)))
            .unwrap_or_default();
        (self.rule.to_string(), file)
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// PyPI's upload rules, as warehouse applies them to a wheel file.
pub fn upload_checks(wheel: &Wheel, installed_size: u64, max_size: u64) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut v = |rule, pypi, message: String| out.push(Violation::new(rule, pypi, message));
    if let Some(message) = platform_tag_problem(wheel) {
        v("platform-tag", true, message);
    }
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

/// The platform tags of the wheel's name that PyPI refuses, said with what to do.
pub fn platform_tag_problem(wheel: &Wheel) -> Option<String> {
    let refused: Vec<&str> = wheel
        .filename
        .platform
        .iter()
        .map(String::as_str)
        .filter(|p| !policy::pypi_accepts(p))
        .collect();
    let first = refused.first()?;
    let tags = refused
        .iter()
        .map(|t| format!("`{t}`"))
        .collect::<Vec<_>>()
        .join(", ");
    Some(if first.starts_with("linux_") {
        format!(
            "PyPI refuses the platform tag {tags}: a plain linux tag promises nothing about the system the wheel needs. \
             Run `auditwheel repair` on the wheel first (it bundles what a manylinux/musllinux system lacks and retags it), \
             then run wheelslim on what it writes"
        )
    } else {
        format!(
            "PyPI refuses the platform tag {tags}: it takes manylinux/musllinux tags on the CPUs it knows, \
             macOS, Windows, iOS, Android and Pyodide tags, and `any`; retag the wheel for the platform it was built for"
        )
    })
}

/// Natural order of dotted versions (`3.4.9` < `3.4.30`); non-numeric parts (`TM_1`,
/// `PRIVATE`) sort first.
fn version_order(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

/// The symbol versions each object needs from the system libraries against what the glibc
/// tag `tag` (written `platform`) allows: one violation per object and version prefix, naming
/// the newest version it needs.
fn symbol_version_checks(
    tag: &policy::LinuxTag,
    platform: &str,
    members: &[MemberFacts],
    out: &mut Vec<Violation>,
) {
    let system = tag.system_libraries();
    let limits = tag.symbol_versions();
    let policy_name = tag.policy().map_or("none", |p| p.name.as_str());
    for m in members {
        let Some(info) = m.host_elf() else { continue };
        // An object for another CPU is reported as such below; the tag's symbol lists
        // are not its own.
        if info.machine.platform_arch().is_some_and(|a| a != tag.arch) {
            continue;
        }
        // prefix → (highest version not allowed, library it is required from)
        let mut over: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
        for need in &info.version_needs {
            if !system.contains(&need.file) || policy::is_glibc_loader(&need.file) {
                continue;
            }
            for v in &need.versions {
                let Some((prefix, version)) = v.split_once('_') else {
                    continue;
                };
                let allowed = match limits.and_then(|l| l.get(prefix)) {
                    Some(list) => list.iter().any(|a| a == version),
                    // Only the glibc version is known for tags the data has no policy for.
                    None if prefix == "GLIBC" => match policy::parse_glibc(version) {
                        Some(need) => need <= tag.version,
                        None => version == "ABI_DT_RELR" && tag.version >= (2, 36),
                    },
                    None => true,
                };
                if allowed {
                    continue;
                }
                let e = over.entry(prefix).or_insert((version, &need.file));
                if version_order(version) > version_order(e.0) {
                    *e = (version, &need.file);
                }
            }
        }
        for (prefix, (version, file)) in over {
            let newest = limits
                .and_then(|l| l.get(prefix))
                .and_then(|l| l.iter().max_by_key(|v| version_order(v)));
            let (rule, promise) = match (prefix, newest) {
                ("GLIBC", _) => (
                    "manylinux-glibc",
                    format!("promises only glibc {}.{}", tag.version.0, tag.version.1),
                ),
                (_, Some(n)) => (
                    "manylinux-symbol-version",
                    format!("promises {prefix} versions up to {prefix}_{n}"),
                ),
                (_, None) => (
                    "manylinux-symbol-version",
                    format!("promises no {prefix} versions"),
                ),
            };
            out.push(
                Violation::new(
                    rule,
                    false,
                    format!(
                        "`{}` needs {prefix}_{version} from {file} but the platform tag {platform} {promise} \
                         (auditwheel {} policy {policy_name}); tag the wheel for the platform it needs, or build it on an older one",
                        m.name,
                        policy::AUDITWHEEL_VERSION,
                    ),
                )
                .about(&m.name),
            );
        }
    }
}

/// What the platform tag promises: every symbol version an object requires from the system
/// libraries is one auditwheel's policy for the tag allows (GLIBC, GLIBCXX, CXXABI, GCC, ...),
/// and the objects are for the tagged CPU. With several tags, the one naming the oldest glibc
/// is the one to satisfy.
pub fn platform_checks(wheel: &Wheel, members: &[MemberFacts]) -> Vec<Violation> {
    let mut out = Vec::new();
    let strictest = wheel
        .filename
        .platform
        .iter()
        .filter_map(|p| policy::linux_tag(p).map(|t| (t, p)))
        .filter(|(t, _)| t.libc == policy::Libc::Glibc)
        .min_by_key(|(t, _)| t.version);
    if let Some((tag, platform)) = &strictest {
        symbol_version_checks(tag, platform, members, &mut out);
    }
    out.extend(name_collisions(wheel));
    if wheel.root_is_purelib()
        && let Some((m, info)) = members
            .iter()
            .find_map(|m| m.host_elf().map(|info| (m, info)))
    {
        out.push(
            Violation::new(
                "purelib-with-binaries",
                false,
                format!(
                    "WHEEL says `Root-Is-Purelib: true` but `{}` is a {} ELF object: installers put it \
                     in purelib, which some systems keep apart from platlib (lib against lib64); \
                     build the wheel with `Root-Is-Purelib: false`",
                    m.name, info.machine
                ),
            )
            .about(&m.name),
        );
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
                out.push(
                    Violation::new(
                        "wrong-architecture",
                        false,
                        format!(
                            "`{}` is {} but the wheel is tagged {arch}",
                            m.name, info.machine
                        ),
                    )
                    .about(&m.name),
                );
            }
        }
    }
    out
}

/// Members whose names differ only in case or in Unicode normalisation: distinct files on
/// Linux, one file on macOS and Windows (and normalisation-insensitive file systems), where
/// the second overwrites the first at install.
pub fn name_collisions(wheel: &Wheel) -> Vec<Violation> {
    use unicode_normalization::UnicodeNormalization;
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    let mut out = Vec::new();
    for m in wheel.archive.members().iter().filter(|m| !m.is_dir) {
        let nfc: String = m.name.nfc().collect();
        let key = nfc.to_lowercase();
        match seen.get(key.as_str()) {
            Some(&first) if first != m.name => {
                let how = if first.nfc().eq(nfc.chars()) {
                    "Unicode normalisation"
                } else {
                    "case"
                };
                out.push(
                    Violation::new(
                        "name-collision",
                        false,
                        format!(
                            "`{first}` and `{}` differ only in {how}: they are one file on macOS and \
                             Windows, where installing overwrites one with the other; rename one",
                            m.name
                        ),
                    )
                    .about(&m.name),
                );
            }
            Some(_) => {}
            None => {
                seen.insert(key, &m.name);
            }
        }
    }
    out
}

/// Room every runtime wheel keeps for its own files (headers, METADATA, RECORD, licences):
/// a library fits in a wheel under `max_size` only within [`room_for_libraries`].
pub const RUNTIME_OVERHEAD: u64 = 256 * 1024;

/// Compressed bytes of libraries one wheel under `max_size` can hold.
pub fn room_for_libraries(max_size: u64) -> u64 {
    max_size.saturating_sub(RUNTIME_OVERHEAD)
}

/// The per-file limit, in whole MiB, that a wheel holding `bytes` of compressed libraries
/// needs: what to ask the index for when nothing else makes it fit.
pub fn limit_to_ask_mib(bytes: u64) -> u64 {
    (bytes + RUNTIME_OVERHEAD).div_ceil(1024 * 1024)
}

/// Sizes for people: MiB with one decimal (smaller ones in KiB or bytes).
pub fn mib_text(bytes: u64) -> String {
    // Under a MiB, in KiB or bytes: a small limit once read "0.0 MiB over the 0.0 MiB limit".
    if bytes < 1024 * 1024 {
        return crate::cli_size(bytes);
    }
    format!("{:.1} MiB", mib(bytes))
}

/// The one rule for a library that cannot fit in any wheel under `max_size` even alone, used
/// by `split`, its `--dry-run` and (through them) the hints: names the member and by how much
/// it is over, and says what can still help given the options used. `has_device`: the
/// library carries device code a trim could cut; `trim_given`: `--sm`/`--gfx` was given;
/// `overhead`: the room a wheel keeps for its own files (headers, METADATA, RECORD).
pub fn cannot_fit_alone(
    location: &str,
    bytes: u64,
    max_size: u64,
    overhead: u64,
    has_device: bool,
    trim_given: bool,
    debug_bytes: u64,
) -> crate::error::Error {
    let room = max_size.saturating_sub(overhead);
    let over = bytes.saturating_sub(room);
    // What to ask the index for: the library plus the wheel's own room, in whole MiB.
    let ask = (bytes + overhead)
        .div_ceil(1024 * 1024)
        .max(limit_to_ask_mib(bytes));
    let index = format!(
        "ask the index for a per-file limit of at least {ask} MiB (PyPI: a file size limit request) and pass --max-size {ask}MiB"
    );
    let strip = if debug_bytes > 0 {
        format!(
            "remove its {} of debug sections (.debug_*) with --strip-debug, ",
            mib_text(debug_bytes)
        )
    } else {
        String::new()
    };
    let hint = match (has_device, trim_given) {
        (true, false) => format!(
            "trim its device code to the GPUs you ship for (--sm 80,90 / --gfx ...), {strip}or {index}"
        ),
        (true, true) => format!(
            "it is over even with the targets given: name fewer targets, add --unmatched drop if it carries code for targets you did not name, {strip}or {index}"
        ),
        (false, _) if debug_bytes > 0 => {
            format!("it has no device code to trim, but {strip}or {index}")
        }
        (false, _) => format!(
            "it has no device code to trim or debug sections to strip, so nothing wheelslim does makes it fit: {index}"
        ),
    };
    crate::error::Error::refused(
        format!(
            "{location} is {} compressed ({bytes} bytes) and cannot fit in a wheel even alone: a wheel under the {} limit has room for {} of libraries ({} kept for its own files), {over} bytes ({}) too few",
            mib_text(bytes),
            mib_text(max_size),
            mib_text(room),
            mib_text(overhead),
            mib_text(over),
        ),
        Some(hint),
    )
}

/// The rule for a main wheel whose members that stay already come to more than `max_size`
/// compressed (`staying`): no division can help. Names the largest members (`largest`:
/// location and compressed bytes), by how much the wheel is over, and what limit to ask for.
pub fn main_cannot_fit(
    output: &str,
    staying: u64,
    max_size: u64,
    largest: &[(String, u64)],
    has_device: bool,
    debug_bytes: u64,
) -> crate::error::Error {
    let files = largest
        .iter()
        .map(|(m, b)| format!("{m} ({})", mib_text(*b)))
        .collect::<Vec<_>>()
        .join(", ");
    // Room for the central directory and the regenerated RECORD.
    let ask = (staying + 64 * 1024).div_ceil(1024 * 1024);
    let index = format!(
        "ask the index for a per-file limit of at least {ask} MiB (PyPI: a file size limit request) and pass --max-size {ask}MiB"
    );
    let hint = match (has_device, debug_bytes > 0) {
        (true, false) => {
            format!("trim device code to the GPUs you ship for (--sm/--gfx), or {index}")
        }
        (true, true) => format!(
            "trim device code to the GPUs you ship for (--sm/--gfx), remove the {} of debug sections (.debug_*) in what stays with --strip-debug, or {index}",
            mib_text(debug_bytes)
        ),
        (false, true) => format!(
            "what stays has no device code to trim, but {} of debug sections (.debug_*): remove them with --strip-debug, or {index}",
            mib_text(debug_bytes)
        ),
        (false, false) => format!(
            "nothing it keeps has device code to trim or debug sections to strip, so nothing wheelslim does makes it fit: {index}"
        ),
    };
    crate::error::Error::refused(
        format!(
            "`{output}` would be at least {} compressed, {} over the {} limit, with the members that stay; the largest: {files}",
            mib_text(staying),
            mib_text(staying.saturating_sub(max_size)),
            mib_text(max_size),
        ),
        Some(hint),
    )
}
