//! Deterministic, parallel deflate of whole in-memory members.
//!
//! Large members are cut into fixed 1 MiB chunks; each chunk is deflated on its own core with the
//! previous 32 KiB as its dictionary and ends on a sync flush, so the concatenation is one valid
//! deflate stream. The chunk size is a constant, not a function of the thread count, so the bytes
//! are the same on every machine.
//!
//! Large outputs can be *spilled* ([`compress_spilled`]): chunks are compressed a batch at a
//! time and written, in order, to an unnamed temporary file, so a rewritten 1 GiB library does
//! not also hold its ~0.5 GiB of compressed bytes in memory until the wheel is written. The
//! bytes are the same as [`compress`] gives.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

use flate2::{Compress, Compression, FlushCompress, Status};
use rayon::prelude::*;

pub const CHUNK: usize = 1 << 20;
const WINDOW: usize = 32 * 1024;
pub const DEFAULT_LEVEL: u32 = 6;
/// Members at least this large are compressed to a spill file when a folder for one is given.
pub const SPILL_OVER: usize = 16 << 20;
/// Chunks compressed (and held) at once while spilling.
const SPILL_BATCH: usize = 16;

/// Where compressed bytes are kept until they are written.
#[derive(Debug, Clone)]
pub enum Stored {
    Memory(Vec<u8>),
    /// The first `len` bytes of an unnamed temporary file (deleted when the last handle closes).
    File(Arc<File>, u64),
}

impl PartialEq for Stored {
    fn eq(&self, other: &Stored) -> bool {
        match (self, other) {
            (Stored::Memory(a), Stored::Memory(b)) => a == b,
            (Stored::File(a, x), Stored::File(b, y)) => Arc::ptr_eq(a, b) && x == y,
            _ => false,
        }
    }
}

impl Eq for Stored {}

/// A member's bytes, compressed and ready to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compressed {
    pub deflated: bool,
    pub crc32: u32,
    pub size: u64,
    pub data: Stored,
}

impl Compressed {
    /// Length of the compressed (or stored) bytes.
    pub fn stored_len(&self) -> u64 {
        match &self.data {
            Stored::Memory(v) => v.len() as u64,
            Stored::File(_, len) => *len,
        }
    }

    /// The bytes, when they are in memory.
    pub fn in_memory(&self) -> Option<&[u8]> {
        match &self.data {
            Stored::Memory(v) => Some(v),
            Stored::File(..) => None,
        }
    }

    /// Writes the compressed bytes to `out`. Spilled bytes go file to file, which lets the
    /// kernel copy them (`copy_file_range`) when `out` is a file or a `BufWriter` over one.
    pub fn write_to<W: Write>(&self, out: &mut W) -> io::Result<u64> {
        match &self.data {
            Stored::Memory(v) => {
                out.write_all(v)?;
                Ok(v.len() as u64)
            }
            Stored::File(f, len) => {
                let mut f: &File = f;
                f.seek(SeekFrom::Start(0))?;
                let n = io::copy(&mut io::Read::take(f, *len), out)?;
                if n != *len {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "spill file shrank",
                    ));
                }
                Ok(n)
            }
        }
    }
}

pub(crate) fn deflate_piece(dict: &[u8], piece: &[u8], last: bool, level: u32) -> Vec<u8> {
    let mut c = Compress::new(Compression::new(level), false);
    if !dict.is_empty() {
        // PANIC SAFETY: setting a dictionary on a fresh raw stream cannot fail.
        c.set_dictionary(dict).expect("fresh deflate stream");
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(piece.len() / 2 + 64);
    loop {
        let consumed = c.total_in() as usize;
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(4096));
        }
        // PANIC SAFETY: compressing into a Vec with spare capacity only fails on a library bug.
        let status = c
            .compress_vec(&piece[consumed..], &mut out, flush)
            .expect("deflate");
        let done_input = c.total_in() as usize == piece.len();
        match status {
            Status::StreamEnd => break,
            // A sync flush is complete once all input is consumed and output space was left over.
            _ if !last && done_input && out.len() < out.capacity() => break,
            _ => {}
        }
    }
    out
}

