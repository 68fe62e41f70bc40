#!/usr/bin/env python3
"""Companion benchmark (issue 14): moving the device code of a large vendor library into
companion libraries against trimming it.

The target: `wheelslim split --companions` on a library of about 1 GiB costs no more than
`wheelslim trim --sm 90` on it does (the same inflate, and no second deflate of the host bytes
the move leaves as they were).

The wheel comes from the generator of `benches/e2e.py`, with other shares: its largest member
is `benchpkg.libs/libcublasLt-<hash8>.so.12`, half of `--size` uncompressed, shaped like
cuBLASLt 12.9: host code, then a `.nv_fatbin` of 256 real fatbin containers (SASS for sm_70 to
sm_90 plus compute_90 PTX, 60 % of the library) behind `.nvFatBinSegment` wrappers, then a
read-only `.cask_resource` (20 %) after it. Compressed, it is about twice `--max-size`
(default: an eighth of `--size`), so it cannot fit in a wheel even alone; without its device
code it fits, and its containers go into two companions. No other member has device code.

It times, on the same warm page cache, each as a child process (wall time, CPU time =
user + sys, peak RSS from `wait4`):

* `wheelslim audit`: the inflate and hash of every member, which every command pays;
* `wheelslim trim --sm 90`: cut 4 of 6 images from every container of the library;
* `wheelslim split`: move the vendor libraries into runtime wheels and rewire (under a limit
  large enough that nothing needs companions): what `split` costs without them;
* `wheelslim split --companions`: the same at `--max-size`, where cuBLASLt's containers move
  into companions.

Usage:
    python3 benches/companions.py                     # 2 GiB wheel (cuBLASLt ~1 GiB), 3 runs
    python3 benches/companions.py --size 256MiB --runs 1
    python3 benches/companions.py --markdown          # the table as Markdown (for the README)

Needs gcc, zip and unzip (as e2e.py). The wheel is kept in --work (default
/tmp/wheelslim-companions) and reused while the parameters stay the same.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import e2e  # noqa: E402  (the generator and the runner)
from e2e import Lib, PKG  # noqa: E402

# The shares of --size (uncompressed). cuBLASLt is the vendor library companions are for; the
# rest makes the split do what it does on a real CUDA wheel (runtime wheels, rewiring).
LIBS = [
    Lib("cudart", "libcudart.so.12", 0.001),
    Lib("gomp", "libgomp.so.1", 0.001),
    Lib("cublaslt", "libcublasLt.so.12", 0.50, ["cudart"], fatbin_share=0.30, resource_share=0.10),
    Lib("cublas", "libcublas.so.12", 0.08, ["cublaslt", "cudart"]),
    Lib("cudnn", "libcudnn.so.9", 0.06, ["cublas", "cublaslt", "cudart"]),
    Lib("nccl", "libnccl.so.2", 0.05, ["cudart"]),
    Lib("cusparse", "libcusparse.so.12", 0.04, ["cudart"]),
    Lib("bench_cpu", "libbench_cpu.so", 0.04, ["gomp"], folder=f"{PKG}/lib", hashed=False),
    Lib(
        "bench_cuda",
        "libbench_cuda.so",
        0.04,
        ["bench_cpu", "cudart", "cublas", "cublaslt", "cudnn", "nccl", "cusparse"],
        folder=f"{PKG}/lib",
        hashed=False,
    ),
]
BIG = "cublaslt"
# Bumped when the generated wheel changes; also part of the hashed library names.
GENERATOR_VERSION = f"{e2e.GENERATOR_VERSION}-companions-1"


def size_arg(text: str) -> str:
    e2e.parse_size(text)
    return text


def member_sizes(wheel: Path, name: str) -> tuple[int, int]:
    with zipfile.ZipFile(wheel) as z:
        i = z.getinfo(name)
        return i.file_size, i.compress_size


def outputs(folder: Path) -> list[tuple[str, int]]:
    return sorted((p.name, p.stat().st_size) for p in folder.rglob("*.whl"))


def companion_members(folder: Path) -> list[tuple[str, str, int, int]]:
    """(wheel, member, size, compressed) of the output members that are the big library or
    one of its companions."""
    big = next(lib for lib in LIBS if lib.key == BIG)
    stem = big.file.split(".so", 1)[0]
    rows = []
    for whl in sorted(folder.rglob("*.whl")):
        with zipfile.ZipFile(whl) as z:
            for i in z.infolist():
                if Path(i.filename).name.startswith(stem) or "wsdev" in i.filename or "companion" in i.filename:
                    rows.append((whl.name, i.filename, i.file_size, i.compress_size))
    return rows


def print_table(rows: list[e2e.Row], wheel: Path, big_size: int, limit: int, markdown: bool) -> None:
    trim = next((r.best() for r in rows if r.name == "wheelslim trim --sm 90"), None)
    head = ["command", "wall s", "CPU s", "peak RSS", "wall ÷ trim", "CPU ÷ trim", "what"]
    lines = []
    for r in rows:
        b = r.best()
        lines.append(
            [
                r.name,
                f"{b.wall:.2f}",
                f"{b.cpu:.2f}",
                e2e.human(b.rss),
                f"{b.wall / trim.wall:.2f}" if trim else "",
                f"{b.cpu / trim.cpu:.2f}" if trim else "",
                r.note,
            ]
        )
    title = (
        f"{wheel.name}: {e2e.human(wheel.stat().st_size)} compressed; largest library "
        f"{e2e.human(big_size)}; --max-size {e2e.human(limit)}; {os.cpu_count()} cores; fastest of the runs"
    )
    print(title + ("\n" if markdown else ""))
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join([" --- "] + [" ---: "] * (len(head) - 2) + [" --- "]) + "|")
        for l in lines:
            print("| " + " | ".join(l) + " |")
        return
    widths = [max(len(x[i]) for x in [head] + lines) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" if i in (0, len(head) - 1) else f"{{:>{w}}}" for i, w in enumerate(widths))
    for l in [head] + lines:
        print(fmt.format(*l).rstrip())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="2GiB", type=size_arg, help="uncompressed size of the wheel (default 2GiB: cuBLASLt ~1 GiB)")
    ap.add_argument("--max-size", help="the limit for split --companions (default: --size / 8)")
    ap.add_argument("--work", default="/tmp/wheelslim-companions", help="folder for the wheel and outputs")
    ap.add_argument("--wheelslim", help="wheelslim binary (default: cargo build --release here)")
    ap.add_argument("--runs", type=int, default=3, help="runs of each command; the fastest is shown")
    ap.add_argument("--only", action="append", default=[], help="run only these commands (repeatable)")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    ap.add_argument("--json", help="also write the raw samples to this file")
    args = ap.parse_args()

    e2e.LIBS = LIBS
    e2e.GENERATOR_VERSION = GENERATOR_VERSION
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    size = e2e.parse_size(args.size)
    limit = e2e.parse_size(args.max_size) if args.max_size else size // 8
    wheel = e2e.generate(work, size)
    big = next(lib for lib in LIBS if lib.key == BIG)
    big_member = f"{big.folder}/{big.file}"
    big_size, big_comp = member_sizes(wheel, big_member)
    print(
        f"{big_member}: {e2e.human(big_size)} uncompressed, {e2e.human(big_comp)} compressed; "
        f"--max-size {limit} ({e2e.human(limit)})",
        file=sys.stderr,
    )
    if big_comp <= limit:
        raise SystemExit(f"{big_member} fits under --max-size {limit}: companions would not be needed")
    ws = e2e.find_wheelslim(args.wheelslim)
    runner = e2e.build_runner(work)
    out = work / "out"
    env = dict(os.environ, WHEELSLIM_NO_PROGRESS="1", SOURCE_DATE_EPOCH="315532800")

    def fresh() -> Path:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        return out

    ws_q = f"'{ws}'"
    whl = f"'{wheel}'"
    commands = [
        ("wheelslim audit", lambda: f"{ws_q} audit {whl} > /dev/null; test $? -le 1", "inflate, hash, describe"),
        (
            "wheelslim trim --sm 90",
            lambda: f"{ws_q} trim {whl} --sm 90 --max-size 64GiB -w '{fresh()}/t'",
            "cut 4 of 6 images from every container",
        ),
        (
            "wheelslim split",
            lambda: f"{ws_q} split {whl} --max-size 64GiB -w '{fresh()}/w' --runtime-dir '{out}/rt'",
            "runtime wheels and rewiring, no companions",
        ),
        (
            "wheelslim split --companions",
            lambda: f"{ws_q} split {whl} --companions --max-size {limit} -w '{fresh()}/w' --runtime-dir '{out}/rt'",
            f"the same under {e2e.human(limit)}: containers into companions",
        ),
    ]
    rows: list[e2e.Row] = []
    layout = []
    for name, make, note in commands:
        if args.only and name not in args.only:
            continue
        samples = []
        for _ in range(args.runs):
            cmd = make()
            subprocess.run(["sync"], check=True)
            samples.append(e2e.run_once(runner, cmd, env))
        rows.append(e2e.Row(name, samples, note))
        b = rows[-1].best()
        print(f"  {name:<30} {b.wall:7.2f} s wall {b.cpu:7.2f} s cpu {e2e.human(b.rss):>10}", file=sys.stderr)
        if name == "wheelslim split --companions":
            layout = companion_members(out)
            wheels = outputs(out)
            over = [(n, s) for n, s in wheels if s > limit]
            print(f"  {len(wheels)} wheels, largest {e2e.human(max(s for _, s in wheels))}", file=sys.stderr)
            for w, m, s, c in layout:
                print(f"    {w}!{m}: {e2e.human(s)} ({e2e.human(c)} compressed)", file=sys.stderr)
            if over:
                raise SystemExit(f"split --companions wrote wheels over {limit} bytes: {over}")
    shutil.rmtree(out, ignore_errors=True)

    print_table(rows, wheel, big_size, limit, args.markdown)
    by = {r.name: r.best() for r in rows}
    t, c, a, s = (by.get(k) for k in ("wheelslim trim --sm 90", "wheelslim split --companions", "wheelslim audit", "wheelslim split"))
    if t and c:
        print(
            f"\nsplit --companions / trim --sm 90: wall {c.wall / t.wall:.2f}×, CPU {c.cpu / t.cpu:.2f}×"
            f" (target: at most 1×)"
        )
        if a and s:
            print(
                f"beyond audit: trim {t.cpu - a.cpu:.2f} CPU s; split {s.cpu - a.cpu:.2f}; "
                f"split --companions {c.cpu - a.cpu:.2f} (companions alone: {c.cpu - s.cpu:.2f})"
            )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "wheel": wheel.name,
                    "compressed": wheel.stat().st_size,
                    "library": {"member": big_member, "size": big_size, "compressed": big_comp},
                    "max_size": limit,
                    "cores": os.cpu_count(),
                    "companions": [{"wheel": w, "member": m, "size": s, "compressed": cc} for w, m, s, cc in layout],
                    "rows": [{"name": r.name, "samples": [x.__dict__ for x in r.samples]} for r in rows],
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
