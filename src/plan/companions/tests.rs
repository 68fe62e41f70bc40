use super::*;
use crate::wheel::zip::BlockMark;

const MIB: u64 = 1024 * 1024;

fn block(section: &str, offset: u64, mib: f64, family: &str) -> Block {
    let compressed = (mib * MIB as f64) as u64;
    Block {
        section: section.into(),
        offset,
        size: compressed * 2,
        compressed,
        family: family.into(),
    }
}

fn lib(rest_mib: f64, blocks: Vec<Block>) -> Library {
    let rest = (rest_mib * MIB as f64) as u64;
    Library {
        soname: "libnccl.so.2".into(),
        compressed: rest + blocks.iter().map(|b| b.compressed).sum::<u64>(),
        rest_compressed: rest,
        rest_sections: Vec::new(),
        blocks,
        unsupported: None,
    }
}

fn none(_: &str) -> bool {
    false
}

const ROOM: u64 = 100 * MIB;

fn companions(v: &Verdict) -> (&Vec<Block>, &Vec<CompanionFile>, u64) {
    match v {
        Verdict::Companions {
            kept,
            files,
            host_after,
        } => (kept, files, *host_after),
        other => panic!("expected companions, got {other:?}"),
    }
}

/// Every block ends up exactly once, in the host or one companion, and every file is under
/// the room the plan packs into.
fn check_complete(l: &Library, v: &Verdict) {
    let (kept, files, host_after) = companions(v);
    let cap = plan_room(ROOM);
    assert!(host_after <= cap, "host {host_after} over {cap}");
    let mut all: Vec<&Block> = kept.iter().collect();
    for f in files {
        assert!(
            f.compressed_bytes <= cap,
            "{} is {}",
            f.soname,
            f.compressed_bytes
        );
        assert!(!f.containers.is_empty());
        all.extend(&f.containers);
    }
    assert_eq!(all.len(), l.blocks.len());
    for b in &l.blocks {
        assert_eq!(all.iter().filter(|x| **x == b).count(), 1, "{b:?}");
    }
}

#[test]
fn a_library_that_fits_needs_no_companions() {
    let l = lib(10.0, vec![block(".nv_fatbin", 0, 50.0, "sm_8x")]);
    assert_eq!(plan(&l, ROOM, &none), Verdict::Fits);
}

/// NCCL's shape: ~10 MiB of host code and ~297 MiB of device code in 143 containers: four
/// wheels are the fewest that can hold 307 MiB, so three companions and the host.
#[test]
fn nccl_shape_packs_into_the_fewest_files() {
    let mut blocks = Vec::new();
    for i in 0..143u64 {
        let section = if i % 2 == 0 {
            "__nv_relfatbin"
        } else {
            ".nv_fatbin"
        };
        let size = 1.2 + (i % 7) as f64 * 0.25;
        blocks.push(block(section, i * 4096, size, "sm_8x+sm_9x+sm_10x"));
    }
    let l = lib(10.0, blocks);
    let total = l.compressed;
    let v = plan(&l, ROOM, &none);
    check_complete(&l, &v);
    let (_, files, _) = companions(&v);
    let lower_bound = total.div_ceil(plan_room(ROOM)) as usize - 1;
    assert_eq!(files.len(), lower_bound, "{total}");
    assert_eq!(
        files.iter().map(|f| f.soname.as_str()).collect::<Vec<_>>(),
        [
            "libnccl.wsdev1.so",
            "libnccl.wsdev2.so",
            "libnccl.wsdev3.so"
        ][..lower_bound]
    );
}

/// Three families of 80 MiB each, their containers interleaved in the section: each family
/// gets a file of its own (the host keeps one), as many files as packing without families.
#[test]
fn families_stay_together_when_it_costs_no_file() {
    let fams = ["sm_8x", "sm_9x", "sm_10x"];
    let blocks: Vec<Block> = (0..6u64)
        .map(|i| block(".nv_fatbin", i * 8, 40.0, fams[(i % 3) as usize]))
        .collect();
    let l = lib(10.0, blocks);
    let v = plan(&l, ROOM, &none);
    check_complete(&l, &v);
    let (kept, files, _) = companions(&v);
    assert_eq!(files.len(), 2);
    let kept_fams: Vec<&str> = kept.iter().map(|b| b.family.as_str()).collect();
    assert_eq!(kept.len(), 2);
    assert!(
        kept_fams.iter().all(|f| *f == kept_fams[0]),
        "{kept_fams:?}"
    );
    for f in files {
        assert_eq!(f.families.len(), 1, "{f:?}");
    }
}

