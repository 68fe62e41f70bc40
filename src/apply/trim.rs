//! Trimming one member: the device code inside a shared object (fatbin sections, offload
//! bundles), or a loose device file.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::error::Error;
use crate::facts::{MemberFacts, WheelFacts};
use crate::wheel::Wheel;

use crate::device::{DeviceFacts, section_bytes};
use crate::elf::ElfInfo;
use crate::elf::shrink::{Block, SectionEdit, ShrinkMethod, shrink};
use crate::fatbin::FatbinError;
use crate::fatbin::cuda::{self, Container, EntryKind};
use crate::fatbin::hip::{self, OffloadBundle};
use crate::fatbin::loose::{self, LooseAction, LooseDecision, LooseInfo, LooseKind};
use crate::fatbin::select::{Choice, GfxChoice, GfxSelection, Selection, UnmatchedPolicy};

/// What to trim to.
#[derive(Debug, Clone, Default)]
pub struct TrimSettings {
    pub cuda: Option<Selection>,
    pub gfx: Option<GfxSelection>,
    /// Cut freed pages out of the file when provably safe (otherwise zero in place).
    pub allow_cut: bool,
    /// Write a wheel even when the trim leaves it with no device code for any GPU
    /// (`--allow-no-device-code`).
    pub allow_no_device_code: bool,
}

impl TrimSettings {
    pub fn is_active(&self) -> bool {
        self.cuda.as_ref().is_some_and(|s| !s.targets.is_empty())
            || self.gfx.as_ref().is_some_and(|g| !g.targets.is_empty())
    }

    /// Whether the user asked for code that matches no target to go (`--unmatched drop`).
    pub fn drops_unmatched(&self) -> bool {
        self.cuda
            .as_ref()
            .is_some_and(|s| s.unmatched == UnmatchedPolicy::Drop)
            || self
                .gfx
                .as_ref()
                .is_some_and(|g| g.unmatched == UnmatchedPolicy::Drop)
    }

    /// The targets, for messages: `sm_90, gfx90a`.
    pub fn targets(&self) -> String {
        let mut t: Vec<String> = Vec::new();
        if let Some(s) = &self.cuda {
            t.extend(s.targets.iter().map(ToString::to_string));
        }
        if let Some(g) = &self.gfx {
            t.extend(g.targets.iter().map(ToString::to_string));
        }
        t.join(", ")
    }
}

/// GPUs that had an image they could run before a trim and have none after, in one member
/// (or one group of loose files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Loss {
    /// `sm_90`: a requested target; `newer`: GPUs newer than every target (no plain PTX left
    /// to JIT); `all`: every GPU (no device code left at all).
    pub gpus: String,
    /// Containers (bundles, loose-file groups) where this happened.
    pub containers: usize,
    /// What those containers held, by architecture.
    pub had: Vec<String>,
}

/// Kept and dropped images of one architecture in one member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ArchChange {
    pub arch: String,
    pub kept: usize,
    pub dropped: usize,
    pub kept_bytes: u64,
    pub dropped_bytes: u64,
}

/// What trimming did (or would do) to one member.
#[derive(Debug, Clone, Serialize)]
pub struct MemberTrim {
    pub member: String,
    /// `cut`, `zeroed`, `rebuilt` (loose fatbin/bundle), `dropped` (loose file), `unchanged`.
    pub method: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Compressed size in the wheel, before and after (after: 0 until written).
    pub zip_before: u64,
    pub zip_after: u64,
    pub archs: Vec<ArchChange>,
    /// Containers where nothing matched the targets (kept whole by default).
    pub unmatched_containers: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// For a loose cubin, PTX file or code object: its group (see
    /// [`crate::fatbin::loose::group_key`]), judged as one container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// GPUs left with nothing to run from this member (or its group).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lost: Vec<Loss>,
}

impl MemberTrim {
    /// Whether the trim leaves this member (or its group) with no device code for any GPU.
    pub fn emptied(&self) -> bool {
        self.lost.iter().any(|l| l.gpus == "all")
    }
}

/// The decisions on a wheel's loose cubins, PTX files and code objects, made group by group
/// ([`loose::decide_group`]).
#[derive(Debug, Clone, Default)]
pub struct LoosePlan {
    files: HashMap<String, PlannedFile>,
    /// Groups, and groups in which nothing matched the targets.
    pub groups: usize,
    pub unmatched_groups: usize,
}

#[derive(Debug, Clone)]
struct PlannedFile {
    decision: LooseDecision,
    group: String,
    unmatched: bool,
    lost: Vec<Loss>,
}

