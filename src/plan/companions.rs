//! Planning device-code companions (issue 14): which whole fatbin containers (CUDA) or offload
//! bundles (HIP) of a library too big for one wheel move into which companion shared object,
//! so that the host and every companion fit under the size limit.
//!
//! This is a pure function of sizes: it reads no file and writes none. The move itself (the
//! host rewrite and the companion writer) is `crate::elf::companion`'s business; `audit` and
//! `split --dry-run` show this plan, and the real split hands it to the mover.
//!
//! The rules:
//!
//! * Only whole containers move, with the section they came from; the planner never cuts one.
//! * Bins are wheels' room for one library ([`crate::checks::room_for_libraries`]), less a
//!   margin of 1/64 for the estimate. The host is the first bin, already holding its
//!   non-device bytes; the containers that still fit there stay in the host, the rest go to as
//!   few companions as first-fit decreasing finds.
//! * Containers are grouped by GPU architecture family ([`cuda_family`], [`hip_family`]):
//!   whole families are placed first (a family too big for one bin fills bins of its own),
//!   and that grouped plan is used unless it needs more companion files than packing the
//!   containers one by one does. So grouping never costs a file.
//! * Everything is ordered by size, then by (section, offset): the same library and limit
//!   always give the same plan, whatever order the containers were listed in.
//! * Companion sonames: the host's soname up to `.so`, then `.wsdev<N>.so`, N counting from 1
//!   (`libnccl.so.2` → `libnccl.wsdev1.so`, `libnccl.wsdev2.so`); a name already taken in the
//!   wheel is passed over for the next number.
//!
//! Compressed sizes are estimates: each container's share of the member's deflate stream,
//! read off the stream's block boundaries ([`compressed_range`]); companions are deflated
//! again, the host's unchanged bytes are not.

use serde::Serialize;

use crate::device::{CUDA_SECTIONS, DeviceFacts, HIP_SECTIONS};
use crate::elf::{ElfInfo, Machine};
pub use crate::fatbin::family::{cuda_family, family_order, gfx_family, hip_family, join_families};

/// Estimated compressed bytes of a companion's own ELF headers, hash and symbol tables, and
/// its zip entry, besides its containers.
pub const COMPANION_FIXED_COST: u64 = 2048;
/// Estimated compressed bytes each moved container adds: a symbol in the companion, an
/// undefined symbol and a changed relocation in the host (counted on both sides).
pub const PER_BLOCK_COST: u64 = 64;

/// One container or bundle that can move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Block {
    /// `.nv_fatbin`, `__nv_relfatbin` or `.hip_fatbin`.
    pub section: String,
    /// From the section's start, as `fatbin::cuda::parse_section` / `hip::parse_section` say.
    pub offset: u64,
    /// Bytes stored.
    pub size: u64,
    /// Estimated compressed bytes.
    pub compressed: u64,
    /// GPU architecture family: `sm_8x`, `sm_9x+sm_10x`, `gfx9`, `other`.
    pub family: String,
}

/// A section of the host that is not device code, with its estimated compressed size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostSection {
    pub name: String,
    pub size: u64,
    pub compressed: u64,
}

/// What the planner needs to know of one library.
#[derive(Debug, Clone, Default)]
pub struct Library {
    /// The host's soname (its file name when it has none).
    pub soname: String,
    /// Estimated compressed bytes of the whole library.
    pub compressed: u64,
    /// Estimated compressed bytes of everything that is not a movable container.
    pub rest_compressed: u64,
    /// The largest sections that are not device code, largest first (for the verdict).
    pub rest_sections: Vec<HostSection>,
    pub blocks: Vec<Block>,
    /// Why nothing of this library can move at all (a machine without a companion writer).
    pub unsupported: Option<String>,
}

