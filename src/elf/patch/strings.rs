//! The dynamic string table while it is being edited.
//!
//! A new string is placed in the cheapest safe way (`docs/elf.md`, "Patching"):
//! 1. **reuse** an existing NUL-terminated string, or the suffix of one, that spells it;
//! 2. **overwrite** the old string in place when the new one fits over its bytes and no other
//!    reference points into them. References are every DT string tag, every `vn_file`,
//!    `vna_name` and `vda_name`, and every `.dynsym` name; because strings share suffixes, a
//!    reference "points into" the old bytes when its whole string (up to its NUL) overlaps them.
//!    When the references cannot all be enumerated (no `.dynsym` section header, or another
//!    section links to the string table), overwriting is off;
//! 3. **append** it after the old table, so that every existing offset stays valid.

use crate::elf::ElfError;
use crate::elf::file::c_str;

/// Who holds a reference into the string table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Site {
    /// An entry of the new dynamic array (index into it).
    Dyn(usize),
    /// The `vn_file` field of the n-th `.gnu.version_r` entry.
    VnFile(usize),
    /// Anything that is never repointed (symbol and version names): it only protects bytes.
    Fixed,
}

#[derive(Debug, Clone, Copy)]
struct Ref {
    site: Site,
    start: u64,
    /// Offset of the terminating NUL.
    end: u64,
}

/// How a string was placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placed {
    Reused,
    Overwritten,
    Appended,
}

#[derive(Debug)]
pub(crate) struct StrPool {
    table: Vec<u8>,
    tail: Vec<u8>,
    refs: Vec<Ref>,
    /// Why overwriting in place is off, if it is.
    no_overwrite: Option<String>,
}

/// Offset of the first NUL-terminated string in `hay` that is `value` or ends with it.
fn find_string(hay: &[u8], value: &[u8]) -> Option<u64> {
    let mut off = 0u64;
    for piece in hay.split_inclusive(|&b| b == 0) {
        if let Some(s) = piece.strip_suffix(&[0])
            && s.ends_with(value)
        {
            return Some(off + (s.len() - value.len()) as u64);
        }
        off += piece.len() as u64;
    }
    None
}

impl StrPool {
    /// A pool over a copy of the current DT_STRSZ bytes.
    pub fn new(strings: &[u8]) -> Self {
        StrPool {
            table: strings.to_vec(),
            tail: Vec::new(),
            refs: Vec::new(),
            no_overwrite: None,
        }
    }

    /// Records a reference. An offset that is not a valid string cannot be protected, so it
    /// turns overwriting off instead of failing (ld.so only reads it if it looks the name up).
    pub fn add_ref(&mut self, site: Site, off: u64) {
        match c_str(&self.table, off) {
            Some(s) => self.refs.push(Ref {
                site,
                start: off,
                end: off + s.len() as u64,
            }),
            None => self.forbid_overwrite(format!(
                "a reference to string offset {off:#x} is not a valid string"
            )),
        }
    }

    pub fn forbid_overwrite(&mut self, why: String) {
        if self.no_overwrite.is_none() {
            self.no_overwrite = Some(why);
        }
    }

    /// Why overwriting in place is off, if it is.
    pub fn overwrite_blocked(&self) -> Option<&str> {
        self.no_overwrite.as_deref()
    }

    /// The edited original table (same length as before).
    pub fn table(&self) -> &[u8] {
        &self.table
    }

    /// The appended strings.
    pub fn tail(&self) -> &[u8] {
        &self.tail
    }

    /// The string currently at `off` (in the table or the tail).
    pub fn string_at(&self, off: u64) -> Option<&[u8]> {
        let base = self.table.len() as u64;
        match off.checked_sub(base) {
            Some(rel) => c_str(&self.tail, rel),
            None => c_str(&self.table, off),
        }
    }

    /// The offset `site` currently points at, if it holds a reference.
    pub fn offset_of(&self, site: Site) -> Option<u64> {
        self.refs.iter().find(|r| r.site == site).map(|r| r.start)
    }

    /// True when no reference other than `sites` overlaps the string bytes `[start, end]`.
    fn free_for(&self, start: u64, end: u64, sites: &[Site]) -> bool {
        !self
            .refs
            .iter()
            .any(|r| !sites.contains(&r.site) && r.start <= end && r.end >= start)
    }

    /// Places `value` for all of `sites` (which then point at the returned offset).
    pub fn place(&mut self, value: &[u8], sites: &[Site]) -> Result<(u64, Placed), ElfError> {
        if value.is_empty() || value.contains(&0) {
            return Err(ElfError::InvalidEdit(
                "a string must be non-empty and free of NUL bytes".into(),
            ));
        }
        let base = self.table.len() as u64;
        let (at, how) = if let Some(at) = find_string(&self.table, value) {
            (at, Placed::Reused)
        } else if let Some(at) = find_string(&self.tail, value) {
            (base + at, Placed::Reused)
        } else if let Some(at) = self.overwrite_candidate(value, sites) {
            let (start, end) = (at as usize, at as usize + value.len());
            let old_end = c_str(&self.table, at).map_or(end, |s| start + s.len());
            if let Some(dst) = self.table.get_mut(start..end) {
                dst.copy_from_slice(value);
            }
            if let Some(pad) = self.table.get_mut(end..old_end) {
                pad.fill(0);
            }
            (at, Placed::Overwritten)
        } else {
            let at = base + self.tail.len() as u64;
            self.tail.extend_from_slice(value);
            self.tail.push(0);
            (at, Placed::Appended)
        };
        self.refs.retain(|r| !sites.contains(&r.site));
        for &site in sites {
            self.refs.push(Ref {
                site,
                start: at,
                end: at + value.len() as u64,
            });
        }
        Ok((at, how))
    }