/// Plans the loose device files among `members` (name, what the file holds).
pub fn plan_loose<'a>(
    members: impl IntoIterator<Item = (&'a str, &'a LooseInfo)>,
    settings: &TrimSettings,
) -> LoosePlan {
    let mut groups: BTreeMap<String, Vec<(&'a str, &'a LooseInfo)>> = BTreeMap::new();
    for (name, info) in members {
        if let Some(key) = loose::group_key(name, info.kind) {
            groups.entry(key).or_default().push((name, info));
        }
    }
    let mut plan = LoosePlan {
        groups: groups.len(),
        ..LoosePlan::default()
    };
    for (key, files) in groups {
        let infos: Vec<&LooseInfo> = files.iter().map(|(_, i)| *i).collect();
        let d = loose::decide_group(&infos, settings.cuda.as_ref(), settings.gfx.as_ref());
        if d.unmatched {
            plan.unmatched_groups += 1;
        }
        let had = |pred: &dyn Fn(&LooseInfo) -> bool| -> Vec<String> {
            let mut v: Vec<String> = Vec::new();
            for i in infos.iter().filter(|i| pred(i)) {
                for a in &i.archs {
                    if !v.contains(a) {
                        v.push(a.clone());
                    }
                }
            }
            v
        };
        let mut lost: Vec<Loss> = d
            .targets_lost
            .iter()
            .map(|t| Loss {
                gpus: t.clone(),
                containers: 1,
                had: had(&|_| true),
            })
            .collect();
        if !d.newer_gpus_lost.is_empty() {
            lost.push(Loss {
                gpus: "newer".into(),
                containers: 1,
                had: d.newer_gpus_lost.clone(),
            });
        }
        if d.files.iter().all(|f| f.action == LooseAction::Drop) {
            lost.push(Loss {
                gpus: "all".into(),
                containers: 1,
                had: had(&|_| true),
            });
        }
        let display = key
            .split_once(':')
            .map_or(key.as_str(), |(_, k)| k)
            .to_string();
        for ((name, _), decision) in files.iter().zip(d.files) {
            plan.files.insert(
                (*name).to_string(),
                PlannedFile {
                    decision,
                    group: display.clone(),
                    unmatched: d.unmatched,
                    lost: lost.clone(),
                },
            );
        }
    }
    plan
}

impl LoosePlan {
    /// The decision on one loose file of the wheel, if it was planned.
    pub fn decision(&self, member: &str) -> Option<&LooseDecision> {
        self.files.get(member).map(|f| &f.decision)
    }
}

/// The new bytes of a trimmed member (`None` data: the member leaves the wheel).
pub struct Trimmed {
    pub data: Option<Vec<u8>>,
    pub report: MemberTrim,
}

#[derive(Default, Clone)]
struct Tally {
    archs: BTreeMap<String, ArchChange>,
    unmatched: usize,
    containers: usize,
    /// Per lost target: containers, and what they held.
    targets_lost: BTreeMap<String, (usize, Vec<String>)>,
    newer_lost: (usize, Vec<String>),
}

fn add_names(v: &mut Vec<String>, names: impl IntoIterator<Item = String>) {
    for n in names {
        if !v.contains(&n) {
            v.push(n);
        }
    }
}

impl Tally {
    fn add(&mut self, arch: String, keep: bool, bytes: u64) {
        let a = self
            .archs
            .entry(arch.clone())
            .or_insert_with(|| ArchChange {
                arch,
                ..Default::default()
            });
        if keep {
            a.kept += 1;
            a.kept_bytes += bytes;
        } else {
            a.dropped += 1;
            a.dropped_bytes += bytes;
        }
    }

    fn cuda(&mut self, c: &Container, choice: &Choice) {
        self.containers += 1;
        if choice.unmatched {
            self.unmatched += 1;
        }
        let name = |kind: EntryKind, arch: cuda::CudaArch| match kind {
            EntryKind::Ptx => arch.compute_name(),
            EntryKind::Elf => arch.to_string(),
            _ => "unknown".to_string(),
        };
        if !choice.targets_lost.is_empty() {
            let held: Vec<String> = c
                .entries
                .iter()
                .flat_map(|e| {
                    if e.kind == EntryKind::Concat {
                        e.members.iter().map(|m| name(m.kind, m.arch)).collect()
                    } else {
                        vec![name(e.kind, e.arch)]
                    }
                })
                .collect();
            for t in &choice.targets_lost {
                let slot = self.targets_lost.entry(t.to_string()).or_default();
                slot.0 += 1;
                add_names(&mut slot.1, held.iter().cloned());
            }
        }
        if !choice.newer_gpus_lost.is_empty() {
            self.newer_lost.0 += 1;
            add_names(
                &mut self.newer_lost.1,
                choice.newer_gpus_lost.iter().cloned(),
            );
        }
        for (e, ch) in c.entries.iter().zip(&choice.entries) {
            if e.kind == EntryKind::Concat && !e.members.is_empty() {
                let total: u64 = e.members.iter().map(|m| m.size).sum::<u64>().max(1);
                for (m, mc) in e.members.iter().zip(&ch.members) {
                    let share = (e.stored_bytes() as u128 * m.size as u128 / total as u128) as u64;
                    self.add(name(m.kind, m.arch), mc.keep, share);
                }
            } else {
                self.add(name(e.kind, e.arch), ch.keep, e.stored_bytes());
            }
        }
    }

