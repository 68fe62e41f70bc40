//! The table edits of the host rewrite, as pure functions over decoded entries: the RELA
//! reorder that keeps `DT_RELACOUNT` true, the symbol-index shift, the `.gnu.hash` header and
//! bucket shift, the rebuilt `.hash`, the grown `.gnu.version`, and the RELR decoder used to
//! find wrappers whose pointer is a RELR relocation (refused by name).

use super::MoveError;
use crate::elf::companion::hash::sysv_hash;

/// One `Elf64_Rela`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rela {
    pub offset: u64,
    pub sym: u32,
    pub kind: u32,
    pub addend: i64,
}

impl Rela {
    pub fn decode(b: &[u8]) -> Option<Rela> {
        let w = |i: usize| -> Option<u64> {
            let s = b.get(i..i.checked_add(8)?)?;
            Some(u64::from_le_bytes(s.try_into().ok()?))
        };
        let info = w(8)?;
        Some(Rela {
            offset: w(0)?,
            sym: u32::try_from(info >> 32).ok()?,
            kind: u32::try_from(info & 0xffff_ffff).ok()?,
            addend: i64::from_le_bytes(w(16)?.to_le_bytes()),
        })
    }

    pub fn encode(&self) -> [u8; 24] {
        let mut out = [0u8; 24];
        let info = (u64::from(self.sym) << 32) | u64::from(self.kind);
        out[..8].copy_from_slice(&self.offset.to_le_bytes());
        out[8..16].copy_from_slice(&info.to_le_bytes());
        out[16..].copy_from_slice(&self.addend.to_le_bytes());
        out
    }
}

/// Decodes a whole RELA table.
pub(crate) fn decode_all(b: &[u8]) -> Result<Vec<Rela>, MoveError> {
    if b.len() % 24 != 0 {
        return Err(MoveError::Malformed(format!(
            "a RELA table is {:#x} bytes, not a whole number of 24-byte entries",
            b.len()
        )));
    }
    b.chunks_exact(24)
        .map(|c| Rela::decode(c).ok_or_else(|| MoveError::Malformed("a RELA entry".into())))
        .collect()
}

pub(crate) fn encode_all(relas: &[Rela]) -> Vec<u8> {
    relas.iter().flat_map(|r| r.encode()).collect()
}

/// Symbol index after `count` new symbols were inserted at `at`.
pub(crate) fn shifted(sym: u32, at: u32, count: u32) -> Result<u32, MoveError> {
    if sym >= at {
        sym.checked_add(count)
            .ok_or_else(|| MoveError::Malformed("a symbol index overflows".into()))
    } else {
        Ok(sym)
    }
}

/// Shifts every symbol index `>= at` by `count`.
pub(crate) fn shift_symbols(relas: &mut [Rela], at: u32, count: u32) -> Result<(), MoveError> {
    for r in relas.iter_mut() {
        r.sym = shifted(r.sym, at, count)?;
    }
    Ok(())
}

/// Converts the entries at `converted` (indices into `relas`; each `(index, symbol, addend)`)
/// into symbolic relocations of type `symbolic`, then moves those that sat in the
/// `relacount` prefix out of it: glibc applies the first `DT_RELACOUNT` entries as RELATIVE
/// without reading their type. The order becomes `[the prefix's other entries][the converted
/// entries of the prefix][everything after the prefix]`, each part in its old order, and the
/// returned count is the prefix length minus the entries taken out of it.
pub(crate) fn convert_and_reorder(
    relas: &[Rela],
    relacount: Option<u64>,
    converted: &[(usize, u32, i64)],
    symbolic: u32,
) -> Result<(Vec<Rela>, Option<u64>), MoveError> {
    let mut out: Vec<Rela> = relas.to_vec();
    for &(i, sym, addend) in converted {
        let r = out
            .get_mut(i)
            .ok_or_else(|| MoveError::Malformed("a relocation index".into()))?;
        r.kind = symbolic;
        r.sym = sym;
        r.addend = addend;
    }
    let Some(count) = relacount else {
        return Ok((out, None));
    };
    let prefix = usize::try_from(count)
        .ok()
        .filter(|&p| p <= out.len())
        .ok_or_else(|| {
            MoveError::Malformed(format!(
                "DT_RELACOUNT {count} exceeds the {} entries of DT_RELA",
                out.len()
            ))
        })?;
    let is_conv = |i: usize| converted.iter().any(|c| c.0 == i);
    let mut kept = Vec::with_capacity(out.len());
    let mut moved = Vec::new();
    for (i, r) in out.iter().enumerate().take(prefix) {
        if is_conv(i) {
            moved.push(*r);
        } else {
            kept.push(*r);
        }
    }
    let new_count =
        u64::try_from(kept.len()).map_err(|_| MoveError::Malformed("relocation count".into()))?;
    kept.extend(moved);
    kept.extend(out.iter().skip(prefix).copied());
    Ok((kept, Some(new_count)))
}

