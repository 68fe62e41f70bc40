#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

use super::*;
use crate::fatbin::cuda::{Compression, ConcatMember};
use crate::fatbin::hip::BundleEntry;

fn arch(s: &str) -> CudaArch {
    s.parse().unwrap()
}

/// An entry named like cuobjdump names images: `sm_90a` (SASS), `compute_90` (PTX),
/// `unknown` (kind 4).
fn entry(name: &str) -> Entry {
    let (kind, a) = if let Some(r) = name.strip_prefix("compute_") {
        (EntryKind::Ptx, arch(r))
    } else if name == "unknown" {
        (EntryKind::Unknown(4), CudaArch::base(0))
    } else {
        (EntryKind::Elf, arch(name))
    };
    Entry {
        offset: 0,
        header_size: 64,
        payload_size: 1000,
        kind,
        arch: a,
        compression: Compression::None,
        compressed_size: 0,
        uncompressed_size: 0,
        flags: 0x11,
        version: (1, 8),
        debug: false,
        identifier: None,
        options: None,
        members: Vec::new(),
    }
}

/// The full set from the fixtures: sm_50 … sm_120 plus compute_90 and compute_120.
const FULL: &[&str] = &[
    "sm_50",
    "sm_70",
    "sm_80",
    "sm_86",
    "sm_90",
    "sm_90a",
    "sm_100f",
    "sm_120",
    "compute_90",
    "compute_120",
];

fn entries(names: &[&str]) -> Vec<Entry> {
    names.iter().map(|n| entry(n)).collect()
}

/// The names kept by `sel` from `names`.
fn kept(sel: &Selection, names: &[&str]) -> Vec<String> {
    let c = sel.choose(&entries(names));
    names
        .iter()
        .zip(&c.entries)
        .filter(|(_, e)| e.keep)
        .map(|(n, _)| n.to_string())
        .collect()
}

fn sel(targets: &str) -> Selection {
    Selection::parse_targets(targets).unwrap()
}

#[test]
fn parses_target_lists() {
    let s = sel("80,86, 90a,100f,120,86");
    let t: Vec<String> = s.targets.iter().map(ToString::to_string).collect();
    assert_eq!(t, ["sm_80", "sm_86", "sm_90a", "sm_100f", "sm_120"]);
    assert_eq!(s.ptx, PtxPolicy::Newest);
    assert_eq!(s.unmatched, UnmatchedPolicy::Keep);
    assert!(Selection::parse_targets("").is_err());
    assert!(Selection::parse_targets("80,x").is_err());
    assert_eq!("all".parse::<PtxPolicy>(), Ok(PtxPolicy::All));
    assert_eq!("drop".parse::<UnmatchedPolicy>(), Ok(UnmatchedPolicy::Drop));
}

#[test]
fn newest_policy_on_the_full_set() {
    // (targets, kept) — written out one by one.
    let cases: &[(&str, &[&str])] = &[
        // sm_86 is the best SASS for an sm_86 device; sm_80 holds the same kernels and is dropped.
        // No PTX ≤ 86: the oldest plain PTX (compute_90) stays so newer GPUs can still JIT.
        ("86", &["sm_86", "compute_90"]),
        // sm_90 and sm_90a both run on sm_90; compute_90 is the newest PTX ≤ 90.
        ("90", &["sm_90", "sm_90a", "compute_90"]),
        ("90a", &["sm_90", "sm_90a", "compute_90"]),
        // sm_89 (Ada): sm_80 and sm_86 run, the driver loads sm_86; no PTX ≤ 89, so the
        // oldest newer plain PTX is what sm_90+ GPUs will JIT.
        ("89", &["sm_86", "compute_90"]),
        // sm_70 runs on sm_75.
        ("75", &["sm_70", "compute_90"]),
        // the family image runs on 100 and 103; compute_90 is the newest PTX ≤ 100.
        ("100", &["sm_100f", "compute_90"]),
        ("103", &["sm_100f", "compute_90"]),
        // no SASS for sm_110: the newest PTX ≤ 110 (compute_90) is what it can use.
        ("110", &["compute_90"]),
        ("120", &["sm_120", "compute_120"]),
        ("121", &["sm_120", "compute_120"]),
        // one run of the whole list: the newest PTX ≤ the highest target.
        (
            "80,86,90a,100f,120",
            &[
                "sm_80",
                "sm_86",
                "sm_90",
                "sm_90a",
                "sm_100f",
                "sm_120",
                "compute_120",
            ],
        ),
        // 86 has SASS; 90 gets compute_90 as the newest PTX ≤ the highest target (90).
        ("86,90", &["sm_86", "sm_90", "sm_90a", "compute_90"]),
        // 110 has no SASS: its fallback is compute_90; the highest target (120) gets compute_120.
        ("110,120", &["sm_120", "compute_90", "compute_120"]),
    ];
    for (targets, want) in cases {
        assert_eq!(kept(&sel(targets), FULL), *want, "targets {targets}");
    }
}