    fn gfx(&mut self, choice: &GfxChoice) {
        self.containers += 1;
        if choice.unmatched {
            self.unmatched += 1;
        }
    }

    /// The losses: targets left with nothing, newer GPUs left with nothing to JIT, and the
    /// member left with no device code at all (host entries do not count).
    fn losses(&self) -> Vec<Loss> {
        let mut out: Vec<Loss> = self
            .targets_lost
            .iter()
            .map(|(t, (n, had))| Loss {
                gpus: t.clone(),
                containers: *n,
                had: had.clone(),
            })
            .collect();
        if self.newer_lost.0 > 0 {
            out.push(Loss {
                gpus: "newer".into(),
                containers: self.newer_lost.0,
                had: self.newer_lost.1.clone(),
            });
        }
        let device = || self.archs.values().filter(|a| a.arch != "host");
        if device().next().is_some() && device().all(|a| a.kept == 0) {
            out.push(Loss {
                gpus: "all".into(),
                containers: self.containers,
                had: device()
                    .map(|a| format!("{} ×{}", a.arch, a.dropped))
                    .collect(),
            });
        }
        out
    }

    fn finish(self) -> (Vec<ArchChange>, usize) {
        let mut v: Vec<ArchChange> = self.archs.into_values().collect();
        v.sort_by_key(|a| {
            let digits: String = a
                .arch
                .trim_start_matches(|c: char| !c.is_ascii_digit())
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            (
                a.arch.starts_with("compute_"),
                digits.parse::<u32>().unwrap_or(0),
                a.arch.clone(),
            )
        });
        (v, self.unmatched)
    }
}

/// Rebuilt CUDA containers of one section, as blocks for the ELF layer (or `None` when no
/// container changes).
fn cuda_blocks(
    bytes: &[u8],
    containers: usize,
    sel: &Selection,
    tally: &mut Tally,
) -> Result<Option<Vec<Block>>, FatbinError> {
    let mut changed = false;
    let mut blocks = Vec::with_capacity(containers);
    // Walked again from the bytes (the inspect pass kept only counts and sums).
    for c in cuda::containers(bytes).rechecked() {
        let c = &c?;
        let choice = sel.choose_container(c);
        tally.cuda(c, &choice);
        let new_bytes = if choice.keeps_everything() {
            bytes
                .get(c.offset..c.end())
                .map(<[u8]>::to_vec)
                .ok_or(FatbinError::Truncated {
                    what: "container",
                    offset: c.offset,
                    needed: c.len as u64,
                    available: bytes.len(),
                })?
        } else {
            changed = true;
            cuda::rebuild_container_with(bytes, c, &choice.edits())?
        };
        blocks.push(Block {
            old_offset: c.offset as u64,
            old_len: c.len as u64,
            new_bytes,
            align: 8,
        });
    }
    Ok(changed.then_some(blocks))
}

/// [`cuda_blocks`] over a section read a window at a time through `read` (offsets from the
/// section start): one window and the rebuilt containers are held, never the section. Where
/// the windowed walk cannot be sure of giving what the whole walk gives
/// ([`cuda::walk_windows`]), or a container does not rebuild, the section is read whole and
/// walked as before, which gives the same blocks or the exact error.
fn cuda_blocks_read(
    si: &crate::elf::SectionInfo,
    window: usize,
    containers: usize,
    read: &cuda::ReadAt,
    sel: &Selection,
    tally: &mut Tally,
) -> Result<Option<Vec<Block>>, FatbinError> {
    let failed_read = || FatbinError::Truncated {
        what: "device-code section (reading it again failed)",
        offset: usize::try_from(si.offset).unwrap_or(usize::MAX),
        needed: si.size,
        available: 0,
    };
    let len = usize::try_from(si.size).map_err(|_| failed_read())?;
    let before = tally.clone();
    let mut changed = false;
    let mut blocks = Vec::with_capacity(containers);
    let mut each = |c: Container, win: &[u8], base: usize| -> Option<()> {
        let choice = sel.choose_container(&c);
        tally.cuda(&c, &choice);
        let new_bytes = if choice.keeps_everything() {
            win.get(c.offset..c.end())?.to_vec()
        } else {
            changed = true;
            cuda::rebuild_container_with(win, &c, &choice.edits()).ok()?
        };
        blocks.push(Block {
            old_offset: u64::try_from(base.checked_add(c.offset)?).ok()?,
            old_len: c.len as u64,
            new_bytes,
            align: 8,
        });
        Some(())
    };
    if cuda::walk_windows_with_bytes(len, window, read, false, &mut each).is_some() {
        return Ok(changed.then_some(blocks));
    }
    drop(blocks);
    *tally = before;
    let mut whole = vec![0u8; len];
    read(0, &mut whole).map_err(|_| failed_read())?;
    cuda_blocks(&whole, containers, sel, tally)
}

