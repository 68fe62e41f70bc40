//! The integration tests, as one binary (faster to link). Run them with `./test.sh`, which
//! installs the outside tools they check against.

mod after_split;
mod audit;
mod cli_conventions;
mod commit;
mod common;
mod companion;
mod companion_plan;
mod debug_info;
mod device;
mod elf_kind;
mod elf_patch;
mod fatbin_fixtures;
mod fuzz_regressions;
mod golden;
mod hostile;
mod licensed_files;
mod licenses;
mod old_toolkits;
mod pins;
mod policy;
mod profiles;
mod reports_scale;
mod shipping;
mod shrink_built;
mod shrink_cuda;
mod shrink_errors;
mod shrink_other;
mod shrink_support;
mod sizes;
mod split;
mod split_runpath_note;
mod tools;
mod trim;
mod variants;
mod verify;
