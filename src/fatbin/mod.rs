//! Device code embedded in shared objects and shipped as loose files: CUDA fatbin containers
//! (`.nv_fatbin`, `__nv_relfatbin`), clang offload bundles (`.hip_fatbin`), and `.cubin`,
//! `.fatbin`, `.ptx`, `.hsaco`, `.co` files.

/// Problems in device code. Offsets are relative to the start of the section or file parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FatbinError {
    #[error("{0}")]
    Malformed(String),
}
