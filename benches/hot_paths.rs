//! Micro benchmarks of wheelslim's hot paths, on inputs this file generates (plus the small
//! committed fixtures as seeds). Run with `cargo bench --bench hot_paths`; a filter narrows
//! it (`cargo bench --bench hot_paths -- deflate`). Throughput is shown per second of input.
//!
//! These measure; they assert nothing about speed. Targets and results are in the README's
//! "Benchmarks" section and come from `benches/e2e.py`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use divan::counter::{BytesCount, ItemsCount};
use divan::{Bencher, black_box};
use flate2::{Compress, Compression, FlushCompress};
use wheelslim::fatbin::cuda;
use wheelslim::wheel::record::HashState;
use wheelslim::wheel::zip::{Limits, ZipArchive};
use wheelslim::wheel::{deflate, splice};

fn main() {
    divan::main();
}

const MIB: usize = 1 << 20;

/// Bytes that deflate about as machine code does (45-50 %): a 16-symbol alphabet with short
/// copies from the last few KiB (the same recipe as `benches/e2e.py`).
fn code_like(len: usize, seed: u64) -> Vec<u8> {
    const ALPHABET: [u8; 16] = [
        0x00, 0x48, 0x89, 0x8B, 0x0F, 0xE8, 0xFF, 0x83, 0x45, 0xC7, 0x24, 0x85, 0x74, 0x01, 0x41,
        0xC3,
    ];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut v: Vec<u8> = Vec::with_capacity(len);
    while v.len() < len {
        let r = next();
        for k in 0..16 {
            v.push(ALPHABET[((r >> (4 * k)) & 15) as usize]);
        }
    }
    v.truncate(len);
    let mut i = 32 * 1024;
    while i + 128 < len {
        let r = next();
        let l = 8 + (r % 120) as usize;
        let back = l + 1 + ((r >> 8) % 16000) as usize;
        v.copy_within(i - back..i - back + l, i);
        i += 512;
    }
    v
}

fn raw_deflate(data: &[u8], level: u32) -> Vec<u8> {
    let mut c = Compress::new(Compression::new(level), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    loop {
        let done = c.total_in() as usize;
        if out.capacity() - out.len() < 4096 {
            out.reserve(out.capacity());
        }
        let status = c
            .compress_vec(&data[done..], &mut out, FlushCompress::Finish)
            .unwrap();
        if status == flate2::Status::StreamEnd {
            return out;
        }
    }
}

/// A zip holding `members` of (name, bytes), deflated at level 6 like most wheels.
fn write_zip(path: &Path, members: &[(String, Vec<u8>)]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut central = Vec::new();
    let mut offset = 0u64;
    for (name, data) in members {
        let comp = raw_deflate(data, 6);
        let crc = crc32fast::hash(data);
        let mut h = Vec::new();
        h.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        h.extend_from_slice(&[20, 0, 0, 0, 8, 0, 0, 0, 0x21, 0]);
        h.extend_from_slice(&crc.to_le_bytes());
        h.extend_from_slice(&(comp.len() as u32).to_le_bytes());
        h.extend_from_slice(&(data.len() as u32).to_le_bytes());
        h.extend_from_slice(&(name.len() as u16).to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes());
        h.extend_from_slice(name.as_bytes());
        f.write_all(&h).unwrap();
        f.write_all(&comp).unwrap();
        let mut c = Vec::new();
        c.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        c.extend_from_slice(&[20, 3, 20, 0, 0, 0, 8, 0, 0, 0, 0x21, 0]);
        c.extend_from_slice(&crc.to_le_bytes());
        c.extend_from_slice(&(comp.len() as u32).to_le_bytes());
        c.extend_from_slice(&(data.len() as u32).to_le_bytes());
        c.extend_from_slice(&(name.len() as u16).to_le_bytes());
        c.extend_from_slice(&[0; 8]);
        c.extend_from_slice(&(0o100644u32 << 16).to_le_bytes());
        c.extend_from_slice(&(offset as u32).to_le_bytes());
        c.extend_from_slice(name.as_bytes());
        central.push(c);
        offset += (h.len() + comp.len()) as u64;
    }
    let cd: Vec<u8> = central.concat();
    f.write_all(&cd).unwrap();
    let mut e = Vec::new();
    e.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    e.extend_from_slice(&[0; 4]);
    let n = members.len() as u16;
    e.extend_from_slice(&n.to_le_bytes());
    e.extend_from_slice(&n.to_le_bytes());
    e.extend_from_slice(&(cd.len() as u32).to_le_bytes());
    e.extend_from_slice(&(offset as u32).to_le_bytes());
    e.extend_from_slice(&0u16.to_le_bytes());
    f.write_all(&e).unwrap();
    f.flush().unwrap();
}

fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

fn fixture(rel: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// --- zip -------------------------------------------------------------------------------------

const INDEX_MEMBERS: usize = 20_000;

fn index_zip() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let p = scratch().join("index.zip");
        let members: Vec<(String, Vec<u8>)> = (0..INDEX_MEMBERS)
            .map(|i| {
                (
                    format!("pkg/sub{:03}/module_{i:05}.py", i / 100),
                    format!("x = {i}\n").into_bytes(),
                )
            })
            .collect();
        write_zip(&p, &members);
        p
    })
}

