//! Device code in a wheel, as the audit reports it: per library, per architecture, the bytes
//! stored and the bytes a trim to that architecture would keep.

use serde::Serialize;

use crate::elf::{ElfInfo, SectionInfo};
use crate::fatbin::cuda::{self, CudaArch};
use crate::fatbin::loose::LooseInfo;
use crate::fatbin::select::{self, GfxSelection};
use crate::fatbin::{FatbinError, hip};

#[derive(Debug, Clone, Serialize)]
pub struct ArchRow {
    /// `sm_90`, `sm_90a`, `compute_90`, `gfx90a`, `host`.
    pub arch: String,
    /// `sass`, `ptx`, `code-object`, `host`, `other`.
    pub code: String,
    pub entries: usize,
    pub stored_bytes: u64,
    pub uncompressed_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrimEstimate {
    /// The single target this estimate is for.
    pub target: String,
    /// Device-code bytes a trim to it would keep.
    pub kept_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceReport {
    pub member: String,
    /// `cuda` (fatbin sections), `hip` (offload bundles), or a loose file kind.
    pub kind: String,
    pub sections: Vec<String>,
    pub containers: usize,
    pub stored_bytes: u64,
    pub rows: Vec<ArchRow>,
    pub trims: Vec<TrimEstimate>,
}

/// SASS before PTX before the rest, each by architecture number.
pub(crate) fn row_order(r: &ArchRow) -> (u8, u32, String) {
    let rank = match r.code.as_str() {
        "sass" => 0,
        "ptx" => 1,
        "host" => 3,
        _ => 2,
    };
    let digits: String = r
        .arch
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (rank, digits.parse().unwrap_or(0), r.arch.clone())
}

/// The device-code sections wheelslim knows, and which format each holds.
pub const CUDA_SECTIONS: &[&str] = &[".nv_fatbin", "__nv_relfatbin"];
pub const HIP_SECTIONS: &[&str] = &[".hip_fatbin"];

#[derive(Debug, Clone, Serialize)]
pub struct CudaSection {
    pub name: String,
    pub size: u64,
    /// How many containers it holds. Their descriptions are not kept past the inspect pass:
    /// millions of tiny containers cost hundreds of bytes each (issue 11 item 2). What the
    /// audit reports of them is in [`DeviceFacts::cuda_summary`]; a trim walks them again
    /// from the bytes ([`cuda::containers`]).
    pub containers: usize,
    /// Where each container is and its GPU family, for the companion planner: a few bytes per
    /// container, kept for sections of ELF objects only (empty for loose fatbin files, which
    /// companions do not apply to).
    #[serde(skip)]
    pub spans: Vec<ContainerSpan>,
    /// The distinct families the spans name ([`ContainerSpan::family`] indexes it).
    #[serde(skip)]
    pub families: Vec<String>,
}

/// One container of a CUDA section: its offset from the section start, its length and the
/// index of its family in [`CudaSection::families`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerSpan {
    pub offset: u64,
    pub len: u64,
    pub family: u32,
}

impl CudaSection {
    /// The family name of one of this section's spans (`other` if the index is stale).
    pub fn family_of(&self, span: &ContainerSpan) -> &str {
        usize::try_from(span.family)
            .ok()
            .and_then(|i| self.families.get(i))
            .map_or("other", String::as_str)
    }

    /// Records a container's span, interning its family.
    fn add_span(&mut self, c: &cuda::Container) {
        let fam = crate::fatbin::family::cuda_family(c);
        let idx = match self.families.iter().position(|f| *f == fam) {
            Some(i) => i,
            None => {
                self.families.push(fam);
                self.families.len() - 1
            }
        };
        self.spans.push(ContainerSpan {
            offset: c.offset as u64,
            len: c.len as u64,
            family: u32::try_from(idx).unwrap_or(u32::MAX),
        });
    }
}

/// What the audit reports of a member's CUDA device code, summed over every container of its
/// sections while the member's bytes were in memory: bytes per architecture and, for each SASS
/// architecture found, the bytes a trim to it alone would keep. A few rows per member, however
/// many containers it has.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CudaSummary {
    pub per_arch: std::collections::BTreeMap<String, select::ArchBytes>,
    /// (target, bytes kept by a trim to it alone), by SM.
    pub trims: Vec<(CudaArch, u64)>,
}

