//! Which device code a set of target GPUs needs (FORMATS.md §2.5, §8.3 rule 9).
//!
//! # CUDA ([`Selection`])
//!
//! A target names a device SM: `86` is an sm_86 GPU. The suffix of a target (`90a`, `100f`) is
//! accepted for symmetry with nvcc's spelling but does not change the device it names: target
//! `90` and target `90a` both keep `sm_90a` images, since those run on every sm_90 GPU.
//!
//! Per container, each image (an entry, or a member of a concat group) is judged as follows:
//!
//! 1. **SASS** (ELF cubins) is kept when it runs on some target: a base `sm_XY` image on a target
//!    `sm_XZ` of the same major with Y ≤ Z; an `a` image only on exactly its SM; an `f` image on
//!    the same major with the image's minor ≤ the target's. Every compatible image is kept, not
//!    only the best one per target.
//! 2. **PTX** `compute_XY` is *usable* by a target when the driver can JIT it there: base PTX on
//!    any target ≥ XY, `a` PTX only on exactly XY, `f` PTX on the same major with minor ≥ Y.
//!    The "newest usable PTX" for a target is every PTX entry with the highest SM among those
//!    usable by it.
//!    * [`PtxPolicy::Newest`] (default): the newest PTX usable by the highest target, plus, for
//!      each target without compatible SASS in this container, the newest PTX usable by it.
//!    * [`PtxPolicy::All`]: every PTX usable by at least one target. PTX newer than every target
//!      is left out even here: no target can JIT it, and newer GPUs can JIT the older PTX that
//!      is kept (FORMATS.md P6: such PTX was 42 MiB of dead weight in NCCL). To keep newer PTX,
//!      name a newer target.
//!    * [`PtxPolicy::None`]: PTX only where a target would otherwise lose every usable image:
//!      for each target without compatible SASS, the newest PTX usable by it. A container that
//!      had something usable for a target keeps something usable for it.
//! 3. **Unknown kinds** (and unknown concat member kinds) are always kept.
//! 4. A container where no image is kept by rules 1–2 **matched nothing**: with
//!    [`UnmatchedPolicy::Keep`] (default) it is kept whole and reported; with
//!    [`UnmatchedPolicy::Drop`] every image is dropped except those of unknown kind, leaving
//!    (normally) a header-only container.
//! 5. A concat group is kept when any member is; [`Choice::edits`] then rebuilds it with only the
//!    kept members.
//!
//! # HIP ([`GfxSelection`])
//!
//! See [`GfxSelection`]: the host entry is always kept; code objects are matched by processor
//! and target features; generic targets by their family.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::FatbinError;
use super::bytes::u64_of;
use super::cuda::{Container, CudaArch, Entry, EntryEdit, EntryKind, rebuild_container_with};
use super::hip::BundleEntry;

/// Which PTX to keep next to the SASS (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PtxPolicy {
    #[default]
    Newest,
    All,
    None,
}

impl FromStr for PtxPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "newest" => Ok(PtxPolicy::Newest),
            "all" => Ok(PtxPolicy::All),
            "none" => Ok(PtxPolicy::None),
            _ => Err(format!("`{s}` is not a PTX policy (newest, all, none)")),
        }
    }
}

/// What to do with a container in which nothing matches any target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnmatchedPolicy {
    /// Keep the container whole (its kernels stay loadable on the GPUs it was built for).
    #[default]
    Keep,
    /// Drop every entry of known kind, leaving a header-only container.
    Drop,
}

impl FromStr for UnmatchedPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "keep" => Ok(UnmatchedPolicy::Keep),
            "drop" => Ok(UnmatchedPolicy::Drop),
            _ => Err(format!(
                "`{s}` is not a policy for unmatched containers (keep, drop)"
            )),
        }
    }
}

/// The CUDA architectures to trim for, and the policies (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Selection {
    pub targets: Vec<CudaArch>,
    pub ptx: PtxPolicy,
    pub unmatched: UnmatchedPolicy,
}

/// Why an image is kept or dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case", tag = "reason")]
pub enum Reason {
    /// SASS that runs on `target` (the lowest such target).
    Sass { target: CudaArch },
    /// The newest PTX usable by the highest target.
    PtxNewest,
    /// The newest PTX usable by `target`, which has no compatible SASS here.
    PtxFallback { target: CudaArch },
    /// PTX usable by some target, kept by [`PtxPolicy::All`].
    PtxAll,
    /// An entry or member kind this module does not know; never dropped.
    UnknownKind,
    /// Nothing in the container matched; kept whole by [`UnmatchedPolicy::Keep`].
    Unmatched,
    /// The selection has no targets: nothing is trimmed.
    NoTargets,
    /// SASS that runs on no target.
    Incompatible,
    /// PTX usable by some target but not needed under the PTX policy.
    PtxNotNeeded,
    /// PTX that no target can JIT.
    PtxUnusable,
    /// Nothing in the container matched; dropped by [`UnmatchedPolicy::Drop`].
    UnmatchedDropped,
    /// A concat group: see its members.
    Members,
}