/// Central directory parse, name checks, local-header checks and overlap check of an archive
/// with 20 000 members.
#[divan::bench(sample_count = 30)]
fn zip_index(b: Bencher) {
    let path = index_zip();
    b.counter(ItemsCount::new(INDEX_MEMBERS))
        .bench(|| ZipArchive::open(black_box(path), &Limits::default()).unwrap());
}

const STREAM_LEN: usize = 64 * MIB;

fn stream_zip() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let p = scratch().join("stream.zip");
        write_zip(&p, &[("lib/libbig.so".into(), code_like(STREAM_LEN, 1))]);
        p
    })
}

/// Streamed inflate of one 64 MiB member with its CRC-32 and size checks (zlib-rs), the
/// output dropped chunk by chunk.
#[divan::bench(sample_count = 10)]
fn inflate_stream(b: Bencher) {
    let zip = ZipArchive::open(stream_zip(), &Limits::default()).unwrap();
    let m = &zip.members()[0];
    b.counter(BytesCount::new(STREAM_LEN)).bench(|| {
        zip.stream(m, |chunk| {
            black_box(chunk);
            Ok(())
        })
        .unwrap()
    });
}

/// Inflate plus the RECORD hash, as the inspect pass does it for every member.
#[divan::bench(sample_count = 10)]
fn inflate_and_hash(b: Bencher) {
    let zip = ZipArchive::open(stream_zip(), &Limits::default()).unwrap();
    let m = &zip.members()[0];
    b.counter(BytesCount::new(STREAM_LEN)).bench(|| {
        let mut h = HashState::default();
        zip.stream(m, |chunk| {
            h.update(chunk);
            Ok(())
        })
        .unwrap();
        h.digest()
    });
}

// --- hashing ---------------------------------------------------------------------------------

fn big_buffer() -> &'static [u8] {
    static B: OnceLock<Vec<u8>> = OnceLock::new();
    B.get_or_init(|| code_like(64 * MIB, 2))
}

/// SHA-256 of a 64 MiB buffer, the RECORD hash (SHA-NI where the CPU has it).
#[divan::bench(sample_count = 10)]
fn record_sha256(b: Bencher) {
    let data = big_buffer();
    b.counter(BytesCount::new(data.len())).bench(|| {
        let mut h = HashState::default();
        h.update(black_box(data));
        h.digest()
    });
}

/// CRC-32 of a 64 MiB buffer (zip's checksum; computed in parallel above 4 MiB).
#[divan::bench(sample_count = 10)]
fn crc32(b: Bencher) {
    let data = big_buffer();
    b.counter(BytesCount::new(data.len()))
        .bench(|| deflate::crc(black_box(data)));
}

// --- deflate ---------------------------------------------------------------------------------

