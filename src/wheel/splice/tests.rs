use super::*;
use crate::wheel::zip::Limits;
use std::fs::File;

/// Bytes shaped like a library: text-like runs, tables and noise, so deflate picks dynamic
/// Huffman blocks of varied sizes.
pub(crate) fn library_like(n: usize, seed: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(n);
    let mut x = seed;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    while v.len() < n {
        let r = next();
        match r % 4 {
            0 => v.extend_from_slice(format!("symbol_{}_{} ", r % 977, r % 13).as_bytes()),
            1 => v.extend_from_slice(&(r % 5000).to_le_bytes()),
            2 => v.push((r >> 8) as u8),
            _ => v.extend_from_slice(&[0, 0, 0, (r >> 24) as u8 & 7]),
        }
    }
    v.truncate(n);
    v
}

/// A zip holding `data` as `lib.so`, deflated by `how`, opened as an archive.
pub(crate) fn archive_of(dir: &Path, data: &[u8], ours: bool) -> ZipArchive {
    let path = dir.join(if ours { "ours.zip" } else { "zip.zip" });
    if ours {
        // Our own writer's stream: 1 MiB chunks, sync flushes (empty stored blocks).
        let c = deflate::compress(data, deflate::DEFAULT_LEVEL);
        let mut w = crate::wheel::writer::WheelWriter::create(
            &path,
            crate::wheel::writer::ZipTime::from_unix(315_532_800),
        )
        .unwrap();
        w.add_compressed("lib.so", &c, 0o100755).unwrap();
        let pending = w.finish().unwrap();
        crate::wheel::writer::commit(vec![pending]).unwrap();
    } else {
        let f = File::create(&path).unwrap();
        let mut z = zip::ZipWriter::new(f);
        let o = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        z.start_file("lib.so", o).unwrap();
        z.write_all(data).unwrap();
        z.finish().unwrap();
    }
    ZipArchive::open(&path, &Limits::default()).unwrap()
}

/// The archive and the block marks of its one member.
fn zipped(dir: &Path, data: &[u8], ours: bool) -> (ZipArchive, Vec<BlockMark>) {
    let archive = archive_of(dir, data, ours);
    let (read, marks) = archive.read_marked(&archive.members()[0]).unwrap();
    assert_eq!(read, data);
    (archive, marks)
}

fn original<'a>(
    archive: &'a ZipArchive,
    data: &'a [u8],
    marks: &'a [BlockMark],
) -> Original<'a, 'a> {
    Original {
        archive,
        member: &archive.members()[0],
        data: Bytes::Whole(data),
        marks,
    }
}

fn inflate_all(c: &Compressed) -> Vec<u8> {
    let mut raw = Vec::new();
    c.write_to(&mut raw).unwrap();
    if !c.deflated {
        return raw;
    }
    let mut d = flate2::Decompress::new(false);
    let mut out = Vec::with_capacity(c.size as usize + 1);
    d.decompress_vec(&raw, &mut out, flate2::FlushDecompress::Finish)
        .unwrap();
    out
}

/// The edits a rewrite makes: in-place bytes near the start, an insertion, a cut, a tail.
fn variants(data: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut v = Vec::new();
    v.push(("same", data.to_vec()));
    let mut edited = data.to_vec();
    edited[0x40..0x48].copy_from_slice(b"PATCHED!");
    edited[70_000] ^= 0xff;
    let mut inserted = edited.clone();
    inserted.splice(2_000_000..2_000_000, vec![0x5a; 5000]);
    v.push(("in place + insert", inserted));
    let mut cut = data.to_vec();
    cut.drain(1_000_000..2_048_000);
    v.push(("cut", cut));
    let mut appended = data.to_vec();
    appended.extend_from_slice(&library_like(70_000, 9));
    v.push(("appended", appended));
    v.push(("truncated", data[..data.len() - 300_000].to_vec()));
    v
}

