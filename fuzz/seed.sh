#!/usr/bin/env bash
# Seeds each fuzz target's corpus (fuzz/corpus/TARGET, not committed) from the fixtures:
# wheels for the reader, shared objects for the ELF targets, device-code sections cut out of
# them (objcopy) plus the loose device files for the fatbin and bundle parsers.
set -euo pipefail
cd "$(dirname "$0")"
fx=../fixtures
mkdir -p corpus/{zip_reader,elf_inspect,elf_patch,elf_shrink,elf_companion_host,fatbin_cuda,fatbin_hip,memory_bound}
cp "$fx"/wheels/*.whl "$fx"/hostile/*.whl corpus/zip_reader/
objects=("$fx"/cuda/*.so "$fx"/hip/*.so "$fx"/aarch64/*.so "$fx"/ppc64le/*.so)
for t in elf_inspect elf_patch elf_shrink elf_companion_host; do
  cp "${objects[@]}" corpus/$t/
done
cp "$fx"/cuda/loose/* "$fx"/hip/*.hsaco "$fx"/hip/*.co corpus/elf_inspect/
# The ELF members of the hostile corpus (truncated, overlapping, absurd counts...).
python3 - "$fx/hostile" corpus/elf_inspect corpus/elf_shrink corpus/elf_companion_host <<'PY'
import os, sys, zipfile
src, *dests = sys.argv[1:]
for f in sorted(os.listdir(src)):
    if not f.endswith(".whl"):
        continue
    try:
        z = zipfile.ZipFile(os.path.join(src, f))
        data = z.read("hostile/libx.so")
    except Exception:
        continue
    for d in dests:
        with open(os.path.join(d, f.replace(".whl", ".so")), "wb") as out:
            out.write(data)
PY
for so in "${objects[@]}"; do
  base=$(basename "$so" .so)
  for sec in .nv_fatbin __nv_relfatbin; do
    objcopy -O binary --only-section="$sec" "$so" "corpus/fatbin_cuda/$base$sec" 2>/dev/null || true
  done
  objcopy -O binary --only-section=.hip_fatbin "$so" "corpus/fatbin_hip/$base.hip_fatbin" 2>/dev/null || true
done
cp "$fx"/cuda/loose/*.fatbin corpus/fatbin_cuda/
# Empty outputs (no such section) seed nothing.
find corpus -type f -empty -delete
# memory_bound runs whole wheels under the real limits: its seeds are the committed
# seeds/memory_bound (the hostile corpus, bombs included, and the small fixture wheels; rebuilt
# by `./seed.sh --rebuild-seeds`, under 1 MB in all).
if [[ "${1:-}" == --rebuild-seeds ]]; then
  rm -rf seeds/memory_bound && mkdir -p seeds/memory_bound
  cp "$fx"/hostile/*.whl seeds/memory_bound/
  find "$fx"/wheels -name '*.whl' -size -32k -exec cp {} seeds/memory_bound/ \;
fi
cp seeds/memory_bound/* corpus/memory_bound/
for t in corpus/*; do echo "$t: $(ls "$t" | wc -l) seeds"; done
