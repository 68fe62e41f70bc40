//! Which device code a set of target GPUs needs (`docs/cuda-fatbin.md`, last section).
//!
//! # CUDA ([`Selection`])
//!
//! A target names a device SM: `86` is an sm_86 GPU. The suffix of a target (`90a`, `100f`) is
//! accepted for symmetry with nvcc's spelling but does not change the device it names: target
//! `90` and target `90a` both keep `sm_90a` images, since those run on every sm_90 GPU.
//!
//! Per container, each image (an entry, or a member of a concat group) is judged as follows:
//!
//! 1. **SASS** (ELF cubins) *runs* on a target when it is a base `sm_XY` image on a target
//!    `sm_XZ` of the same major with Y ≤ Z, an `a` image on exactly its SM, or an `f` image of
//!    the same major with the image's minor ≤ the target's. For each target, the images with
//!    the highest SM that runs there are kept (every variant of that SM: `sm_90` and `sm_90a`
//!    both stay for target 90). That is the image the driver loads; older compatible images in
//!    the same container hold the same kernels and are dropped (target 86 keeps `sm_86`, not
//!    also `sm_80`).
//! 2. **PTX** `compute_XY` is *usable* by a target when the driver can JIT it there: base PTX on
//!    any target ≥ XY, `a` PTX only on exactly XY, `f` PTX on the same major with minor ≥ Y.
//!    The "newest usable PTX" for a target is every PTX entry with the highest SM among those
//!    usable by it.
//!    * [`PtxPolicy::Newest`] (default): the newest PTX usable by the highest target, plus, for
//!      each target without compatible SASS in this container, the newest PTX usable by it.
//!    * [`PtxPolicy::All`]: every PTX usable by at least one target. PTX newer than every target
//!      is left out even here: no target can JIT it, and newer GPUs can JIT the older PTX that
//!      is kept (`docs/cuda-fatbin.md`; such PTX was 42 MiB of dead weight in NCCL). To keep newer
//!      PTX, name a newer target.
//!    * [`PtxPolicy::None`]: PTX only where a target would otherwise lose every usable image:
//!      for each target without compatible SASS, the newest PTX usable by it. A container that
//!      had something usable for a target keeps something usable for it.
//!    * **Newer GPUs.** Only plain PTX serves a GPU newer than every target. Under `Newest` and
//!      `All`, a container that matched something but would keep no plain PTX, while it has
//!      some (all of it newer than the targets, e.g. only `compute_120` for target 90), keeps
//!      its oldest plain PTX ([`Reason::PtxNewerGpus`]). Under `None` it is dropped, and
//!      [`Choice::newer_gpus_lost`] says what went, so the report can say so.
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

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::str::FromStr;

use serde::Serialize;

use super::FatbinError;
use super::bytes::u64_of;
mod gfx;

pub use gfx::{GfxChoice, GfxReason, GfxSelection, GfxTarget, generic_family};

