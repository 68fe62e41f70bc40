//! manylinux facts: which system libraries a wheel may link against without bundling them, and
//! which glibc a platform tag promises.
//!
//! The library list is the `lib_whitelist` of auditwheel's manylinux policies (MIT licensed data,
//! pypa/auditwheel `src/auditwheel/policy/manylinux-policy.json`), which is the same for every
//! glibc-based policy from manylinux2014 on; the dynamic loaders are added per architecture.

/// System libraries every manylinux platform provides.
pub const SYSTEM_LIBRARIES: &[&str] = &[
    "libgcc_s.so.1",
    "libstdc++.so.6",
    "libm.so.6",
    "libdl.so.2",
    "librt.so.1",
    "libc.so.6",
    "libnsl.so.1",
    "libutil.so.1",
    "libpthread.so.0",
    "libresolv.so.2",
    "libX11.so.6",
    "libXext.so.6",
    "libXrender.so.1",
    "libICE.so.6",
    "libSM.so.6",
    "libGL.so.1",
    "libgobject-2.0.so.0",
    "libgthread-2.0.so.0",
    "libglib-2.0.so.0",
    // Dynamic loaders.
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
    "ld64.so.2",
    "ld-linux.so.2",
];

pub fn is_system_library(name: &str) -> bool {
    SYSTEM_LIBRARIES.contains(&name)
}

/// The glibc version a platform tag promises: `manylinux_2_17_x86_64` and its alias
/// `manylinux2014_x86_64` → (2, 17). `None` for tags that promise nothing (`linux_x86_64`) or
/// are not glibc-based.
pub fn tag_glibc(platform: &str) -> Option<(u32, u32)> {
    if let Some(rest) = platform.strip_prefix("manylinux_") {
        let mut it = rest.splitn(3, '_');
        let major = it.next()?.parse().ok()?;
        let minor = it.next()?.parse().ok()?;
        return Some((major, minor));
    }
    for (alias, v) in [
        ("manylinux1_", (2, 5)),
        ("manylinux2010_", (2, 12)),
        ("manylinux2014_", (2, 17)),
    ] {
        if platform.starts_with(alias) {
            return Some(v);
        }
    }
    None
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_tags() {
        assert_eq!(tag_glibc("manylinux_2_17_x86_64"), Some((2, 17)));
        assert_eq!(tag_glibc("manylinux2014_aarch64"), Some((2, 17)));
        assert_eq!(tag_glibc("linux_x86_64"), None);
        assert_eq!(tag_arch("manylinux_2_28_ppc64le"), Some("ppc64le"));
        assert_eq!(parse_glibc("2.34"), Some((2, 34)));
        assert!(is_system_library("libc.so.6"));
        assert!(!is_system_library("libcudart.so.12"));
    }
}
