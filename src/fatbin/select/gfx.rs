//! AMD GPU targets: which code objects of an offload bundle a set of `--gfx` targets needs.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::fatbin::FatbinError;
use crate::fatbin::hip::BundleEntry;

use super::UnmatchedPolicy;

/// An AMD GPU target ID: a processor (`gfx90a`, `gfx9-generic`) and target features
/// (`xnack+`, `sramecc-`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GfxTarget {
    pub processor: String,
    /// (feature, on), in the order written.
    pub features: Vec<(String, bool)>,
}

impl GfxTarget {
    /// Whether code built for `self` may be kept for a request of `wanted`: the same processor,
    /// and no feature that both set differently. A feature one side leaves unset matches any
    /// setting, so a request for `gfx90a` keeps `gfx90a:xnack+` and `gfx90a:xnack-`, and a
    /// request for `gfx90a:xnack+` keeps `gfx90a` and `gfx90a:xnack+` but not `gfx90a:xnack-`.
    pub fn serves(&self, wanted: &GfxTarget) -> bool {
        self.processor == wanted.processor
            && self.features.iter().all(|(name, on)| {
                wanted
                    .features
                    .iter()
                    .all(|(wname, won)| wname != name || won == on)
            })
    }

    pub fn is_generic(&self) -> bool {
        self.processor.ends_with("-generic")
    }
}

impl fmt::Display for GfxTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.processor)?;
        for (name, on) in &self.features {
            write!(f, ":{name}{}", if *on { '+' } else { '-' })?;
        }
        Ok(())
    }
}

impl FromStr for GfxTarget {
    type Err = FatbinError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || FatbinError::InvalidGfx(s.to_string());
        let mut parts = s.trim().split(':');
        let processor = parts.next().unwrap_or("");
        let rest = processor.strip_prefix("gfx").ok_or_else(bad)?;
        let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if rest.is_empty() || !rest.chars().all(ok_char) {
            return Err(bad());
        }
        let mut features = Vec::new();
        for f in parts {
            let (name, on) = if let Some(n) = f.strip_suffix('+') {
                (n, true)
            } else if let Some(n) = f.strip_suffix('-') {
                (n, false)
            } else {
                return Err(bad());
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(bad());
            }
            features.push((name.to_string(), on));
        }
        Ok(GfxTarget {
            processor: processor.to_string(),
            features,
        })
    }
}

impl Serialize for GfxTarget {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The processors each generic target runs on (LLVM's AMDGPUUsage, "generic processors").
const GENERIC_FAMILIES: &[(&str, &[&str])] = &[
    (
        "gfx9-generic",
        &["gfx900", "gfx902", "gfx904", "gfx906", "gfx909", "gfx90c"],
    ),
    ("gfx9-4-generic", &["gfx940", "gfx941", "gfx942", "gfx950"]),
    (
        "gfx10-1-generic",
        &["gfx1010", "gfx1011", "gfx1012", "gfx1013"],
    ),
    (
        "gfx10-3-generic",
        &[
            "gfx1030", "gfx1031", "gfx1032", "gfx1033", "gfx1034", "gfx1035", "gfx1036",
        ],
    ),
    (
        "gfx11-generic",
        &[
            "gfx1100", "gfx1101", "gfx1102", "gfx1103", "gfx1150", "gfx1151", "gfx1152", "gfx1153",
        ],
    ),
    ("gfx12-generic", &["gfx1200", "gfx1201"]),
];

/// The processors a generic target runs on, if known.
pub fn generic_family(generic: &str) -> Option<&'static [&'static str]> {
    GENERIC_FAMILIES
        .iter()
        .find(|(g, _)| *g == generic)
        .map(|(_, members)| *members)
}

/// Why a bundle entry is kept or dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "reason")]
pub enum GfxReason {
    /// The host entry: always kept.
    Host,
    /// Code for a requested target.
    Requested { target: GfxTarget },
    /// Generic code whose family includes a requested processor.
    GenericFamily { target: GfxTarget },
    /// Generic code of a family this module does not know: kept.
    UnknownGeneric,
    /// A triple or target that could not be understood (not amdgcn, no target ID): kept.
    Unrecognised,
    /// The selection has no targets: nothing is trimmed.
    NoTargets,
    /// Code for a processor (or feature setting) nobody asked for.
    NotRequested,
    /// Nothing in the bundle serves a requested target; kept by [`UnmatchedPolicy::Keep`].
    Unmatched,
}

/// The decision on one bundle's entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GfxChoice {
    pub keep: Vec<bool>,
    pub reasons: Vec<GfxReason>,
    /// No code object served a requested target; the [`UnmatchedPolicy`] decided.
    pub unmatched: bool,
}