/// When keeping families whole would take another file, the containers are packed one by
/// one instead.
#[test]
fn grouping_never_costs_a_file() {
    let blocks = vec![
        block(".nv_fatbin", 0, 60.0, "sm_8x"),
        block(".nv_fatbin", 8, 30.0, "sm_9x"),
        block(".nv_fatbin", 16, 30.0, "sm_9x"),
        block(".nv_fatbin", 24, 30.0, "sm_10x"),
        block(".nv_fatbin", 32, 30.0, "sm_10x"),
    ];
    let l = lib(5.0, blocks);
    let v = plan(&l, ROOM, &none);
    check_complete(&l, &v);
    let (_, files, _) = companions(&v);
    assert_eq!(files.len(), 1, "{files:?}");
}

/// cuBLASLt 12.9's shape: about 200 MiB compressed of sections that are not device code.
/// Containers of one family, of mixed sizes, too many for one companion: where it takes no
/// more files than the largest-first packing, each companion holds neighbours (a run of the
/// containers in the order they lie), so it reuses the input's compressed blocks as a few
/// long runs instead of one seam per container.
#[test]
fn neighbours_stay_together_when_it_costs_no_file() {
    let sizes = [3.0, 0.5, 7.0, 1.0, 2.5, 6.0, 0.25, 4.0, 5.5, 1.5, 3.5, 2.0];
    let blocks: Vec<Block> = (0..60)
        .map(|i| {
            block(
                ".nv_fatbin",
                i as u64 * 0x10_0000,
                sizes[i % sizes.len()],
                "sm_8x+sm_9x",
            )
        })
        .collect();
    let l = lib(20.0, blocks.clone());
    let v = plan(&l, ROOM, &none);
    check_complete(&l, &v);
    let (kept, files, _) = companions(&v);
    assert!(kept.is_empty());
    let order = ordered(&blocks);
    let caps = Caps {
        host: plan_room(ROOM),
        companion: plan_room(ROOM),
    };
    let host_fixed = l.rest_compressed + PER_BLOCK_COST * blocks.len() as u64;
    let largest_first = pack_plain(&blocks, &order, host_fixed, caps).unwrap();
    // The bins there count the host too: no more companions than largest first takes.
    assert!(files.len() < largest_first.len(), "{} files", files.len());
    let mut next = 0u64;
    for f in files {
        for c in &f.containers {
            assert_eq!(
                c.offset, next,
                "{} breaks the run at {:#x}",
                f.soname, c.offset
            );
            next += 0x10_0000;
        }
    }
    assert_eq!(next, 60 * 0x10_0000);
}

#[test]
fn a_host_too_big_without_device_code_cannot_fit_and_says_why() {
    let mut l = lib(200.0, vec![block(".nv_fatbin", 0, 80.0, "sm_8x")]);
    l.rest_sections = vec![
        HostSection {
            name: ".cask_resource".into(),
            size: (154.6 * MIB as f64) as u64,
            compressed: 120 * MIB,
        },
        HostSection {
            name: ".ldata".into(),
            size: (95.5 * MIB as f64) as u64,
            compressed: 70 * MIB,
        },
    ];
    let v = plan(&l, ROOM, &none);
    let Verdict::CannotFit(why) = &v else {
        panic!("{v:?}")
    };
    let text = why.why();
    assert!(
        text.contains("154.6 MiB .cask_resource and 95.5 MiB .ldata"),
        "{text}"
    );
    assert!(text.contains("200.0 MiB compressed"), "{text}");
    assert!(text.contains("even without any device code"), "{text}");
}

#[test]
fn a_container_too_big_alone_cannot_fit() {
    let l = lib(
        10.0,
        vec![
            block(".nv_fatbin", 0, 20.0, "sm_8x"),
            block(".nv_fatbin", 4096, 150.0, "sm_9x"),
        ],
    );
    let v = plan(&l, ROOM, &none);
    let Verdict::CannotFit(CannotFit::Block { block, .. }) = &v else {
        panic!("{v:?}")
    };
    assert_eq!(block.offset, 4096);
    let text = CannotFit::Block {
        block: block.clone(),
        room: ROOM,
    }
    .why();
    assert!(
        text.contains("0x1000") && text.contains("whole containers"),
        "{text}"
    );
}

