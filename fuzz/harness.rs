//! What each fuzz target does with its input, shared by the targets (`fuzz_targets/*.rs`) and
//! by the test that replays every input a fuzzer ever crashed on (`tests/it/fuzz_regressions.rs`,
//! over `fuzz/regressions/TARGET/`). Every function takes arbitrary bytes; a panic is a
//! finding: either a crash of wheelslim or a broken invariant, asserted here.

#![allow(dead_code)]

use std::path::PathBuf;

use wheelslim::device::{self, DeviceFacts};
use wheelslim::elf::shrink::{Block, SectionEdit, shrink};
use wheelslim::elf::{self, DynamicEdits, ElfInfo, Inspected, PathKind};
use wheelslim::fatbin::cuda::{self, EntryEdit};
use wheelslim::fatbin::hip;
use wheelslim::fatbin::loose;
use wheelslim::fatbin::select::{GfxSelection, Selection};
use wheelslim::trim::{TrimSettings, trim_member};
use wheelslim::wheel::Wheel;
use wheelslim::wheel::zip::{ArchiveOpenError, Limits, ZipArchive};

/// Small limits so that one input cannot make an execution slow.
const LIMITS: Limits = Limits {
    max_members: 4096,
    max_member_size: 16 << 20,
    max_total_size: 64 << 20,
};