/// Chunk `i` of `data`, deflated with the 32 KiB before it as its dictionary.
fn deflate_chunk(data: &[u8], i: usize, level: u32) -> Vec<u8> {
    let start = i * CHUNK;
    let end = (start + CHUNK).min(data.len());
    let dict = &data[start.saturating_sub(WINDOW)..start];
    deflate_piece(dict, &data[start..end], end == data.len(), level)
}

/// Deflates `data` (raw deflate, as zip members hold it). Stores it instead when deflate would
/// not make it smaller, as zip writers do.
pub fn compress(data: &[u8], level: u32) -> Compressed {
    let crc32 = crc(data);
    let deflated = if data.len() <= CHUNK {
        deflate_piece(&[], data, true, level)
    } else {
        let pieces: Vec<Vec<u8>> = (0..data.len().div_ceil(CHUNK))
            .into_par_iter()
            .map(|i| deflate_chunk(data, i, level))
            .collect();
        let mut out = Vec::with_capacity(pieces.iter().map(Vec::len).sum());
        for p in pieces {
            out.extend_from_slice(&p);
        }
        out
    };
    let (deflated, bytes) = if deflated.len() >= data.len() && !data.is_empty() {
        (false, data.to_vec())
    } else {
        (true, deflated)
    };
    Compressed {
        deflated,
        crc32,
        size: data.len() as u64,
        data: Stored::Memory(bytes),
    }
}

/// Told how many uncompressed bytes a large compression on this thread has done.
pub type ProgressSink = Arc<dyn Fn(u64) + Send + Sync>;