#[test]
fn no_device_code_or_another_machine_cannot_fit() {
    let l = lib(150.0, Vec::new());
    assert_eq!(
        plan(&l, ROOM, &none),
        Verdict::CannotFit(CannotFit::NoDeviceCode)
    );
    let mut l = lib(10.0, vec![block(".nv_fatbin", 0, 150.0, "sm_8x")]);
    l.unsupported = Some("not for s390x".into());
    assert!(matches!(
        plan(&l, ROOM, &none),
        Verdict::CannotFit(CannotFit::Unsupported(_))
    ));
}

#[test]
fn the_plan_does_not_depend_on_the_order_of_the_containers() {
    let fams = ["sm_8x", "sm_9x", "sm_10x", "sm_12x"];
    let blocks: Vec<Block> = (0..40u64)
        .map(|i| {
            block(
                if i % 3 == 0 {
                    "__nv_relfatbin"
                } else {
                    ".nv_fatbin"
                },
                i * 64,
                3.0 + (i * 7 % 11) as f64,
                fams[(i % 4) as usize],
            )
        })
        .collect();
    let l = lib(12.0, blocks.clone());
    let first = plan(&l, ROOM, &none);
    check_complete(&l, &first);
    let mut reversed = blocks.clone();
    reversed.reverse();
    let mut rotated = blocks;
    rotated.rotate_left(13);
    for other in [reversed, rotated] {
        let l2 = Library {
            blocks: other,
            ..l.clone()
        };
        assert_eq!(plan(&l2, ROOM, &none), first);
    }
}

#[test]
fn companion_sonames_follow_the_host_and_skip_taken_names() {
    assert_eq!(
        companion_sonames("libnccl.so.2", 2, &none),
        ["libnccl.wsdev1.so", "libnccl.wsdev2.so"]
    );
    assert_eq!(
        companion_sonames("libcublasLt-1a2b3c4d.so.12", 1, &none),
        ["libcublasLt-1a2b3c4d.wsdev1.so"]
    );
    let taken = |n: &str| n == "libx.wsdev1.so";
    assert_eq!(
        companion_sonames("libx.so", 2, &taken),
        ["libx.wsdev2.so", "libx.wsdev3.so"]
    );
    assert_eq!(companion_sonames("plugin", 1, &none), ["plugin.wsdev1.so"]);
}

#[test]
fn gfx_families() {
    for (t, f) in [
        ("gfx90a", "gfx9"),
        ("gfx942:sramecc+:xnack-", "gfx9"),
        ("gfx908", "gfx9"),
        ("gfx1030", "gfx10"),
        ("gfx1100", "gfx11"),
        ("gfx1201", "gfx12"),
        ("gfx9-generic", "gfx9"),
        ("gfx10-3-generic", "gfx10"),
    ] {
        assert_eq!(gfx_family(t).as_deref(), Some(f), "{t}");
    }
    assert_eq!(gfx_family("host"), None);
    assert_eq!(gfx_family("gfx"), None);
    let mut fams = vec![
        "sm_10x".to_string(),
        "sm_8x".into(),
        "sm_9x".into(),
        "sm_8x".into(),
    ];
    assert_eq!(join_families(&mut fams), "sm_8x+sm_9x+sm_10x");
}

#[test]
fn compressed_ranges_follow_the_block_boundaries() {
    // 1000 bytes: the first 500 deflated to 400 bytes (random-like), the rest to 20.
    let marks = [BlockMark {
        input: 400,
        output: 500,
    }];
    assert_eq!(compressed_range(&marks, 1000, 420, 0, 500), 400);
    assert_eq!(compressed_range(&marks, 1000, 420, 500, 1000), 20);
    assert_eq!(compressed_range(&marks, 1000, 420, 0, 250), 200);
    assert_eq!(compressed_range(&marks, 1000, 420, 0, 1000), 420);
    // Without marks: the average ratio; out of range is clamped, never a panic.
    assert_eq!(compressed_range(&[], 1000, 500, 0, 100), 50);
    assert_eq!(compressed_range(&[], 1000, 500, 900, 5000), 50);
    assert_eq!(compressed_range(&[], 0, 0, 0, 10), 0);
    assert_eq!(compressed_range(&marks, 1000, 420, 700, 600), 0);
}
