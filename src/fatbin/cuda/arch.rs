//! CUDA architectures: `sm_90`, `sm_90a`, `sm_100f`, and their PTX spelling `compute_90`.

use std::fmt;
use std::str::FromStr;

use crate::fatbin::FatbinError;

/// Entry flag: an arch-specific ("a") image such as `sm_90a` or `compute_120a`.
pub const FLAG_ARCH_A: u64 = 0x10_0000;
/// Entry flag: a family ("f") image such as `sm_100f`.
pub const FLAG_ARCH_F: u64 = 0x20_0000;

/// The suffix of an architecture name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ArchVariant {
    /// `sm_90`: runs on the same major with an equal or higher minor.
    Base,
    /// `sm_90a`: arch-specific features; runs only on exactly that SM.
    A,
    /// `sm_100f`: family-specific features; runs on the same major with an equal or higher minor.
    F,
}

impl ArchVariant {
    fn suffix(self) -> &'static str {
        match self {
            ArchVariant::Base => "",
            ArchVariant::A => "a",
            ArchVariant::F => "f",
        }
    }
}

/// A CUDA architecture: the SM number (`90` for 9.0, `121` for 12.1) plus its variant.
///
/// Displays as `sm_90a`; [`CudaArch::compute_name`] gives the PTX spelling `compute_90a`.
/// Parses from `90`, `90a`, `100f`, `sm_90`, `sm_90a` and `compute_90`. Serializes as the
/// `sm_` string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CudaArch {
    pub sm: u32,
    pub variant: ArchVariant,
}

impl CudaArch {
    pub const fn new(sm: u32, variant: ArchVariant) -> Self {
        CudaArch { sm, variant }
    }

    pub const fn base(sm: u32) -> Self {
        CudaArch {
            sm,
            variant: ArchVariant::Base,
        }
    }

    /// The architecture of a fatbin entry: the SM number from the header plus the "a"/"f"
    /// flag bits. `None` when both bits are set, which no toolchain writes.
    pub fn from_entry(sm: u32, flags: u64) -> Option<Self> {
        let variant = match (flags & FLAG_ARCH_A != 0, flags & FLAG_ARCH_F != 0) {
            (false, false) => ArchVariant::Base,
            (true, false) => ArchVariant::A,
            (false, true) => ArchVariant::F,
            (true, true) => return None,
        };
        Some(CudaArch { sm, variant })
    }

    /// `sm_90` → 9, `sm_100` → 10, `sm_121` → 12.
    pub const fn major(&self) -> u32 {
        self.sm / 10
    }

    /// `sm_90` → 0, `sm_86` → 6, `sm_121` → 1.
    pub const fn minor(&self) -> u32 {
        self.sm % 10
    }

    /// The PTX spelling: `compute_90`, `compute_90a`, `compute_100f`.
    pub fn compute_name(&self) -> String {
        format!("compute_{}{}", self.sm, self.variant.suffix())
    }

    /// Whether SASS (a cubin) built for `self` runs on a device with SM `device_sm`: the same
    /// major and a minor no higher than the device's; "a" images only on exactly their SM.
    pub fn sass_runs_on(&self, device_sm: u32) -> bool {
        let device = CudaArch::base(device_sm);
        match self.variant {
            ArchVariant::A => self.sm == device_sm,
            ArchVariant::Base | ArchVariant::F => {
                self.major() == device.major() && self.minor() <= device.minor()
            }
        }
    }

    /// Whether PTX for `compute_<self>` can be JIT-compiled for a device with SM `device_sm`:
    /// any device at least that new; "a" PTX only on exactly its SM; "f" PTX on its family
    /// (same major, equal or higher minor).
    pub fn ptx_runs_on(&self, device_sm: u32) -> bool {
        let device = CudaArch::base(device_sm);
        match self.variant {
            ArchVariant::Base => self.sm <= device_sm,
            ArchVariant::A => self.sm == device_sm,
            ArchVariant::F => self.major() == device.major() && self.minor() <= device.minor(),
        }
    }
}