thread_local! {
    static SINK: std::cell::RefCell<Vec<ProgressSink>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with `sink` told, batch by batch, how many uncompressed bytes the large
/// compressions it runs on this thread have done ([`compress_spilled`], and the splice's own
/// spilled path). Nested calls (a worker that picks up another member's job while it waits)
/// each see their own sink.
pub fn with_progress<R>(sink: ProgressSink, f: impl FnOnce() -> R) -> R {
    struct Pop;
    impl Drop for Pop {
        fn drop(&mut self) {
            SINK.with(|s| s.borrow_mut().pop());
        }
    }
    SINK.with(|s| s.borrow_mut().push(sink));
    let _pop = Pop;
    f()
}

/// `n` more uncompressed bytes were compressed, for the innermost [`with_progress`] sink.
pub(crate) fn report(n: u64) {
    let sink = SINK.with(|s| s.borrow().last().cloned());
    if let Some(sink) = sink {
        sink(n);
    }
}

/// Like [`compress`], with the same bytes, but a member of at least [`SPILL_OVER`] bytes is
/// written to an unnamed temporary file in `dir` as it is compressed, 16 chunks at a time,
/// instead of being collected in memory.
pub fn compress_spilled(data: &[u8], level: u32, dir: &Path) -> io::Result<Compressed> {
    if data.len() < SPILL_OVER {
        return Ok(compress(data, level));
    }
    let crc32 = crc(data);
    let file = tempfile::tempfile_in(dir)?;
    let mut out = io::BufWriter::with_capacity(1 << 20, &file);
    let chunks = data.len().div_ceil(CHUNK);
    let mut len = 0u64;
    for first in (0..chunks).step_by(SPILL_BATCH) {
        let pieces: Vec<Vec<u8>> = (first..(first + SPILL_BATCH).min(chunks))
            .into_par_iter()
            .map(|i| deflate_chunk(data, i, level))
            .collect();
        for p in pieces {
            out.write_all(&p)?;
            len += p.len() as u64;
        }
        let end = ((first + SPILL_BATCH) * CHUNK).min(data.len());
        report((end - first * CHUNK) as u64);
    }
    out.flush()?;
    drop(out);
    let deflated = len < data.len() as u64;
    if !deflated {
        let mut f = &file;
        f.set_len(0)?;
        f.seek(SeekFrom::Start(0))?;
        f.write_all(data)?;
        len = data.len() as u64;
    }
    Ok(Compressed {
        deflated,
        crc32,
        size: data.len() as u64,
        data: Stored::File(Arc::new(file), len),
    })
}

/// CRC-32 of `data`, computed in parallel for large inputs.
pub fn crc(data: &[u8]) -> u32 {
    if data.len() <= 4 * CHUNK {
        return crc32fast::hash(data);
    }
    let parts: Vec<(crc32fast::Hasher, usize)> = data
        .par_chunks(4 * CHUNK)
        .map(|p| {
            let mut h = crc32fast::Hasher::new();
            h.update(p);
            (h, p.len())
        })
        .collect();
    let mut total = crc32fast::Hasher::new();
    for (h, _) in parts {
        total.combine(&h);
    }
    total.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    fn inflate(data: &[u8], size: usize) -> Vec<u8> {
        let mut d = Decompress::new(false);
        let mut out = Vec::with_capacity(size + 1);
        d.decompress_vec(data, &mut out, FlushDecompress::Finish)
            .unwrap();
        out
    }

    #[test]
    fn chunked_stream_is_one_valid_deflate_stream() {
        let mut data = Vec::new();
        let mut x: u32 = 1;
        while data.len() < 3 * CHUNK + 12345 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let word = format!("w{} ", x % 997);
            data.extend_from_slice(word.as_bytes());
        }
        let c = compress(&data, DEFAULT_LEVEL);
        assert!(c.deflated);
        let bytes = c.in_memory().unwrap();
        assert!(bytes.len() < data.len() / 2);
        assert_eq!(inflate(bytes, data.len()), data);
        assert_eq!(c.crc32, crc32fast::hash(&data));
        // Deterministic whatever the thread pool.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let again = pool.install(|| compress(&data, DEFAULT_LEVEL));
        assert_eq!(again, c);
    }

    #[test]
    fn incompressible_data_is_stored() {
        let data: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let c = compress(&data, DEFAULT_LEVEL);
        assert_eq!(c.size, 5000);
        if !c.deflated {
            assert_eq!(c.in_memory().unwrap(), data);
        }
    }

    #[test]
    fn empty_input() {
        let c = compress(&[], DEFAULT_LEVEL);
        assert!(c.deflated);
        assert_eq!(inflate(c.in_memory().unwrap(), 0), Vec::<u8>::new());
    }

    #[test]
    fn spilled_bytes_are_the_same_bytes() {
        let mut data = Vec::with_capacity(SPILL_OVER + 3 * CHUNK);
        let mut x: u32 = 7;
        while data.len() < SPILL_OVER + 3 * CHUNK + 99 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            data.push(b"abcdefgh"[(x >> 29) as usize]);
        }
        let dir = tempfile::tempdir().unwrap();
        let spilled = compress_spilled(&data, DEFAULT_LEVEL, dir.path()).unwrap();
        assert!(matches!(spilled.data, Stored::File(..)));
        let mut out = Vec::new();
        assert_eq!(spilled.write_to(&mut out).unwrap(), spilled.stored_len());
        let memory = compress(&data, DEFAULT_LEVEL);
        assert_eq!(out, memory.in_memory().unwrap());
        assert_eq!((spilled.crc32, spilled.size), (memory.crc32, memory.size));
        // A second write gives the same bytes again.
        let mut again = Vec::new();
        spilled.write_to(&mut again).unwrap();
        assert_eq!(again, out);
    }

    #[test]
    fn spilled_compression_reports_its_bytes_batch_by_batch() {
        let data: Vec<u8> = (0..(SPILL_OVER + 3 * CHUNK + 5))
            .map(|i| (i % 251) as u8)
            .collect();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink: ProgressSink = {
            let seen = seen.clone();
            Arc::new(move |n| seen.lock().unwrap().push(n))
        };
        let dir = tempfile::tempdir().unwrap();
        with_progress(sink, || compress_spilled(&data, 1, dir.path())).unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen, [(SPILL_BATCH * CHUNK) as u64, (3 * CHUNK + 5) as u64]);
        // Outside with_progress nothing is told, and nothing fails.
        report(7);
        assert_eq!(
            compress_spilled(&data[..10], 1, dir.path()).unwrap().size,
            10
        );
    }
}