/// One companion file of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompanionFile {
    pub soname: String,
    /// The families of its containers, in order.
    pub families: Vec<String>,
    pub containers: Vec<Block>,
    pub stored_bytes: u64,
    /// Estimated compressed bytes, its own headers and tables included.
    pub compressed_bytes: u64,
}

/// Why companions cannot make a library fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CannotFit {
    NoDeviceCode,
    Unsupported(String),
    /// The host without any device code is over the room.
    Host {
        rest: u64,
        room: u64,
        largest: Vec<HostSection>,
    },
    /// One container alone is over the room (companions hold whole containers).
    Block {
        block: Block,
        room: u64,
    },
}

impl CannotFit {
    /// Why, in words.
    pub fn why(&self) -> String {
        let mib_text = crate::cli_size;
        match self {
            CannotFit::NoDeviceCode => {
                "it has no fatbin containers or offload bundles that could move".to_string()
            }
            CannotFit::Unsupported(why) => why.clone(),
            CannotFit::Host {
                rest,
                room,
                largest,
            } => {
                let named = largest
                    .iter()
                    .take(3)
                    .map(|s| format!("{} {}", mib_text(s.size), s.name))
                    .collect::<Vec<_>>()
                    .join(" and ");
                let eg = if named.is_empty() {
                    String::new()
                } else {
                    format!(" (the largest: {named})")
                };
                format!(
                    "the host's non-device data{eg} is {} compressed, over the {} a wheel has room for even without any device code",
                    mib_text(*rest),
                    mib_text(*room)
                )
            }
            CannotFit::Block { block, room } => format!(
                "its largest container ({} at offset {:#x}, {} compressed, {}) fits neither beside the host's other bytes nor in a companion of its own (a companion's headers and tables take about {} more, and a wheel has room for {}), and companions hold whole containers: a trim (--sm/--gfx) that shrinks it comes first",
                block.section,
                block.offset,
                mib_text(block.compressed),
                block.family,
                mib_text(COMPANION_FIXED_COST + PER_BLOCK_COST),
                mib_text(*room)
            ),
        }
    }
}

/// The planner's answer for one library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It fits as it is.
    Fits,
    Companions {
        /// Estimated compressed bytes of the host afterwards.
        host_after: u64,
        /// Containers that stay in the host.
        kept: Vec<Block>,
        files: Vec<CompanionFile>,
    },
    CannotFit(CannotFit),
}

/// The room a plan packs into: `room` less a margin for the estimate.
fn plan_room(room: u64) -> u64 {
    room.saturating_sub(room / 64)
}

/// Plans the companions of `lib` for wheels with `room` compressed bytes for one library
/// (`room_for_libraries(max_size)`); `taken(name)` says whether a file name is already used
/// in the wheel (a companion soname must not be).
pub fn plan(lib: &Library, room: u64, taken: &dyn Fn(&str) -> bool) -> Verdict {
    plan_rooms(
        lib,
        Rooms {
            host: room,
            companion: room,
        },
        taken,
    )
}

/// The compressed bytes a plan may give the host, where it stays, and each companion.
/// A runtime library has a wheel's room for either; the project's own library shares its
/// main wheel with the project's other files, so its host has less.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rooms {
    pub host: u64,
    pub companion: u64,
}

