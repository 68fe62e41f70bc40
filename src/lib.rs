//! wheelslim: split fat GPU/NPU Python wheels into a slim main wheel plus shared runtime wheels,
//! trim embedded device code to the GPU architectures you ship for, and audit wheels for what
//! PyPI will refuse.
//!
//! Data flows one way: **read** ([`wheel`]) → **inspect** ([`elf`], [`fatbin`], [`profile`]) →
//! **plan** → **apply** → **write** → **verify**. The library never prints; it returns facts,
//! plans and reports for the command line to render.

pub mod elf;
pub mod error;
pub mod fatbin;
pub mod profile;
pub mod wheel;

pub use error::{Error, Location, Result};
pub mod audit;
pub mod budget;
pub mod cli;
pub mod device;
pub mod diagnostic;
pub mod facts;
pub mod input;
pub mod links;
pub mod policy;
pub mod schedule;

/// Human-readable byte sizes (`1.5 MiB`).
pub fn cli_size(b: u64) -> String {
    cli::render_size(b)
}
pub mod apply;
pub mod checks;
pub mod output;
pub mod plan;
pub mod split;
pub mod trim;
pub mod verify;