/// The AMD GPU targets to trim for (`--gfx gfx90a,gfx942:xnack+`).
///
/// Rules, per bundle entry:
/// * the host entry (`host-…`) is always kept;
/// * an `amdgcn` code object is kept when its target ID [serves](GfxTarget::serves) a
///   requested target (same processor, no conflicting feature);
/// * a generic code object (`gfx9-generic`…) is kept when any requested processor is in its
///   family; an unknown generic name is kept and reported;
/// * anything unrecognised (another triple, no target ID) is kept and reported;
/// * a bundle (or group of loose code objects) in which no code object serves a requested
///   target matched nothing: like CUDA containers, it is kept whole with
///   [`UnmatchedPolicy::Keep`] (the default) and loses its code objects with
///   [`UnmatchedPolicy::Drop`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct GfxSelection {
    pub targets: Vec<GfxTarget>,
    pub unmatched: UnmatchedPolicy,
}

impl GfxSelection {
    /// Parse a comma-separated list such as `gfx90a,gfx942` or `gfx90a:xnack+`.
    pub fn parse(list: &str) -> Result<Self, FatbinError> {
        let mut targets = Vec::new();
        for item in list.split(',') {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let t: GfxTarget = item.parse()?;
            if !targets.contains(&t) {
                targets.push(t);
            }
        }
        if targets.is_empty() {
            return Err(FatbinError::InvalidGfx(list.to_string()));
        }
        Ok(GfxSelection {
            targets,
            unmatched: UnmatchedPolicy::Keep,
        })
    }

    pub fn with_unmatched(mut self, unmatched: UnmatchedPolicy) -> Self {
        self.unmatched = unmatched;
        self
    }

    /// The decision for one target ID as found in a bundle entry (`gfx90a:xnack+`, `host`).
    pub fn judge(&self, target: Option<&str>) -> (bool, GfxReason) {
        let Some(target) = target else {
            return (true, GfxReason::Unrecognised);
        };
        if target == "host" {
            return (true, GfxReason::Host);
        }
        if self.targets.is_empty() {
            return (true, GfxReason::NoTargets);
        }
        let Ok(t) = target.parse::<GfxTarget>() else {
            return (true, GfxReason::Unrecognised);
        };
        if t.is_generic() {
            let Some(family) = generic_family(&t.processor) else {
                return (true, GfxReason::UnknownGeneric);
            };
            let hit = self.targets.iter().any(|w| {
                family.contains(&w.processor.as_str())
                    && t.serves(&GfxTarget {
                        processor: t.processor.clone(),
                        features: w.features.clone(),
                    })
            });
            return if hit {
                (true, GfxReason::GenericFamily { target: t })
            } else {
                (false, GfxReason::NotRequested)
            };
        }
        if let Some(w) = self.targets.iter().find(|w| t.serves(w)) {
            return (true, GfxReason::Requested { target: w.clone() });
        }
        (false, GfxReason::NotRequested)
    }

    /// Decide on every entry of a bundle.
    pub fn choose(&self, entries: &[BundleEntry]) -> GfxChoice {
        let judged = entries
            .iter()
            .map(|e| {
                if e.is_host() {
                    (true, GfxReason::Host)
                } else if !e.is_amdgcn() {
                    (true, GfxReason::Unrecognised)
                } else {
                    self.judge(e.target.as_deref())
                }
            })
            .collect();
        self.settle(judged)
    }

    /// Decide on code objects that stand in for each other (loose `.hsaco`/`.co` files of one
    /// kernel set built for several targets), by their target IDs (`None`: unknown, kept).
    pub fn choose_targets(&self, targets: &[Option<&str>]) -> GfxChoice {
        let judged = targets.iter().map(|t| self.judge(*t)).collect();
        self.settle(judged)
    }

    /// Applies the unmatched policy to per-entry judgements.
    fn settle(&self, judged: Vec<(bool, GfxReason)>) -> GfxChoice {
        let served = judged.iter().any(|(_, r)| {
            matches!(
                r,
                GfxReason::Requested { .. } | GfxReason::GenericFamily { .. }
            )
        });
        let unmatched = !self.targets.is_empty()
            && !served
            && judged.iter().any(|(_, r)| *r == GfxReason::NotRequested);
        let (keep, reasons) = judged
            .into_iter()
            .map(|(keep, r)| match r {
                GfxReason::NotRequested if unmatched && self.unmatched == UnmatchedPolicy::Keep => {
                    (true, GfxReason::Unmatched)
                }
                r => (keep, r),
            })
            .unzip();
        GfxChoice {
            keep,
            reasons,
            unmatched,
        }
    }
}