#[test]
fn all_and_none_policies() {
    let all = |t: &str| kept(&sel(t).with_ptx(PtxPolicy::All), FULL);
    let none = |t: &str| kept(&sel(t).with_ptx(PtxPolicy::None), FULL);
    assert_eq!(all("90,100"), ["sm_90", "sm_90a", "sm_100f", "compute_90"]);
    assert_eq!(
        all("80,120"),
        ["sm_80", "sm_120", "compute_90", "compute_120"]
    );
    // PTX newer than every target stays out even with All, except the oldest plain PTX
    // where nothing older is there: the only image GPUs newer than 86 could JIT.
    assert_eq!(all("86"), ["sm_86", "compute_90"]);
    assert_eq!(all("90"), ["sm_90", "sm_90a", "compute_90"]);
    assert_eq!(none("80,90"), ["sm_80", "sm_90", "sm_90a"]);
    assert_eq!(none("120"), ["sm_120"]);
    // 110 would be left with nothing: it keeps the newest PTX it can use.
    assert_eq!(none("110"), ["compute_90"]);
    assert_eq!(none("90,110"), ["sm_90", "sm_90a", "compute_90"]);
}

#[test]
fn reasons_are_reported() {
    let c = sel("86,110").choose(&entries(FULL));
    let r: Vec<Reason> = c.entries.iter().map(|e| e.reason).collect();
    assert_eq!(
        r,
        [
            Reason::Incompatible,
            Reason::Incompatible,
            Reason::Superseded,
            Reason::Sass { target: arch("86") },
            Reason::Incompatible,
            Reason::Incompatible,
            Reason::Incompatible,
            Reason::Incompatible,
            Reason::PtxNewest,
            Reason::PtxUnusable,
        ]
    );
    assert!(!c.unmatched);
    let c = sel("90").choose(&entries(FULL));
    assert_eq!(c.entries[9].reason, Reason::PtxUnusable);
    let c = sel("120").with_ptx(PtxPolicy::None).choose(&entries(FULL));
    assert_eq!(c.entries[8].reason, Reason::PtxNotNeeded);
    assert_eq!(c.entries[9].reason, Reason::PtxNotNeeded);
    let c = sel("110").with_ptx(PtxPolicy::None).choose(&entries(FULL));
    assert_eq!(
        c.entries[8].reason,
        Reason::PtxFallback {
            target: arch("110")
        }
    );
}

#[test]
fn a_and_f_images_and_ptx() {
    let set = &[
        "sm_90a",
        "sm_100f",
        "sm_103a",
        "compute_90a",
        "compute_100f",
    ];
    assert_eq!(kept(&sel("90"), set), ["sm_90a", "compute_90a"]);
    // compute_90a is only usable on sm_90; the family PTX on 100 and 103.
    // On sm_103 the exact sm_103a image is the best; the family image is not loaded there.
    assert_eq!(kept(&sel("103"), set), ["sm_103a", "compute_100f"]);
    assert_eq!(kept(&sel("100"), set), ["sm_100f", "compute_100f"]);
    // sm_110: nothing runs, nothing JITs: the container matched nothing.
    let c = sel("110").choose(&entries(set));
    assert!(c.unmatched);
    assert!(
        c.entries
            .iter()
            .all(|e| e.keep && e.reason == Reason::Unmatched)
    );
}

