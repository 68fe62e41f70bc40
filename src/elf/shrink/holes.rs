//! The ranges a cut removes from the file, and the input → output file offset map they
//! define; shared by the planner (`cut`) and the program-header placement (`phdrs`).

/// One range cut out of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hole {
    pub region: usize,
    pub load: usize,
    pub vstart: u64,
    pub vend: u64,
    pub off_start: u64,
    pub off_end: u64,
}

impl Hole {
    pub(crate) fn len(&self) -> u64 {
        self.off_end - self.off_start
    }
}

/// Input file offset → output file offset, given the holes (sorted, disjoint).
#[derive(Debug, Clone, Default)]
pub(crate) struct OffsetMap {
    cuts: Vec<(u64, u64)>,
}

impl OffsetMap {
    pub(crate) fn new(holes: &[Hole]) -> OffsetMap {
        let mut cuts: Vec<(u64, u64)> = holes.iter().map(|h| (h.off_start, h.off_end)).collect();
        cuts.sort_unstable();
        OffsetMap { cuts }
    }

    /// `None` for an offset strictly inside a cut.
    pub(crate) fn map(&self, off: u64) -> Option<u64> {
        let mut removed = 0u64;
        for &(s, e) in &self.cuts {
            if off >= e {
                removed += e - s;
            } else if off > s {
                return None;
            }
        }
        Some(off - removed)
    }

    pub(crate) fn removed(&self) -> u64 {
        self.cuts.iter().map(|&(s, e)| e - s).sum()
    }

    pub(crate) fn cuts(&self) -> &[(u64, u64)] {
        &self.cuts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hole(off_start: u64, off_end: u64) -> Hole {
        Hole {
            region: 0,
            load: 0,
            vstart: off_start,
            vend: off_end,
            off_start,
            off_end,
        }
    }

    #[test]
    fn offset_map_is_monotone_and_undefined_inside_cuts() {
        let m = OffsetMap::new(&[hole(0x6000, 0x8000), hole(0x2000, 0x3000)]);
        assert_eq!(m.removed(), 0x3000);
        assert_eq!(m.map(0x1fff), Some(0x1fff));
        assert_eq!(m.map(0x2000), Some(0x2000));
        assert_eq!(m.map(0x2001), None);
        assert_eq!(m.map(0x3000), Some(0x2000));
        assert_eq!(m.map(0x6000), Some(0x5000));
        assert_eq!(m.map(0x8000), Some(0x5000));
        assert_eq!(m.map(0x9000), Some(0x6000));
    }
}