/// The decision on one concat member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberChoice {
    pub keep: bool,
    pub reason: Reason,
}

/// The decision on one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryChoice {
    pub keep: bool,
    pub reason: Reason,
    /// One per concat member; empty for other kinds.
    pub members: Vec<MemberChoice>,
}

/// The decision on one container's entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Choice {
    pub entries: Vec<EntryChoice>,
    /// Nothing in the container matched any target; the [`UnmatchedPolicy`] decided.
    pub unmatched: bool,
}

impl Choice {
    /// One keep flag per entry (a concat group counts as kept when any member is).
    pub fn keep_flags(&self) -> Vec<bool> {
        self.entries.iter().map(|e| e.keep).collect()
    }

    /// The edits for [`crate::fatbin::cuda::rebuild_container_with`].
    pub fn edits(&self) -> Vec<EntryEdit> {
        self.entries
            .iter()
            .map(|e| {
                if !e.keep {
                    EntryEdit::Drop
                } else if e.members.is_empty() || e.members.iter().all(|m| m.keep) {
                    EntryEdit::Keep
                } else {
                    EntryEdit::KeepMembers(e.members.iter().map(|m| m.keep).collect())
                }
            })
            .collect()
    }

    /// Whether the rebuilt container would equal the original.
    pub fn keeps_everything(&self) -> bool {
        self.entries
            .iter()
            .all(|e| e.keep && e.members.iter().all(|m| m.keep))
    }

    /// Bytes the container would occupy after the trim: its header plus every kept entry as
    /// stored. A partially kept concat group is estimated as its header plus the share of its
    /// stored payload that the kept members' images make up (the exact size is only known
    /// after recompressing).
    pub fn kept_bytes(&self, c: &Container) -> u64 {
        let mut total = u64_of(c.header_size);
        for (e, ch) in c.entries.iter().zip(&self.entries) {
            if !ch.keep {
                continue;
            }
            let all = e
                .members
                .iter()
                .map(|m| m.size)
                .fold(0u64, u64::saturating_add);
            let kept = e
                .members
                .iter()
                .zip(&ch.members)
                .filter(|(_, mc)| mc.keep)
                .map(|(m, _)| m.size)
                .fold(0u64, u64::saturating_add);
            let bytes = if e.members.is_empty() || kept == all {
                e.stored_bytes()
            } else {
                u64_of(e.header_size).saturating_add(share(u64_of(e.payload_size), kept, all))
            };
            total = total.saturating_add(bytes);
        }
        total
    }
}