#[test]
fn unmatched_containers() {
    // The device-link container of every nvcc .so: one sm_75 cubin.
    let dlink = &["sm_75"];
    let keep = sel("90").choose(&entries(dlink));
    assert!(keep.unmatched);
    assert_eq!(keep.keep_flags(), [true]);
    let drop = sel("90")
        .with_unmatched(UnmatchedPolicy::Drop)
        .choose(&entries(dlink));
    assert!(drop.unmatched);
    assert_eq!(drop.keep_flags(), [false]);
    assert_eq!(drop.entries[0].reason, Reason::UnmatchedDropped);
    // Unknown kinds survive even a drop, and do not count as a match.
    let c = sel("90")
        .with_unmatched(UnmatchedPolicy::Drop)
        .choose(&entries(&["sm_75", "unknown"]));
    assert!(c.unmatched);
    assert_eq!(c.keep_flags(), [false, true]);
    assert_eq!(c.entries[1].reason, Reason::UnknownKind);
    let c = sel("90").choose(&entries(&["sm_90", "unknown"]));
    assert!(!c.unmatched);
    assert_eq!(c.keep_flags(), [true, true]);
    // An empty container matches nothing and loses nothing.
    let c = sel("90").choose(&[]);
    assert!(c.unmatched && c.entries.is_empty());
    // No targets: nothing is trimmed.
    let c = Selection::default().choose(&entries(FULL));
    assert!(!c.unmatched);
    assert!(
        c.entries
            .iter()
            .all(|e| e.keep && e.reason == Reason::NoTargets)
    );
}

fn member(name: &str, offset: u64) -> ConcatMember {
    let e = entry(name);
    ConcatMember {
        kind: e.kind,
        arch: e.arch,
        offset,
        size: 100,
        flags: 0x11,
        version: e.version,
        header_offset: 0,
        header_len: 64,
    }
}

fn group(names: &[&str]) -> Entry {
    let mut e = entry("sm_80");
    e.kind = EntryKind::Concat;
    e.arch = CudaArch::base(0);
    e.members = names
        .iter()
        .enumerate()
        .map(|(i, n)| member(n, 100 * i as u64))
        .collect();
    e
}

#[test]
fn concat_groups_are_chosen_per_member() {
    // The layout nvcc --concat produced: PTX group, old SASS group, new SASS group.
    let es = vec![
        group(&["compute_90", "compute_120"]),
        group(&["sm_50", "sm_70", "sm_80", "sm_86", "sm_90", "sm_90a"]),
        group(&["sm_100f", "sm_120"]),
    ];
    let c = sel("90").choose(&es);
    assert!(!c.unmatched);
    let flags: Vec<Vec<bool>> = c
        .entries
        .iter()
        .map(|e| e.members.iter().map(|m| m.keep).collect())
        .collect();
    assert_eq!(
        flags,
        [
            vec![true, false],
            vec![false, false, false, false, true, true],
            vec![false, false],
        ]
    );
    assert_eq!(c.keep_flags(), [true, true, false]);
    assert_eq!(
        c.edits(),
        [
            EntryEdit::KeepMembers(vec![true, false]),
            EntryEdit::KeepMembers(vec![false, false, false, false, true, true]),
            EntryEdit::Drop,
        ]
    );
    assert_eq!(c.entries[0].reason, Reason::Members);
    assert_eq!(c.entries[2].reason, Reason::Incompatible);
    // kept bytes: header + each kept group's header + its share of the payload.
    let container = Container {
        offset: 0,
        len: 16 + 3 * 1064,
        version: 1,
        header_size: 16,
        entries: es,
    };
    assert_eq!(c.kept_bytes(&container), 16 + (64 + 500) + (64 + 333));
    let all = sel("50,70,80,86,90,100,120")
        .with_ptx(PtxPolicy::All)
        .choose(&container.entries);
    assert!(all.keeps_everything());
    assert_eq!(
        all.edits(),
        [EntryEdit::Keep, EntryEdit::Keep, EntryEdit::Keep]
    );
    assert_eq!(all.kept_bytes(&container), 16 + 3 * 1064);
}

#[test]
fn bytes_per_arch_counts_images() {
    let c = Container {
        offset: 0,
        len: 0,
        version: 1,
        header_size: 16,
        entries: vec![
            entry("sm_90"),
            entry("compute_90"),
            group(&["sm_90", "sm_100f"]),
        ],
    };
    let m = bytes_per_arch(std::slice::from_ref(&c));
    assert_eq!(m["sm_90"].images, 2);
    assert_eq!(m["sm_90"].stored, 1064 + 532);
    assert_eq!(m["sm_90"].image, 1100);
    assert_eq!(m["compute_90"].images, 1);
    assert_eq!(m["sm_100f"].stored, 532);
    let s = sel("90");
    assert_eq!(
        s.kept_bytes(std::slice::from_ref(&c)),
        16 + 1064 + 1064 + 64 + 500
    );
    let per = kept_bytes_per_target(
        std::slice::from_ref(&c),
        &[arch("90"), arch("100")],
        PtxPolicy::Newest,
        UnmatchedPolicy::Keep,
    );
    // 100: the sm_100f member (half the group) plus compute_90.
    assert_eq!(
        per,
        [
            (arch("90"), 16 + 1064 + 1064 + 64 + 500),
            (arch("100"), 16 + 1064 + 64 + 500)
        ]
    );
}

