//! The two symbol hash tables of a companion: System V `.hash` and GNU `.gnu.hash`.

use super::{CompanionError, add, len64, u32_of};

/// The System V ELF hash (`.hash`).
pub(crate) fn sysv_hash(name: &[u8]) -> u32 {
    let mut h: u32 = 0;
    for &c in name {
        h = (h << 4).wrapping_add(u32::from(c));
        let g = h & 0xf000_0000;
        if g != 0 {
            h ^= g >> 24;
        }
        h &= !g;
    }
    h
}

/// The GNU hash (`.gnu.hash`): Bernstein's `h * 33 + c` from 5381.
pub(crate) fn gnu_hash(name: &[u8]) -> u32 {
    name.iter().fold(5381u32, |h, &c| {
        h.wrapping_mul(33).wrapping_add(u32::from(c))
    })
}

/// `h` modulo `n` (a bucket or bloom word count, never 0 here; 0 gives 0).
pub(super) fn rem(h: u32, n: u64) -> u64 {
    u64::from(h).checked_rem(n).unwrap_or(0)
}

/// Bucket count for `n` symbols: about two symbols a bucket, odd, at least 1.
pub(super) fn bucket_count(n: u64) -> u64 {
    (n / 2) | 1
}

/// `.hash` for `.dynsym` entries `names` (index 0 = the null symbol, not listed).
pub(super) fn sysv_table(names: &[&str], nbucket: u64) -> Result<Vec<u8>, CompanionError> {
    let nchain = add(len64(names.len())?, 1)?;
    let nb = usize::try_from(nbucket).map_err(|_| CompanionError::TooLarge("bucket count"))?;
    let nc = usize::try_from(nchain).map_err(|_| CompanionError::TooLarge("chain count"))?;
    let mut buckets = vec![0u32; nb];
    let mut chains = vec![0u32; nc];
    // Chains are built by pushing each symbol in front of its bucket's list.
    for (i, name) in names.iter().enumerate() {
        let index = u32_of(add(len64(i)?, 1)?, "symbol index")?;
        let b = rem(sysv_hash(name.as_bytes()), nbucket);
        let b = usize::try_from(b).map_err(|_| CompanionError::TooLarge("bucket"))?;
        let head = buckets
            .get_mut(b)
            .ok_or(CompanionError::TooLarge("bucket"))?;
        let prev = std::mem::replace(head, index);
        let slot = chains
            .get_mut(usize::try_from(index).map_err(|_| CompanionError::TooLarge("index"))?)
            .ok_or(CompanionError::TooLarge("chain"))?;
        *slot = prev;
    }
    let mut out = Vec::new();
    out.extend_from_slice(&u32_of(nbucket, "bucket count")?.to_le_bytes());
    out.extend_from_slice(&u32_of(nchain, "chain count")?.to_le_bytes());
    for w in buckets.iter().chain(chains.iter()) {
        out.extend_from_slice(&w.to_le_bytes());
    }
    Ok(out)
}

/// `.gnu.hash` for `.dynsym` entries `names` (index 0 = the null symbol; all of `names` are
/// hashed, so `symoffset` is 1), which must already be sorted by `gnu_hash % nbucket`.
pub(super) fn gnu_table(names: &[&str], nbucket: u64) -> Result<Vec<u8>, CompanionError> {
    let n = len64(names.len())?;
    // About 8 bloom bits a symbol, in a power-of-two number of 64-bit words.
    let words = (n.div_ceil(8)).max(1).next_power_of_two();
    let shift = 6u32.saturating_add(words.trailing_zeros());
    let nw = usize::try_from(words).map_err(|_| CompanionError::TooLarge("bloom size"))?;
    let nb = usize::try_from(nbucket).map_err(|_| CompanionError::TooLarge("bucket count"))?;
    let mut bloom = vec![0u64; nw];
    let mut buckets = vec![0u32; nb];
    let mut chains = Vec::with_capacity(names.len());
    let hashes: Vec<u32> = names.iter().map(|s| gnu_hash(s.as_bytes())).collect();
    for (i, &h) in hashes.iter().enumerate() {
        let word = rem(h / 64, words);
        let word = bloom
            .get_mut(usize::try_from(word).map_err(|_| CompanionError::TooLarge("bloom"))?)
            .ok_or(CompanionError::TooLarge("bloom"))?;
        *word |= (1u64 << (h % 64)) | (1u64 << ((h >> shift) % 64));
        let b = rem(h, nbucket);
        let head = buckets
            .get_mut(usize::try_from(b).map_err(|_| CompanionError::TooLarge("bucket"))?)
            .ok_or(CompanionError::TooLarge("bucket"))?;
        if *head == 0 {
            *head = u32_of(add(len64(i)?, 1)?, "symbol index")?;
        }
        // The low bit marks the last symbol of a bucket's run.
        let last = hashes
            .get(i.saturating_add(1))
            .is_none_or(|&next| rem(next, nbucket) != b);
        chains.push(if last { h | 1 } else { h & !1 });
    }
    let mut out = Vec::new();
    out.extend_from_slice(&u32_of(nbucket, "bucket count")?.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&u32_of(words, "bloom size")?.to_le_bytes());
    out.extend_from_slice(&shift.to_le_bytes());
    for w in &bloom {
        out.extend_from_slice(&w.to_le_bytes());
    }
    for w in buckets.iter().chain(chains.iter()) {
        out.extend_from_slice(&w.to_le_bytes());
    }
    Ok(out)
}