impl fmt::Display for CudaArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sm_{}{}", self.sm, self.variant.suffix())
    }
}

impl FromStr for CudaArch {
    type Err = FatbinError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || FatbinError::InvalidArch(s.to_string());
        let t = s.trim();
        let t = t
            .strip_prefix("sm_")
            .or_else(|| t.strip_prefix("compute_"))
            .unwrap_or(t);
        let (digits, variant) = if let Some(d) = t.strip_suffix('a') {
            (d, ArchVariant::A)
        } else if let Some(d) = t.strip_suffix('f') {
            (d, ArchVariant::F)
        } else {
            (t, ArchVariant::Base)
        };
        if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let sm: u32 = digits.parse().map_err(|_| bad())?;
        if sm < 10 {
            return Err(bad());
        }
        Ok(CudaArch { sm, variant })
    }
}

impl serde::Serialize for CudaArch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for CudaArch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn a(s: &str) -> CudaArch {
        s.parse().unwrap()
    }

    #[test]
    fn parses_every_spelling() {
        assert_eq!(a("90"), CudaArch::base(90));
        assert_eq!(a("sm_90"), CudaArch::base(90));
        assert_eq!(a("compute_90"), CudaArch::base(90));
        assert_eq!(a("90a"), CudaArch::new(90, ArchVariant::A));
        assert_eq!(a("sm_90a"), CudaArch::new(90, ArchVariant::A));
        assert_eq!(a("compute_120a"), CudaArch::new(120, ArchVariant::A));
        assert_eq!(a("100f"), CudaArch::new(100, ArchVariant::F));
        assert_eq!(a(" sm_121 "), CudaArch::base(121));
        for bad in [
            "", "sm_", "9", "sm_9x", "abc", "90b", "sm_90af", "-90", "99999", "f", "sm_a",
        ] {
            assert!(bad.parse::<CudaArch>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn displays_and_splits() {
        assert_eq!(a("90a").to_string(), "sm_90a");
        assert_eq!(a("100f").to_string(), "sm_100f");
        assert_eq!(a("90").compute_name(), "compute_90");
        assert_eq!(a("120a").compute_name(), "compute_120a");
        assert_eq!((a("90").major(), a("90").minor()), (9, 0));
        assert_eq!((a("100").major(), a("100").minor()), (10, 0));
        assert_eq!((a("121").major(), a("121").minor()), (12, 1));
        assert_eq!((a("86").major(), a("86").minor()), (8, 6));
    }

    #[test]
    fn serializes_as_the_string() {
        assert_eq!(serde_json::to_string(&a("90a")).unwrap(), "\"sm_90a\"");
        let back: CudaArch = serde_json::from_str("\"sm_100f\"").unwrap();
        assert_eq!(back, a("100f"));
    }

    #[test]
    fn from_entry_flags() {
        assert_eq!(CudaArch::from_entry(90, 0x11), Some(a("90")));
        assert_eq!(CudaArch::from_entry(90, 0x10_0011), Some(a("90a")));
        assert_eq!(CudaArch::from_entry(100, 0x120_8011), Some(a("100f")));
        assert_eq!(CudaArch::from_entry(100, 0x30_0011), None);
    }

    #[test]
    fn compatibility_rules() {
        assert!(a("80").sass_runs_on(86));
        assert!(a("80").sass_runs_on(89));
        assert!(!a("86").sass_runs_on(80));
        assert!(!a("80").sass_runs_on(90));
        assert!(a("90a").sass_runs_on(90));
        assert!(!a("90a").sass_runs_on(91));
        assert!(a("100f").sass_runs_on(103));
        assert!(!a("100f").sass_runs_on(120));
        assert!(a("90").ptx_runs_on(120));
        assert!(!a("90").ptx_runs_on(89));
        assert!(!a("90a").ptx_runs_on(100));
        assert!(a("100f").ptx_runs_on(103));
        assert!(!a("100f").ptx_runs_on(110));
    }
}