    /// An old string of one of `sites` that `value` fits over and that nothing else shares.
    fn overwrite_candidate(&self, value: &[u8], sites: &[Site]) -> Option<u64> {
        if self.no_overwrite.is_some() {
            return None;
        }
        let mut candidates: Vec<u64> = self
            .refs
            .iter()
            .filter(|r| r.site != Site::Fixed && sites.contains(&r.site))
            .map(|r| r.start)
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        candidates.into_iter().find(|&start| {
            let Some(old) = c_str(&self.table, start) else {
                return false;
            };
            let end = start + old.len() as u64;
            value.len() <= old.len() && self.free_for(start, end, sites)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(bytes: &[u8]) -> StrPool {
        StrPool::new(bytes)
    }

    #[test]
    fn finds_whole_strings_and_suffixes_but_not_unterminated_ones() {
        let t = b"\0libfoo.so.1\0xyz";
        assert_eq!(find_string(t, b"libfoo.so.1"), Some(1));
        assert_eq!(find_string(t, b"so.1"), Some(8));
        assert_eq!(find_string(t, b"xyz"), None);
        assert_eq!(find_string(t, b"libfoo"), None);
    }

    #[test]
    fn reuses_an_existing_suffix() {
        let mut p = pool(b"\0libdep.so.1\0/opt/lib\0");
        p.add_ref(Site::Dyn(0), 1);
        p.add_ref(Site::Dyn(1), 13);
        let (at, how) = p.place(b"dep.so.1", &[Site::Dyn(1)]).unwrap();
        assert_eq!((at, how), (4, Placed::Reused));
        assert_eq!(p.string_at(at), Some(&b"dep.so.1"[..]));
        assert!(p.tail().is_empty());
    }

    #[test]
    fn overwrites_an_unshared_string_in_place_and_pads_with_nul() {
        let mut p = pool(b"\0/very/long/old/path\0libc.so.6\0");
        p.add_ref(Site::Dyn(0), 1);
        p.add_ref(Site::Dyn(1), 21);
        let (at, how) = p.place(b"/new", &[Site::Dyn(0)]).unwrap();
        assert_eq!((at, how), (1, Placed::Overwritten));
        let mut want = b"\0/new".to_vec();
        want.resize(21, 0);
        want.extend_from_slice(b"libc.so.6\0");
        assert_eq!(p.table(), want.as_slice());
        assert_eq!(p.string_at(21), Some(&b"libc.so.6"[..]));
    }

    #[test]
    fn a_shared_suffix_forces_an_append() {
        // SONAME "libx.so.1" at 1; a version name uses its suffix "x.so.1" at 4.
        let mut p = pool(b"\0libx.so.1\0");
        p.add_ref(Site::Dyn(0), 1);
        p.add_ref(Site::Fixed, 4);
        let (at, how) = p.place(b"liby", &[Site::Dyn(0)]).unwrap();
        assert_eq!((at, how), (11, Placed::Appended));
        assert_eq!(p.table(), b"\0libx.so.1\0");
        assert_eq!(p.tail(), b"liby\0");
        assert_eq!(p.string_at(11), Some(&b"liby"[..]));
    }

    #[test]
    fn a_reference_into_the_middle_counts_as_sharing() {
        // NEEDED points at the suffix "b.so" of a longer string whose head someone else uses.
        let mut p = pool(b"\0libab.so\0");
        p.add_ref(Site::Fixed, 1);
        p.add_ref(Site::Dyn(0), 5);
        let (_, how) = p.place(b"c.so", &[Site::Dyn(0)]).unwrap();
        assert_eq!(how, Placed::Appended);
        assert_eq!(p.table(), b"\0libab.so\0");
    }

    #[test]
    fn longer_strings_append_and_the_same_site_can_share_one_string() {
        let mut p = pool(b"\0a\0");
        p.add_ref(Site::Dyn(0), 1);
        p.add_ref(Site::VnFile(0), 1);
        let (at, how) = p.place(b"abc", &[Site::Dyn(0), Site::VnFile(0)]).unwrap();
        assert_eq!((at, how), (3, Placed::Appended));
        assert_eq!(p.offset_of(Site::VnFile(0)), Some(3));
        // The old bytes are free now: a second edit may overwrite them.
        p.add_ref(Site::Dyn(1), 1);
        let (at, how) = p.place(b"z", &[Site::Dyn(1)]).unwrap();
        assert_eq!((at, how), (1, Placed::Overwritten));
    }

    #[test]
    fn invalid_references_turn_overwriting_off() {
        let mut p = pool(b"\0abc\0");
        p.add_ref(Site::Dyn(0), 1);
        p.add_ref(Site::Fixed, 99);
        assert!(p.overwrite_blocked().is_some());
        let (_, how) = p.place(b"x", &[Site::Dyn(0)]).unwrap();
        assert_eq!(how, Placed::Appended);
        assert!(p.place(b"", &[Site::Dyn(0)]).is_err());
        assert!(p.place(b"a\0b", &[Site::Dyn(0)]).is_err());
    }
}