/// A scratch folder per process and thread for one input (named like a wheel of `hostile 1.0`
/// so that the wheel layer gets past the file name), removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "wheelslim-fuzz-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).expect("create the scratch folder");
        Scratch(dir)
    }

    fn wheel(&self) -> PathBuf {
        self.0.join("hostile-1.0-py3-none-any.whl")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The wheel reader: open the archive (strict zip reader, then the wheel layer: `.dist-info`,
/// WHEEL, METADATA, RECORD) and read every member every way there is. A member that reads
/// must have exactly its declared size, and its prefix must be the start of it.
pub fn zip_reader(data: &[u8]) {
    let scratch = Scratch::new();
    let path = scratch.wheel();
    std::fs::write(&path, data).expect("write the scratch file");
    match ZipArchive::open(&path, &LIMITS) {
        Ok(archive) => {
            for m in archive.members() {
                let whole = archive.read(m);
                if let Ok(bytes) = &whole {
                    assert_eq!(
                        bytes.len() as u64,
                        m.size,
                        "{}: read gave another size",
                        m.name
                    );
                }
                let _ = archive.read_raw(m);
                if let Ok(prefix) = archive.read_prefix(m, 64) {
                    assert!(prefix.len() <= 64);
                    if let Ok(bytes) = &whole {
                        assert!(bytes.starts_with(&prefix), "{}: prefix differs", m.name);
                    }
                }
            }
        }
        Err(ArchiveOpenError::Zip(_)) => {}
        Err(ArchiveOpenError::Io(e)) => panic!("reading the scratch file failed: {e}"),
    }
    if let Ok(wheel) = Wheel::open(&path, &LIMITS) {
        let _ = wheel.install_path("hostile/__init__.py");
        let _ = wheel.project_name();
    }
}

/// ELF inspection: the audit's reader (`elf::inspect`), the layout checker (`elf::check`), the
/// device-code scan of the sections it finds, and the loose device-file reader under each name
/// it dispatches on.
pub fn elf_inspect(data: &[u8]) {
    let _ = elf::check(data);
    if let Ok(Inspected::Host(info)) = elf::inspect(data) {
        let _ = device::scan_elf(data, &info);
    }
    for name in ["k.cubin", "k.fatbin", "k.ptx", "k.hsaco", "k.co", "libk.so"] {
        let _ = loose::classify(name, data);
        let _ = loose::inspect(name, data);
    }
}

fn host(data: &[u8], what: &str) -> Box<ElfInfo> {
    match elf::inspect(data) {
        Ok(Inspected::Host(info)) => info,
        other => panic!("{what}: the output does not inspect as a host object: {other:?}"),
    }
}

fn patched(input: &[u8], edits: &DynamicEdits, what: &str) -> Option<Box<ElfInfo>> {
    let out = elf::patch(input, edits).ok()?;
    if let Err(e) = elf::check(&out.data) {
        panic!("{what}: patch returned bytes that fail the layout check: {e}");
    }
    Some(host(&out.data, what))
}

/// The dynamic-section rewriter, round trip: every edit `split` makes (set the search path to
/// what it is and to something new and longer, of each kind; rename a NEEDED entry; set a
/// SONAME). Whenever `elf::patch` returns bytes, they must pass the layout check and
/// re-inspect as a host object carrying the edit.
pub fn elf_patch(data: &[u8]) {
    let Ok(Inspected::Host(info)) = elf::inspect(data) else {
        return;
    };
    let current = if info.runpath.is_empty() {
        &info.rpath
    } else {
        &info.runpath
    };
    let same = DynamicEdits {
        search_path: Some(current.clone()),
        ..DynamicEdits::default()
    };
    if let Some(after) = patched(data, &same, "same search path") {
        let now = if after.runpath.is_empty() {
            &after.rpath
        } else {
            &after.runpath
        };
        assert_eq!(now, current, "same search path: the path changed");
    }
    let new_path = vec![
        "$ORIGIN/../hostile_runtime_cuda12/lib".to_string(),
        "$ORIGIN".to_string(),
    ];
    for kind in [PathKind::Keep, PathKind::Rpath, PathKind::Runpath] {
        let edit = DynamicEdits {
            search_path: Some(new_path.clone()),
            path_kind: kind,
            ..DynamicEdits::default()
        };
        if let Some(after) = patched(data, &edit, "new search path") {
            // `Keep` keeps a DT_RUNPATH entry even when its string is empty (`ld.so` then
            // ignores DT_RPATH all the same), which the inspected lists cannot tell apart
            // from no entry: either kind may carry the path then.
            let set = match kind {
                PathKind::Runpath => after.runpath == new_path && after.rpath.is_empty(),
                PathKind::Rpath => after.rpath == new_path && after.runpath.is_empty(),
                PathKind::Keep if !info.runpath.is_empty() => after.runpath == new_path,
                PathKind::Keep => after.rpath == new_path || after.runpath == new_path,
            };
            assert!(set, "new search path ({kind:?}): not set: {after:?}");
        }
    }
    if let Some(first) = info.needed.first() {
        let renamed = format!("{first}.renamed-by-the-fuzzer");
        let edit = DynamicEdits {
            replace_needed: vec![(first.clone(), renamed.clone())],
            ..DynamicEdits::default()
        };
        if let Some(after) = patched(data, &edit, "rename NEEDED") {
            assert!(
                after.needed.contains(&renamed),
                "rename NEEDED: not renamed"
            );
        }
    }
    let edit = DynamicEdits {
        soname: Some("libhostile-fuzzed.so.1".to_string()),
        ..DynamicEdits::default()
    };
    if let Some(after) = patched(data, &edit, "set SONAME") {
        assert_eq!(after.soname.as_deref(), Some("libhostile-fuzzed.so.1"));
    }
}

/// Every container of every device section handed back unchanged.
fn identity_edits(data: &[u8], info: &ElfInfo, facts: &DeviceFacts) -> Vec<SectionEdit> {
    let section = |name: &str| {
        info.section(name)
            .and_then(|s| device::section_bytes(data, s).ok())
    };
    let mut edits = Vec::new();
    for s in &facts.cuda {
        let Some(bytes) = section(&s.name) else {
            continue;
        };
        let blocks = s
            .containers
            .iter()
            .filter_map(|c| {
                Some(Block {
                    old_offset: c.offset as u64,
                    old_len: c.len as u64,
                    new_bytes: bytes.get(c.offset..c.end())?.to_vec(),
                    align: 8,
                })
            })
            .collect();
        edits.push(SectionEdit {
            name: s.name.clone(),
            blocks,
        });
    }
    for s in &facts.hip {
        let Some(bytes) = section(&s.name) else {
            continue;
        };
        let blocks = s
            .bundles
            .iter()
            .filter_map(|b| {
                Some(Block {
                    old_offset: b.offset as u64,
                    old_len: b.len as u64,
                    new_bytes: b.stored(bytes).ok()?.to_vec(),
                    align: 4096,
                })
            })
            .collect();
        edits.push(SectionEdit {
            name: s.name.clone(),
            blocks,
        });
    }
    edits
}

/// The device-code shrinker. With identity blocks, zeroing in place must give the input back
/// and cutting must give an object that still inspects and is no larger. Then a real trim
/// (`--sm 90 --gfx gfx90a`, cut and zeroed) must give bytes that inspect as a host object.
pub fn elf_shrink(data: &[u8]) {
    let Ok(Inspected::Host(info)) = elf::inspect(data) else {
        return;
    };
    let Ok(facts) = device::scan_elf(data, &info) else {
        return;
    };
    if facts.is_empty() {
        return;
    }
    let edits = identity_edits(data, &info, &facts);
    if let Ok(out) = shrink(data, &edits, false) {
        assert!(out.data == data, "zeroing identity blocks changed the file");
    }
    if let Ok(out) = shrink(data, &edits, true) {
        assert!(
            out.data.len() <= data.len(),
            "cutting identity blocks grew the file"
        );
        host(&out.data, "cut with identity blocks");
    }
    let (Ok(cuda), Ok(gfx)) = (
        Selection::parse_targets("90"),
        GfxSelection::parse("gfx90a"),
    ) else {
        return;
    };
    for allow_cut in [true, false] {
        let settings = TrimSettings {
            cuda: Some(cuda.clone()),
            gfx: Some(gfx.clone()),
            allow_cut,
            allow_no_device_code: false,
        };
        if let Ok(Some(t)) = trim_member("libk.so", data, 0, Some(&info), &facts, &settings)
            && let Some(out) = &t.data
        {
            let after = host(out, "trim to sm_90 and gfx90a");
            let _ = device::scan_elf(out, &after);
        }
    }
}

/// The companion host rewrite: move every container of the object's device sections into
/// one companion, and half of them into two. Whenever `move_device_code` returns, the host
/// must pass the layout check, re-inspect as a host object that needs each companion, and
/// each companion must inspect as a host object with its soname.
pub fn elf_companion_host(data: &[u8]) {
    elf_companion_host_moves(data);
}

/// [`elf_companion_host`], returning how many of its plans were carried out.
pub fn elf_companion_host_moves(data: &[u8]) -> usize {
    use wheelslim::elf::companion::{CompanionTarget, MovedBlock, move_device_code};
    let Ok(Inspected::Host(info)) = elf::inspect(data) else {
        return 0;
    };
    let Ok(facts) = device::scan_elf(data, &info) else {
        return 0;
    };
    let mut blocks = Vec::new();
    for s in &facts.cuda {
        for c in &s.containers {
            blocks.push(MovedBlock {
                section: s.name.clone(),
                offset: c.offset as u64,
                size: c.len as u64,
            });
        }
    }
    for s in &facts.hip {
        for b in &s.bundles {
            blocks.push(MovedBlock {
                section: s.name.clone(),
                offset: b.offset as u64,
                size: b.len as u64,
            });
        }
    }
    if blocks.is_empty() {
        return 0;
    }
    let mut moved = 0;
    let half = blocks.len().div_ceil(2);
    let plans = [
        vec![CompanionTarget {
            soname: "libfuzz_device.so".into(),
            blocks: blocks.clone(),
        }],
        vec![
            CompanionTarget {
                soname: "libfuzz_a.so".into(),
                blocks: blocks[..half].to_vec(),
            },
            CompanionTarget {
                soname: "libfuzz_b.so".into(),
                blocks: blocks[half..].to_vec(),
            },
        ],
    ];
    for plan in &plans {
        let plan: Vec<CompanionTarget> = plan
            .iter()
            .filter(|t| !t.blocks.is_empty())
            .cloned()
            .collect();
        let Ok(out) = move_device_code(data, &plan) else {
            continue;
        };
        if let Err(e) = elf::check(&out.host) {
            panic!("move_device_code returned a host that fails the layout check: {e}");
        }
        let after = host(&out.host, "the moved host");
        for t in &plan {
            assert!(
                after.needed.contains(&t.soname),
                "the moved host does not need {}",
                t.soname
            );
        }
        for (soname, bytes) in &out.companions {
            let c = host(bytes, "a companion");
            assert_eq!(c.soname.as_deref(), Some(soname.as_str()));
        }
        moved += 1;
    }
    moved
}

/// CUDA fatbin sections: parse, then rebuild every container keeping every entry (which must
/// give its bytes back exactly) and keeping what `--sm 90` keeps (which must parse again, with
/// the kept entries), and decompress every entry under a small cap.
pub fn fatbin_cuda(data: &[u8]) {
    let Ok(containers) = cuda::parse_section(data) else {
        return;
    };
    let sel = Selection::parse_targets("90").ok();
    for c in &containers {
        let all = vec![true; c.entries.len()];
        let rebuilt =
            cuda::rebuild_container(data, c, &all).expect("keeping everything must rebuild");
        assert!(
            data.get(c.offset..c.end()) == Some(rebuilt.as_slice()),
            "keeping every entry changed the container at {:#x}",
            c.offset
        );
        for e in &c.entries {
            let _ = cuda::decompress_entry_capped(data, e, 1 << 22);
        }
        let Some(sel) = &sel else { continue };
        let edits = sel.choose_container(c).edits();
        if let Ok(out) = cuda::rebuild_container_with(data, c, &edits) {
            let again = cuda::parse_section(&out).expect("a rebuilt container must parse");
            let [one] = again.as_slice() else {
                panic!("one container rebuilt, {} parsed", again.len());
            };
            let kept = edits
                .iter()
                .filter(|e| match e {
                    EntryEdit::Keep => true,
                    EntryEdit::Drop => false,
                    EntryEdit::KeepMembers(m) => m.is_empty() || m.contains(&true),
                })
                .count();
            assert_eq!(
                one.entries.len(),
                kept,
                "the rebuilt container holds other entries"
            );
        }
    }
}

/// Clang offload bundles (plain and CCOB): parse a section, rebuild every bundle keeping every
/// entry (a plain bundle must come back byte for byte; a CCOB, whose stream is decoded only
/// now, may still turn out damaged) and keeping what `--gfx gfx90a` keeps (which must parse
/// again with exactly those entries), and decompress CCOBs under a small cap.
pub fn fatbin_hip(data: &[u8]) {
    let Ok(bundles) = hip::parse_section(data) else {
        return;
    };
    let sel = GfxSelection::parse("gfx90a").ok();
    for b in &bundles {
        let all = vec![true; b.entries.len()];
        let stored = b
            .stored(data)
            .expect("a parsed bundle lies inside the section");
        match hip::rebuild_bundle(data, b, &all) {
            Ok(rebuilt) => assert!(
                rebuilt == stored,
                "keeping every entry changed the bundle at {:#x}",
                b.offset
            ),
            Err(e) => assert!(b.ccob.is_some(), "a plain bundle did not rebuild: {e}"),
        }
        if b.ccob.is_some() {
            let _ = hip::decompress_ccob_capped(data, b, 1 << 22);
        }
        let Some(sel) = &sel else { continue };
        let choice = sel.choose(&b.entries);
        if let Ok(out) = hip::rebuild_bundle(data, b, &choice.keep) {
            let again = hip::parse_section(&out).expect("a rebuilt bundle must parse");
            let [one] = again.as_slice() else {
                panic!("one bundle rebuilt, {} parsed", again.len());
            };
            let want: Vec<&str> = b
                .entries
                .iter()
                .zip(&choice.keep)
                .filter(|(e, k)| **k || e.is_host())
                .map(|(e, _)| e.triple.as_str())
                .collect();
            let got: Vec<&str> = one.entries.iter().map(|e| e.triple.as_str()).collect();
            assert_eq!(got, want, "the rebuilt bundle holds other entries");
        }
    }
}

/// The `--memory` the `memory_bound` target runs with.
pub const MEMORY_BOUND_BUDGET: u64 = 32 << 20;

/// The most heap bytes `memory_bound` may hold at once for an input of `len` bytes: the
/// budget, one member larger than it (a member is granted alone whatever its size, and
/// deflate expands at most 1032 times), its rewritten copy, and 64 MiB for everything else.
/// Peak use past this is a memory blow-up (issue 11): bookkeeping that grows faster than the
/// bytes, or decompression that escapes the budget.
pub fn memory_bound_limit(len: usize) -> u64 {
    let member = (len as u64).saturating_mul(1032);
    MEMORY_BOUND_BUDGET + member.saturating_mul(2) + (64 << 20)
}

/// The real limits, on a wheel: open it with the default archive limits, inspect every member
/// under a [`MEMORY_BOUND_BUDGET`] budget (device-code decompression capped the same way), and
/// trim what holds device code to sm_90 and gfx90a, as `trim -j 1 --memory 32M` does (without
/// writing the output). The caller measures the peak heap around it.
pub fn memory_bound(data: &[u8]) {
    use wheelslim::budget::Budget;
    use wheelslim::facts::{InspectOptions, inspect_wheel_with};
    use wheelslim::wheel::zip::Limits as RealLimits;
    wheelslim::fatbin::limit_decompression(MEMORY_BOUND_BUDGET);
    let scratch = Scratch::new();
    let path = scratch.wheel();
    std::fs::write(&path, data).expect("write the scratch file");
    let Ok(wheel) = Wheel::open(&path, &RealLimits::default()) else {
        return;
    };
    let (Ok(cuda), Ok(gfx)) = (
        Selection::parse_targets("90"),
        GfxSelection::parse("gfx90a"),
    ) else {
        return;
    };
    let settings = TrimSettings {
        cuda: Some(cuda),
        gfx: Some(gfx),
        allow_cut: true,
        allow_no_device_code: true,
    };
    let budget = Budget::new(MEMORY_BOUND_BUDGET);
    let _ = inspect_wheel_with(&wheel, InspectOptions::default(), &budget, &|f, kept| {
        let device = f.device.as_ref()?;
        trim_member(
            &f.name,
            &kept.bytes,
            f.compressed_size,
            f.host_elf(),
            device,
            &settings,
        )
        .ok()
        .map(|_| ())
    });
}