/// Walks the CUDA sections `(name, bytes)` of one member container by container, without
/// holding their descriptions: one pass checks them and sums bytes per architecture, a second
/// (over bytes now known to be sound) sums what a trim to each SASS architecture found would
/// keep. The error names the section.
pub fn scan_cuda(
    sections: &[(&str, &[u8])],
) -> Result<(Vec<usize>, CudaSummary), (String, FatbinError)> {
    let sources: Vec<(&str, Source)> = sections
        .iter()
        .map(|&(name, bytes)| (name, Source::Held(bytes)))
        .collect();
    let mut spans = Vec::new();
    let scanned = scan_sources(&sources, &mut spans)?;
    // Held bytes never leave the walk unsure.
    Ok(scanned.unwrap_or_default())
}

/// Where a CUDA section's bytes come from.
enum Source<'a> {
    Held(&'a [u8]),
    /// Read again, a window at a time, from a member held in parts ([`crate::elf::sparse`]):
    /// its `len` bytes at an offset of the section.
    Read {
        len: usize,
        read: &'a cuda::ReadAt<'a>,
    },
}

/// Walks one section's containers; `Ok(false)` when a section read again could not be walked
/// for sure (see [`cuda::walk_windows`]).
fn walk(
    src: &Source,
    checked: bool,
    each: &mut dyn FnMut(&cuda::Container),
) -> Result<bool, FatbinError> {
    match src {
        Source::Held(bytes) => {
            let walk = cuda::containers(bytes);
            let walk = if checked { walk } else { walk.rechecked() };
            for c in walk {
                each(&c?);
            }
            Ok(true)
        }
        Source::Read { len, read } => {
            Ok(cuda::walk_windows(*len, cuda::WINDOW, read, checked, &mut |c| each(&c)).is_some())
        }
    }
}

/// What a trim to one SASS architecture alone would keep, summed while the containers are
/// walked: from the container where the architecture first appears on (`from`, counted over
/// all sections); the containers before it are added by a second walk, only when there are
/// any (a library's containers nearly always name every architecture in the first one).
struct TrimSum {
    selection: select::Selection,
    from: usize,
    kept: u64,
}

fn trim_sum(target: CudaArch, from: usize) -> TrimSum {
    TrimSum {
        selection: select::Selection {
            targets: vec![target],
            ptx: select::PtxPolicy::Newest,
            unmatched: select::UnmatchedPolicy::Keep,
        },
        from,
        kept: 0,
    }
}

/// Bytes of container descriptions [`scan_sources`] keeps to sum late architectures without a
/// second walk: a library's few hundred containers take a few hundred KiB; millions of tiny
/// ones (issue 11 item 2) go past it and are walked again instead.
const EARLY_CAP: usize = 16 << 20;

/// About what a container's description takes in memory.
fn description_bytes(c: &cuda::Container) -> usize {
    let entries = c.entries.iter().map(|e| {
        std::mem::size_of::<cuda::Entry>()
            + e.identifier.as_ref().map_or(0, String::len)
            + e.options.as_ref().map_or(0, String::len)
            + e.members.len() * std::mem::size_of::<cuda::ConcatMember>()
    });
    std::mem::size_of::<cuda::Container>() + entries.sum::<usize>()
}