/// The addresses a RELR table relocates.
pub(crate) fn relr_addresses(b: &[u8]) -> Result<Vec<u64>, MoveError> {
    let mut out = Vec::new();
    let mut next = 0u64;
    let overflow = || MoveError::Malformed("a RELR address overflows".into());
    for w in b.chunks_exact(8) {
        let word = u64::from_le_bytes(w.try_into().map_err(|_| overflow())?);
        if word & 1 == 0 {
            out.push(word);
            next = word.checked_add(8).ok_or_else(overflow)?;
        } else {
            let mut bits = word >> 1;
            let mut i = 0u64;
            while bits != 0 {
                if bits & 1 == 1 {
                    out.push(
                        next.checked_add(i.checked_mul(8).ok_or_else(overflow)?)
                            .ok_or_else(overflow)?,
                    );
                }
                bits >>= 1;
                i = i.saturating_add(1);
            }
            next = next.checked_add(63 * 8).ok_or_else(overflow)?;
        }
    }
    Ok(out)
}

/// The RELR encoding of `addrs` (sorted, 8-aligned): an address word, then bitmap words
/// each covering the next 63 words, as GNU ld and lld write it.
pub(crate) fn relr_encode(addrs: &[u64]) -> Result<Vec<u8>, MoveError> {
    let mut sorted = addrs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.iter().any(|a| a % 8 != 0) {
        return Err(MoveError::Malformed(
            "a RELR address is not 8-aligned".into(),
        ));
    }
    let mut out = Vec::new();
    let mut i = 0usize;
    while let Some(&base) = sorted.get(i) {
        out.extend_from_slice(&base.to_le_bytes());
        i = i.saturating_add(1);
        let mut next = base.saturating_add(8);
        loop {
            let mut bitmap = 0u64;
            while let Some(&a) = sorted.get(i) {
                let d = a.saturating_sub(next) / 8;
                if a < next || d >= 63 {
                    break;
                }
                bitmap |= 1u64 << d;
                i = i.saturating_add(1);
            }
            if bitmap == 0 {
                break;
            }
            out.extend_from_slice(&((bitmap << 1) | 1).to_le_bytes());
            next = next.saturating_add(63 * 8);
        }
    }
    Ok(out)
}

/// `.gnu.hash` with `count` unhashed symbols inserted before `symoffset`: the header's
/// `symoffset` and every non-empty bucket move up by `count`; the bloom filter and the chain
/// values (hashes of the same symbols) do not change. Returns the edited copy.
pub(crate) fn shift_gnu_hash(table: &[u8], count: u32) -> Result<Vec<u8>, MoveError> {
    let bad = |what: &str| MoveError::Malformed(format!("`.gnu.hash` {what}"));
    let word = |t: &[u8], at: usize| -> Result<u32, MoveError> {
        let s = t
            .get(at..at.saturating_add(4))
            .ok_or_else(|| bad("is truncated"))?;
        Ok(u32::from_le_bytes(s.try_into().map_err(|_| bad("word"))?))
    };
    let nbucket = usize::try_from(word(table, 0)?).map_err(|_| bad("bucket count"))?;
    let symoffset = word(table, 4)?;
    let bloom = usize::try_from(word(table, 8)?).map_err(|_| bad("bloom size"))?;
    let mut out = table.to_vec();
    let new_off = symoffset
        .checked_add(count)
        .ok_or_else(|| bad("symoffset"))?;
    out.get_mut(4..8)
        .ok_or_else(|| bad("header"))?
        .copy_from_slice(&new_off.to_le_bytes());
    let buckets = bloom
        .checked_mul(8)
        .and_then(|b| b.checked_add(16))
        .ok_or_else(|| bad("bloom size"))?;
    for b in 0..nbucket {
        let at = b
            .checked_mul(4)
            .and_then(|x| x.checked_add(buckets))
            .ok_or_else(|| bad("bucket"))?;
        let v = word(table, at)?;
        if v != 0 {
            let n = v.checked_add(count).ok_or_else(|| bad("bucket value"))?;
            out.get_mut(at..at.saturating_add(4))
                .ok_or_else(|| bad("bucket"))?
                .copy_from_slice(&n.to_le_bytes());
        }
    }
    Ok(out)
}