/// [`plan`] with a room for the host and another for each companion.
pub fn plan_rooms(lib: &Library, rooms: Rooms, taken: &dyn Fn(&str) -> bool) -> Verdict {
    if lib.compressed <= rooms.host {
        return Verdict::Fits;
    }
    if let Some(why) = &lib.unsupported {
        return Verdict::CannotFit(CannotFit::Unsupported(why.clone()));
    }
    if lib.blocks.is_empty() {
        return Verdict::CannotFit(CannotFit::NoDeviceCode);
    }
    let caps = Caps {
        host: plan_room(rooms.host),
        companion: plan_room(rooms.companion),
    };
    let host_fixed = lib
        .rest_compressed
        .saturating_add(PER_BLOCK_COST * lib.blocks.len() as u64);
    if host_fixed > caps.host {
        return Verdict::CannotFit(CannotFit::Host {
            rest: lib.rest_compressed,
            room: rooms.host,
            largest: lib.rest_sections.clone(),
        });
    }
    let order = ordered(&lib.blocks);
    let plain = pack_plain(&lib.blocks, &order, host_fixed, caps);
    // Families together first, with neighbours together where that takes no more files:
    // containers that lie together in the host and in a companion reuse the input's
    // compressed blocks as one run, so the companion is not deflated again.
    let candidates = [
        pack_grouped(&lib.blocks, host_fixed, caps, Fill::InPlace),
        pack_grouped(&lib.blocks, host_fixed, caps, Fill::Largest),
        plain,
    ];
    let fewest = candidates.iter().flatten().map(Vec::len).min();
    let chosen = candidates
        .into_iter()
        .flatten()
        .find(|b| Some(b.len()) == fewest);
    let bins = match chosen {
        Some(b) => b,
        None => {
            // Only possible when a container fits neither the host nor a companion.
            let big = order[0];
            return Verdict::CannotFit(CannotFit::Block {
                block: lib.blocks[big].clone(),
                room: rooms.companion,
            });
        }
    };
    finish(lib, &bins, taken)
}

/// The bins' capacities, each less the estimate's margin: bin 0 (the host), and the rest.
#[derive(Clone, Copy)]
struct Caps {
    host: u64,
    companion: u64,
}

impl Caps {
    fn of(self, bin: usize) -> u64 {
        if bin == 0 { self.host } else { self.companion }
    }
}

/// Compressed bytes a container costs in a companion.
fn companion_cost(b: &Block) -> u64 {
    b.compressed.saturating_add(PER_BLOCK_COST)
}

/// Indices, largest first, ties by (section, offset).
fn ordered(blocks: &[Block]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..blocks.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&blocks[a], &blocks[b]);
        y.compressed
            .cmp(&x.compressed)
            .then_with(|| x.section.cmp(&y.section))
            .then(x.offset.cmp(&y.offset))
    });
    order
}

/// A bin: bytes used and the block indices in it. Bin 0 is the host.
type Bin = (u64, Vec<usize>);

fn new_bins(host_fixed: u64) -> Vec<Bin> {
    vec![(host_fixed, Vec::new())]
}

/// The cost of `items` in bin `i` (0: the host).
fn cost_in(blocks: &[Block], items: &[usize], i: usize) -> u64 {
    items
        .iter()
        .map(|&b| {
            if i == 0 {
                blocks[b].compressed
            } else {
                companion_cost(&blocks[b])
            }
        })
        .sum()
}

/// Puts `items` whole into the first bin (from `from`) with room, or a new one; false when
/// they fit no bin, not even a new companion.
fn place(blocks: &[Block], bins: &mut Vec<Bin>, items: &[usize], from: usize, caps: Caps) -> bool {
    for (i, bin) in bins.iter_mut().enumerate().skip(from) {
        let c = cost_in(blocks, items, i);
        if bin.0 + c <= caps.of(i) {
            bin.0 += c;
            bin.1.extend_from_slice(items);
            return true;
        }
    }
    let c = COMPANION_FIXED_COST + cost_in(blocks, items, 1);
    if c > caps.companion {
        return false;
    }
    bins.push((c, items.to_vec()));
    true
}

/// First-fit decreasing, container by container.
fn pack_plain(blocks: &[Block], order: &[usize], host_fixed: u64, caps: Caps) -> Option<Vec<Bin>> {
    let mut bins = new_bins(host_fixed);
    for &i in order {
        if !place(blocks, &mut bins, &[i], 0, caps) {
            return None;
        }
    }
    Some(bins)
}

/// How a family too big for one bin fills the bins of its own.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fill {
    /// In the order the containers lie, each bin filled before the next is opened, so
    /// neighbours stay together.
    InPlace,
    /// Largest first, each into the first of its bins with room (fewer files, scattered).
    Largest,
}