/// A loose `.fatbin` trimmed with `sel`: its containers, each kept whole or rebuilt, laid out
/// 8-aligned in one buffer. `None` when every container keeps everything.
fn loose_fatbin(
    bytes: &[u8],
    sel: &Selection,
    tally: &mut Tally,
) -> Result<Option<Vec<u8>>, FatbinError> {
    // First only choose, one container at a time from the bytes (the inspect pass kept only
    // counts and sums): a file the trim leaves as it is costs no output buffer, where one as
    // large as the input was allocated before (issue 11 item 2).
    let mut changed = false;
    for c in cuda::containers(bytes).rechecked() {
        let c = &c?;
        let choice = sel.choose_container(c);
        tally.cuda(c, &choice);
        changed |= !choice.keeps_everything();
    }
    if !changed {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(bytes.len());
    for c in cuda::containers(bytes).rechecked() {
        let c = &c?;
        let choice = sel.choose_container(c);
        while out.len() % 8 != 0 {
            out.push(0);
        }
        if choice.keeps_everything() {
            let old = bytes.get(c.offset..c.end()).ok_or(FatbinError::Truncated {
                what: "container",
                offset: c.offset,
                needed: c.len as u64,
                available: bytes.len(),
            })?;
            out.extend_from_slice(old);
        } else {
            out.extend_from_slice(&cuda::rebuild_container_with(bytes, c, &choice.edits())?);
        }
    }
    Ok(Some(out))
}

fn hip_blocks(
    bytes: &[u8],
    bundles: &[OffloadBundle],
    sel: &GfxSelection,
    tally: &mut Tally,
) -> Result<Option<Vec<Block>>, FatbinError> {
    let mut changed = false;
    let mut blocks = Vec::with_capacity(bundles.len());
    for b in bundles {
        let choice = sel.choose(&b.entries);
        tally.gfx(&choice);
        let total = b.uncompressed_len().max(1);
        for (e, keep) in b.entries.iter().zip(&choice.keep) {
            let share = (b.len as u128 * e.size as u128 / total as u128) as u64;
            tally.add(
                e.target.clone().unwrap_or_else(|| e.triple.clone()),
                *keep,
                share,
            );
        }
        let new_bytes = if choice.keep.iter().all(|k| *k) {
            b.stored(bytes)?.to_vec()
        } else {
            changed = true;
            hip::rebuild_bundle(bytes, b, &choice.keep)?
        };
        blocks.push(Block {
            old_offset: b.offset as u64,
            old_len: b.len as u64,
            new_bytes,
            align: 4096,
        });
    }
    Ok(changed.then_some(blocks))
}

/// Trims the device code of one member whose bytes are `data`, judged on its own (a loose
/// cubin, PTX file or code object as a group of one). `Ok(None)`: nothing to do.
pub fn trim_member(
    member: &str,
    data: &[u8],
    compressed_size: u64,
    info: Option<&ElfInfo>,
    device: &DeviceFacts,
    settings: &TrimSettings,
) -> Result<Option<Trimmed>, TrimError> {
    let none = LoosePlan::default();
    let plan = trim_plan(
        member,
        data,
        compressed_size,
        info,
        device,
        settings,
        &none,
        None,
    )?;
    match plan {
        TrimPlan::Done(t) => Ok(t),
        // Nothing was left out of `data`, so every section is at hand.
        TrimPlan::Sections(p) => p.apply(data),
    }
}

/// CUDA sections of a large member that its bytes leave out (zero there), and how to read
/// them from the archive (see [`crate::facts::Kept::apart`]): the trim reads each a window at
/// a time and holds only the containers it keeps, never the whole section beside the rest.
struct Apart<'a> {
    /// File ranges `[start, end)` of the sections left out.
    pub holes: &'a [(u64, u64)],
    /// Reads the member's bytes at a file offset, in order.
    pub read: &'a cuda::ReadAt<'a>,
}