/// `(nbucket, symoffset, size in bytes)` of a `.gnu.hash` for `nsyms` symbols, read from the
/// start of `table`.
pub(crate) fn gnu_hash_shape(table: &[u8], nsyms: u64) -> Result<(u32, u32, u64), MoveError> {
    let bad = || MoveError::Malformed("`.gnu.hash` header is truncated".into());
    let w = |at: usize| -> Result<u32, MoveError> {
        let s = table.get(at..at.saturating_add(4)).ok_or_else(bad)?;
        Ok(u32::from_le_bytes(s.try_into().map_err(|_| bad())?))
    };
    let (nb, off, bloom) = (w(0)?, w(4)?, w(8)?);
    if u64::from(off) > nsyms || off == 0 {
        return Err(MoveError::Malformed(format!(
            "`.gnu.hash` symoffset {off} does not fit the {nsyms} symbols of `.dynsym`"
        )));
    }
    let size = 16u64
        .checked_add(u64::from(bloom).saturating_mul(8))
        .and_then(|s| s.checked_add(u64::from(nb).saturating_mul(4)))
        .and_then(|s| s.checked_add(nsyms.saturating_sub(u64::from(off)).saturating_mul(4)))
        .ok_or_else(bad)?;
    Ok((nb, off, size))
}

/// A System V `.hash` over `names` (index 0 is the null symbol and is not chained).
pub(crate) fn sysv_rebuild(names: &[&[u8]], nbucket: u32) -> Result<Vec<u8>, MoveError> {
    let nb = nbucket.max(1);
    let nchain = u32::try_from(names.len())
        .map_err(|_| MoveError::Malformed("too many symbols for `.hash`".into()))?;
    let mut buckets = vec![0u32; usize::try_from(nb).unwrap_or(1)];
    let mut chains = vec![0u32; names.len()];
    for (i, name) in names.iter().enumerate().skip(1) {
        let idx = u32::try_from(i).map_err(|_| MoveError::Malformed("symbol index".into()))?;
        let b = usize::try_from(sysv_hash(name).checked_rem(nb).unwrap_or(0)).unwrap_or(0);
        if let (Some(head), Some(slot)) = (buckets.get_mut(b), chains.get_mut(i)) {
            *slot = std::mem::replace(head, idx);
        }
    }
    let mut out = Vec::with_capacity(names.len().saturating_add(buckets.len()).saturating_mul(4));
    out.extend_from_slice(&nb.to_le_bytes());
    out.extend_from_slice(&nchain.to_le_bytes());
    for w in buckets.iter().chain(chains.iter()) {
        out.extend_from_slice(&w.to_le_bytes());
    }
    Ok(out)
}

/// `entries` (each `size` bytes) with `new` inserted at entry index `at`.
pub(crate) fn insert_entries(
    table: &[u8],
    size: usize,
    at: usize,
    new: &[u8],
) -> Result<Vec<u8>, MoveError> {
    let cut = at
        .checked_mul(size)
        .filter(|&c| c <= table.len())
        .ok_or_else(|| MoveError::Malformed("an insertion point past the table".into()))?;
    let (head, tail) = table.split_at(cut);
    let mut out = Vec::with_capacity(table.len().saturating_add(new.len()));
    out.extend_from_slice(head);
    out.extend_from_slice(new);
    out.extend_from_slice(tail);
    Ok(out)
}
