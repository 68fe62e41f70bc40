#!/usr/bin/env bash
# The whole test suite: installs the outside tools it checks against (scripts/test-tools.sh,
# into .tools/), then runs every test. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")"
env_file="$(scripts/test-tools.sh)"
# shellcheck disable=SC1090
source "$env_file"
cargo test --locked "$@"