/// [`scan_cuda`] over sources, also recording each section's container spans into `spans`
/// (one list per section); `Ok(None)` when a section read again was not walked for sure.
#[allow(clippy::type_complexity)]
fn scan_sources(
    sections: &[(&str, Source)],
    spans: &mut Vec<CudaSection>,
) -> Result<Option<(Vec<usize>, CudaSummary)>, (String, FatbinError)> {
    let mut counts = Vec::with_capacity(sections.len());
    let mut summary = CudaSummary::default();
    let mut sums: std::collections::BTreeMap<CudaArch, TrimSum> = Default::default();
    let mut index = 0usize;
    // Descriptions of the containers walked, for the sums of architectures that first appear
    // in a later container, while they stay small ([`EARLY_CAP`]); past that, a second walk.
    let mut early: Option<(Vec<cuda::Container>, usize)> = Some((Vec::new(), 0));
    for (name, src) in sections {
        let mut n = 0usize;
        let mut section = CudaSection {
            name: (*name).to_string(),
            size: 0,
            containers: 0,
            spans: Vec::new(),
            families: Vec::new(),
        };
        let sure = walk(src, true, &mut |c| {
            let before = summary.per_arch.len();
            select::add_bytes_per_arch(&mut summary.per_arch, c);
            if summary.per_arch.len() != before {
                for k in summary.per_arch.keys().filter(|k| k.starts_with("sm_")) {
                    if let Ok(t) = k.parse::<CudaArch>() {
                        sums.entry(t).or_insert_with(|| trim_sum(t, index));
                    }
                }
            }
            for s in sums.values_mut() {
                let kept = s.selection.choose_container(c).kept_bytes(c);
                s.kept = s.kept.saturating_add(kept);
            }
            if let Some((list, bytes)) = early.as_mut() {
                *bytes = bytes.saturating_add(description_bytes(c));
                if *bytes <= EARLY_CAP {
                    list.push(c.clone());
                } else {
                    early = None;
                }
            }
            section.add_span(c);
            n += 1;
            index += 1;
        })
        .map_err(|e| ((*name).to_string(), e))?;
        if !sure {
            return Ok(None);
        }
        section.spans.shrink_to_fit();
        spans.push(section);
        counts.push(n);
    }
    if let (true, Some((list, _))) = (sums.values().any(|s| s.from > 0), early.as_ref()) {
        for (index, c) in list.iter().enumerate() {
            for s in sums.values_mut().filter(|s| index < s.from) {
                let kept = s.selection.choose_container(c).kept_bytes(c);
                s.kept = s.kept.saturating_add(kept);
            }
        }
    } else if sums.values().any(|s| s.from > 0) {
        let mut index = 0usize;
        for (name, src) in sections {
            let sure = walk(src, false, &mut |c| {
                for s in sums.values_mut().filter(|s| index < s.from) {
                    let kept = s.selection.choose_container(c).kept_bytes(c);
                    s.kept = s.kept.saturating_add(kept);
                }
                index += 1;
            })
            .map_err(|e| ((*name).to_string(), e))?;
            if !sure {
                return Ok(None);
            }
        }
    }
    let mut trims: Vec<(CudaArch, u64)> = sums.into_iter().map(|(t, s)| (t, s.kept)).collect();
    trims.sort_by_key(|(t, _)| (t.sm, t.to_string()));
    summary.trims = trims;
    Ok(Some((counts, summary)))
}

#[derive(Debug, Clone, Serialize)]
pub struct HipSection {
    pub name: String,
    pub size: u64,
    pub bundles: Vec<hip::OffloadBundle>,
}

/// Device code found in one member.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeviceFacts {
    pub cuda: Vec<CudaSection>,
    /// The audit's view of every container in `cuda`, summed ([`scan_cuda`]).
    pub cuda_summary: CudaSummary,
    pub hip: Vec<HipSection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loose: Option<LooseInfo>,
}

impl DeviceFacts {
    pub fn is_empty(&self) -> bool {
        self.cuda.is_empty() && self.hip.is_empty() && self.loose.is_none()
    }
}