impl Apart<'_> {
    /// True when the section at file range `[a, b)` was left out.
    fn holds_out(&self, a: u64, b: u64) -> bool {
        self.holes.iter().any(|&(s, e)| s == a && e == b)
    }
}

/// A trim of a member whose CUDA sections may be left out of its bytes ([`trim_held`]).
pub struct HeldTrim {
    /// What the trim made; `None`: nothing to do.
    pub trimmed: Option<Trimmed>,
    /// The sections still left out of the bytes (zero there): those the trim rewrote from
    /// the archive without reading them into the bytes.
    pub holes: Vec<(u64, u64)>,
}

/// Why [`trim_held`] failed: reading the member again, or the trim.
#[derive(Debug)]
pub enum HeldTrimError {
    Zip(crate::wheel::zip::ZipError),
    Trim(TrimError),
}

/// Trims the device code of one member whose bytes are `data`; `Ok(None)` in
/// [`HeldTrim::trimmed`]: nothing to do. Loose cubins, PTX files and code objects follow
/// `loose` (made by [`plan_loose`] over the whole wheel); one it did not plan is judged on its
/// own. The member's CUDA sections `reader` may have left out of `data`
/// ([`crate::facts::Kept::apart`]): the sections the trim rewrites are read through it a
/// window at a time, and only the containers kept are held; those it leaves as they are
/// are read into `data` before the rewrite. When the trim makes a copy, the member is first
/// checked against the archive's CRC (nothing made from bytes read again is written
/// unchecked). Without a reader, nothing is left out.
#[allow(clippy::too_many_arguments)]
pub fn trim_held(
    member: &str,
    data: &mut [u8],
    compressed_size: u64,
    info: Option<&ElfInfo>,
    device: &DeviceFacts,
    settings: &TrimSettings,
    loose: &LoosePlan,
    reader: Option<&crate::facts::ApartReader>,
) -> Result<HeldTrim, HeldTrimError> {
    let read = |at: u64, out: &mut [u8]| match reader {
        Some(r) => r.read(at, out).map_err(|e| e.to_string()),
        None => Err("nothing was left out".to_string()),
    };
    let apart = reader.map(|r| Apart {
        holes: r.holes(),
        read: &read,
    });
    let plan = trim_plan(
        member,
        data,
        compressed_size,
        info,
        device,
        settings,
        loose,
        apart.as_ref(),
    )
    .map_err(HeldTrimError::Trim)?;
    let mut filled = Vec::new();
    let trimmed = match plan {
        TrimPlan::Done(t) => t,
        TrimPlan::Sections(p) => {
            if let Some(r) = reader {
                r.fill(data, &p.unedited).map_err(HeldTrimError::Zip)?;
            }
            filled.clone_from(&p.unedited);
            p.apply(data).map_err(HeldTrimError::Trim)?
        }
    };
    if let (Some(_), Some(r)) = (&trimmed, reader) {
        r.check(data).map_err(HeldTrimError::Zip)?;
    }
    let mut holes = reader.map(|r| r.holes().to_vec()).unwrap_or_default();
    holes.retain(|r| !filled.contains(r));
    Ok(HeldTrim { trimmed, holes })
}

/// What a trim does to one member, before the sections of a shared object are rewritten.
enum TrimPlan {
    /// Nothing to do (`None`), or done: a loose device file.
    Done(Option<Trimmed>),
    /// New containers for the device sections of a shared object: [`SectionPlan::apply`].
    Sections(SectionPlan),
}

/// The rebuilt containers of a shared object's device sections, to be written into it.
struct SectionPlan {
    subject: Subject,
    edits: Vec<SectionEdit>,
    tally: Tally,
    allow_cut: bool,
    /// File ranges of sections [`Apart`] left out that no edit rewrites: the shared object's
    /// bytes must hold them (read from the archive) before [`SectionPlan::apply`].
    pub unedited: Vec<(u64, u64)>,
}

impl SectionPlan {
    /// Rewrites `data` (the member's bytes, with every section [`Apart`] left out that is in
    /// [`SectionPlan::unedited`] filled) with the new containers.
    pub fn apply(self, data: &[u8]) -> Result<Option<Trimmed>, TrimError> {
        let outcome = shrink(data, &self.edits, self.allow_cut).map_err(TrimError::Elf)?;
        let (method, reason) = match &outcome.method {
            ShrinkMethod::Cut { .. } => ("cut", None),
            ShrinkMethod::Zeroed { reason } => ("zeroed", Some(reason.clone())),
        };
        let after = outcome.data.len() as u64;
        Ok(Some(Trimmed {
            report: self
                .subject
                .report(method, reason, after, self.tally, outcome.notes),
            data: Some(outcome.data),
        }))
    }
}