// ------------------------------------------------------------------------------------------
// HIP

fn gfx(s: &str) -> GfxTarget {
    s.parse().unwrap()
}

#[test]
fn gfx_targets_parse_and_print() {
    let t = gfx("gfx90a:xnack+:sramecc-");
    assert_eq!(t.processor, "gfx90a");
    assert_eq!(
        t.features,
        [("xnack".to_string(), true), ("sramecc".to_string(), false)]
    );
    assert_eq!(t.to_string(), "gfx90a:xnack+:sramecc-");
    assert!(gfx("gfx9-generic").is_generic());
    for bad in [
        "",
        "gfx",
        "sm_90",
        "gfx90a:xnack",
        "gfx90a:+",
        "GFX90A",
        "gfx90a:xn ack+",
    ] {
        assert!(bad.parse::<GfxTarget>().is_err(), "{bad:?} parsed");
    }
    let s = GfxSelection::parse("gfx90a, gfx942,gfx90a").unwrap();
    assert_eq!(s.targets, [gfx("gfx90a"), gfx("gfx942")]);
    assert!(GfxSelection::parse(" , ").is_err());
}

#[test]
fn gfx_matching_rules() {
    let plain = GfxSelection::parse("gfx90a").unwrap();
    let on = GfxSelection::parse("gfx90a:xnack+").unwrap();
    let keep = |s: &GfxSelection, t: &str| s.judge(Some(t)).0;
    // gfx90a keeps every xnack setting of gfx90a.
    assert!(keep(&plain, "gfx90a"));
    assert!(keep(&plain, "gfx90a:xnack+"));
    assert!(keep(&plain, "gfx90a:xnack-"));
    assert!(!keep(&plain, "gfx942"));
    assert!(!keep(&plain, "gfx90c"));
    // gfx90a:xnack+ keeps the feature-less and the matching one only.
    assert!(keep(&on, "gfx90a"));
    assert!(keep(&on, "gfx90a:xnack+"));
    assert!(!keep(&on, "gfx90a:xnack-"));
    assert!(keep(&on, "gfx90a:sramecc+"));
    // generic targets by family
    let mi300 = GfxSelection::parse("gfx942").unwrap();
    assert_eq!(
        mi300.judge(Some("gfx9-4-generic")),
        (
            true,
            GfxReason::GenericFamily {
                target: gfx("gfx9-4-generic")
            }
        )
    );
    assert!(!keep(&mi300, "gfx9-generic"));
    assert!(!keep(&mi300, "gfx11-generic"));
    assert!(keep(
        &GfxSelection::parse("gfx1151").unwrap(),
        "gfx11-generic"
    ));
    assert!(keep(
        &GfxSelection::parse("gfx906").unwrap(),
        "gfx9-generic"
    ));
    assert!(!keep(
        &GfxSelection::parse("gfx90a").unwrap(),
        "gfx9-generic"
    ));
    // an xnack- request does not take generic code built with xnack+
    let off = GfxSelection::parse("gfx906:xnack-").unwrap();
    assert!(!keep(&off, "gfx9-generic:xnack+"));
    assert!(keep(&off, "gfx9-generic"));
    // unknown generic names and odd targets are kept and reported
    assert_eq!(
        plain.judge(Some("gfx13-generic")),
        (true, GfxReason::UnknownGeneric)
    );
    assert_eq!(plain.judge(Some("weird")), (true, GfxReason::Unrecognised));
    assert_eq!(plain.judge(None), (true, GfxReason::Unrecognised));
    assert_eq!(plain.judge(Some("host")), (true, GfxReason::Host));
}

