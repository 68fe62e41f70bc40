//! The integration tests, as one binary (faster to link). Run them with `./test.sh`, which
//! installs the outside tools they check against.

mod audit;
mod common;
mod shrink_cuda;
mod shrink_support;
mod verify;