/// The member a trim reports on.
struct Subject {
    member: String,
    bytes_before: u64,
    zip_before: u64,
}

impl Subject {
    fn report(
        &self,
        method: &str,
        reason: Option<String>,
        after: u64,
        tally: Tally,
        notes: Vec<String>,
    ) -> MemberTrim {
        let lost = tally.losses();
        let (archs, unmatched_containers) = tally.finish();
        MemberTrim {
            member: self.member.clone(),
            method: method.to_string(),
            reason,
            bytes_before: self.bytes_before,
            bytes_after: after,
            zip_before: self.zip_before,
            zip_after: 0,
            archs,
            unmatched_containers,
            notes,
            group: None,
            lost,
        }
    }
}

/// A trim up to the rewrite of a shared object's sections, so that a caller holding the
/// member with sections left out ([`Apart`]) can fill those the trim does not rewrite before
/// it is applied ([`trim_held`]).
#[allow(clippy::too_many_arguments)]
fn trim_plan(
    member: &str,
    data: &[u8],
    compressed_size: u64,
    info: Option<&ElfInfo>,
    device: &DeviceFacts,
    settings: &TrimSettings,
    loose: &LoosePlan,
    apart: Option<&Apart>,
) -> Result<TrimPlan, TrimError> {
    let subject = Subject {
        member: member.to_string(),
        bytes_before: data.len() as u64,
        zip_before: compressed_size,
    };
    if let Some(l) = &device.loose {
        return trim_loose(&subject, data, l, device, settings, loose).map(TrimPlan::Done);
    }
    let mut tally = Tally::default();
    // Sections inside a shared object.
    let Some(info) = info else {
        return Ok(TrimPlan::Done(None));
    };
    let mut edited = Vec::new();
    let mut edits = Vec::new();
    for s in &device.cuda {
        let Some(sel) = settings.cuda.as_ref().filter(|s| !s.targets.is_empty()) else {
            break;
        };
        let Some(si) = info.section(&s.name) else {
            continue;
        };
        let end = si.offset.saturating_add(si.size);
        let blocks = match apart.filter(|a| a.holds_out(si.offset, end)) {
            Some(a) => {
                let read = |at: u64, out: &mut [u8]| (a.read)(si.offset.saturating_add(at), out);
                cuda_blocks_read(si, cuda::WINDOW, s.containers, &read, sel, &mut tally)?
            }
            None => cuda_blocks(section_bytes(data, si)?, s.containers, sel, &mut tally)?,
        };
        if let Some(blocks) = blocks {
            edited.push((si.offset, end));
            edits.push(SectionEdit {
                name: s.name.clone(),
                blocks,
            });
        }
    }
    for s in &device.hip {
        let Some(sel) = settings.gfx.as_ref().filter(|g| !g.targets.is_empty()) else {
            break;
        };
        let Some(si) = info.section(&s.name) else {
            continue;
        };
        let bytes = section_bytes(data, si)?;
        if let Some(blocks) = hip_blocks(bytes, &s.bundles, sel, &mut tally)? {
            edits.push(SectionEdit {
                name: s.name.clone(),
                blocks,
            });
        }
    }
    if edits.is_empty() {
        return Ok(TrimPlan::Done(None));
    }
    let unedited = apart
        .map(|a| {
            a.holes
                .iter()
                .filter(|h| !edited.contains(h))
                .copied()
                .collect()
        })
        .unwrap_or_default();
    Ok(TrimPlan::Sections(SectionPlan {
        subject,
        edits,
        tally,
        allow_cut: settings.allow_cut,
        unedited,
    }))
}