/// Indices in the order the blocks lie (section, offset).
fn in_place(blocks: &[Block]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..blocks.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&blocks[a], &blocks[b]);
        x.section.cmp(&y.section).then(x.offset.cmp(&y.offset))
    });
    order
}

/// Whole families first, the largest family first; a family too big for any one bin fills
/// bins of its own, container by container (`fill`).
fn pack_grouped(blocks: &[Block], host_fixed: u64, caps: Caps, fill: Fill) -> Option<Vec<Bin>> {
    let mut families: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
    let order = match fill {
        Fill::InPlace => in_place(blocks),
        Fill::Largest => ordered(blocks),
    };
    for i in order {
        families.entry(&blocks[i].family).or_default().push(i);
    }
    let mut groups: Vec<(&str, Vec<usize>, u64)> = families
        .into_iter()
        .map(|(f, items)| {
            let total = items.iter().map(|&i| blocks[i].compressed).sum();
            (f, items, total)
        })
        .collect();
    groups.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(b.0)));
    let mut bins = new_bins(host_fixed);
    for (_, items, _) in &groups {
        if place(blocks, &mut bins, items, 0, caps) {
            continue;
        }
        let first_own = bins.len();
        for &i in items {
            // In place: only the bin being filled, or a new one.
            let from = match fill {
                Fill::InPlace => (bins.len() - 1).max(first_own),
                Fill::Largest => first_own,
            };
            if !place(blocks, &mut bins, &[i], from, caps) {
                return None;
            }
        }
    }
    Some(bins)
}

/// The plan from the bins: companions named and described, in bin order.
fn finish(lib: &Library, bins: &[Bin], taken: &dyn Fn(&str) -> bool) -> Verdict {
    let by_place = |items: &[usize]| {
        let mut v: Vec<Block> = items.iter().map(|&i| lib.blocks[i].clone()).collect();
        v.sort_by(|a, b| a.section.cmp(&b.section).then(a.offset.cmp(&b.offset)));
        v
    };
    let names = companion_sonames(&lib.soname, bins.len().saturating_sub(1), taken);
    let files: Vec<CompanionFile> = bins[1..]
        .iter()
        .zip(names)
        .map(|((used, items), soname)| {
            let containers = by_place(items);
            let mut families: Vec<String> = Vec::new();
            for c in &containers {
                if !families.contains(&c.family) {
                    families.push(c.family.clone());
                }
            }
            families.sort_by_key(|f| family_order(f));
            CompanionFile {
                soname,
                families,
                stored_bytes: containers.iter().map(|c| c.size).sum(),
                compressed_bytes: *used,
                containers,
            }
        })
        .collect();
    let moved = files.iter().map(|f| f.containers.len() as u64).sum::<u64>();
    let kept = by_place(&bins[0].1);
    let host_after = lib.rest_compressed
        + kept.iter().map(|b| b.compressed).sum::<u64>()
        + PER_BLOCK_COST * moved;
    Verdict::Companions {
        host_after,
        kept,
        files,
    }
}

/// The `n` companion sonames of a host (see the module's documentation).
pub fn companion_sonames(host: &str, n: usize, taken: &dyn Fn(&str) -> bool) -> Vec<String> {
    let stem = match host.find(".so") {
        Some(i) if i > 0 => &host[..i],
        _ => host.strip_suffix(".so").unwrap_or(host),
    };
    let mut out = Vec::with_capacity(n);
    let mut i = 1usize;
    while out.len() < n {
        let name = format!("{stem}.wsdev{i}.so");
        if !taken(&name) && name != host {
            out.push(name);
        }
        i += 1;
    }
    out
}

// Where the compressed bytes of a range come from is the archive's business (block marks).
pub use crate::wheel::zip::compressed_range;

