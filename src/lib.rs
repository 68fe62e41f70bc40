//! wheelslim: split fat GPU/NPU Python wheels into a slim main wheel plus shared runtime wheels,
//! trim embedded device code to the GPU architectures you ship for, and audit wheels for what
//! PyPI will refuse.
//!
//! Data flows one way: **read** ([`wheel`]) → **inspect** ([`elf`], [`fatbin`], [`profile`]) →
//! **plan** → **apply** → **write** → **verify**. The library never prints; it returns facts,
//! plans and reports for the command line to render.
//!
//! Public are the formats ([`elf`], [`fatbin`], [`wheel`], [`profile`]), the command line
//! ([`cli`]), and what the integration tests, benches and fuzz targets call ([`budget`],
//! [`device`], [`facts`], [`plan`], [`split`], [`trim`]); the other stages are private, so rustc reports what nothing
//! uses.

// The formats.
pub mod elf;
pub mod fatbin;
pub mod profile;
pub mod wheel;

// The stages: read → inspect → plan → apply → write → verify.
mod apply;
mod audit;
pub mod budget;
pub mod changes;
mod checks;
pub mod device;
mod diagnostic;
mod error;
pub mod facts;
mod input;
mod links;
mod output;
pub mod plan;
mod policy;
pub mod progress;
mod schedule;
pub mod split;
pub mod trim;
mod verify;

// The command line.
pub mod cli;

pub use error::{Error, Location, Result};

/// Human-readable byte sizes (`1.5 MiB`).
pub(crate) fn cli_size(b: u64) -> String {
    cli::render_size(b)
}