/// A section's bytes, checked against the file.
pub fn section_bytes<'a>(data: &'a [u8], s: &SectionInfo) -> Result<&'a [u8], FatbinError> {
    let start = usize::try_from(s.offset).ok();
    let end = start.and_then(|st| st.checked_add(usize::try_from(s.size).ok()?));
    match (start, end) {
        (Some(st), Some(e)) if e <= data.len() => Ok(&data[st..e]),
        _ => Err(FatbinError::Truncated {
            what: "device-code section",
            offset: usize::try_from(s.offset).unwrap_or(usize::MAX),
            needed: s.size,
            available: data.len(),
        }),
    }
}

/// Parses the device-code sections of a host ELF object. The error names the section.
pub fn scan_elf(data: &[u8], info: &ElfInfo) -> Result<DeviceFacts, (String, FatbinError)> {
    scan_elf_parts(data, info, &[], &|_, _| Err(String::new()))
}

/// [`scan_elf`] over a member held in parts: CUDA sections that lie in `holes` (ranges of
/// `data` left zero, [`crate::elf::sparse`]) are read again through `read` (member offset,
/// buffer) a window at a time instead of being held; should a window walk be unsure, they are
/// read whole and walked as [`scan_elf`] does.
pub fn scan_elf_parts(
    data: &[u8],
    info: &ElfInfo,
    holes: &[(u64, u64)],
    read: &cuda::ReadAt,
) -> Result<DeviceFacts, (String, FatbinError)> {
    let mut facts = DeviceFacts::default();
    let in_hole = |s: &SectionInfo| {
        let end = s.offset.saturating_add(s.size);
        holes.iter().any(|&(a, b)| a < end && s.offset < b)
    };
    // CUDA sections in file order, each with where its bytes are: held (`None`) or read
    // again from the member.
    type ReadAgain<'r> = Option<Box<cuda::ReadAt<'r>>>;
    let mut cuda: Vec<(&SectionInfo, &[u8], ReadAgain)> = Vec::new();
    for s in info.sections.iter().filter(|s| s.in_file && s.size > 0) {
        if CUDA_SECTIONS.contains(&s.name.as_str()) {
            let bytes = section_bytes(data, s).map_err(|e| (s.name.clone(), e))?;
            let base = s.offset;
            let again: ReadAgain =
                in_hole(s).then(|| Box::new(move |at, out: &mut [u8]| read(base + at, out)) as _);
            cuda.push((s, bytes, again));
        } else if HIP_SECTIONS.contains(&s.name.as_str()) {
            let bytes = section_bytes(data, s).map_err(|e| (s.name.clone(), e))?;
            let bundles = hip::parse_section(bytes).map_err(|e| (s.name.clone(), e))?;
            facts.hip.push(HipSection {
                name: s.name.clone(),
                size: s.size,
                bundles,
            });
        }
    }
    let sources: Vec<(&str, Source)> = cuda
        .iter()
        .map(|(s, bytes, again)| {
            let src = match again {
                Some(r) => Source::Read {
                    len: bytes.len(),
                    read: &**r,
                },
                None => Source::Held(bytes),
            };
            (s.name.as_str(), src)
        })
        .collect();
    let mut sections = Vec::new();
    let (counts, summary) = match scan_sources(&sources, &mut sections)? {
        Some(done) => done,
        None => {
            // Unsure from windows: read those sections whole and walk them as held.
            let whole: Vec<Option<Vec<u8>>> = cuda
                .iter()
                .map(|(s, bytes, again)| {
                    let Some(r) = again else { return Ok(None) };
                    let mut v = vec![0u8; bytes.len()];
                    r(0, &mut v).map(|()| Some(v)).map_err(|_| {
                        (
                            s.name.clone(),
                            FatbinError::Truncated {
                                what: "device-code section (reading it again failed)",
                                offset: usize::try_from(s.offset).unwrap_or(usize::MAX),
                                needed: s.size,
                                available: 0,
                            },
                        )
                    })
                })
                .collect::<Result<_, _>>()?;
            let sources: Vec<(&str, Source)> = cuda
                .iter()
                .zip(&whole)
                .map(|((s, bytes, _), w)| {
                    (s.name.as_str(), Source::Held(w.as_deref().unwrap_or(bytes)))
                })
                .collect();
            sections.clear();
            scan_sources(&sources, &mut sections)?.unwrap_or_default()
        }
    };
    for ((mut c, n), (s, _, _)) in sections.into_iter().zip(counts).zip(&cuda) {
        c.size = s.size;
        c.containers = n;
        facts.cuda.push(c);
    }
    facts.cuda_summary = summary;
    Ok(facts)
}