/// `total · part / whole`, rounded down, without overflow.
fn share(total: u64, part: u64, whole: u64) -> u64 {
    if whole == 0 {
        return 0;
    }
    let v = u128::from(total)
        .saturating_mul(u128::from(part))
        .checked_div(u128::from(whole))
        .unwrap_or(0);
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// One image of a container as the rules see it.
struct Image {
    kind: EntryKind,
    arch: CudaArch,
}

impl Selection {
    pub fn new(targets: Vec<CudaArch>) -> Self {
        Selection {
            targets,
            ..Selection::default()
        }
    }

    /// A selection with the default policies from a comma-separated target list such as
    /// `80,86,90a,100f,120` (spaces allowed; `sm_`/`compute_` prefixes allowed).
    pub fn parse_targets(list: &str) -> Result<Self, FatbinError> {
        let mut targets = Vec::new();
        for item in list.split(',') {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let arch: CudaArch = item.parse()?;
            if !targets.contains(&arch) {
                targets.push(arch);
            }
        }
        if targets.is_empty() {
            return Err(FatbinError::InvalidArch(list.to_string()));
        }
        targets.sort();
        Ok(Selection::new(targets))
    }

    pub fn with_ptx(mut self, ptx: PtxPolicy) -> Self {
        self.ptx = ptx;
        self
    }

    pub fn with_unmatched(mut self, unmatched: UnmatchedPolicy) -> Self {
        self.unmatched = unmatched;
        self
    }

    /// The device SMs the targets name, ascending and without repeats.
    fn devices(&self) -> Vec<CudaArch> {
        let mut d: Vec<CudaArch> = self.targets.iter().map(|t| CudaArch::base(t.sm)).collect();
        d.sort();
        d.dedup();
        d
    }

    /// Decide on the entries of one container (see the module docs for the rules).
    pub fn choose(&self, entries: &[Entry]) -> Choice {
        // Flatten entries and concat members into images.
        let mut images = Vec::new();
        for e in entries {
            if e.kind == EntryKind::Concat {
                images.extend(e.members.iter().map(|m| Image {
                    kind: m.kind,
                    arch: m.arch,
                }));
            } else {
                images.push(Image {
                    kind: e.kind,
                    arch: e.arch,
                });
            }
        }
        let reasons = self.judge(&images);
        let unmatched = !self.devices().is_empty()
            && !reasons
                .iter()
                .any(|(keep, r)| *keep && !matches!(r, Reason::UnknownKind | Reason::Unmatched));

        let mut it = reasons.into_iter();
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            if e.kind == EntryKind::Concat {
                let members: Vec<MemberChoice> = e
                    .members
                    .iter()
                    .map_while(|_| it.next())
                    .map(|(keep, reason)| MemberChoice { keep, reason })
                    .collect();
                let keep = members.iter().any(|m| m.keep);
                let reason = if keep {
                    Reason::Members
                } else {
                    members.first().map_or(Reason::Members, |m| m.reason)
                };
                out.push(EntryChoice {
                    keep,
                    reason,
                    members,
                });
            } else {
                let (keep, reason) = it.next().unwrap_or((true, Reason::UnknownKind));
                out.push(EntryChoice {
                    keep,
                    reason,
                    members: Vec::new(),
                });
            }
        }
        Choice {
            entries: out,
            unmatched,
        }
    }

    /// [`Selection::choose`] on a container's entries.
    pub fn choose_container(&self, c: &Container) -> Choice {
        self.choose(&c.entries)
    }

    /// (keep, reason) per image.
    fn judge(&self, images: &[Image]) -> Vec<(bool, Reason)> {
        let devices = self.devices();
        let Some(&highest) = devices.last() else {
            return images.iter().map(|_| (true, Reason::NoTargets)).collect();
        };
        let mut out: Vec<Option<Reason>> = images
            .iter()
            .map(|img| match img.kind {
                EntryKind::Elf => devices
                    .iter()
                    .find(|d| img.arch.sass_runs_on(d.sm))
                    .map(|&target| Reason::Sass { target }),
                EntryKind::Ptx => None,
                EntryKind::Concat | EntryKind::Unknown(_) => Some(Reason::UnknownKind),
            })
            .collect();

        // The newest PTX usable by a device: all PTX images with the highest SM usable there.
        let newest_ptx = |device: CudaArch| -> Vec<usize> {
            let usable =
                |img: &Image| img.kind == EntryKind::Ptx && img.arch.ptx_runs_on(device.sm);
            let best = images.iter().filter(|i| usable(i)).map(|i| i.arch.sm).max();
            images
                .iter()
                .enumerate()
                .filter(|(_, i)| usable(i) && Some(i.arch.sm) == best)
                .map(|(n, _)| n)
                .collect()
        };
        let keep_ptx = |n: usize, reason: Reason, out: &mut Vec<Option<Reason>>| {
            if let Some(slot) = out.get_mut(n) {
                slot.get_or_insert(reason);
            }
        };
        match self.ptx {
            PtxPolicy::Newest => {
                for n in newest_ptx(highest) {
                    keep_ptx(n, Reason::PtxNewest, &mut out);
                }
            }
            PtxPolicy::All => {
                for (n, img) in images.iter().enumerate() {
                    if img.kind == EntryKind::Ptx
                        && devices.iter().any(|d| img.arch.ptx_runs_on(d.sm))
                    {
                        keep_ptx(n, Reason::PtxAll, &mut out);
                    }
                }
            }
            PtxPolicy::None => {}
        }
        for &device in &devices {
            let has_sass = images
                .iter()
                .any(|i| i.kind == EntryKind::Elf && i.arch.sass_runs_on(device.sm));
            if !has_sass {
                for n in newest_ptx(device) {
                    keep_ptx(n, Reason::PtxFallback { target: device }, &mut out);
                }
            }
        }

        let matched = out
            .iter()
            .any(|r| r.is_some_and(|r| r != Reason::UnknownKind));
        images
            .iter()
            .zip(out)
            .map(|(img, r)| match r {
                Some(Reason::UnknownKind) => (true, Reason::UnknownKind),
                Some(r) => (true, r),
                None if !matched => match self.unmatched {
                    UnmatchedPolicy::Keep => (true, Reason::Unmatched),
                    UnmatchedPolicy::Drop => (false, Reason::UnmatchedDropped),
                },
                None => match img.kind {
                    EntryKind::Ptx if devices.iter().any(|d| img.arch.ptx_runs_on(d.sm)) => {
                        (false, Reason::PtxNotNeeded)
                    }
                    EntryKind::Ptx => (false, Reason::PtxUnusable),
                    _ => (false, Reason::Incompatible),
                },
            })
            .collect()
    }

    /// Bytes the given containers would occupy after this trim (see [`Choice::kept_bytes`]),
    /// not counting the padding between containers.
    pub fn kept_bytes(&self, containers: &[Container]) -> u64 {
        containers
            .iter()
            .map(|c| self.choose_container(c).kept_bytes(c))
            .fold(0u64, u64::saturating_add)
    }

    /// [`Selection::kept_bytes`] without the estimate: containers whose concat groups lose
    /// some members are rebuilt (decompressed and recompressed) to measure them.
    pub fn kept_bytes_exact(
        &self,
        section: &[u8],
        containers: &[Container],
    ) -> Result<u64, FatbinError> {
        let mut total = 0u64;
        for c in containers {
            let choice = self.choose_container(c);
            let partial = choice
                .edits()
                .iter()
                .any(|e| matches!(e, EntryEdit::KeepMembers(_)));
            let bytes = if partial {
                u64_of(rebuild_container_with(section, c, &choice.edits())?.len())
            } else {
                choice.kept_bytes(c)
            };
            total = total.saturating_add(bytes);
        }
        Ok(total)
    }
}

