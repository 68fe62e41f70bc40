#!/usr/bin/env bash
# Issue 14 on a real ROCm wheel (not in ./test.sh: cupy-rocm-5-0 is 60 MB): split it under a
# limit where its own HIP modules must give their offload bundles to companions, then check,
# with tools we did not write, that nothing of the device code was lost:
#   - clang-offload-bundler --list over each companion's .hip_fatbin lists the original's entries;
#   - the bundle bytes in the companion are the original's, byte for byte;
#   - each host, loaded by glibc (LD_BIND_NOW=1, through Python ctypes) against a stand-in
#     libamdhip64.so.5 (scripts/hip-real/hip_standin.c) that hashes the bundle every wrapper
#     hands __hipRegisterFatBinary, hands it the same bundles as the original;
#   - eu-elflint has no new complaint on the host and none on the companion.
# Usage: scripts/hip-companion-real.sh WHEEL [MAX_SIZE]   (WHEELSLIM_BIN picks the binary)
set -euo pipefail
wheel=$(realpath "$1")
limit=${2:-40MiB}
here=$(cd "$(dirname "$0")" && pwd)
bin=${WHEELSLIM_BIN:-$here/../target/release/wheelslim}
bundler=$(command -v clang-offload-bundler-19 || echo /usr/lib/llvm-19/bin/clang-offload-bundler)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/stub" "$work/orig" "$work/split" "$work/out"
echo 'hip_4.2 { global: *; };' > "$work/stub/v.map"
gcc -shared -fPIC -O1 -o "$work/stub/libamdhip64.so.5" -Wl,--version-script="$work/stub/v.map" \
    -Wl,-soname,libamdhip64.so.5 "$here/hip-real/hip_standin.c"
"$bin" split "$wheel" --max-size "$limit" -w "$work/out" >/dev/null 2>&1
unzip -q "$wheel" -d "$work/orig"
for w in "$work"/out/*.whl; do unzip -q -o "$w" -d "$work/split"; done
load() {
    LD_BIND_NOW=1 LD_LIBRARY_PATH="$work/stub:$(dirname "$1")" python3 -c \
        'import ctypes, sys; ctypes.CDLL(sys.argv[1], mode=ctypes.RTLD_GLOBAL)' "$1" 2>&1 |
        grep '^WRAPPER' || true
}
checked=0
while IFS= read -r comp; do
    rel=${comp#"$work/split/"}
    host_rel="$(dirname "$rel")/$(basename "$rel" | sed 's/\.wsdev[0-9]*\.so$/.so/')"
    orig="$work/orig/$host_rel" host="$work/split/$host_rel"
    objcopy -O binary --only-section=.hip_fatbin "$orig" "$work/o.bin"
    objcopy -O binary --only-section=.hip_fatbin "$comp" "$work/n.bin"
    # The original section may end in alignment padding after the bundle.
    cmp -n "$(stat -c %s "$work/n.bin")" "$work/o.bin" "$work/n.bin"
    diff <("$bundler" --list --type=o --input="$work/o.bin" | sort) \
         <("$bundler" --list --type=o --input="$work/n.bin" | sort)
    want=$(load "$orig") got=$(load "$host")
    [ -n "$want" ] && [ "$want" = "$got" ] || { echo "FAIL $rel: runtime saw '$got', want '$want'"; exit 1; }
    diff <(eu-elflint --gnu-ld "$orig" 2>&1 | sed "s|$work/orig/||") \
         <(eu-elflint --gnu-ld "$host" 2>&1 | sed "s|$work/split/||")
    eu-elflint --gnu-ld "$comp" >/dev/null
    entries=$("$bundler" --list --type=o --input="$work/n.bin" | wc -l)
    echo "ok $host_rel: $(stat -c %s "$orig") -> $(stat -c %s "$host") bytes, bundle of $entries entries in $(basename "$comp") ($(stat -c %s "$comp") bytes); runtime saw: $got"
    checked=$((checked + 1))
done < <(find "$work/split" -name '*.wsdev*.so' | sort)
[ "$checked" -gt 0 ] || { echo "FAIL: no companion written under $limit"; exit 1; }
ls -l "$work"/out/*.whl | awk '{print "  " $5, $NF}' | sed "s|$work/out/||"