#[test]
fn gfx_choose_over_bundle_entries() {
    let e = |triple: &str| BundleEntry {
        triple: triple.to_string(),
        offset: 4096,
        size: 10,
        target: crate::fatbin::hip::target_of_triple(triple),
    };
    let entries = vec![
        e("host-x86_64-unknown-linux--"),
        e("hipv4-amdgcn-amd-amdhsa--gfx1100"),
        e("hipv4-amdgcn-amd-amdhsa--gfx90a:xnack-"),
        e("hipv4-amdgcn-amd-amdhsa--gfx942"),
        e("openmp-x86_64-unknown-linux-gnu"),
    ];
    let c = GfxSelection::parse("gfx90a").unwrap().choose(&entries);
    assert_eq!(c.keep, [true, false, true, false, true]);
    assert_eq!(c.reasons[0], GfxReason::Host);
    assert_eq!(c.reasons[1], GfxReason::NotRequested);
    assert_eq!(c.reasons[4], GfxReason::Unrecognised);
}

#[test]
fn newer_gpus_keep_something_to_jit() {
    // A container built for sm_90 SASS and only compute_120 PTX (seen in real wheels).
    let names = &["sm_90", "compute_120"];
    let c = sel("90").choose(&entries(names));
    assert_eq!(kept(&sel("90"), names), ["sm_90", "compute_120"]);
    assert_eq!(c.entries[1].reason, Reason::PtxNewerGpus);
    assert!(c.newer_gpus_lost.is_empty() && c.targets_lost.is_empty());
    // --ptx none: the user chose to drop it; the loss is measured for the report.
    let c = sel("90").with_ptx(PtxPolicy::None).choose(&entries(names));
    assert_eq!(
        c.entries.iter().map(|e| e.keep).collect::<Vec<_>>(),
        [true, false]
    );
    assert_eq!(c.newer_gpus_lost, ["compute_120"]);
    // Only a/f PTX serves no GPU newer than the targets: nothing is added.
    assert_eq!(kept(&sel("90"), &["sm_90", "compute_100a"]), ["sm_90"]);
    // The oldest of several newer plain PTX, all of its entries.
    assert_eq!(
        kept(
            &sel("80"),
            &["sm_80", "compute_120", "compute_100", "compute_100"]
        ),
        ["sm_80", "compute_100", "compute_100"]
    );
    // An unmatched container is not "matched" by the added PTX.
    let c = sel("90").choose(&entries(&["sm_100f", "compute_120"]));
    assert!(c.unmatched);
    assert!(c.entries.iter().all(|e| e.reason == Reason::Unmatched));
    let c = sel("90")
        .with_unmatched(UnmatchedPolicy::Drop)
        .choose(&entries(&["sm_100f", "compute_120"]));
    assert!(c.entries.iter().all(|e| !e.keep));
    assert_eq!(c.newer_gpus_lost, ["compute_120"]);
}

#[test]
fn images_of_loose_files_are_judged_like_entries() {
    let img = |n: &str| {
        let e = entry(n);
        Some((e.kind, e.arch))
    };
    let s = sel("90");
    let c = s.choose_images(&[img("sm_80"), img("sm_90a"), img("compute_90"), None]);
    let keep: Vec<bool> = c.entries.iter().map(|e| e.keep).collect();
    assert_eq!(keep, [false, true, true, true]);
    assert!(!c.unmatched);
    // Nothing for the targets: kept whole by default, dropped only when asked.
    let only_new = [img("sm_100f"), img("sm_103a")];
    let c = s.choose_images(&only_new);
    assert!(c.unmatched && c.entries.iter().all(|e| e.keep));
    let c = s
        .clone()
        .with_unmatched(UnmatchedPolicy::Drop)
        .choose_images(&only_new);
    assert!(c.unmatched && c.entries.iter().all(|e| !e.keep));
}

#[test]
fn unmatched_bundles_follow_the_policy() {
    let targets = [Some("gfx942"), Some("gfx942:xnack+")];
    let g = GfxSelection::parse("gfx90a").unwrap();
    let c = g.choose_targets(&targets);
    assert!(c.unmatched);
    assert_eq!(c.keep, [true, true]);
    assert_eq!(c.reasons[0], GfxReason::Unmatched);
    let c = g
        .clone()
        .with_unmatched(UnmatchedPolicy::Drop)
        .choose_targets(&targets);
    assert_eq!(c.keep, [false, false]);
    // One entry served: the others go, as before.
    let c = g.choose_targets(&[Some("gfx90a"), Some("gfx942")]);
    assert!(!c.unmatched);
    assert_eq!(c.keep, [true, false]);
}
