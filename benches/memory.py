#!/usr/bin/env python3
"""Peak RSS of every command over every hostile case (issue 11's memory target).

Runs `wheelslim -j 2 --memory 256M <cmd>` over each wheel in fixtures/hostile/ (or the wheels
given) and prints the peak resident set of each child from `os.wait4`'s rusage, failing when
one exceeds --memory + 256 MiB. Usage:
benches/memory.py [--bin target/release/wheelslim] [--memory MIB] [WHEEL...]
(--memory 1024 runs the device-code cases that a quarter of 256M refuses, such as
ccob_kept_250m and ccob_four_200m, within their cap.)

With --real, the wheels given are large real ones and the commands run at `-j 2` with the
default --memory: audit, verify, split, split --sm 90, trim --sm 90 (split and trim with
--max-size 64G, so that an oversize wheel is rewritten rather than refused). The target of a
command is the largest member it rewrote (one whose CRC differs between input and outputs,
.dist-info left out) + 256 MiB, as issue 11 sets it; audit and verify rewrite nothing, so
theirs is 256 MiB (large libraries are described from their parts, never held whole).
Prints a markdown row per command and exits 1 when any peak is over its target.
"""
import argparse
import glob
import os
import subprocess
import sys
import tempfile
import zipfile

MIB = 1 << 20
REAL = (("audit", []), ("verify", []), ("split", ["--max-size", "64G"]),
        ("split", ["--sm", "90", "--max-size", "64G"]), ("trim", ["--sm", "90", "--max-size", "64G"]))


def members(path):
    with zipfile.ZipFile(path) as z:
        return {i.filename: (i.CRC, i.file_size) for i in z.infolist()
                if ".dist-info/" not in i.filename}


def largest_elf(path):
    best = 0
    with zipfile.ZipFile(path) as z:
        for i in z.infolist():
            if i.file_size > best and not i.is_dir():
                with z.open(i) as f:
                    if f.read(4) == b"\x7fELF":
                        best = i.file_size
    return best


def rewritten(before, outdir):
    """The largest member of the input whose bytes differ in some output wheel."""
    best = 0
    for w in glob.glob(os.path.join(outdir, "**", "*.whl"), recursive=True):
        for name, (crc, size) in members(w).items():
            if name in before and before[name][0] != crc:
                best = max(best, before[name][1])
    return best


def real(binary, wheels):
    print("| wheel | size | largest ELF member | command | largest rewritten member | exit | peak RSS | target | ratio |")
    print("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    over = 0
    for w in wheels:
        before = members(w)
        elf = largest_elf(w)
        for cmd, extra in REAL:
            with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as out:
                argv = [binary, cmd, "-j", "2"] + extra
                argv += [w] if cmd in ("audit", "verify") else ["-w", out, w]
                code, rss = peak(argv)
                moved = rewritten(before, out) if cmd in ("split", "trim") else 0
            target = moved + 256 * MIB
            ratio = rss * 1024 / target
            over += ratio > 1
            label = " ".join([cmd] + [a for a in extra if a not in ("--max-size", "64G")])
            print(f"| {os.path.basename(w)} | {os.path.getsize(w) / MIB:.0f} MiB | {elf / MIB:.0f} MiB "
                  f"| {label} | {moved / MIB:.0f} MiB | {code} | {rss / 1024:.0f} MiB "
                  f"| {target / MIB:.0f} MiB | {ratio:.2f}{' **over**' if ratio > 1 else ''} |", flush=True)
    return 1 if over else 0

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def peak(argv):
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    return os.waitstatus_to_exitcode(status), usage.ru_maxrss


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "debug", "wheelslim"))
    ap.add_argument("--real", action="store_true", help="large real wheels, default --memory")
    ap.add_argument("--memory", type=int, default=256, help="--memory in MiB (default 256)")
    ap.add_argument("wheels", nargs="*")
    args = ap.parse_args()
    if args.real:
        return real(args.bin, args.wheels)
    memory = args.memory << 20
    bound_kib = (memory + (256 << 20)) >> 10
    wheels = args.wheels or sorted(glob.glob(os.path.join(ROOT, "fixtures", "hostile", "*.whl")))
    over = 0
    worst = (0, "")
    for w in wheels:
        with tempfile.TemporaryDirectory() as out:
            for cmd in (["audit", w], ["verify", w], ["split", "-w", out, w],
                        ["trim", "--sm", "90", "-w", out, w], ["trim", "--gfx", "gfx90a", "-w", out, w]):
                code, rss = peak([args.bin] + cmd[:1] + ["-j", "2", "--memory", str(memory)] + cmd[1:])
                tag = "OVER" if rss > bound_kib else "ok"
                over += rss > bound_kib
                worst = max(worst, (rss, f"{cmd[0]} {' '.join(cmd[1:-1])} {os.path.basename(w)}"))
                print(f"{rss:>9} KiB  exit {code:>3}  {tag:4}  {cmd[0]} {' '.join(cmd[1:-1])} {os.path.basename(w)}")
    print(f"worst: {worst[0]} KiB ({worst[1]}); bound {bound_kib} KiB; {over} over")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
