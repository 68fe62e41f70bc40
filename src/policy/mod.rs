//! What a Linux platform tag promises, and which platform tags PyPI takes at all.
//!
//! The system libraries a wheel may link without bundling them, and the symbol versions it may
//! require from them, are auditwheel's published policy data: `manylinux-policy.json` and
//! `musllinux-policy.json` from the auditwheel 6.8.0 wheel on PyPI, embedded unchanged in this
//! folder (MIT licence, notice in `LICENSE-auditwheel`; provenance in `README.md`). One policy
//! per glibc (`manylinux_2_5` … `manylinux_2_41`, with the legacy aliases `manylinux1`,
//! `manylinux2010`, `manylinux2014`) and per musl (`musllinux_1_1`, `musllinux_1_2`).
//!
//! Which platform tags PyPI accepts is warehouse's upload check, restated in [`pypi_accepts`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use serde::Deserialize;

/// The auditwheel release the embedded policy data comes from.
pub const AUDITWHEEL_VERSION: &str = "6.8.0";

const MANYLINUX_JSON: &str = include_str!("manylinux-policy.json");
const MUSLLINUX_JSON: &str = include_str!("musllinux-policy.json");

/// One entry of auditwheel's policy files, as published.
#[derive(Debug, Clone, Deserialize)]
pub struct Policy {
    /// `manylinux_2_17`, `musllinux_1_2`, or `linux` (the policy that promises nothing).
    pub name: String,
    /// Architecture → symbol-version prefix (`GLIBC`, `GLIBCXX`, `CXXABI`, `GCC`, ...) → the
    /// versions (without the prefix) a wheel may require.
    pub symbol_versions: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// Sonames every system of this policy provides.
    pub lib_whitelist: Vec<String>,
}

impl Policy {
    /// (major, minor) of the libc the policy is named after: `manylinux_2_17` → (2, 17).
    pub fn libc_version(&self) -> Option<(u32, u32)> {
        let rest = self
            .name
            .strip_prefix("manylinux_")
            .or_else(|| self.name.strip_prefix("musllinux_"))?;
        let (a, b) = rest.split_once('_')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    }
}

fn parse(json: &str, what: &str) -> Vec<Policy> {
    // The data is compiled in and checked by the tests below; a parse failure is a build bug.
    let mut all: Vec<Policy> = serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("embedded auditwheel {what} policy data does not parse: {e}"));
    all.retain(|p| p.name != "linux");
    all.sort_by_key(Policy::libc_version);
    all
}

static MANYLINUX: LazyLock<Vec<Policy>> = LazyLock::new(|| parse(MANYLINUX_JSON, "manylinux"));
static MUSLLINUX: LazyLock<Vec<Policy>> = LazyLock::new(|| parse(MUSLLINUX_JSON, "musllinux"));

/// auditwheel's manylinux policies, oldest glibc first.
pub fn manylinux() -> &'static [Policy] {
    &MANYLINUX
}

/// auditwheel's musllinux policies, oldest musl first.
pub fn musllinux() -> &'static [Policy] {
    &MUSLLINUX
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Libc {
    Glibc,
    Musl,
}

/// A Linux platform tag, read: `manylinux_2_17_x86_64`, `manylinux2014_aarch64`,
/// `musllinux_1_2_x86_64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinuxTag {
    pub libc: Libc,
    /// The libc version the tag promises at least.
    pub version: (u32, u32),
    pub arch: String,
}

