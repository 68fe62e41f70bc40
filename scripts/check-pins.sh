#!/usr/bin/env bash
# One-off, network: asks real pip whether each requirement line on stdin resolves against the
# package index (PyPI), as `split --upstream` writes them. Not part of ./test.sh.
#   wheelslim split --dry-run --json --upstream W.whl | jq -r '.plan.mains[].requirements[]' | scripts/check-pins.sh
set -uo pipefail
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
plat=(); for p in manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux2010 manylinux_2_12 manylinux1 manylinux_2_5; do plat+=(--platform "${p}_x86_64"); done
fail=0
while read -r req; do
  [ -n "$req" ] || continue
  if got="$(pip install --dry-run --no-deps --ignore-installed --only-binary=:all: "${plat[@]}" \
      --python-version 3.11 --target "$tmp/t" -q --report - "$req" 2>&1 |
      python3 -c 'import json,sys; t=sys.stdin.read(); d=json.loads(t[t.index("{"):]); print(" ".join(i["metadata"]["name"]+"=="+i["metadata"]["version"] for i in d["install"]))' 2>/dev/null)"; then
    echo "ok   $req -> $got"
  else
    echo "FAIL $req"; fail=1
  fi
done
exit $fail
