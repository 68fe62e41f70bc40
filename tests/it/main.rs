//! The integration tests, as one binary (faster to link). Run them with `./test.sh`, which
//! installs the outside tools they check against.

mod audit;
mod common;
mod device;
mod elf_kind;
mod elf_patch;
mod fatbin_fixtures;
mod fuzz_regressions;
mod hostile;
mod old_toolkits;
mod policy;
mod profiles;
mod shipping;
mod shrink_built;
mod shrink_cuda;
mod shrink_errors;
mod shrink_other;
mod shrink_support;
mod split;
mod split_runpath_note;
mod tools;
mod trim;
mod verify;
