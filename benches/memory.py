#!/usr/bin/env python3
"""Peak RSS of every command over every hostile case (issue 11's memory target).

Runs `wheelslim -j 2 --memory 256M <cmd>` over each wheel in fixtures/hostile/ (or the wheels
given) and prints the peak resident set of each child from `os.wait4`'s rusage, failing when
one exceeds --memory + 256 MiB. Usage: benches/memory.py [--bin target/release/wheelslim] [WHEEL...]
"""
import argparse
import glob
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MEMORY = 256 << 20
BOUND_KIB = (MEMORY + (256 << 20)) >> 10


def peak(argv):
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    return os.waitstatus_to_exitcode(status), usage.ru_maxrss


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "debug", "wheelslim"))
    ap.add_argument("wheels", nargs="*")
    args = ap.parse_args()
    wheels = args.wheels or sorted(glob.glob(os.path.join(ROOT, "fixtures", "hostile", "*.whl")))
    over = 0
    worst = (0, "")
    for w in wheels:
        with tempfile.TemporaryDirectory() as out:
            for cmd in (["audit", w], ["verify", w], ["split", "-w", out, w],
                        ["trim", "--sm", "90", "-w", out, w], ["trim", "--gfx", "gfx90a", "-w", out, w]):
                code, rss = peak([args.bin] + cmd[:1] + ["-j", "2", "--memory", str(MEMORY)] + cmd[1:])
                tag = "OVER" if rss > BOUND_KIB else "ok"
                over += rss > BOUND_KIB
                worst = max(worst, (rss, f"{cmd[0]} {' '.join(cmd[1:-1])} {os.path.basename(w)}"))
                print(f"{rss:>9} KiB  exit {code:>3}  {tag:4}  {cmd[0]} {' '.join(cmd[1:-1])} {os.path.basename(w)}")
    print(f"worst: {worst[0]} KiB ({worst[1]}); bound {BOUND_KIB} KiB; {over} over")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