/// wheelslim's deterministic deflate of a 64 MiB member: 1 MiB chunks over every core, at
/// zlib level 1, 4 and 6 (6 is what wheelslim writes).
#[divan::bench(args = [1, 4, 6], sample_count = 5)]
fn deflate_parallel(b: Bencher, level: u32) {
    let data = big_buffer();
    b.counter(BytesCount::new(data.len()))
        .bench(|| deflate::compress(black_box(data), level));
}

/// The same, spilled to a temporary file as `split` does for large rewritten members.
#[divan::bench(sample_count = 5)]
fn deflate_spilled(b: Bencher) {
    let data = big_buffer();
    b.counter(BytesCount::new(data.len())).bench(|| {
        deflate::compress_spilled(black_box(data), deflate::DEFAULT_LEVEL, scratch()).unwrap()
    });
}

/// Writing a rewritten 64 MiB member that kept most of its bytes (a few bytes changed near the
/// start, 4 KiB inserted in the middle, as an RPATH rewire does): the input's deflate blocks are
/// reused around the changes (`wheel::splice`), the rest deflated, and each reused run decoded
/// where it meets the rest. Compare with `deflate_parallel(6)`, the cost without reuse.
#[divan::bench(sample_count = 5)]
fn deflate_reusing_input_blocks(b: Bencher) {
    let zip = ZipArchive::open(stream_zip(), &Limits::default()).unwrap();
    let m = &zip.members()[0];
    let (data, marks) = zip.read_marked(m).unwrap();
    let mut out = data.clone();
    out[0x100..0x110].copy_from_slice(b"$ORIGIN/../lib\0\0");
    out.splice(STREAM_LEN / 2..STREAM_LEN / 2, vec![0u8; 4096]);
    let orig = splice::Original {
        archive: &zip,
        member: m,
        data: splice::Bytes::Whole(&data),
        marks: &marks,
    };
    b.counter(BytesCount::new(out.len())).bench(|| {
        splice::compress_reusing(black_box(&out), &orig, &[], deflate::DEFAULT_LEVEL, None).unwrap()
    });
}

// --- ELF -------------------------------------------------------------------------------------

const ELF_FIXTURES: &[&str] = &[
    "cuda/libfix_default.so",
    "cuda/libfix_rdc.so",
    "hip/libhipfix.so",
    "aarch64/libfix_a64.so",
];

/// goblin-based inspection of a host shared object: headers, dynamic section, versions,
/// sections.
#[divan::bench(args = ELF_FIXTURES)]
fn elf_inspect(b: Bencher, name: &str) {
    let data = fixture(name);
    b.counter(BytesCount::new(data.len()))
        .bench(|| wheelslim::elf::inspect(black_box(&data)).unwrap());
}

/// Inspection plus the device-code scan the inspect pass runs on every ELF object.
#[divan::bench(args = ELF_FIXTURES)]
fn elf_inspect_and_scan(b: Bencher, name: &str) {
    let data = fixture(name);
    b.counter(BytesCount::new(data.len())).bench(|| {
        let info = match wheelslim::elf::inspect(black_box(&data)).unwrap() {
            wheelslim::elf::Inspected::Host(i) => i,
            other => panic!("{other:?}"),
        };
        wheelslim::device::scan_elf(&data, &info).unwrap()
    });
}

/// An RPATH rewrite (`elf::patch`), as `split` does it on every consumer of a moved library,
/// including the patcher's own re-parse and layout check of its output.
#[divan::bench(args = ["cuda/libfix_default.so", "aarch64/libfix_a64.so"])]
fn elf_patch_rpath(b: Bencher, name: &str) {
    let data = fixture(name);
    let edits = wheelslim::elf::DynamicEdits {
        soname: None,
        replace_needed: Vec::new(),
        search_path: Some(vec![
            "$ORIGIN".into(),
            "$ORIGIN/../../benchpkg_runtime_cuda12/lib".into(),
        ]),
        path_kind: Default::default(),
    };
    b.counter(BytesCount::new(data.len()))
        .bench(|| wheelslim::elf::patch(black_box(&data), &edits).unwrap());
}

