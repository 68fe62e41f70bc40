//! GPU architecture families of device-code containers (`sm_8x`, `sm_9x+sm_10x`, `gfx9`):
//! the unit the companion planner keeps together, and the name `audit` shows for it. Kept here,
//! below both the inspect pass (which records each container's family while its bytes are in
//! memory) and the planner (which packs by family).

use super::{cuda, hip};

/// `sm_9x` → (sm, 9): families in architecture order.
pub fn family_order(f: &str) -> (String, u32, String) {
    let kind: String = f.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
    let digits: String = f
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    (kind, digits.parse().unwrap_or(u32::MAX), f.to_string())
}

/// The family of one SM: `sm_86` → `sm_8x`, `sm_100f` → `sm_10x`.
fn sm_family(a: &cuda::CudaArch) -> String {
    format!("sm_{}x", a.major())
}

/// The families of a container's entries, joined: `sm_8x`, `sm_8x+sm_9x`; `other` for none.
pub fn cuda_family(c: &cuda::Container) -> String {
    let mut fams: Vec<String> = Vec::new();
    for e in &c.entries {
        if e.kind == cuda::EntryKind::Concat {
            // A `--concat` group: the architectures of its members.
            fams.extend(e.members.iter().map(|m| sm_family(&m.arch)));
        } else {
            fams.push(sm_family(&e.arch));
        }
    }
    join_families(&mut fams)
}

/// The family of an AMD target: `gfx90a`, `gfx942:sramecc+` → `gfx9`; `gfx1030` → `gfx10`;
/// `gfx1100` → `gfx11`; `gfx10-3-generic` → `gfx10`.
pub fn gfx_family(target: &str) -> Option<String> {
    let t = target.strip_prefix("gfx")?;
    let t = t.split(':').next().unwrap_or(t);
    let major = if let Some((m, _)) = t.split_once('-') {
        m
    } else if t.len() > 2 {
        // `get`, not indexing: a hostile target name may not split on a char boundary.
        t.get(..t.len().saturating_sub(2))?
    } else {
        return None;
    };
    (!major.is_empty() && major.chars().all(|c| c.is_ascii_digit())).then(|| format!("gfx{major}"))
}

/// The families of a bundle's GPU entries, joined; `other` for none.
pub fn hip_family(b: &hip::OffloadBundle) -> String {
    let mut fams: Vec<String> = b
        .entries
        .iter()
        .filter(|e| !e.is_host())
        .filter_map(|e| e.target.as_deref().and_then(gfx_family))
        .collect();
    join_families(&mut fams)
}

/// Families sorted in architecture order, without repeats, joined with `+`; `other` for none.
pub fn join_families(fams: &mut Vec<String>) -> String {
    fams.sort_by_key(|f| family_order(f));
    fams.dedup();
    if fams.is_empty() {
        "other".to_string()
    } else {
        fams.join("+")
    }
}
