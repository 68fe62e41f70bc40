#!/usr/bin/env bash
# Behaviour pinned by hashes (tests/it/golden.rs): runs audit, verify, split and trim with the
# pinned option sets over every fixture wheel (SOURCE_DATE_EPOCH fixed) and compares the sha256
# of exit code, stdout, stderr and every output with tests/golden/outputs.sha256.
#
#   scripts/golden.sh            check (the same test `cargo test --test it golden` runs)
#   scripts/golden.sh --update   rewrite the list after a change that is meant to change outputs;
#                                commit it with that change, the diff names the runs it touched
#   scripts/golden.sh --release  check with a release build (slower to build, same bytes)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=()
for a in "$@"; do
    case "$a" in
        --update) export WHEELSLIM_GOLDEN_UPDATE=1 ;;
        --release) profile=(--release) ;;
        *) echo "usage: scripts/golden.sh [--update] [--release]" >&2; exit 2 ;;
    esac
done
cargo test "${profile[@]}" --test it golden:: -- --test-threads 1
if [[ -n "${WHEELSLIM_GOLDEN_UPDATE:-}" ]]; then
    git --no-pager diff --stat -- tests/golden/outputs.sha256 || true
fi