/// Reads a manylinux or musllinux platform tag, legacy aliases included. `None` for anything
/// else (`linux_x86_64`, `any`, `win_amd64`, ...).
pub fn linux_tag(platform: &str) -> Option<LinuxTag> {
    for (alias, version) in [
        ("manylinux1_", (2, 5)),
        ("manylinux2010_", (2, 12)),
        ("manylinux2014_", (2, 17)),
    ] {
        if let Some(arch) = platform.strip_prefix(alias) {
            return (!arch.is_empty()).then(|| LinuxTag {
                libc: Libc::Glibc,
                version,
                arch: arch.to_string(),
            });
        }
    }
    let (libc, rest) = if let Some(r) = platform.strip_prefix("manylinux_") {
        (Libc::Glibc, r)
    } else if let Some(r) = platform.strip_prefix("musllinux_") {
        (Libc::Musl, r)
    } else {
        return None;
    };
    let mut it = rest.splitn(3, '_');
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    let arch = it.next().filter(|a| !a.is_empty())?;
    Some(LinuxTag {
        libc,
        version: (major, minor),
        arch: arch.to_string(),
    })
}

impl LinuxTag {
    /// The auditwheel policy for this tag: the one of its libc version, or, for a libc newer
    /// than the data knows, the newest older one (systems only gain libraries).
    pub fn policy(&self) -> Option<&'static Policy> {
        let all = match self.libc {
            Libc::Glibc => manylinux(),
            Libc::Musl => musllinux(),
        };
        if let Some(p) = all.iter().find(|p| p.libc_version() == Some(self.version)) {
            return Some(p);
        }
        // A tag older than every policy (no such platform exists) is read with the oldest.
        all.iter()
            .rev()
            .find(|p| p.libc_version().is_some_and(|v| v <= self.version))
            .or(all.first())
    }

    /// True when the data has a policy for exactly this libc version (not a newer tag read
    /// with an older policy).
    pub fn policy_is_exact(&self) -> bool {
        self.policy()
            .is_some_and(|p| p.libc_version() == Some(self.version))
    }

    /// The symbol-version limits for this tag's architecture (prefix → allowed versions), when
    /// the data has them for exactly this tag.
    pub fn symbol_versions(&self) -> Option<&'static BTreeMap<String, Vec<String>>> {
        if !self.policy_is_exact() {
            return None;
        }
        self.policy()?.symbol_versions.get(&self.arch)
    }

    /// The system libraries this tag lets a wheel link without bundling them.
    pub fn system_libraries(&self) -> SystemLibraries {
        let mut names = BTreeSet::new();
        if let Some(p) = self.policy() {
            for lib in &p.lib_whitelist {
                // musl's C library: auditwheel lists it as `libc.so`; Alpine names it
                // `libc.musl-<arch>.so.1`, which is what objects linked there need.
                if self.libc == Libc::Musl && lib == "libc.so" {
                    names.insert(format!("libc.musl-{}.so.1", musl_arch(&self.arch)));
                }
                names.insert(lib.clone());
            }
        }
        SystemLibraries {
            names,
            glibc_loaders: self.libc == Libc::Glibc,
            musl_loaders: self.libc == Libc::Musl,
        }
    }
}

/// musl's name for a CPU in `libc.musl-<arch>.so.1` (as auditwheel maps it).
fn musl_arch(arch: &str) -> &str {
    match arch {
        "i686" => "x86",
        "armv7l" => "armv7",
        other => other,
    }
}

/// Sonames a wheel may leave to the system, and whether the dynamic loaders of glibc
/// (`ld-linux*`, `ld64.so.*`) and of musl (`ld-musl-*`) count among them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemLibraries {
    names: BTreeSet<String>,
    glibc_loaders: bool,
    musl_loaders: bool,
}