/// The planner's view of a host ELF object whose device code `device` describes; `estimate`
/// gives the compressed bytes of a file range. `None` for a member with no device sections.
pub fn library_of(
    name: &str,
    info: &ElfInfo,
    device: &DeviceFacts,
    compressed: u64,
    estimate: &dyn Fn(u64, u64) -> u64,
) -> Option<Library> {
    if device.cuda.is_empty() && device.hip.is_empty() {
        return None;
    }
    let section_start = |s: &str| info.section(s).map(|x| x.offset);
    let mut blocks = Vec::new();
    for s in &device.cuda {
        let Some(base) = section_start(&s.name) else {
            continue;
        };
        for c in &s.spans {
            let (off, len) = (c.offset, c.len);
            blocks.push(Block {
                section: s.name.clone(),
                offset: off,
                size: len,
                compressed: estimate(base + off, base + off + len),
                family: s.family_of(c).to_string(),
            });
        }
    }
    for s in &device.hip {
        let Some(base) = section_start(&s.name) else {
            continue;
        };
        for b in &s.bundles {
            let (off, len) = (b.offset as u64, b.len as u64);
            blocks.push(Block {
                section: s.name.clone(),
                offset: off,
                size: len,
                compressed: estimate(base + off, base + off + len),
                family: hip_family(b),
            });
        }
    }
    let moved: u64 = blocks.iter().map(|b| b.compressed).sum();
    let mut rest_sections: Vec<HostSection> = info
        .sections
        .iter()
        .filter(|s| s.in_file && s.size > 0)
        .filter(|s| !CUDA_SECTIONS.contains(&s.name.as_str()))
        .filter(|s| !HIP_SECTIONS.contains(&s.name.as_str()))
        .map(|s| HostSection {
            name: s.name.clone(),
            size: s.size,
            compressed: estimate(s.offset, s.offset.saturating_add(s.size)),
        })
        .collect();
    rest_sections.sort_by(|a, b| b.size.cmp(&a.size).then(a.name.cmp(&b.name)));
    rest_sections.truncate(3);
    let soname = info
        .soname
        .clone()
        .unwrap_or_else(|| name.rsplit('/').next().unwrap_or(name).to_string());
    let unsupported = match info.machine {
        Machine::X86_64 | Machine::Aarch64 | Machine::Ppc64le => None,
        m => Some(format!(
            "companions are written for x86_64, aarch64 and ppc64le only, not {m}"
        )),
    };
    Some(Library {
        soname,
        compressed,
        rest_compressed: compressed.saturating_sub(moved),
        rest_sections,
        blocks,
        unsupported,
    })
}

/// What the host rewrite (`crate::elf::companion::move_device_code`) is asked to do for a
/// plan's companion files: each file's containers by section, offset and stored size.
pub fn targets(files: &[CompanionFile]) -> Vec<crate::elf::companion::CompanionTarget> {
    files
        .iter()
        .map(|f| crate::elf::companion::CompanionTarget {
            soname: f.soname.clone(),
            blocks: f
                .containers
                .iter()
                .map(|b| crate::elf::companion::MovedBlock {
                    section: b.section.clone(),
                    offset: b.offset,
                    size: b.size,
                })
                .collect(),
        })
        .collect()
}

/// The planner's view of a member of a wheel as inspected: `None` unless it is a host ELF
/// object with device-code sections.
pub fn library_of_member(f: &crate::facts::MemberFacts) -> Option<Library> {
    let info = f.host_elf()?;
    let device = f.device.as_ref()?;
    library_of(&f.name, info, device, f.compressed_size, &|a, b| {
        f.compressed_range(a, b)
    })
}

/// One companion file, as `audit` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct CompanionSummary {
    pub soname: String,
    pub families: Vec<String>,
    pub containers: usize,
    pub stored_bytes: u64,
    pub compressed_bytes: u64,
}