#[test]
fn spliced_streams_inflate_to_the_output_and_reuse_blocks() {
    let dir = tempfile::tempdir().unwrap();
    // With an incompressible stretch in the middle, which deflate stores: stored blocks inside
    // a reused run must keep their padding.
    let mut data = library_like(1_500_000, 7);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    data.extend((0..400_000).map(|_| {
        x ^= x << 7;
        x ^= x >> 9;
        x as u8
    }));
    data.extend(library_like(1_600_000, 8));
    for ours in [false, true] {
        let (archive, marks) = zipped(dir.path(), &data, ours);
        assert!(marks.len() > 10, "{} marks", marks.len());
        let orig = original(&archive, &data, &marks);
        for (what, out) in variants(&data) {
            let (c, stats) = compress_reusing(&out, &orig, &[], 6, None).unwrap();
            assert_eq!(inflate_all(&c), out, "{what} (ours: {ours})");
            assert_eq!(c.crc32, crc32fast::hash(&out));
            assert_eq!(stats.reused + stats.fresh, out.len() as u64, "{what}");
            assert!(
                stats.reused > out.len() as u64 / 2,
                "{what} (ours: {ours}): only {stats:?} reused"
            );
            // Deterministic whatever the thread pool, and the same spilled or not.
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .unwrap();
            let (again, _) = pool
                .install(|| compress_reusing(&out, &orig, &[], 6, None))
                .unwrap();
            assert_eq!(again, c, "{what}");
        }
    }
}

#[test]
fn spilled_splices_are_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let data = library_like(deflate::SPILL_OVER + 3_000_000, 3);
    let (archive, marks) = zipped(dir.path(), &data, false);
    let orig = original(&archive, &data, &marks);
    let mut out = data.clone();
    out[100] = b'!';
    out.splice(9_000_000..9_000_000, vec![1; 4096]);
    let (memory, _) = compress_reusing(&out, &orig, &[], 6, None).unwrap();
    let (spilled, stats) = compress_reusing(&out, &orig, &[], 6, Some(dir.path())).unwrap();
    assert!(matches!(spilled.data, Stored::File(..)));
    assert!(stats.runs >= 2, "{stats:?}");
    let mut a = Vec::new();
    spilled.write_to(&mut a).unwrap();
    assert_eq!(a, memory.in_memory().unwrap());
    assert_eq!(inflate_all(&spilled), out);
}

#[test]
fn nothing_in_common_is_deflated_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let data = library_like(1_500_000, 11);
    let (archive, marks) = zipped(dir.path(), &data, false);
    let orig = original(&archive, &data, &marks);
    let other = library_like(1_500_000, 12);
    let (c, stats) = compress_reusing(&other, &orig, &[], 6, None).unwrap();
    assert_eq!(stats.runs, 0);
    assert_eq!(c, deflate::compress(&other, 6));
    // Lying marks (offsets that are no block boundary) cost reuse, never correctness.
    let lies: Vec<BlockMark> = (1..40)
        .map(|i| BlockMark {
            input: i * 7919,
            output: i * 33_331,
        })
        .collect();
    let orig = Original {
        marks: &lies,
        ..orig
    };
    let mut out = data.clone();
    out[5] = 0;
    let (c, _) = compress_reusing(&out, &orig, &[], 6, None).unwrap();
    assert_eq!(inflate_all(&c), out);
}

#[test]
fn exact_bits_resolve_for_huffman_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let data = library_like(2_000_000, 5);
    let (archive, marks) = zipped(dir.path(), &data, false);
    let orig = original(&archive, &data, &marks);
    let resolved = marks
        .iter()
        .filter(|m| {
            resolve(
                &orig,
                &Boundary {
                    at: m.output as usize,
                    byte: m.input,
                },
                false,
            )
            .is_some()
        })
        .count();
    assert!(
        resolved * 10 >= marks.len() * 9,
        "{resolved} of {} marks resolved",
        marks.len()
    );
}