/// The audit's view of one member's device code.
pub fn report(member: &str, d: &DeviceFacts) -> Option<DeviceReport> {
    if !d.cuda.is_empty() {
        return Some(cuda_report(member, d));
    }
    if !d.hip.is_empty() {
        return Some(hip_report(member, d));
    }
    let l = d.loose.as_ref()?;
    Some(DeviceReport {
        member: member.to_string(),
        kind: format!("loose-{}", loose_kind_name(l.kind)),
        sections: Vec::new(),
        containers: 0,
        stored_bytes: l.bytes,
        rows: l
            .archs
            .iter()
            .map(|a| ArchRow {
                arch: a.clone(),
                code: if a.starts_with("compute_") {
                    "ptx"
                } else if a.starts_with("sm_") {
                    "sass"
                } else {
                    "code-object"
                }
                .into(),
                entries: 1,
                stored_bytes: l.bytes / l.archs.len().max(1) as u64,
                uncompressed_bytes: l.bytes / l.archs.len().max(1) as u64,
            })
            .collect(),
        trims: Vec::new(),
    })
}

/// The CUDA fatbins' rows per architecture and what a trim to each SASS target keeps.
fn cuda_report(member: &str, d: &DeviceFacts) -> DeviceReport {
    let per_arch = &d.cuda_summary.per_arch;
    let mut rows: Vec<ArchRow> = per_arch
        .iter()
        .map(|(arch, b)| ArchRow {
            arch: arch.clone(),
            code: if arch.starts_with("sm_") {
                "sass"
            } else if arch.starts_with("compute_") {
                "ptx"
            } else {
                "other"
            }
            .to_string(),
            entries: b.images as usize,
            stored_bytes: b.stored,
            uncompressed_bytes: b.image,
        })
        .collect();
    rows.sort_by_key(row_order);
    let trims = d
        .cuda_summary
        .trims
        .iter()
        .map(|(t, kept)| TrimEstimate {
            target: t.to_string(),
            kept_bytes: *kept,
        })
        .collect();
    DeviceReport {
        member: member.to_string(),
        kind: "cuda".into(),
        sections: d.cuda.iter().map(|s| s.name.clone()).collect(),
        containers: d.cuda.iter().map(|s| s.containers).sum(),
        stored_bytes: d.cuda.iter().map(|s| s.size).sum(),
        rows,
        trims,
    }
}

