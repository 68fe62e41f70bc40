#!/usr/bin/env python3
"""Writes the release lists of profiles/upstream-releases.toml from the package index.

Usage: scripts/upstream-releases.py [DIR]  (network: runs `pip index versions` per package,
or reads DIR/<package>.txt holding that command's "Available versions:" line).
The library-version table and the digests at the end of the file are copied from the old file
(the digests were written from the cached wheels their `source` names).
"""
import pathlib, re, subprocess, sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "profiles/upstream-releases.toml"


def packages():
    names = set()
    for p in (ROOT / "profiles").glob("*.toml"):
        for m in re.finditer(r'package = "([^"]+)"', p.read_text()):
            n = m.group(1)
            if "{cuda}" in n:
                names.update(n.replace("{cuda}", c) for c in ("11", "12", "13"))
            else:
                names.add(n)
    return sorted(names)


def versions(name, cache):
    if cache:
        text = (pathlib.Path(cache) / f"{name}.txt").read_text()
    else:
        text = subprocess.run(["pip", "index", "versions", name], capture_output=True,
                              text=True, check=True).stdout
    line = next(l for l in text.splitlines() if l.startswith("Available versions:"))
    return [v.strip() for v in line.split(":", 1)[1].split(",") if v.strip()]


def main():
    cache = sys.argv[1] if len(sys.argv) > 1 else None
    old = OUT.read_text() if OUT.exists() else ""
    keep = old[old.index("# --- library versions"):] if "# --- library versions" in old else ""
    out = [
        "# Releases of the upstream wheels the profiles name, as the package index lists them",
        "# (`pip index versions <package>`, written by scripts/upstream-releases.py on 2026-12-01).",
        "# `split --upstream` only emits a requirement that one of these releases satisfies.",
        "",
    ]
    for n in packages():
        vs = versions(n, cache)
        out.append("[[package]]")
        out.append(f'name = "{n}"')
        out.append("versions = [" + ", ".join(f'"{v}"' for v in vs) + "]")
        out.append("")
    OUT.write_text("\n".join(out) + keep)


main()
