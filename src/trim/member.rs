//! Trimming one member: the device code inside a shared object (fatbin sections, offload
//! bundles), or a loose device file.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::device::{DeviceFacts, section_bytes};
use crate::elf::ElfInfo;
use crate::elf::shrink::{Block, SectionEdit, ShrinkMethod, shrink};
use crate::fatbin::FatbinError;
use crate::fatbin::cuda::{self, Container, EntryKind};
use crate::fatbin::hip::{self, OffloadBundle};
use crate::fatbin::loose::{self, LooseAction, LooseKind};
use crate::fatbin::select::{Choice, GfxSelection, Selection};

/// What to trim to.
#[derive(Debug, Clone, Default)]
pub struct TrimSettings {
    pub cuda: Option<Selection>,
    pub gfx: Option<GfxSelection>,
    /// Cut freed pages out of the file when provably safe (otherwise zero in place).
    pub allow_cut: bool,
}

impl TrimSettings {
    pub fn is_active(&self) -> bool {
        self.cuda.as_ref().is_some_and(|s| !s.targets.is_empty())
            || self.gfx.as_ref().is_some_and(|g| !g.targets.is_empty())
    }
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
}

/// The new bytes of a trimmed member (`None` data: the member leaves the wheel).
pub struct Trimmed {
    pub data: Option<Vec<u8>>,
    pub report: MemberTrim,
}

#[derive(Default)]
struct Tally {
    archs: BTreeMap<String, ArchChange>,
    unmatched: usize,
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
        if choice.unmatched {
            self.unmatched += 1;
        }
        for (e, ch) in c.entries.iter().zip(&choice.entries) {
            let name = |kind: EntryKind, arch: cuda::CudaArch| match kind {
                EntryKind::Ptx => arch.compute_name(),
                EntryKind::Elf => arch.to_string(),
                _ => "unknown".to_string(),
            };
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
    containers: &[Container],
    sel: &Selection,
    tally: &mut Tally,
) -> Result<Option<Vec<Block>>, FatbinError> {
    let mut changed = false;
    let mut blocks = Vec::with_capacity(containers.len());
    for c in containers {
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

/// Trims the device code of one member whose bytes are `data`. `Ok(None)`: nothing to do.
/// With `dry_run`, decides and counts but builds nothing.
pub fn trim_member(
    member: &str,
    data: &[u8],
    compressed_size: u64,
    info: Option<&ElfInfo>,
    device: &DeviceFacts,
    settings: &TrimSettings,
) -> Result<Option<Trimmed>, TrimError> {
    let mut tally = Tally::default();
    let report =
        |method: &str, reason: Option<String>, after: u64, tally: Tally, notes: Vec<String>| {
            let (archs, unmatched_containers) = tally.finish();
            MemberTrim {
                member: member.to_string(),
                method: method.to_string(),
                reason,
                bytes_before: data.len() as u64,
                bytes_after: after,
                zip_before: compressed_size,
                zip_after: 0,
                archs,
                unmatched_containers,
                notes,
            }
        };
    // Loose device files.
    if let Some(l) = &device.loose {
        let decision = loose::decide(l, settings.cuda.as_ref(), settings.gfx.as_ref());
        return match decision.action {
            LooseAction::Keep => Ok(None),
            LooseAction::Drop => {
                for a in &l.archs {
                    tally.add(a.clone(), false, l.bytes / l.archs.len().max(1) as u64);
                }
                Ok(Some(Trimmed {
                    data: None,
                    report: report("dropped", Some(decision.reason), 0, tally, Vec::new()),
                }))
            }
            LooseAction::Trim => {
                let blocks = match l.kind {
                    LooseKind::Fatbin => match (&settings.cuda, device.cuda.first()) {
                        (Some(sel), Some(s)) => cuda_blocks(data, &s.containers, sel, &mut tally)?,
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
        };
    }
    // Sections inside a shared object.
    let Some(info) = info else { return Ok(None) };
    let mut edits = Vec::new();
    for s in &device.cuda {
        let Some(sel) = settings.cuda.as_ref().filter(|s| !s.targets.is_empty()) else {
            break;
        };
        let Some(si) = info.section(&s.name) else {
            continue;
        };
        let bytes = section_bytes(data, si)?;
        if let Some(blocks) = cuda_blocks(bytes, &s.containers, sel, &mut tally)? {
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
        return Ok(None);
    }
    let outcome = shrink(data, &edits, settings.allow_cut).map_err(TrimError::Elf)?;
    let (method, reason) = match &outcome.method {
        ShrinkMethod::Cut { .. } => ("cut", None),
        ShrinkMethod::Zeroed { reason } => ("zeroed", Some(reason.clone())),
    };
    let after = outcome.data.len() as u64;
    Ok(Some(Trimmed {
        report: report(method, reason, after, tally, outcome.notes),
        data: Some(outcome.data),
    }))
}

/// Why a member could not be trimmed.
#[derive(Debug, thiserror::Error)]
pub enum TrimError {
    #[error("{0}")]
    DeviceCode(#[from] FatbinError),
    #[error("{0}")]
    Elf(crate::elf::ElfError),
}
