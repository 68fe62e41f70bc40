//! Deterministic, parallel deflate of whole in-memory members.
//!
//! Large members are cut into fixed 1 MiB chunks; each chunk is deflated on its own core with the
//! previous 32 KiB as its dictionary and ends on a sync flush, so the concatenation is one valid
//! deflate stream. The chunk size is a constant, not a function of the thread count, so the bytes
//! are the same on every machine.

use flate2::{Compress, Compression, FlushCompress, Status};
use rayon::prelude::*;

pub const CHUNK: usize = 1 << 20;
const WINDOW: usize = 32 * 1024;
pub const DEFAULT_LEVEL: u32 = 6;

/// A member's bytes, compressed and ready to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compressed {
    pub deflated: bool,
    pub crc32: u32,
    pub size: u64,
    pub data: Vec<u8>,
}

fn deflate_piece(dict: &[u8], piece: &[u8], last: bool, level: u32) -> Vec<u8> {
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

/// Deflates `data` (raw deflate, as zip members hold it). Stores it instead when deflate would
/// not make it smaller, as zip writers do.
pub fn compress(data: &[u8], level: u32) -> Compressed {
    let crc32 = crc(data);
    let deflated = if data.len() <= CHUNK {
        deflate_piece(&[], data, true, level)
    } else {
        let pieces: Vec<Vec<u8>> = data
            .par_chunks(CHUNK)
            .enumerate()
            .map(|(i, piece)| {
                let start = i * CHUNK;
                let dict = &data[start.saturating_sub(WINDOW)..start];
                let last = start + piece.len() == data.len();
                deflate_piece(dict, piece, last, level)
            })
            .collect();
        let mut out = Vec::with_capacity(pieces.iter().map(Vec::len).sum());
        for p in pieces {
            out.extend_from_slice(&p);
        }
        out
    };
    if deflated.len() >= data.len() && !data.is_empty() {
        Compressed {
            deflated: false,
            crc32,
            size: data.len() as u64,
            data: data.to_vec(),
        }
    } else {
        Compressed {
            deflated: true,
            crc32,
            size: data.len() as u64,
            data: deflated,
        }
    }
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
        assert!(c.data.len() < data.len() / 2);
        assert_eq!(inflate(&c.data, data.len()), data);
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
            assert_eq!(c.data, data);
        }
    }

    #[test]
    fn empty_input() {
        let c = compress(&[], DEFAULT_LEVEL);
        assert!(c.deflated);
        assert_eq!(inflate(&c.data, 0), Vec::<u8>::new());
    }
}
