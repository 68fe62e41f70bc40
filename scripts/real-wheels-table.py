#!/usr/bin/env python3
"""Turns the --results file of scripts/real-wheels.sh into the Markdown table of the README's
"Real wheels" results: one row per wheel, the main commands' outcome, and every check that did
not pass (FAIL, KNOWN-ISSUE or SKIP) by name.

    scripts/real-wheels-table.py results.tsv > table.md
"""
import re
import sys
from collections import OrderedDict


def short(detail):
    """The detail of a check without the known-issue remark the script appends."""
    return re.sub(r"\s*\[listed as known issue.*\]$", "", detail).strip()


def main(path):
    rows = OrderedDict()
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 4:
                continue
            wheel, check, verdict, detail = parts[0], parts[1], parts[2], "\t".join(parts[3:])
            rows.setdefault(wheel, []).append((check, verdict, short(detail)))
    print("| wheel | input | audit | split | trim | checks passed | not passing |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for wheel, checks in rows.items():
        by = {c: (v, d) for c, v, d in checks}

        def cell(name):
            if name not in by:
                return "–"
            v, d = by[name]
            d = d.replace("|", "\\|").replace(" -> ", " → ")
            return d if v == "PASS" else f"**{v}**: {d}"

        size = by.get("fetch", ("", ""))[1].split(",")[0]
        passed = sum(1 for _, v, _ in checks if v == "PASS")
        other = [f"`{c}` ({v.lower()})" for c, v, _ in checks if v != "PASS"]
        split, trim = cell("split"), cell("trim")
        if "split-debug" in by:
            split += f"; with --strip-debug: {cell('split-debug')}"
        if "trim-debug" in by:
            trim = cell("trim-debug") if trim == "–" else f"{trim}; {cell('trim-debug')}"
        print(
            f"| {wheel} | {size} | {cell('audit')} | {split} | {trim} | "
            f"{passed}/{len(checks)} | {', '.join(other) or 'none'} |"
        )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
