#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

use super::*;
use crate::fatbin::select::{PtxPolicy, UnmatchedPolicy};

/// A 64-byte ELF64 header for `machine` with `abi` and `flags`.
fn elf(machine: u16, osabi: u8, abi: u8, flags: u32) -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = 2;
    h[5] = 1;
    h[6] = 1;
    h[7] = osabi;
    h[8] = abi;
    h[0x10..0x12].copy_from_slice(&2u16.to_le_bytes());
    h[0x12..0x14].copy_from_slice(&machine.to_le_bytes());
    h[0x30..0x34].copy_from_slice(&flags.to_le_bytes());
    h[0x34..0x36].copy_from_slice(&64u16.to_le_bytes());
    h
}

/// A cubin header plus one SHT_NOTE section holding NVIDIA's tool-kit note with `cmdline`.
fn cubin_with_note(abi: u8, flags: u32, cmdline: &str) -> Vec<u8> {
    let mut d = elf(EM_CUDA, if abi >= 8 { 0x41 } else { 0x33 }, abi, flags);
    let mut note = Vec::new();
    let name = b"NVIDIA Corp\0";
    let mut desc = vec![0u8; 24];
    desc.extend_from_slice(cmdline.as_bytes());
    desc.push(0);
    note.extend_from_slice(&(name.len() as u32).to_le_bytes());
    note.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    note.extend_from_slice(&2000u32.to_le_bytes());
    note.extend_from_slice(name);
    note.resize(note.len().div_ceil(4) * 4, 0);
    note.extend_from_slice(&desc);
    note.resize(note.len().div_ceil(4) * 4, 0);
    let note_at = d.len();
    d.extend_from_slice(&note);
    let shoff = d.len();
    d.extend_from_slice(&[0u8; 64]); // SHT_NULL
    let mut sh = vec![0u8; 64];
    sh[4..8].copy_from_slice(&7u32.to_le_bytes());
    sh[0x18..0x20].copy_from_slice(&(note_at as u64).to_le_bytes());
    sh[0x20..0x28].copy_from_slice(&(note.len() as u64).to_le_bytes());
    d.extend_from_slice(&sh);
    d[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
    d[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
    d[0x3c..0x3e].copy_from_slice(&2u16.to_le_bytes());
    d
}

fn arch(d: &[u8]) -> Option<String> {
    cubin_arch(d).map(|a| a.to_string())
}

#[test]
fn cubin_flags_of_both_abis() {
    // Values read from real cubins (see the module docs).
    assert_eq!(
        arch(&elf(EM_CUDA, 0x33, 7, 0x32_0532)).as_deref(),
        Some("sm_50")
    );
    assert_eq!(
        arch(&elf(EM_CUDA, 0x33, 7, 0x50_0550)).as_deref(),
        Some("sm_80")
    );
    assert_eq!(
        arch(&elf(EM_CUDA, 0x33, 7, 0x5a_0d5a)).as_deref(),
        Some("sm_90a")
    );
    assert_eq!(
        arch(&elf(EM_CUDA, 0x41, 8, 0x600_5004)).as_deref(),
        Some("sm_80")
    );
    assert_eq!(
        arch(&elf(EM_CUDA, 0x41, 8, 0x600_640a)).as_deref(),
        Some("sm_100a")
    );
    assert_eq!(
        arch(&elf(EM_CUDA, 0x41, 8, 0x600_7902)).as_deref(),
        Some("sm_121")
    );
    assert_eq!(
        arch(&elf(EM_CUDA, 0x41, 8, 0x500_4b04)).as_deref(),
        Some("sm_75")
    );
    assert_eq!(arch(&elf(EM_AMDGPU, 0x40, 3, 0x53f)), None);
    assert_eq!(arch(&elf(EM_CUDA, 0x41, 8, 0x0000_0004)), None);
    assert_eq!(arch(b"\x7fELF"), None);
}

#[test]
fn cubin_variant_from_the_toolkit_note() {
    // CUDA 13: sm_90a and sm_100f carry plain flags; the note tells.
    let d = cubin_with_note(8, 0x600_5a04, "-arch sm_90a -m 64 ");
    assert_eq!(arch(&d).as_deref(), Some("sm_90a"));
    let d = cubin_with_note(8, 0x600_6402, "-arch sm_100f -m 64 ");
    assert_eq!(arch(&d).as_deref(), Some("sm_100f"));
    // A note naming another SM is ignored.
    let d = cubin_with_note(8, 0x600_5004, "-arch sm_90a -m 64 ");
    assert_eq!(arch(&d).as_deref(), Some("sm_80"));
    // A damaged section table is ignored, not fatal.
    let mut d = cubin_with_note(8, 0x600_5a04, "-arch sm_90a");
    d[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(arch(&d).as_deref(), Some("sm_90"));
    let mut d = cubin_with_note(8, 0x600_5a04, "-arch sm_90a");
    let n = d.len();
    d[n - 64 + 0x20..n - 64 + 0x28].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert_eq!(arch(&d).as_deref(), Some("sm_90"));
}

#[test]
fn amd_targets() {
    let t = |abi: u8, flags: u32| amdgpu_target(&elf(EM_AMDGPU, 0x40, abi, flags));
    // the fixtures: code object v5, features "any"
    assert_eq!(t(3, 0x53f).as_deref(), Some("gfx90a"));
    assert_eq!(t(3, 0x54c).as_deref(), Some("gfx942"));
    assert_eq!(t(3, 0x33f).as_deref(), Some("gfx90a:xnack+"));
    assert_eq!(t(3, 0x23f).as_deref(), Some("gfx90a:xnack-"));
    assert_eq!(t(2, 0xe4c).as_deref(), Some("gfx942:sramecc+:xnack-"));
    assert_eq!(t(3, 0x041).as_deref(), Some("gfx1100"));
    assert_eq!(t(4, 0x051).as_deref(), Some("gfx9-generic"));
    // code object v3: bits mean "on"
    assert_eq!(t(1, 0x12f).as_deref(), Some("gfx906:xnack+"));
    assert_eq!(t(1, 0x32f).as_deref(), Some("gfx906:sramecc+:xnack+"));
    assert_eq!(t(3, 0x4d), None);
    assert_eq!(amdgpu_target(&elf(EM_CUDA, 0x41, 8, 0x3f)), None);
}

#[test]
fn classifies_by_content() {
    let cubin = elf(EM_CUDA, 0x41, 8, 0x600_5004);
    let hsaco = elf(EM_AMDGPU, 0x40, 3, 0x53f);
    let host = elf(62, 0, 0, 0);
    assert_eq!(classify("k.cubin", &cubin), Some(LooseKind::Cubin));
    assert_eq!(classify("k.bin", &cubin), Some(LooseKind::Cubin));
    assert_eq!(classify("k.hsaco", &hsaco), Some(LooseKind::AmdCodeObject));
    assert_eq!(classify("k.co", &hsaco), Some(LooseKind::AmdCodeObject));
    assert_eq!(classify("libx.so", &host), None);
    assert_eq!(classify("fake.cubin", &host), None);
    assert_eq!(
        classify("k.fatbin", &[0x50, 0xed, 0x55, 0xba, 1, 0]),
        Some(LooseKind::Fatbin)
    );
    assert_eq!(
        classify("k.hipfb", b"__CLANG_OFFLOAD_BUNDLE__\x01"),
        Some(LooseKind::OffloadBundle)
    );
    assert_eq!(
        classify("k.co", b"CCOB\x02\x00\x01\x00"),
        Some(LooseKind::OffloadBundle)
    );
    assert_eq!(
        classify("k.ptx", b"//\n.version 9.4\n"),
        Some(LooseKind::Ptx)
    );
    assert_eq!(classify("k.PTX", b".version 8.0"), Some(LooseKind::Ptx));
    assert_eq!(classify("k.ptx", b"\0\0binary"), None);
    assert_eq!(classify("k.txt", b".version 9.4"), None);
    assert_eq!(classify("", b""), None);
}

#[test]
fn ptx_directives() {
    let text = "//\n// Generated by NVIDIA NVVM Compiler\n//\n\n.version 9.4\n.target sm_90a, debug // x\n.address_size 64\n";
    assert_eq!(ptx_version(text).as_deref(), Some("9.4"));
    assert_eq!(
        ptx_target(text).map(|a| a.compute_name()).as_deref(),
        Some("compute_90a")
    );
    assert_eq!(
        ptx_target("// .target sm_80\n.target sm_100f\n")
            .unwrap()
            .to_string(),
        "sm_100f"
    );
    assert_eq!(ptx_target(".targets sm_80\n"), None);
    assert_eq!(ptx_target(""), None);
}

#[test]
fn arch_in_file_names() {
    let a = |n: &str| arch_from_name(n);
    assert_eq!(a("kernel.sm_90.cubin").as_deref(), Some("sm_90"));
    assert_eq!(a("pkg/kernels/k.sm_90a.cubin").as_deref(), Some("sm_90a"));
    assert_eq!(a("k_sm_100f.cubin").as_deref(), Some("sm_100f"));
    assert_eq!(a("k.compute_90.ptx").as_deref(), Some("compute_90"));
    assert_eq!(a("Kernels.so-000-gfx942.hsaco").as_deref(), Some("gfx942"));
    assert_eq!(a("TensileLibrary_gfx90a.co").as_deref(), Some("gfx90a"));
    assert_eq!(a("kernel.cubin"), None);
    assert_eq!(a("asm_90.cubin"), None);
    assert_eq!(a("k.sm_90x.cubin"), None);
    assert_eq!(a("gfxinfo.txt"), None);
}

#[test]
fn inspect_and_decide() {
    let cubin = cubin_with_note(8, 0x600_5a04, "-arch sm_90a -m 64");
    let info = inspect("k.cubin", &cubin).unwrap().unwrap();
    assert_eq!(info.kind, LooseKind::Cubin);
    assert_eq!(info.archs, ["sm_90a"]);
    assert_eq!(info.bytes, cubin.len() as u64);
    let s90 = Selection::parse_targets("90").unwrap();
    let s100 = Selection::parse_targets("100").unwrap();
    assert_eq!(decide(&info, Some(&s90), None).action, LooseAction::Keep);
    // On its own, a cubin that runs on no target matched nothing: kept unless asked.
    assert_eq!(decide(&info, Some(&s100), None).action, LooseAction::Keep);
    let drop100 = s100.clone().with_unmatched(UnmatchedPolicy::Drop);
    assert_eq!(
        decide(&info, Some(&drop100), None).action,
        LooseAction::Drop
    );
    assert_eq!(decide(&info, None, None).action, LooseAction::Keep);

    let ptx = b".version 9.4\n.target sm_90\n";
    let info = inspect("k.ptx", ptx).unwrap().unwrap();
    assert_eq!(info.archs, ["compute_90"]);
    assert_eq!(decide(&info, Some(&s100), None).action, LooseAction::Keep);
    let s86 = Selection::parse_targets("86").unwrap();
    assert_eq!(decide(&info, Some(&s86), None).action, LooseAction::Keep);
    let s86 = s86.with_unmatched(UnmatchedPolicy::Drop);
    assert_eq!(decide(&info, Some(&s86), None).action, LooseAction::Drop);

    let hsaco = elf(EM_AMDGPU, 0x40, 3, 0x53f);
    let info = inspect("k.hsaco", &hsaco).unwrap().unwrap();
    assert_eq!(info.archs, ["gfx90a"]);
    let g = GfxSelection::parse("gfx942").unwrap();
    assert_eq!(decide(&info, None, Some(&g)).action, LooseAction::Keep);
    let g = g.with_unmatched(UnmatchedPolicy::Drop);
    assert_eq!(decide(&info, None, Some(&g)).action, LooseAction::Drop);
    let g = GfxSelection::parse("gfx90a:xnack-").unwrap();
    assert_eq!(decide(&info, None, Some(&g)).action, LooseAction::Keep);

    // Unknown architecture: kept.
    let odd = elf(EM_AMDGPU, 0x40, 3, 0x5e);
    let info = inspect("k.hsaco", &odd).unwrap().unwrap();
    assert!(info.archs.is_empty());
    assert_eq!(decide(&info, None, Some(&g)).action, LooseAction::Keep);
    let info = inspect("k.gfx942.hsaco", &odd).unwrap().unwrap();
    assert_eq!(info.archs, ["gfx942"]);

    assert_eq!(inspect("libx.so", &elf(62, 0, 0, 0)).unwrap(), None);
    // A damaged fatbin is an error, not a guess.
    assert!(inspect("k.fatbin", &[0x50, 0xed, 0x55, 0xba, 1, 0, 16, 0, 9, 9]).is_err());
}

#[test]
fn groups_of_loose_files() {
    let key = |n: &str, k| group_key(n, k).unwrap();
    // Names that differ only in the architecture are one group, whatever the spelling.
    assert_eq!(key("p/k.sm_80.cubin", LooseKind::Cubin), "cuda:p/k.*");
    assert_eq!(key("p/k.sm_90a.cubin", LooseKind::Cubin), "cuda:p/k.*");
    assert_eq!(key("p/k.compute_90.ptx", LooseKind::Ptx), "cuda:p/k.*");
    assert_eq!(key("p/fix_sm80.cubin", LooseKind::Cubin), "cuda:p/fix_*");
    assert_eq!(key("p/fix_compute90.ptx", LooseKind::Ptx), "cuda:p/fix_*");
    assert_eq!(
        key("f/fmhaSm100fKernel_QkvE4m3.cubin", LooseKind::Cubin),
        key("f/fmhaSm100aKernel_QkvE4m3.cubin", LooseKind::Cubin)
    );
    assert_eq!(
        key("f/Gemm_t128_schedS_sm100f.cubin", LooseKind::Cubin),
        "cuda:f/Gemm_t128_schedS_*"
    );
    assert_eq!(
        key("h/k-gfx90a.hsaco", LooseKind::AmdCodeObject),
        "amd:h/k-*"
    );
    assert_eq!(key("h/k-gfx1100.co", LooseKind::AmdCodeObject), "amd:h/k-*");
    // Not architecture tokens: a word that starts like one, a folder, another kernel.
    assert_eq!(key("p/smooth.cubin", LooseKind::Cubin), "cuda:p/smooth");
    assert_eq!(
        key("p/sm100fast.cubin", LooseKind::Cubin),
        "cuda:p/sm100fast"
    );
    assert_eq!(key("p/prism80.cubin", LooseKind::Cubin), "cuda:p/prism80");
    assert_ne!(
        key("a/k.sm_80.cubin", LooseKind::Cubin),
        key("b/k.sm_80.cubin", LooseKind::Cubin)
    );
    assert_eq!(group_key("k.fatbin", LooseKind::Fatbin), None);
    assert_eq!(group_key("k.co", LooseKind::OffloadBundle), None);
}

#[test]
fn a_group_is_judged_like_a_container() {
    let info = |kind, arch: &str| LooseInfo {
        kind,
        archs: vec![arch.to_string()],
        bytes: 100,
    };
    let sm80 = info(LooseKind::Cubin, "sm_80");
    let sm90 = info(LooseKind::Cubin, "sm_90a");
    let ptx120 = info(LooseKind::Ptx, "compute_120");
    let s90 = Selection::parse_targets("90").unwrap();
    let actions = |d: &GroupDecision| d.files.iter().map(|f| f.action).collect::<Vec<_>>();
    let d = decide_group(&[&sm80, &sm90, &ptx120], Some(&s90), None);
    assert!(!d.unmatched);
    // sm_80 cannot run on sm_90 and sm_90a can; compute_120 is kept for newer GPUs.
    assert_eq!(
        actions(&d),
        [LooseAction::Drop, LooseAction::Keep, LooseAction::Keep]
    );
    // Nothing for the targets: every file stays, unless --unmatched drop.
    let new = info(LooseKind::Cubin, "sm_100f");
    let newer = info(LooseKind::Cubin, "sm_103a");
    let d = decide_group(&[&new, &newer], Some(&s90), None);
    assert!(d.unmatched);
    assert_eq!(actions(&d), [LooseAction::Keep, LooseAction::Keep]);
    let drop = s90.clone().with_unmatched(UnmatchedPolicy::Drop);
    let d = decide_group(&[&new, &newer], Some(&drop), None);
    assert_eq!(actions(&d), [LooseAction::Drop, LooseAction::Drop]);
    // --ptx none drops the group's only PTX and says newer GPUs lost it.
    let none = s90.with_ptx(PtxPolicy::None);
    let d = decide_group(&[&sm90, &ptx120], Some(&none), None);
    assert_eq!(actions(&d), [LooseAction::Keep, LooseAction::Drop]);
    assert_eq!(d.newer_gpus_lost, ["compute_120"]);
    // AMD code objects: one for the target keeps the group matched.
    let a = info(LooseKind::AmdCodeObject, "gfx90a");
    let b = info(LooseKind::AmdCodeObject, "gfx942");
    let g = GfxSelection::parse("gfx90a").unwrap();
    let d = decide_group(&[&a, &b], None, Some(&g));
    assert_eq!(actions(&d), [LooseAction::Keep, LooseAction::Drop]);
    let g = GfxSelection::parse("gfx1100").unwrap();
    let d = decide_group(&[&a, &b], None, Some(&g));
    assert!(d.unmatched);
    assert_eq!(actions(&d), [LooseAction::Keep, LooseAction::Keep]);
}