/// The HIP offload bundles' rows per target and what a trim to each gfx target keeps.
fn hip_report(member: &str, d: &DeviceFacts) -> DeviceReport {
    let bundles: Vec<&hip::OffloadBundle> = d.hip.iter().flat_map(|s| s.bundles.iter()).collect();
    let mut rows: std::collections::BTreeMap<String, ArchRow> = std::collections::BTreeMap::new();
    // Stored bytes of a compressed bundle are shared out in proportion to entry sizes.
    let stored_share = |b: &hip::OffloadBundle, size: u64| -> u64 {
        let total = b.uncompressed_len().max(1);
        (b.len as u128 * size as u128 / total as u128) as u64
    };
    let mut targets: Vec<String> = Vec::new();
    for b in &bundles {
        for e in &b.entries {
            let arch = e.target.clone().unwrap_or_else(|| e.triple.clone());
            let code = if e.is_host() { "host" } else { "code-object" };
            let row = rows.entry(arch.clone()).or_insert_with(|| ArchRow {
                arch: arch.clone(),
                code: code.into(),
                entries: 0,
                stored_bytes: 0,
                uncompressed_bytes: 0,
            });
            row.entries += 1;
            row.stored_bytes += stored_share(b, e.size);
            row.uncompressed_bytes += e.size;
            if !e.is_host() && e.is_amdgcn() && !targets.contains(&arch) {
                targets.push(arch);
            }
        }
    }
    targets.sort();
    let trims = targets
        .iter()
        .filter_map(|t| {
            let sel = GfxSelection::parse(t).ok()?;
            let kept: u64 = bundles
                .iter()
                .map(|b| {
                    let choice = sel.choose(&b.entries);
                    b.entries
                        .iter()
                        .zip(&choice.keep)
                        .filter(|(_, k)| **k)
                        .map(|(e, _)| stored_share(b, e.size))
                        .sum::<u64>()
                })
                .sum();
            Some(TrimEstimate {
                target: t.clone(),
                kept_bytes: kept,
            })
        })
        .collect();
    let mut rows: Vec<ArchRow> = rows.into_values().collect();
    rows.sort_by_key(row_order);
    DeviceReport {
        member: member.to_string(),
        kind: "hip".into(),
        sections: d.hip.iter().map(|s| s.name.clone()).collect(),
        containers: bundles.len(),
        stored_bytes: d.hip.iter().map(|s| s.size).sum(),
        rows,
        trims,
    }
}

fn loose_kind_name(k: crate::fatbin::loose::LooseKind) -> &'static str {
    use crate::fatbin::loose::LooseKind as K;
    match k {
        K::Cubin => "cubin",
        K::Fatbin => "fatbin",
        K::Ptx => "ptx",
        K::AmdCodeObject => "code-object",
        K::OffloadBundle => "offload-bundle",
    }
}

/// The most installed bytes a trim to a single architecture would drop, over all libraries.
pub fn best_single_arch_saving(reports: &[DeviceReport]) -> Option<u64> {
    let mut best: Option<u64> = None;
    let mut targets: Vec<&str> = reports
        .iter()
        .flat_map(|r| r.trims.iter().map(|t| t.target.as_str()))
        .collect();
    targets.sort_unstable();
    targets.dedup();
    for t in targets {
        let saved: u64 = reports
            .iter()
            .map(|r| {
                r.trims
                    .iter()
                    .find(|x| x.target == t)
                    .map_or(0, |x| r.stored_bytes.saturating_sub(x.kept_bytes))
            })
            .sum();
        best = Some(best.map_or(saved, |b| b.max(saved)));
    }
    best
}

pub(crate) fn render(o: &mut String, d: &DeviceReport) {
    use std::fmt::Write;
    let size = crate::cli_size;
    let unit = if d.kind == "hip" {
        "bundle"
    } else {
        "container"
    };
    if d.sections.is_empty() || d.sections == ["(file)"] {
        let _ = writeln!(o, "    {}  {} ({})", d.member, size(d.stored_bytes), d.kind);
    } else {
        let _ = writeln!(
            o,
            "    {}  {} in {} ({} {unit}{})",
            d.member,
            size(d.stored_bytes),
            d.sections.join(", "),
            d.containers,
            if d.containers == 1 { "" } else { "s" }
        );
    }
    let _ = writeln!(
        o,
        "      {:<12} {:<11} {:>7} {:>11} {:>13}",
        "arch", "code", "entries", "stored", "uncompressed"
    );
    for r in &d.rows {
        let _ = writeln!(
            o,
            "      {:<12} {:<11} {:>7} {:>11} {:>13}",
            r.arch,
            r.code,
            r.entries,
            size(r.stored_bytes),
            size(r.uncompressed_bytes)
        );
    }
    if !d.trims.is_empty() {
        let parts: Vec<String> = d
            .trims
            .iter()
            .map(|t| format!("{} keeps {}", t.target, size(t.kept_bytes)))
            .collect();
        let _ = writeln!(o, "      trim to: {}", parts.join(", "));
    }
}