/// [`trim_plan`] for a loose device file (`l`): trimmed whole, in one buffer.
fn trim_loose(
    subject: &Subject,
    data: &[u8],
    l: &loose::LooseInfo,
    device: &DeviceFacts,
    settings: &TrimSettings,
    loose: &LoosePlan,
) -> Result<Option<Trimmed>, TrimError> {
    let member = subject.member.as_str();
    let compressed_size = subject.zip_before;
    let mut tally = Tally::default();
    let report = |method: &str, reason: Option<String>, after: u64, tally: Tally, notes| {
        subject.report(method, reason, after, tally, notes)
    };
    if loose::group_key(member, l.kind).is_some() {
        return Ok(loose_file(member, l, compressed_size, settings, loose));
    }
    let decision = loose::decide(l, settings.cuda.as_ref(), settings.gfx.as_ref());
    match decision.action {
        LooseAction::Keep | LooseAction::Drop => Ok(None),
        LooseAction::Trim => {
            let blocks = match l.kind {
                // Written straight into the output: a block per container cost about 150
                // bytes each for millions of tiny containers (issue 11 item 2).
                LooseKind::Fatbin => match (&settings.cuda, device.cuda.first()) {
                    (Some(sel), Some(_)) => {
                        return Ok(loose_fatbin(data, sel, &mut tally)?.map(|out| {
                            let after = out.len() as u64;
                            Trimmed {
                                data: Some(out),
                                report: report(
                                    "rebuilt",
                                    Some(decision.reason),
                                    after,
                                    tally,
                                    Vec::new(),
                                ),
                            }
                        }));
                    }
                    _ => None,
                },
                LooseKind::OffloadBundle => match (&settings.gfx, device.hip.first()) {
                    (Some(sel), Some(s)) => hip_blocks(data, &s.bundles, sel, &mut tally)?,
                    _ => None,
                },
                _ => None,
            };
            let Some(blocks) = blocks else {
                return Ok(None);
            };
            let mut out = Vec::new();
            for b in blocks {
                let align = b.align as usize;
                while out.len() % align != 0 {
                    out.push(0);
                }
                out.extend_from_slice(&b.new_bytes);
            }
            let after = out.len() as u64;
            Ok(Some(Trimmed {
                data: Some(out),
                report: report("rebuilt", Some(decision.reason), after, tally, Vec::new()),
            }))
        }
    }
}

/// A loose cubin, PTX file or code object: kept whole (`None`) or dropped, as its group was
/// judged. No bytes are needed: a kept file is copied as it is.
pub fn loose_file(
    member: &str,
    l: &LooseInfo,
    compressed_size: u64,
    settings: &TrimSettings,
    plan: &LoosePlan,
) -> Option<Trimmed> {
    let planned = plan.files.get(member).cloned().unwrap_or_else(|| {
        let one = plan_loose([(member, l)], settings);
        one.files.get(member).cloned().unwrap_or(PlannedFile {
            decision: LooseDecision {
                action: LooseAction::Keep,
                reason: String::new(),
            },
            group: member.to_string(),
            unmatched: false,
            lost: Vec::new(),
        })
    });
    if planned.decision.action != LooseAction::Drop {
        return None;
    }
    let mut tally = Tally::default();
    let share = l.bytes / l.archs.len().max(1) as u64;
    for a in &l.archs {
        tally.add(a.clone(), false, share);
    }
    let (archs, _) = tally.finish();
    Some(Trimmed {
        data: None,
        report: MemberTrim {
            member: member.to_string(),
            method: "dropped".into(),
            reason: Some(planned.decision.reason),
            bytes_before: l.bytes,
            bytes_after: 0,
            zip_before: compressed_size,
            zip_after: 0,
            archs,
            unmatched_containers: usize::from(planned.unmatched),
            notes: Vec::new(),
            group: Some(planned.group),
            lost: planned.lost,
        },
    })
}

