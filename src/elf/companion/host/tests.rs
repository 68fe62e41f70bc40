//! Unit tests of the table edits: the RELACOUNT reorder, the symbol-index shift, the
//! `.gnu.hash` shift, the rebuilt `.hash`, RELR decoding.

#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

use super::tables::*;
use crate::elf::companion::hash::sysv_hash;

fn rel(offset: u64, kind: u32, sym: u32, addend: i64) -> Rela {
    Rela {
        offset,
        sym,
        kind,
        addend,
    }
}

#[test]
fn converted_entries_leave_the_relacount_prefix_and_the_count_drops() {
    // Four RELATIVE (the prefix, RELACOUNT 4), then two symbolic.
    let input = vec![
        rel(0x10, 8, 0, 0x100),
        rel(0x18, 8, 0, 0x200),
        rel(0x20, 8, 0, 0x300),
        rel(0x28, 8, 0, 0x400),
        rel(0x30, 1, 5, 0),
        rel(0x38, 6, 7, 0),
    ];
    let (out, count) = convert_and_reorder(&input, Some(4), &[(1, 9, 0x40), (3, 9, 0)], 1).unwrap();
    assert_eq!(count, Some(2));
    assert_eq!(
        out,
        vec![
            rel(0x10, 8, 0, 0x100),
            rel(0x20, 8, 0, 0x300),
            rel(0x18, 1, 9, 0x40),
            rel(0x28, 1, 9, 0),
            rel(0x30, 1, 5, 0),
            rel(0x38, 6, 7, 0),
        ]
    );
    // Every entry of the new prefix is still RELATIVE: what glibc assumes.
    assert!(out.iter().take(2).all(|r| r.kind == 8));
    // Without DT_RELACOUNT nothing moves.
    let (same, none) = convert_and_reorder(&input, None, &[(1, 9, 0)], 1).unwrap();
    assert_eq!((same.len(), none), (6, None));
    assert_eq!(same[1], rel(0x18, 1, 9, 0));
    // A count past the table is refused, not trusted.
    assert!(convert_and_reorder(&input, Some(7), &[], 1).is_err());
}

#[test]
fn indices_from_the_insertion_point_on_shift() {
    let mut r = vec![
        rel(0, 8, 0, 0),
        rel(8, 6, 3, 0),
        rel(16, 7, 4, 0),
        rel(24, 1, 9, 0),
    ];
    shift_symbols(&mut r, 4, 2).unwrap();
    let syms: Vec<u32> = r.iter().map(|x| x.sym).collect();
    assert_eq!(syms, vec![0, 3, 6, 11]);
    assert!(shifted(u32::MAX, 1, 1).is_err());
}

#[test]
fn rela_entries_round_trip() {
    let r = rel(0x1234, 1, 77, -16);
    assert_eq!(Rela::decode(&r.encode()), Some(r));
    assert!(decode_all(&[0u8; 25]).is_err());
}

#[test]
fn gnu_hash_shift_moves_symoffset_and_buckets_only() {
    // nbucket 3, symoffset 5, bloom 1 word, shift 6; buckets 5, 0, 7; chains for 4 symbols.
    let mut t = Vec::new();
    for w in [3u32, 5, 1, 6] {
        t.extend_from_slice(&w.to_le_bytes());
    }
    t.extend_from_slice(&0xdead_beefu64.to_le_bytes());
    for w in [5u32, 0, 7, 0x10, 0x21, 0x30, 0x41] {
        t.extend_from_slice(&w.to_le_bytes());
    }
    let out = shift_gnu_hash(&t, 2).unwrap();
    let w = |b: &[u8], i: usize| u32::from_le_bytes(b[i * 4..i * 4 + 4].try_into().unwrap());
    assert_eq!(w(&out, 1), 7, "symoffset");
    assert_eq!(&out[16..24], &t[16..24], "bloom unchanged");
    assert_eq!((w(&out, 6), w(&out, 7), w(&out, 8)), (7, 0, 9), "buckets");
    assert_eq!(&out[36..], &t[36..], "chains unchanged");
    assert_eq!(gnu_hash_shape(&t, 9).unwrap(), (3, 5, 16 + 8 + 12 + 16));
    assert!(gnu_hash_shape(&t, 4).is_err(), "symoffset past .dynsym");
}