/// `elf::shrink` through the trim pipeline: choose the entries sm_90 needs, rebuild each
/// container, cut the freed pages out of the file, and check the result.
#[divan::bench(args = ["cuda/libfix_default.so", "cuda/libfix_plain.so", "aarch64/libfix_a64.so"])]
fn elf_shrink_trim(b: Bencher, name: &str) {
    let data = fixture(name);
    let info = match wheelslim::elf::inspect(&data).unwrap() {
        wheelslim::elf::Inspected::Host(i) => i,
        other => panic!("{other:?}"),
    };
    let device = wheelslim::device::scan_elf(&data, &info).unwrap();
    let settings = wheelslim::trim::TrimSettings {
        cuda: Some(wheelslim::fatbin::select::Selection::parse_targets("90").unwrap()),
        gfx: None,
        allow_cut: true,
        allow_no_device_code: false,
    };
    b.counter(BytesCount::new(data.len())).bench(|| {
        wheelslim::trim::trim_member(name, black_box(&data), 0, Some(&info), &device, &settings)
            .unwrap()
    });
}

// --- fatbin ----------------------------------------------------------------------------------

const TUS: usize = 2048;

/// A `.nv_fatbin` section of 2048 containers (one per translation unit), each holding SASS
/// for five architectures and one PTX entry: ~64 MiB, the shape of a large CUDA library.
fn fatbin_section() -> &'static [u8] {
    static S: OnceLock<Vec<u8>> = OnceLock::new();
    S.get_or_init(|| {
        let payload = code_like(5 * 1024, 3);
        let entry = |kind: u16, arch: u32| {
            let mut e = Vec::with_capacity(64 + payload.len());
            e.extend_from_slice(&kind.to_le_bytes());
            e.extend_from_slice(&0x0101u16.to_le_bytes());
            e.extend_from_slice(&64u32.to_le_bytes());
            e.extend_from_slice(&(payload.len() as u64).to_le_bytes());
            e.extend_from_slice(&[0; 8]);
            e.extend_from_slice(&7u16.to_le_bytes());
            e.extend_from_slice(&1u16.to_le_bytes());
            e.extend_from_slice(&arch.to_le_bytes());
            e.extend_from_slice(&[0; 8]);
            e.extend_from_slice(&0x11u64.to_le_bytes());
            e.extend_from_slice(&[0; 16]);
            e.extend_from_slice(&payload);
            e
        };
        let mut section = Vec::new();
        for _ in 0..TUS {
            let mut body = Vec::new();
            for arch in [70, 75, 80, 86, 90] {
                body.extend(entry(2, arch));
            }
            body.extend(entry(1, 90));
            section.extend_from_slice(&0xBA55_ED50u32.to_le_bytes());
            section.extend_from_slice(&1u16.to_le_bytes());
            section.extend_from_slice(&16u16.to_le_bytes());
            section.extend_from_slice(&(body.len() as u64).to_le_bytes());
            section.extend(body);
        }
        section
    })
}

/// Parsing every container and entry header of the section.
#[divan::bench]
fn fatbin_parse(b: Bencher) {
    let s = fatbin_section();
    b.counter(ItemsCount::new(TUS))
        .bench(|| cuda::parse_section(black_box(s)).unwrap());
}

/// Choosing the entries sm_90 needs and rebuilding every container with them.
#[divan::bench]
fn fatbin_select_and_rebuild(b: Bencher) {
    let s = fatbin_section();
    let containers = cuda::parse_section(s).unwrap();
    let sel = wheelslim::fatbin::select::Selection::parse_targets("90").unwrap();
    b.counter(ItemsCount::new(TUS)).bench(|| {
        containers
            .iter()
            .map(|c| {
                let keep = sel.choose_container(c).keep_flags();
                cuda::rebuild_container(s, c, &keep).unwrap()
            })
            .collect::<Vec<_>>()
    });
}