/// Why a member could not be trimmed.
#[derive(Debug, thiserror::Error)]
pub enum TrimError {
    #[error("{0}")]
    DeviceCode(#[from] FatbinError),
    #[error("{0}")]
    Elf(crate::elf::ElfError),
}
/// The loose device files of a wheel: (member, what it holds).
pub fn loose_members(facts: &WheelFacts) -> impl Iterator<Item = (&str, &loose::LooseInfo)> {
    facts
        .members
        .iter()
        .filter_map(|f| Some((f.name.as_str(), f.device.as_ref()?.loose.as_ref()?)))
}

/// Refuses a trim that would leave device code nobody asked to lose:
///
/// * a library, loose device file or group of loose files left with no device code for any
///   GPU, unless `--unmatched drop` asked for code that matches no target to go (with the
///   default `--unmatched keep` such code is kept, so this is a last check);
/// * a wheel that held device code left with none at all, unless `--allow-no-device-code`.
///
/// Losses the user chose (no PTX left for newer GPUs under `--ptx none`) are reported, not
/// refused.
pub fn check_losses(
    wheel: &Wheel,
    facts: &WheelFacts,
    reports: &[&MemberTrim],
    settings: &TrimSettings,
) -> Result<(), Error> {
    let targets = settings.targets();
    let held = |r: &MemberTrim| -> String {
        r.lost
            .iter()
            .find(|l| l.gpus == "all")
            .map(|l| l.had.join(", "))
            .unwrap_or_default()
    };
    let what = |r: &MemberTrim| -> String {
        let loc = wheel.member_location(&r.member);
        match &r.group {
            Some(g) => format!("`{loc}` (loose files `{g}`)"),
            None => format!("`{loc}`"),
        }
    };
    if !settings.drops_unmatched()
        && let Some(r) = reports.iter().find(|r| r.emptied())
    {
        return Err(Error::refused(
            format!(
                "trimming to {targets} would leave {} with no device code for any GPU (it held {})",
                what(r),
                held(r)
            ),
            Some(
                "add the GPUs it was built for to --sm/--gfx; to drop code that matches none \
                 of the targets on purpose, pass --unmatched drop"
                    .into(),
            ),
        ));
    }
    let by_name: HashMap<&str, &MemberTrim> =
        reports.iter().map(|r| (r.member.as_str(), *r)).collect();
    let device: Vec<&MemberFacts> = facts
        .members
        .iter()
        .filter(|f| f.device.as_ref().is_some_and(|d| !d.is_empty()))
        .collect();
    let left = device.iter().any(|f| {
        by_name
            .get(f.name.as_str())
            .is_none_or(|r| r.method != "dropped" && !r.emptied())
    });
    if device.is_empty() || left || settings.allow_no_device_code {
        return Ok(());
    }
    let mut listed: Vec<String> = Vec::new();
    let mut seen_groups: Vec<&str> = Vec::new();
    for r in reports.iter().filter(|r| r.emptied()) {
        if let Some(g) = &r.group {
            if seen_groups.contains(&g.as_str()) {
                continue;
            }
            seen_groups.push(g);
        }
        listed.push(format!("`{}` held {}", r.member, held(r)));
    }
    let total = listed.len();
    let shown = total.min(3);
    let more = listed.len() - shown;
    let mut list = listed[..shown].join("; ");
    if more > 0 {
        list.push_str(&format!("; and {more} more"));
    }
    Err(Error::refused(
        format!(
            "trimming to {targets} would leave `{}` with no device code for any GPU: nothing in \
             its {total} member(s) or group(s) with device code matches the targets, and \
             --unmatched drop drops it all ({list})",
            wheel.path.display()
        ),
        Some(
            "check --sm/--gfx against the GPUs the wheel was built for; to write it without \
             device code anyway, add --allow-no-device-code"
                .into(),
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rebuilt a window at a time, the containers of every CUDA fixture's sections are the
    /// same blocks, with the same tally, as rebuilt from the whole section, at every window
    /// size (one container per window and less, up to the whole section), for several targets.
    #[test]
    fn containers_rebuilt_from_windows_are_those_of_the_whole_section() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let mut compared = 0;
        for lib in [
            "cuda/libfix_plain.so",
            "cuda/libfix_concat.so",
            "cuda/libfix_rdc.so",
            "cuda/libfix_compress_all.so",
            "cuda_old/libold_toolkits.so",
        ] {
            let data = std::fs::read(root.join(lib)).unwrap();
            let crate::elf::Inspected::Host(info) = crate::elf::inspect(&data).unwrap() else {
                panic!("{lib}");
            };
            for si in info
                .sections
                .iter()
                .filter(|s| crate::device::CUDA_SECTIONS.contains(&s.name.as_str()))
            {
                let bytes = section_bytes(&data, si).unwrap();
                let count = cuda::containers(bytes).count();
                for sm in ["90", "50", "80,120"] {
                    let sel = Selection::parse_targets(sm).unwrap();
                    let mut t0 = Tally::default();
                    let want = cuda_blocks(bytes, count, &sel, &mut t0).unwrap();
                    for window in [1, 7, 4096, 20_000, 1 << 20] {
                        let (reads, longest) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
                        let read = |at: u64, out: &mut [u8]| {
                            reads.set(reads.get() + 1);
                            longest.set(longest.get().max(out.len()));
                            let at = at as usize;
                            out.copy_from_slice(&bytes[at..at + out.len()]);
                            Ok(())
                        };
                        let mut t1 = Tally::default();
                        let got = cuda_blocks_read(si, window, count, &read, &sel, &mut t1);
                        let got = got.unwrap();
                        assert!(got == want, "{lib} {} --sm {sm} window {window}", si.name);
                        assert_eq!(t0.clone().finish(), t1.clone().finish());
                        assert_eq!(t0.losses(), t1.losses());
                        if window < bytes.len() / 2 && count > 2 {
                            // Walked from windows, not read whole after giving up.
                            assert!(reads.get() > 1, "{lib}: one read at window {window}");
                            assert!(longest.get() < bytes.len(), "{lib}: read whole");
                        }
                        compared += 1;
                    }
                }
            }
        }
        assert!(compared >= 90, "{compared}");
    }
}
