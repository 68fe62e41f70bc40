//! Device code in a wheel, as the audit reports it: per library, per architecture, the bytes
//! stored and the bytes a trim to that architecture would keep.

use serde::Serialize;

use crate::budget::Budget;
use crate::diagnostic::Diagnostic;
use crate::facts::WheelFacts;
use crate::wheel::Wheel;

#[derive(Debug, Clone, Serialize)]
pub struct ArchRow {
    /// `sm_90`, `sm_90a`, `compute_90`, `gfx90a`, `host`.
    pub arch: String,
    /// `sass`, `ptx`, `code-object`, `host`, `other`.
    pub code: String,
    pub entries: usize,
    pub stored_bytes: u64,
    pub uncompressed_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrimEstimate {
    /// The single target this estimate is for.
    pub target: String,
    /// Device-code bytes a trim to it would keep.
    pub kept_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceReport {
    pub member: String,
    /// `cuda` (fatbin sections), `hip` (offload bundles), or a loose file kind.
    pub kind: String,
    pub sections: Vec<String>,
    pub containers: usize,
    pub stored_bytes: u64,
    pub rows: Vec<ArchRow>,
    pub trims: Vec<TrimEstimate>,
}

/// Describes the device code of every member (filled in with the fatbin module).
pub fn scan_wheel(
    _wheel: &Wheel,
    _facts: &WheelFacts,
    _budget: &Budget,
) -> (Vec<DeviceReport>, Vec<Diagnostic>) {
    (Vec::new(), Vec::new())
}

/// The most installed bytes a trim to a single architecture would drop, over all libraries.
pub fn best_single_arch_saving(reports: &[DeviceReport]) -> Option<u64> {
    let mut best: Option<u64> = None;
    let mut targets: Vec<&str> = reports
        .iter()
        .flat_map(|r| r.trims.iter().map(|t| t.target.as_str()))
        .collect();
    targets.sort_unstable();
    targets.dedup();
    for t in targets {
        let saved: u64 = reports
            .iter()
            .map(|r| {
                r.trims
                    .iter()
                    .find(|x| x.target == t)
                    .map_or(0, |x| r.stored_bytes.saturating_sub(x.kept_bytes))
            })
            .sum();
        best = Some(best.map_or(saved, |b| b.max(saved)));
    }
    best
}

pub(crate) fn render(o: &mut String, d: &DeviceReport) {
    use std::fmt::Write;
    let size = crate::cli_size;
    let _ = writeln!(
        o,
        "    {}  {} in {} ({} container{})",
        d.member,
        size(d.stored_bytes),
        d.sections.join(", "),
        d.containers,
        if d.containers == 1 { "" } else { "s" }
    );
    let _ = writeln!(
        o,
        "      {:<12} {:<11} {:>7} {:>11} {:>13}",
        "arch", "code", "entries", "stored", "uncompressed"
    );
    for r in &d.rows {
        let _ = writeln!(
            o,
            "      {:<12} {:<11} {:>7} {:>11} {:>13}",
            r.arch,
            r.code,
            r.entries,
            size(r.stored_bytes),
            size(r.uncompressed_bytes)
        );
    }
    if !d.trims.is_empty() {
        let parts: Vec<String> = d
            .trims
            .iter()
            .map(|t| format!("{} keeps {}", t.target, size(t.kept_bytes)))
            .collect();
        let _ = writeln!(o, "      trim to: {}", parts.join(", "));
    }
}