#[test]
fn an_input_read_back_out_of_its_edited_buffer_plans_the_same_splice_as_one_held_whole() {
    let dir = tempfile::tempdir().unwrap();
    let data = library_like(3_000_000, 13);
    let (archive, marks) = zipped(dir.path(), &data, false);
    let whole = original(&archive, &data, &marks);
    // Writes near the start, over the insertion and just after it, and at the end (in the
    // new file's offsets), as the ELF patcher makes them.
    let cases: Vec<Case> = vec![
        (data.len(), 0, vec![]),
        (data.len(), 0, vec![(0x40, b"PATCHED!"), (70_000, b"\xff")]),
        (
            2_000_000,
            8192,
            vec![
                (0x40, b"PATCHED!"),
                (1_999_990, b"across the seam"),
                (2_004_000, b"inserted"),
                (2_008_190, b"after"),
            ],
        ),
        (
            data.len(),
            4096,
            vec![(data.len() + 10, b"tail"), (0x200, b"h")],
        ),
    ];
    for (at, inserted, writes) in cases {
        let mut out = data.clone();
        let changes = Changes::apply(&mut out, at, inserted, &writes).unwrap();
        let edited = Original {
            data: Bytes::Edited {
                out: &out,
                changes: &changes,
            },
            ..original(&archive, &data, &marks)
        };
        let shifts = [inserted as i64];
        let a = Splice::prepare(&out, &whole, &shifts);
        let b = Splice::prepare(&out, &edited, &shifts);
        assert_eq!(a.pieces, b.pieces, "at {at} +{inserted}");
        assert_eq!(a.stats, b.stats);
        assert!(b.stats.reused > out.len() as u64 / 2, "{:?}", b.stats);
        let (ca, _) = a.compress(&out, 6, None).unwrap();
        let (cb, _) = b.compress(&out, 6, None).unwrap();
        assert_eq!(ca, cb);
        assert_eq!(inflate_all(&cb), out);
    }
}

/// Where bytes are inserted, how many, and the writes after.
type Case<'a> = (usize, usize, Vec<(usize, &'a [u8])>);

/// A plan whose runs do not meet the rest of the stream where it says (a run that starts or
/// ends a few bits off, or decodes to more than it claims) fails the seam checks, and the
/// member is deflated afresh: still the output's bytes.
#[test]
fn a_run_that_does_not_meet_the_rest_of_the_stream_is_deflated_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let data = library_like(3_000_000, 21);
    let (archive, marks) = zipped(dir.path(), &data, false);
    let orig = original(&archive, &data, &marks);
    let mut out = data.clone();
    out.splice(1_500_000..1_500_000, vec![7; 3000]);
    let plan = Splice::prepare(&out, &orig, &[]);
    let runs: Vec<usize> = (0..plan.pieces.len())
        .filter(|&i| matches!(plan.pieces[i], Piece::Reuse(_)))
        .collect();
    assert!(runs.len() >= 2, "{:?}", plan.pieces);
    assert!(
        plan.pieces
            .iter()
            .all(|p| !matches!(p, Piece::Reuse(r) if r.tail.is_none())),
        "every run has a block near its end to check from: {:?}",
        plan.pieces
    );
    let (good, stats) = plan.compress(&out, 6, None).unwrap();
    assert_eq!(inflate_all(&good), out);
    assert!(stats.runs >= 2, "{stats:?}");
    type Tamper = fn(&mut Run);
    let tampers: [(&str, Tamper); 5] = [
        ("starts 2 bits late", |r| r.bit_start += 2),
        ("ends 2 bits late", |r| r.bit_end = r.bit_end.map(|e| e + 2)),
        ("ends 2 bits early", |r| {
            r.bit_end = r.bit_end.map(|e| e - 2)
        }),
        ("claims a byte less", |r| r.len -= 1),
        ("checked from a wrong bit", |r| {
            r.tail = r.tail.map(|(into, bit)| (into, bit + 2));
        }),
    ];
    for (what, tamper) in tampers {
        for &i in &runs {
            let mut bad = Splice {
                source: plan.source,
                pieces: plan.pieces.clone(),
                len: plan.len,
                stats: plan.stats,
            };
            let Piece::Reuse(run) = &mut bad.pieces[i] else {
                unreachable!()
            };
            if what.starts_with("ends") && run.bit_end.is_none() {
                continue;
            }
            tamper(run);
            let (c, stats) = bad.compress(&out, 6, None).unwrap();
            assert_eq!(stats.runs, 0, "{what} (run {i}): {stats:?}");
            assert_eq!(inflate_all(&c), out, "{what} (run {i})");
        }
    }
}