/// Whether companions would make one library fit, for `audit` (`companions[]` in JSON).
#[derive(Debug, Clone, Serialize)]
pub struct CompanionAdvice {
    pub member: String,
    /// Compressed bytes of the library now.
    pub compressed_size: u64,
    /// Compressed bytes of libraries one wheel under the limit has room for.
    pub room: u64,
    pub fits_with_companions: bool,
    /// Companion files the plan takes (0 when they cannot help).
    pub files: usize,
    /// Estimated compressed bytes of the host afterwards.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_after: Option<u64>,
    /// Containers the host keeps.
    pub kept_containers: usize,
    pub companions: Vec<CompanionSummary>,
    /// Why companions cannot make it fit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The project's own library, which stays in its main wheel: its room is what the main
    /// wheel's other members leave, and its companions go into wheels of their own.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub own: bool,
}

impl CompanionSummary {
    /// The summary of one planned companion file.
    pub fn of(f: &CompanionFile) -> Self {
        CompanionSummary {
            soname: f.soname.clone(),
            families: f.families.clone(),
            containers: f.containers.len(),
            stored_bytes: f.stored_bytes,
            compressed_bytes: f.compressed_bytes,
        }
    }
}

impl CompanionAdvice {
    /// Advice with nothing worked out yet: no companions, no reason.
    pub fn blank(member: &str, compressed_size: u64, room: u64) -> Self {
        CompanionAdvice {
            member: member.to_string(),
            compressed_size,
            room,
            fits_with_companions: false,
            files: 0,
            host_after: None,
            kept_containers: 0,
            companions: Vec::new(),
            reason: None,
            own: false,
        }
    }

    /// The advice for one library from its plan; `None` when it fits as it is.
    pub fn new(member: &str, lib: &Library, room: u64, verdict: &Verdict) -> Option<Self> {
        let mut a = CompanionAdvice::blank(member, lib.compressed, room);
        match verdict {
            Verdict::Fits => return None,
            Verdict::CannotFit(why) => a.reason = Some(why.why()),
            Verdict::Companions {
                host_after,
                kept,
                files,
            } => {
                a.fits_with_companions = true;
                a.files = files.len();
                a.host_after = Some(*host_after);
                a.kept_containers = kept.len();
                a.companions = files.iter().map(CompanionSummary::of).collect();
            }
        }
        Some(a)
    }

    /// One sentence: what companions would do for it.
    pub fn sentence(&self) -> String {
        let mib_text = crate::cli_size;
        match &self.reason {
            Some(why) => format!("companions cannot make it fit: {why}"),
            None => format!(
                "--companions would make it fit: its device code moves into {} companion file{} ({}), leaving the host at about {} compressed",
                self.files,
                if self.files == 1 { "" } else { "s" },
                self.companions
                    .iter()
                    .map(|c| {
                        // Each family may be a group (`sm_8x+sm_9x`): name each one once.
                        let mut each: Vec<String> = c
                            .families
                            .iter()
                            .flat_map(|f| f.split('+').map(str::to_string))
                            .collect();
                        format!(
                            "{} {} {}",
                            c.soname,
                            mib_text(c.compressed_bytes),
                            join_families(&mut each)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                mib_text(self.host_after.unwrap_or(0)),
            ),
        }
    }
}

/// `audit`'s companion advice for every ELF object with device code too big for one wheel
/// (`room` compressed bytes), in member order. Libraries that fit get none: companions would
/// be pointless there.
pub fn advise(members: &[crate::facts::MemberFacts], room: u64) -> Vec<CompanionAdvice> {
    let names: std::collections::HashSet<&str> = members.iter().map(|m| m.file_name()).collect();
    let taken = |n: &str| names.contains(n);
    members
        .iter()
        .filter(|f| f.compressed_size > room)
        .filter_map(|f| {
            let lib = library_of_member(f)?;
            CompanionAdvice::new(&f.name, &lib, room, &plan(&lib, room, &taken))
        })
        .collect()
}

#[cfg(test)]
mod tests;