impl SystemLibraries {
    /// The platforms a set of wheels is tagged for, read together: a library is a system one
    /// when every Linux tag among them provides it (a wheel must run on all the platforms it
    /// names). With no manylinux or musllinux tag at all, [`SystemLibraries::any_linux`].
    pub fn for_platforms<'a>(platforms: impl IntoIterator<Item = &'a str>) -> SystemLibraries {
        let mut out: Option<SystemLibraries> = None;
        for tag in platforms.into_iter().filter_map(linux_tag) {
            let s = tag.system_libraries();
            out = Some(match out {
                None => s,
                Some(o) => SystemLibraries {
                    names: o.names.intersection(&s.names).cloned().collect(),
                    glibc_loaders: o.glibc_loaders && s.glibc_loaders,
                    musl_loaders: o.musl_loaders && s.musl_loaders,
                },
            });
        }
        out.unwrap_or_else(SystemLibraries::any_linux)
    }

    /// What some manylinux or musllinux platform provides (for wheels whose tag promises
    /// nothing, such as `linux_x86_64`: their tag is reported on its own).
    pub fn any_linux() -> SystemLibraries {
        let mut names = BTreeSet::new();
        for p in manylinux().iter().chain(musllinux()) {
            names.extend(p.lib_whitelist.iter().cloned());
        }
        for arch in [
            "x86_64",
            "i686",
            "aarch64",
            "armv7l",
            "ppc64le",
            "s390x",
            "riscv64",
            "loongarch64",
        ] {
            names.insert(format!("libc.musl-{}.so.1", musl_arch(arch)));
        }
        SystemLibraries {
            names,
            glibc_loaders: true,
            musl_loaders: true,
        }
    }

    pub fn contains(&self, soname: &str) -> bool {
        self.names.contains(soname)
            || (self.glibc_loaders && is_glibc_loader(soname))
            || (self.musl_loaders && soname.starts_with("ld-musl-") && soname.ends_with(".so.1"))
    }
}

/// glibc's dynamic loader under its per-architecture names.
pub fn is_glibc_loader(soname: &str) -> bool {
    soname.starts_with("ld-linux") || soname == "ld64.so.2" || soname == "ld64.so.1"
}

/// The CPU architecture part of a platform tag (`manylinux_2_17_x86_64` → `x86_64`).
pub fn tag_arch(platform: &str) -> Option<&'static str> {
    [
        "x86_64",
        "aarch64",
        "ppc64le",
        "s390x",
        "armv7l",
        "i686",
        "riscv64",
        "loongarch64",
    ]
    .into_iter()
    .find(|arch| platform.ends_with(arch))
}

/// Parses `2.34` into (2, 34).
pub fn parse_glibc(v: &str) -> Option<(u32, u32)> {
    let mut it = v.split('.');
    Some((
        it.next()?.parse().ok()?,
        it.next().unwrap_or("0").parse().ok()?,
    ))
}