/// Stored and image bytes per architecture, for the audit's architecture matrix.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ArchBytes {
    /// Number of images.
    pub images: u64,
    /// Bytes as stored (compressed where compressed; headers included). Concat members get
    /// their group's stored bytes in proportion to their image sizes.
    pub stored: u64,
    /// Bytes of the images as the driver sees them (uncompressed).
    pub image: u64,
}

/// [`ArchBytes`] keyed by `sm_90a` for SASS and `compute_90` for PTX; unknown kinds under
/// `unknown`.
pub fn bytes_per_arch(containers: &[Container]) -> BTreeMap<String, ArchBytes> {
    let mut out: BTreeMap<String, ArchBytes> = BTreeMap::new();
    let mut add = |name: String, stored: u64, image: u64| {
        let slot = out.entry(name).or_default();
        slot.images = slot.images.saturating_add(1);
        slot.stored = slot.stored.saturating_add(stored);
        slot.image = slot.image.saturating_add(image);
    };
    let name = |kind: EntryKind, arch: CudaArch| match kind {
        EntryKind::Ptx => arch.compute_name(),
        EntryKind::Elf => arch.to_string(),
        EntryKind::Concat | EntryKind::Unknown(_) => "unknown".to_string(),
    };
    for c in containers {
        for e in &c.entries {
            if e.kind == EntryKind::Concat && !e.members.is_empty() {
                let all = e
                    .members
                    .iter()
                    .map(|m| m.size)
                    .fold(0u64, u64::saturating_add);
                for m in &e.members {
                    add(
                        name(m.kind, m.arch),
                        share(e.stored_bytes(), m.size, all),
                        m.size,
                    );
                }
            } else {
                add(name(e.kind, e.arch), e.stored_bytes(), e.image_bytes());
            }
        }
    }
    out
}

// ------------------------------------------------------------------------------------------
// HIP

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
}

/// The decision on one bundle's entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GfxChoice {
    pub keep: Vec<bool>,
    pub reasons: Vec<GfxReason>,
}

/// The AMD GPU targets to trim for (`--gfx gfx90a,gfx942:xnack+`).
///
/// Rules, per bundle entry:
/// * the host entry (`host-…`) is always kept;
/// * an `amdgcn` code object is kept when its target ID [serves](GfxTarget::serves) a
///   requested target (same processor, no conflicting feature);
/// * a generic code object (`gfx9-generic`…) is kept when any requested processor is in its
///   family; an unknown generic name is kept and reported;
/// * anything unrecognised (another triple, no target ID) is kept and reported.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct GfxSelection {
    pub targets: Vec<GfxTarget>,
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
        Ok(GfxSelection { targets })
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
        let (keep, reasons) = entries
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
            .unzip();
        GfxChoice { keep, reasons }
    }
}

#[cfg(test)]
mod tests;