use super::cuda::{
    ArchVariant, Container, CudaArch, Entry, EntryEdit, EntryKind, rebuild_container_with,
};

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
    /// The oldest plain PTX newer than every target, kept by [`PtxPolicy::Newest`] and
    /// [`PtxPolicy::All`] because the container has no older plain PTX: without it no GPU
    /// newer than the targets could JIT the container's kernels.
    PtxNewerGpus,
    /// An entry or member kind this module does not know; never dropped.
    UnknownKind,
    /// Nothing in the container matched; kept whole by [`UnmatchedPolicy::Keep`].
    Unmatched,
    /// The selection has no targets: nothing is trimmed.
    NoTargets,
    /// SASS that runs on no target.
    Incompatible,
    /// SASS that runs on a target, where a newer image in the same container runs there too
    /// (the driver loads that one).
    Superseded,
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
    /// Targets that could run something in the container before the trim and nothing after.
    /// The rules never do this; it is measured, not assumed, so a report can say so.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets_lost: Vec<CudaArch>,
    /// The plain PTX the container held (any GPU at least that new can JIT it) when none of it
    /// is kept, so GPUs newer than every target have nothing left to run: `compute_120`.
    /// Only [`PtxPolicy::None`] and [`UnmatchedPolicy::Drop`] do this.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub newer_gpus_lost: Vec<String>,
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
        let (unmatched, targets_lost, newer_gpus_lost) = self.outcome(&images, &reasons);

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
            targets_lost,
            newer_gpus_lost,
        }
    }

    /// Decide on a group of images that stand in for each other the way a container's entries
    /// do: loose device files holding the same kernels for several architectures
    /// (`k.sm_80.cubin`, `k.sm_90.cubin`, `k.compute_90.ptx`). `kind` is
    /// [`EntryKind::Elf`] for SASS and [`EntryKind::Ptx`] for PTX; `None` (an image whose
    /// architecture is not known) is always kept. One [`EntryChoice`] per image.
    pub fn choose_images(&self, images: &[Option<(EntryKind, CudaArch)>]) -> Choice {
        let flat: Vec<Image> = images
            .iter()
            .map(|i| match i {
                Some((kind, arch)) => Image {
                    kind: *kind,
                    arch: *arch,
                },
                None => Image {
                    kind: EntryKind::Unknown(0),
                    arch: CudaArch::base(0),
                },
            })
            .collect();
        let reasons = self.judge(&flat);
        let (unmatched, targets_lost, newer_gpus_lost) = self.outcome(&flat, &reasons);
        Choice {
            entries: reasons
                .into_iter()
                .map(|(keep, reason)| EntryChoice {
                    keep,
                    reason,
                    members: Vec::new(),
                })
                .collect(),
            unmatched,
            targets_lost,
            newer_gpus_lost,
        }
    }

    /// Whether nothing matched, which targets lost their last usable image, and the plain PTX
    /// that GPUs newer than the targets lost.
    fn outcome(
        &self,
        images: &[Image],
        reasons: &[(bool, Reason)],
    ) -> (bool, Vec<CudaArch>, Vec<String>) {
        let devices = self.devices();
        let unmatched = !devices.is_empty()
            && !reasons
                .iter()
                .any(|(keep, r)| *keep && !matches!(r, Reason::UnknownKind | Reason::Unmatched));
        let usable = |img: &Image, sm: u32| match img.kind {
            EntryKind::Elf => img.arch.sass_runs_on(sm),
            EntryKind::Ptx => img.arch.ptx_runs_on(sm),
            _ => false,
        };
        let targets_lost = devices
            .iter()
            .filter(|d| {
                images.iter().any(|i| usable(i, d.sm))
                    && !images
                        .iter()
                        .zip(reasons)
                        .any(|(i, (keep, _))| *keep && usable(i, d.sm))
            })
            .copied()
            .collect();
        let plain_ptx = |i: &Image| i.kind == EntryKind::Ptx && i.arch.variant == ArchVariant::Base;
        let kept_plain = images
            .iter()
            .zip(reasons)
            .any(|(i, (keep, _))| *keep && plain_ptx(i));
        let mut newer_gpus_lost: Vec<String> = Vec::new();
        if !devices.is_empty() && !kept_plain {
            for i in images.iter().filter(|i| plain_ptx(i)) {
                let name = i.arch.compute_name();
                if !newer_gpus_lost.contains(&name) {
                    newer_gpus_lost.push(name);
                }
            }
        }
        (unmatched, targets_lost, newer_gpus_lost)
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
        // The driver loads the best SASS for a device: the highest SM that runs on it. Older
        // compatible images in the same container hold the same kernels and are never loaded.
        let best_sass: Vec<Option<u32>> = devices
            .iter()
            .map(|d| {
                images
                    .iter()
                    .filter(|i| i.kind == EntryKind::Elf && i.arch.sass_runs_on(d.sm))
                    .map(|i| i.arch.sm)
                    .max()
            })
            .collect();
        let mut out: Vec<Option<Reason>> = images
            .iter()
            .map(|img| match img.kind {
                EntryKind::Elf => devices
                    .iter()
                    .zip(&best_sass)
                    .find(|(d, best)| img.arch.sass_runs_on(d.sm) && **best == Some(img.arch.sm))
                    .map(|(&target, _)| Reason::Sass { target }),
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
        // Newer GPUs can JIT only plain PTX. Where the rules above keep none but the container
        // has some, all of it is newer than every target: keep the oldest, which the most GPUs
        // can JIT (README: "newer GPUs can still JIT").
        let plain_ptx = |i: &Image| i.kind == EntryKind::Ptx && i.arch.variant == ArchVariant::Base;
        let kept_plain = images
            .iter()
            .zip(&out)
            .any(|(i, r)| r.is_some() && plain_ptx(i));
        if matched && !kept_plain && self.ptx != PtxPolicy::None {
            let oldest = images
                .iter()
                .filter(|i| plain_ptx(i))
                .map(|i| i.arch.sm)
                .min();
            for (n, img) in images.iter().enumerate() {
                if plain_ptx(img) && Some(img.arch.sm) == oldest {
                    keep_ptx(n, Reason::PtxNewerGpus, &mut out);
                }
            }
        }
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
                    EntryKind::Elf if devices.iter().any(|d| img.arch.sass_runs_on(d.sm)) => {
                        (false, Reason::Superseded)
                    }
                    _ => (false, Reason::Incompatible),
                },
            })
            .collect()
    }

    /// Bytes the given containers would occupy after this trim (see [`Choice::kept_bytes`]),
    /// not counting the padding between containers.
    pub fn kept_bytes<C: Borrow<Container>>(&self, containers: &[C]) -> u64 {
        containers
            .iter()
            .map(|c| {
                let c = c.borrow();
                self.choose_container(c).kept_bytes(c)
            })
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

/// For each target alone, the bytes [`Selection::kept_bytes`] says a trim to it would keep
/// (the audit's "what would trimming to one arch leave" column).
pub fn kept_bytes_per_target<C: Borrow<Container>>(
    containers: &[C],
    targets: &[CudaArch],
    ptx: PtxPolicy,
    unmatched: UnmatchedPolicy,
) -> Vec<(CudaArch, u64)> {
    targets
        .iter()
        .map(|&t| {
            let sel = Selection {
                targets: vec![t],
                ptx,
                unmatched,
            };
            (t, sel.kept_bytes(containers))
        })
        .collect()
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
pub fn bytes_per_arch<C: Borrow<Container>>(containers: &[C]) -> BTreeMap<String, ArchBytes> {
    let mut out: BTreeMap<String, ArchBytes> = BTreeMap::new();
    for c in containers {
        add_bytes_per_arch(&mut out, c.borrow());
    }
    out
}

/// Adds one container to a [`bytes_per_arch`] table (for containers walked one at a time).
pub fn add_bytes_per_arch(out: &mut BTreeMap<String, ArchBytes>, c: &Container) {
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

#[cfg(test)]
mod tests;