/// Whether PyPI takes a wheel with this platform tag, the way warehouse checks each platform
/// tag of an uploaded wheel's name: a fixed list (`any`, Windows, the legacy manylinux
/// aliases, `linux_armv6l`/`linux_armv7l`), and manylinux/musllinux, macOS, iOS, Android and
/// Pyodide tags on the architectures it knows. Plain `linux_<arch>` tags are refused: they
/// promise nothing about the system the wheel needs.
///
/// One leniency: macOS majors after 15 are taken when their minor is 0 (warehouse adds each
/// new major as it appears), so that a new macOS is not refused here before it is there.
pub fn pypi_accepts(platform: &str) -> bool {
    const FIXED: &[&str] = &[
        "any",
        "win32",
        "win_amd64",
        "win_arm64",
        "win_ia64",
        "linux_armv6l",
        "linux_armv7l",
        "manylinux1_x86_64",
        "manylinux1_i686",
        "manylinux2010_x86_64",
        "manylinux2010_i686",
        "manylinux2014_x86_64",
        "manylinux2014_i686",
        "manylinux2014_aarch64",
        "manylinux2014_armv7l",
        "manylinux2014_ppc64",
        "manylinux2014_ppc64le",
        "manylinux2014_s390x",
    ];
    const LINUX_ARCHS: &[&str] = &[
        "x86_64", "i686", "aarch64", "armv7l", "ppc64le", "s390x", "riscv64",
    ];
    const MACOS_ARCHS: &[&str] = &[
        "ppc",
        "ppc64",
        "i386",
        "x86_64",
        "arm64",
        "intel",
        "fat",
        "fat3",
        "fat64",
        "universal",
        "universal2",
    ];
    if FIXED.contains(&platform) {
        return true;
    }
    // `<prefix>_<major>_<minor>_<rest>` with numeric versions.
    let versioned = |prefix: &str| -> Option<(u32, u32, &str)> {
        let rest = platform.strip_prefix(prefix)?.strip_prefix('_')?;
        let mut it = rest.splitn(3, '_');
        let major = it.next()?.parse().ok()?;
        let minor = it.next()?.parse().ok()?;
        Some((major, minor, it.next()?))
    };
    if let Some((_, _, arch)) = versioned("manylinux") {
        return LINUX_ARCHS.contains(&arch) || arch == "ppc64";
    }
    if let Some((_, _, arch)) = versioned("musllinux") {
        return LINUX_ARCHS.contains(&arch);
    }
    if let Some((major, minor, arch)) = versioned("macosx") {
        return MACOS_ARCHS.contains(&arch) && (major == 10 || (major >= 11 && minor == 0));
    }
    if let Some((_, _, rest)) = versioned("ios") {
        return ["arm64", "x86_64"].iter().any(|a| {
            rest.strip_prefix(a)
                .is_some_and(|s| s == "_iphoneos" || s == "_iphonesimulator")
        });
    }
    if let Some((_, _, arch)) = versioned("pyemscripten") {
        return arch == "wasm32";
    }
    if let Some(rest) = platform.strip_prefix("android_")
        && let Some((api, arch)) = rest.split_once('_')
    {
        return api.parse::<u32>().is_ok()
            && ["armeabi_v7a", "arm64_v8a", "x86", "x86_64"].contains(&arch);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_system_library(name: &str) -> bool {
        SystemLibraries::any_linux().contains(name)
    }

    /// The glibc version a platform tag promises; `None` for tags that promise nothing.
    fn tag_glibc(platform: &str) -> Option<(u32, u32)> {
        linux_tag(platform)
            .filter(|t| t.libc == Libc::Glibc)
            .map(|t| t.version)
    }

    #[test]
    fn platform_tags() {
        assert_eq!(tag_glibc("manylinux_2_17_x86_64"), Some((2, 17)));
        assert_eq!(tag_glibc("manylinux2014_aarch64"), Some((2, 17)));
        assert_eq!(tag_glibc("manylinux1_x86_64"), Some((2, 5)));
        assert_eq!(tag_glibc("linux_x86_64"), None);
        assert_eq!(tag_glibc("musllinux_1_2_x86_64"), None);
        assert_eq!(tag_arch("manylinux_2_28_ppc64le"), Some("ppc64le"));
        assert_eq!(parse_glibc("2.34"), Some((2, 34)));
        assert!(is_system_library("libc.so.6"));
        assert!(!is_system_library("libcudart.so.12"));
        let t = linux_tag("musllinux_1_2_aarch64").unwrap();
        assert_eq!(
            (t.libc, t.version, t.arch.as_str()),
            (Libc::Musl, (1, 2), "aarch64")
        );
        assert_eq!(linux_tag("manylinux_2_17"), None);
        assert_eq!(linux_tag("linux_x86_64"), None);
    }

    #[test]
    fn embedded_data_is_auditwheels() {
        // Every policy auditwheel 6.8.0 publishes, oldest first (their legacy aliases are
        // read from the tag by `linux_tag`, not from the data).
        let names: Vec<&str> = manylinux().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names.first(), Some(&"manylinux_2_5"));
        assert_eq!(names.last(), Some(&"manylinux_2_41"));
        assert_eq!(names.len(), 16);
        let m: Vec<&str> = musllinux().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(m, ["musllinux_1_1", "musllinux_1_2"]);
        // The libraries the old hand-kept list lacked.
        let t = linux_tag("manylinux_2_28_x86_64").unwrap();
        let sys = t.system_libraries();
        for lib in [
            "libz.so.1",
            "libexpat.so.1",
            "libatomic.so.1",
            "libanl.so.1",
            "libmvec.so.1",
            "libc.so.6",
            "ld-linux-x86-64.so.2",
        ] {
            assert!(sys.contains(lib), "{lib}");
        }
        assert!(!sys.contains("libcudart.so.12"));
        assert!(!sys.contains("libc.musl-x86_64.so.1"));
        // manylinux1 (glibc 2.5) has no libmvec or libexpat.
        let old = linux_tag("manylinux1_x86_64").unwrap().system_libraries();
        assert!(old.contains("libz.so.1") && !old.contains("libmvec.so.1"));
        let gv = t.symbol_versions().unwrap();
        assert!(gv["GLIBC"].iter().any(|v| v == "2.28"));
        assert!(!gv["GLIBC"].iter().any(|v| v == "2.29"));
        assert!(gv["GLIBCXX"].iter().any(|v| v == "3.4.24"));
        assert!(gv.contains_key("CXXABI"));
    }

    #[test]
    fn musl_tags_allow_musl_libc_only() {
        let s = linux_tag("musllinux_1_1_x86_64")
            .unwrap()
            .system_libraries();
        assert!(s.contains("libc.musl-x86_64.so.1"));
        assert!(s.contains("libc.so"));
        assert!(s.contains("libz.so.1"));
        assert!(s.contains("ld-musl-x86_64.so.1"));
        assert!(!s.contains("libc.so.6"));
        assert!(!s.contains("libstdc++.so.6"));
        assert!(!s.contains("ld-linux-x86-64.so.2"));
        let i = linux_tag("musllinux_1_2_i686").unwrap().system_libraries();
        assert!(i.contains("libc.musl-x86.so.1"));
    }

    #[test]
    fn newer_tags_than_the_data_use_the_newest_policy() {
        let t = linux_tag("manylinux_2_99_x86_64").unwrap();
        assert_eq!(t.policy().unwrap().name, "manylinux_2_41");
        assert!(!t.policy_is_exact());
        assert!(t.symbol_versions().is_none());
        assert!(t.system_libraries().contains("libz.so.1"));
        // Older than any policy: the oldest, without its symbol lists.
        let t = linux_tag("manylinux_2_4_x86_64").unwrap();
        assert_eq!(t.policy().unwrap().name, "manylinux_2_5");
        assert!(t.symbol_versions().is_none());
    }

    #[test]
    fn several_tags_allow_what_all_of_them_provide() {
        let s = SystemLibraries::for_platforms(["manylinux_2_5_x86_64", "manylinux_2_28_x86_64"]);
        assert!(s.contains("libz.so.1"));
        assert!(!s.contains("libmvec.so.1"));
        let none = SystemLibraries::for_platforms(["linux_x86_64"]);
        assert_eq!(none, SystemLibraries::any_linux());
    }

    #[test]
    fn pypi_platform_tags() {
        for ok in [
            "any",
            "win_amd64",
            "manylinux1_x86_64",
            "manylinux2014_aarch64",
            "manylinux_2_17_x86_64",
            "manylinux_2_28_ppc64",
            "musllinux_1_2_riscv64",
            "macosx_10_9_x86_64",
            "macosx_11_0_arm64",
            "macosx_14_0_universal2",
            "linux_armv7l",
            "ios_13_0_arm64_iphoneos",
            "android_24_arm64_v8a",
            "pyemscripten_2025_0_wasm32",
        ] {
            assert!(pypi_accepts(ok), "{ok}");
        }
        for refused in [
            "linux_x86_64",
            "linux_aarch64",
            "manylinux_2_17_loongarch64",
            "manylinux_x_17_x86_64",
            "musllinux_1_2_ppc64",
            "macosx_11_3_arm64",
            "macosx_10_9_sparc",
            "freebsd_14_x86_64",
            "ios_13_0_arm64",
            "android_x_x86",
            "",
        ] {
            assert!(!pypi_accepts(refused), "{refused}");
        }
    }
}
