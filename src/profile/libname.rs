//! Shared-library file names: auditwheel's hash suffixes and soname versions.

/// Removes auditwheel's `-<8 hex digits>` suffix from a library name:
/// `libcudart-80664282.so.10.2` → `libcudart.so.10.2`. Names without one are returned as they are.
pub fn unhash(name: &str) -> String {
    if let Some(so) = name.find(".so") {
        let stem = &name[..so];
        if stem.len() > 9 {
            let (base, tail) = stem.split_at(stem.len() - 9);
            let hex = &tail[1..];
            if tail.starts_with('-')
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                && !base.is_empty()
            {
                return format!("{base}{}", &name[so..]);
            }
        }
    }
    name.to_string()
}

/// `libfoo.so.12.8.90` → [`libfoo.so.12.8.90`, `libfoo.so.12.8`, `libfoo.so.12`, `libfoo.so`].
pub fn version_prefixes(name: &str) -> Vec<String> {
    let mut out = vec![name.to_string()];
    if let Some(i) = name.find(".so.") {
        let mut cut = name.len();
        while let Some(dot) = name[..cut].rfind('.') {
            if dot < i + 3 {
                break;
            }
            cut = dot;
            out.push(name[..cut].to_string());
        }
    }
    out
}

/// The version after `.so.`: `libcudart.so.12.8` → `12.8`.
pub fn soname_version(name: &str) -> Option<&str> {
    let i = name.find(".so.")?;
    let v = &name[i + 4..];
    (!v.is_empty()
        && v.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())))
    .then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unhashes_auditwheel_names() {
        assert_eq!(unhash("libcudart-80664282.so.10.2"), "libcudart.so.10.2");
        assert_eq!(unhash("libgomp-a34b3233.so.1.0.0"), "libgomp.so.1.0.0");
        assert_eq!(
            unhash("libnvrtc-builtins-4730a239.so.12.8"),
            "libnvrtc-builtins.so.12.8"
        );
        assert_eq!(unhash("libfoo.so"), "libfoo.so");
        assert_eq!(unhash("libnot-hexhexhe.so"), "libnot-hexhexhe.so");
        assert_eq!(unhash("-12345678.so"), "-12345678.so");
    }

    #[test]
    fn version_prefixes_shorten() {
        assert_eq!(
            version_prefixes("libfoo.so.12.8.90"),
            [
                "libfoo.so.12.8.90",
                "libfoo.so.12.8",
                "libfoo.so.12",
                "libfoo.so"
            ]
        );
        assert_eq!(version_prefixes("libfoo.so"), ["libfoo.so"]);
        assert_eq!(soname_version("libcudart.so.12.8"), Some("12.8"));
        assert_eq!(soname_version("libcudart.so"), None);
    }
}