#[test]
fn the_rebuilt_sysv_hash_finds_every_symbol() {
    let names: Vec<&[u8]> = vec![b"", b"alpha", b"beta", b"__wheelslim_dev_x_0", b"gamma"];
    let t = sysv_rebuild(&names, 3).unwrap();
    let w = |i: usize| u32::from_le_bytes(t[i * 4..i * 4 + 4].try_into().unwrap()) as usize;
    let (nb, nc) = (w(0), w(1));
    assert_eq!((nb, nc), (3, 5));
    for (i, n) in names.iter().enumerate().skip(1) {
        let mut at = w(2 + sysv_hash(n) as usize % nb);
        let mut found = false;
        while at != 0 {
            if at == i {
                found = true;
                break;
            }
            at = w(2 + nb + at);
        }
        assert!(found, "{}", String::from_utf8_lossy(n));
    }
}

#[test]
fn relr_words_decode_to_addresses() {
    let mut b = Vec::new();
    b.extend_from_slice(&0x1000u64.to_le_bytes());
    // Bitmap: bits 1 and 3 after the address word → 0x1008 and 0x1018.
    b.extend_from_slice(&((0b101u64 << 1) | 1).to_le_bytes());
    assert_eq!(relr_addresses(&b).unwrap(), vec![0x1000, 0x1008, 0x1018]);
}

#[test]
fn entries_are_inserted_at_the_point() {
    let t = [1u8, 1, 2, 2, 3, 3];
    assert_eq!(
        insert_entries(&t, 2, 1, &[9, 9]).unwrap(),
        vec![1, 1, 9, 9, 2, 2, 3, 3]
    );
    assert!(insert_entries(&t, 2, 4, &[9, 9]).is_err());
}

#[test]
fn relr_encoding_round_trips_and_removing_places_never_lengthens_it() {
    let mut addrs: Vec<u64> = (0..200).map(|i| 0x4000 + 8 * i).collect();
    addrs.extend([0x9000, 0x9010, 0x20000]);
    let enc = relr_encode(&addrs).unwrap();
    assert_eq!(relr_addresses(&enc).unwrap(), addrs);
    for drop in [0usize, 1, 62, 63, 64, 199, 200, 202] {
        let mut fewer = addrs.clone();
        fewer.remove(drop);
        let e = relr_encode(&fewer).unwrap();
        assert_eq!(relr_addresses(&e).unwrap(), fewer, "drop {drop}");
        assert!(
            e.len() <= enc.len(),
            "drop {drop}: {} > {}",
            e.len(),
            enc.len()
        );
    }
    assert!(relr_encode(&[0x1001]).is_err());
    assert!(relr_encode(&[]).unwrap().is_empty());
}

/// A companion's group is the host's own slice when its containers lie there as in the group
/// with only zeros between them; otherwise it is copied, zero between the containers, and
/// both give the same bytes.
#[test]
fn a_group_is_borrowed_from_the_host_only_when_it_is_the_same_bytes() {
    let mut host = vec![0u8; 64];
    host[8..16].copy_from_slice(&[1; 8]);
    host[24..32].copy_from_slice(&[2; 8]);
    // Two containers 16 bytes apart in both, a zero gap between them.
    let mine = [(0u64, 8u64, 8u64), (16, 24, 8)];
    let b = super::borrowed(&host, 24, &mine).expect("borrowed");
    assert_eq!(b, super::copied(&host, 24, &mine).unwrap().as_slice());
    // Something else in the gap: copied, with zeros there.
    host[18] = 7;
    assert!(super::borrowed(&host, 24, &mine).is_none());
    let c = super::copied(&host, 24, &mine).unwrap();
    assert_eq!(&c[8..16], &[0; 8]);
    assert_eq!(&c[16..24], &[2; 8]);
    // Another distance in the group than in the host: copied.
    assert!(super::borrowed(&host, 24, &[(0, 8, 8), (8, 24, 8)]).is_none());
    // A group that would run past the end of the host: copied.
    assert!(super::borrowed(&host, 80, &mine).is_none());
}
