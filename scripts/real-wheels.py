#!/usr/bin/env python3
"""Helper of scripts/real-wheels.sh: describes an installed (or unpacked) set of wheels with outside
tools only (readelf, eu-elflint, ldd, ld.so via ctypes, cuobjdump, clang-offload-bundler), and
compares the description of wheelslim's outputs against the one of its input.

It never uses wheelslim's own parsers: every fact comes from the outside tools, so a wheelslim bug
cannot hide itself.

  probe TREE OUT.json [--native] [--python PY]    describe every file and ELF object under TREE
  compare MODE BASE.json OUT.json [--sm L|--gfx L] print `STATUS<TAB>check<TAB>detail` lines
  audit-count AUDIT.json BASE.json                 wheelslim audit's device entries vs cuobjdump
  reqs INPUT.whl SITE OUTPUT.whl...                added Requires-Dist satisfied in SITE?
  keeps INPUT.whl OUTPUT.whl                       every payload member of INPUT still in OUTPUT?
  self-req OUTPUT.whl...                           no output requires its own project
"""
import json
import os
import re
import subprocess
import sys
import zipfile

HOST_MACHINES = {62: "x86_64", 183: "aarch64", 21: "ppc64"}
EM_CUDA = 190
EM_AMDGPU = 224
CUOBJDUMP = os.environ.get("WHEELSLIM_CUOBJDUMP", "cuobjdump")
BUNDLER = os.environ.get("WHEELSLIM_OFFLOAD_BUNDLER", "clang-offload-bundler-19")


def run(cmd, env=None, timeout=600):
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=timeout)
        return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        return 124, "", "timed out after %ss" % timeout
    except OSError as e:
        return 127, "", str(e)


def norm_name(base):
    """auditwheel renames libfoo.so.1 to libfoo-1a2b3c4d.so.1; wheelslim --unhash undoes it."""
    return re.sub(r"-[0-9a-f]{8}(?=\.so)", "", base)


def norm_msg(line):
    return re.sub(r"0x[0-9a-f]+|\d+", "N", line.strip())


def elf_header(path):
    try:
        with open(path, "rb") as f:
            h = f.read(64)
    except OSError:
        return None
    if len(h) < 20 or h[:4] != b"\x7fELF":
        return None
    little = h[5] == 1
    order = "little" if little else "big"
    return {"type": int.from_bytes(h[16:18], order), "machine": int.from_bytes(h[18:20], order)}


# cuobjdump 13 refuses a whole fatbin that holds an image for an architecture it no longer supports
# ("Support for 'sm_30' has been removed"), which CUDA 10.2/11.x fatbins do. It still lists the
# images of one architecture it supports (-arch), so for those files the oracle covers these only.
OLD_TOOLKIT_ARCHS = ["sm_75", "sm_80", "sm_86", "sm_87", "sm_89", "sm_90"]


def cuobj_list(path, arch=None):
    # -all: both the executable (.nv_fatbin) and the relocatable (__nv_relfatbin) fatbins
    cmd = [CUOBJDUMP, "-all"] + (["-arch", arch] if arch else []) + ["-lelf", "-lptx", path]
    rc, out, err = run(cmd)
    entries = []
    for line in out.splitlines():
        m = re.match(r"\s*(ELF|PTX) file\s+\d+:\s*(\S+)", line)
        if m:
            a = re.search(r"\.(sm|compute)_(\d+[a-z]?)\.(cubin|ptx)$", m.group(2))
            entries.append(("sass" if m.group(1) == "ELF" else "ptx") + ":" + (a.group(2) if a else "?"))
    lines = [l for l in err.strip().splitlines() if "fatal" in l or "rror" in l]
    return rc, entries, (lines[0] if lines else "")


def cuobj_entries(path):
    rc, entries, err = cuobj_list(path)
    if rc != 0 and "has been removed" in err:
        part = []
        for a in OLD_TOOLKIT_ARCHS:
            r2, e2, err2 = cuobj_list(path, a)
            if r2 != 0:
                return {"rc": rc, "entries": [], "err": err}
            part += e2
        return {"rc": 0, "entries": part, "err": "", "only": [a[3:] for a in OLD_TOOLKIT_ARCHS], "why": err}
    return {"rc": rc, "entries": entries, "err": err}


def hip_targets(path, tmp):
    blob = tmp + ".hipfb"
    rc, _, err = run(["objcopy", "--dump-section", ".hip_fatbin=" + blob, path, tmp + ".junk"])
    for p in (tmp + ".junk",):
        if os.path.exists(p):
            os.unlink(p)
    if rc != 0:
        return {"rc": rc, "targets": [], "err": err.strip()[:200]}
    rc, out, err = run([BUNDLER, "--list", "--type=o", "--input=" + blob])
    os.unlink(blob)
    return {"rc": rc, "targets": sorted(set(out.split())), "err": err.strip()[:200]}


def probe(tree, out_json, native, python):
    files = {}
    elves = {}
    tmp = out_json + ".tmp"
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        for fn in sorted(filenames):
            full = os.path.join(dirpath, fn)
            rel = os.path.relpath(full, tree)
            if ".dist-info" + os.sep in rel or rel.startswith("__pycache__") or "/__pycache__/" in rel:
                continue
            if rel.endswith(".pyc"):
                continue
            if os.path.islink(full):
                files[rel] = -1
                continue
            files[rel] = os.path.getsize(full)
            h = elf_header(full)
            if h is None:
                continue
            e = {"machine": h["machine"], "type": h["type"], "size": files[rel]}
            if h["machine"] == EM_CUDA:
                e["device"] = "loose-cubin"
                e["cuobj"] = cuobj_entries(full)
            elif h["machine"] == EM_AMDGPU:
                e["device"] = "loose-hsaco"
            elif h["machine"] in HOST_MACHINES:
                rc, out, err = run(["readelf", "-W", "-h", "-l", "-S", "-d", full])
                e["readelf"] = {"rc": rc, "msgs": sorted({norm_msg(l) for l in err.splitlines() if l.strip()})}
                secs = set(re.findall(r"\]\s+(\S+)\s+[A-Z_]+", out))
                e["interp"] = ".interp" in secs
                rc, out, err = run(["eu-elflint", "--gnu-ld", full])
                e["elflint"] = sorted({norm_msg(l) for l in (out + err).splitlines()
                                       if l.strip() and not l.startswith("No errors")})
                if ".nv_fatbin" in secs or "__nv_relfatbin" in secs:
                    e["device"] = "cuda"
                    e["cuobj"] = cuobj_entries(full)
                if ".hip_fatbin" in secs:
                    e["device"] = "hip"
                    e["hip"] = hip_targets(full, tmp)
                if native:
                    rc, out, err = run(["ldd", full])
                    e["ldd_rc"] = rc
                    e["ldd_nf"] = sorted({norm_name(l.split("=>")[0].strip())
                                          for l in out.splitlines() if "not found" in l})
                    if h["type"] == 3 and not e["interp"]:
                        env = dict(os.environ, LD_BIND_NOW="1")
                        rc, out, err = run([python, "-c", "import ctypes,sys; ctypes.CDLL(sys.argv[1])", full],
                                           env=env, timeout=120)
                        lines = [l for l in err.strip().splitlines() if l.strip()]
                        e["dlopen"] = "ok" if rc == 0 else (lines[-1][:300] if lines else "rc=%d" % rc)
            elves[rel] = e
    with open(out_json, "w") as f:
        json.dump({"tree": tree, "native": native, "files": files, "elves": elves}, f)


def index(desc):
    """Key every ELF object by its path, and by its (unhashed) file name for moved ones."""
    by_name = {}
    for rel in desc["elves"]:
        by_name.setdefault(norm_name(os.path.basename(rel)), []).append(rel)
    return by_name


def counterpart(rel, base, base_names):
    if rel in base["elves"]:
        return rel
    cands = base_names.get(norm_name(os.path.basename(rel)), [])
    return cands[0] if len(cands) == 1 else None


def sm_num(a):
    m = re.match(r"(\d+)", a)
    return int(m.group(1)) if m else None


def runs_on(entry, targets):
    kind, arch = entry.split(":", 1)
    n = sm_num(arch)
    if n is None or kind != "sass":
        return False
    return any(n // 10 == t // 10 and n <= t for t in targets)


def emit(status, check, detail):
    print("%s\t%s\t%s" % (status, check, detail.replace("\t", " ").replace("\n", " | ")))


def summarize(items, limit=3):
    items = list(items)
    s = "; ".join(items[:limit])
    if len(items) > limit:
        s += "; ... (%d in all)" % len(items)
    return s


def compare(mode, base_json, out_json, sm, gfx):
    base = json.load(open(base_json))
    out = json.load(open(out_json))
    base_names = index(base)
    out_names = index(out)
    # 1. files: nothing of the input may vanish (moved files keep their name, maybe unhashed)
    out_by_name = {}
    for rel in out["files"]:
        out_by_name.setdefault(norm_name(os.path.basename(rel)), []).append(rel)
    lost = [rel for rel in base["files"] if rel not in out["files"]
            and norm_name(os.path.basename(rel)) not in out_by_name]
    moved = [rel for rel in base["files"] if rel not in out["files"] and rel not in lost]
    if lost:
        emit("FAIL", "files", "%d of %d input files missing from the installed outputs: %s"
             % (len(lost), len(base["files"]), summarize(lost)))
    else:
        emit("PASS", "files", "%d input files all present (%d moved)" % (len(base["files"]), len(moved)))
    pairs = []
    for rel, e in out["elves"].items():
        b = counterpart(rel, base, base_names)
        pairs.append((rel, e, base["elves"].get(b) if b else None))
    host = [(r, e, b) for r, e, b in pairs if "readelf" in e]
    # 2. readelf: every host ELF readable, no new warnings
    bad = []
    for r, e, b in host:
        new = set(e["readelf"]["msgs"]) - set(b["readelf"]["msgs"] if b and "readelf" in b else [])
        if e["readelf"]["rc"] != 0 or new:
            bad.append("%s: rc=%d %s" % (r, e["readelf"]["rc"], summarize(sorted(new), 1)))
    emit("FAIL" if bad else "PASS", "readelf",
         ("%d of %d ELF objects: %s" % (len(bad), len(host), summarize(bad))) if bad
         else "%d ELF objects read cleanly" % len(host))
    # 3. eu-elflint: no complaint the input did not have
    bad = []
    for r, e, b in host:
        old = set(b["elflint"]) if b and "elflint" in b else set()
        new = sorted(set(e["elflint"]) - old)
        if new:
            bad.append("%s: %d new (%s)" % (r, len(new), new[0][:160]))
    emit("FAIL" if bad else "PASS", "elflint",
         ("%d of %d objects have new complaints: %s" % (len(bad), len(host), summarize(bad))) if bad
         else "%d objects, no new complaints" % len(host))
    # 4. device code, through cuobjdump / clang-offload-bundler
    base_dev = [r for r, e in base["elves"].items() if e.get("device")]
    if base_dev:
        device_check(mode, base, out, base_dev, out_names, sm, gfx)
    # 5. ldd / dlopen (only for trees of this machine's architecture)
    if not out.get("native") or not base.get("native"):
        emit("SKIP", "ldd", "not this machine's architecture")
        emit("SKIP", "dlopen", "not this machine's architecture")
        return
    bad = []
    for r, e, b in host:
        if "ldd_nf" not in e:
            continue
        old = set(b.get("ldd_nf", [])) if b else set()
        new = sorted(set(e["ldd_nf"]) - old)
        if new:
            bad.append("%s: %s => not found" % (r, ", ".join(new)))
    emit("FAIL" if bad else "PASS", "ldd",
         ("%d objects gained unresolved NEEDED: %s" % (len(bad), summarize(bad))) if bad
         else "%d objects, no NEEDED newly unresolved" % len([1 for _, e, _ in host if "ldd_nf" in e]))
    bad = []
    tried = loaded = 0
    for r, e, b in host:
        if "dlopen" not in e:
            continue
        tried += 1
        loaded += e["dlopen"] == "ok"
        if e["dlopen"] != "ok" and b is not None and b.get("dlopen") == "ok":
            bad.append("%s: %s" % (r, e["dlopen"]))
    base_loaded = sum(1 for e in base["elves"].values() if e.get("dlopen") == "ok")
    emit("FAIL" if bad else "PASS", "dlopen",
         ("%d libraries loaded from the input but not from the outputs: %s" % (len(bad), summarize(bad)))
         if bad else "LD_BIND_NOW=1 dlopen: %d/%d load (input: %d)" % (loaded, tried, base_loaded))


def companions_of(out, key):
    """Device-code companions wheelslim wrote beside the library `key` (libx.wsdev1.so beside
    libx.so.2, in the same folder): its device code is theirs and its own together."""
    folder, base = os.path.split(key)
    stem = base.split(".so")[0]
    pat = re.compile(re.escape(stem) + r"\.wsdev\d+\.so$")
    return sorted(k for k in out["elves"]
                  if os.path.dirname(k) == folder and pat.match(os.path.basename(k)))


def with_companions(out, key, o):
    """The output library `o` (at `key`) as the oracles see it together with its companions:
    their cuobjdump entries and bundle targets added to its own."""
    comps = companions_of(out, key)
    if not comps:
        return o
    o = dict(o)
    if any("cuobj" in out["elves"][c] for c in comps):
        own = o.get("cuobj") or {}
        entries = list(own.get("entries", [])) if own.get("rc", 1) == 0 else []
        for c in comps:
            cu = out["elves"][c].get("cuobj") or {}
            if cu.get("rc", 1) != 0:
                return o  # the oracle cannot read a companion: judged on the host alone
            entries += cu.get("entries", [])
        o["cuobj"] = {"rc": 0, "entries": entries}
    if any("hip" in out["elves"][c] for c in comps):
        own = o.get("hip") or {}
        targets = list(own.get("targets", [])) if own.get("rc", 1) == 0 else []
        for c in comps:
            targets += (out["elves"][c].get("hip") or {}).get("targets", [])
        o["hip"] = {"rc": 0, "targets": sorted(targets)}
    return o


def device_check(mode, base, out, base_dev, out_names, sm, gfx):
    targets = [sm_num(t) for t in sm.split(",")] if sm else []
    bad = []
    before = after = 0
    nfiles = 0
    for rel in base_dev:
        b = base["elves"][rel]
        key = rel if rel in out["elves"] else None
        if key is None:
            cands = out_names.get(norm_name(os.path.basename(rel)), [])
            key = cands[0] if len(cands) == 1 else None
        if key is None:
            bad.append("%s: gone from the outputs" % rel)
            continue
        o = with_companions(out, key, out["elves"][key])
        if "hip" in b and o is not out["elves"][key]:
            b = dict(b)
            b["hip"] = dict(b["hip"], targets=sorted(b["hip"]["targets"]))
        nfiles += 1
        if "cuobj" in b:
            if b["cuobj"]["rc"] != 0:
                continue  # the oracle cannot read the input either
            be, oe = b["cuobj"]["entries"], (o.get("cuobj") or {}).get("entries", [])
            before += len(be)
            after += len(oe)
            if not o.get("cuobj") or o["cuobj"]["rc"] != 0:
                bad.append("%s: cuobjdump cannot list the output: %s" % (rel, (o.get("cuobj") or {}).get("err", "no device code section")))
            elif mode == "split" and sorted(be) != sorted(oe):
                bad.append("%s: device code changed by a split without --sm (%d -> %d entries)" % (rel, len(be), len(oe)))
            elif mode in ("trim", "trim-absent"):
                if be and not oe:
                    bad.append("%s: every device image removed (%d before)" % (rel, len(be)))
                elif targets and any(runs_on(x, targets) for x in be) and not any(runs_on(x, targets) for x in oe):
                    bad.append("%s: lost the SASS for the requested --sm %s" % (rel, sm))
            if mode == "trim-absent" and sorted(be) != sorted(oe):
                bad.append("%s: %d of %d images removed for an architecture it does not carry" % (rel, len(be) - len(oe), len(be)))
        if "hip" in b:
            bt, ot = b["hip"]["targets"], (o.get("hip") or {}).get("targets", [])
            before += len(bt)
            after += len(ot)
            if not o.get("hip") or o["hip"]["rc"] != 0:
                bad.append("%s: clang-offload-bundler cannot list the output: %s" % (rel, (o.get("hip") or {}).get("err", "")))
            elif mode == "split" and bt != ot:
                bad.append("%s: offload bundle changed by a split (%d -> %d targets)" % (rel, len(bt), len(ot)))
            elif mode == "trim" and gfx:
                for g in gfx.split(","):
                    if any(t.endswith("-" + g) for t in bt) and not any(t.endswith("-" + g) for t in ot):
                        bad.append("%s: lost its %s code object" % (rel, g))
                if not any(t.startswith("host-") for t in ot) and any(t.startswith("host-") for t in bt):
                    bad.append("%s: lost the host entry of its bundle" % rel)
    if mode == "trim" and not gfx:
        # issue 10 item 11: a trim must not silently leave a library without any PTX to JIT from
        nojit = []
        for rel in base_dev:
            b = base["elves"][rel]
            o = out["elves"].get(rel) or {}
            be = (b.get("cuobj") or {}).get("entries", [])
            oe = (o.get("cuobj") or {}).get("entries", [])
            if any(x.startswith("ptx:") for x in be) and oe and not any(x.startswith("ptx:") for x in oe):
                nojit.append("%s (had %s)" % (rel, ",".join(sorted({x[4:] for x in be if x.startswith("ptx:")}))))
        if nojit:
            emit("FAIL", "ptx", "%d libraries left without PTX (no JIT for newer GPUs): %s" % (len(nojit), summarize(nojit)))
        else:
            emit("PASS", "ptx", "every library that had PTX still has some")
    hip = any("hip" in base["elves"][r] for r in base_dev)
    what = "bundle entries" if hip else "device images"
    if bad:
        emit("FAIL", "device", "%d of %d files: %s (%s %d -> %d)" % (len(bad), len(base_dev), summarize(bad), what, before, after))
    else:
        emit("PASS", "device", "%d files with device code, %s %d -> %d (oracle: %s)"
             % (nfiles, what, before, after, "clang-offload-bundler" if hip else "cuobjdump"))


def audit_count(audit_json, base_json):
    base = json.load(open(base_json))
    try:
        audit = json.load(open(audit_json))
    except ValueError as e:
        emit("FAIL", "audit-vs-cuobjdump", "audit --json printed no JSON (%s)" % e)
        return
    rows = {}
    for w in audit.get("wheels", []):
        for d in w.get("device_code", []):
            if d.get("kind") in ("cuda", "loose-cubin"):
                rows[d["member"]] = d.get("rows", [])

    def count(rs, only):
        return sum(r.get("entries", 0) for r in rs
                   if only is None or re.sub(r"^(sm|compute)_", "", r.get("arch", "")) in only)

    bad, n, total, unread, partial = [], 0, 0, 0, 0
    for rel, e in base["elves"].items():
        c = e.get("cuobj")
        if not c:
            continue
        if c["rc"] != 0:
            unread += 1
            continue
        n += 1
        partial += "only" in c
        total += len(c["entries"])
        rs = rows.get(rel.replace(os.sep, "/"))
        if rs is None:
            # installed trees keep the wheel's paths, except .data/ folders
            rs = next((v for k, v in rows.items() if k.endswith("/" + rel)), None)
        got = None if rs is None else count(rs, c.get("only"))
        if got != len(c["entries"]):
            bad.append("%s: cuobjdump lists %d%s, audit %s" % (rel, len(c["entries"]),
                       " (of %s)" % ",".join(c["only"]) if "only" in c else "", "nothing" if got is None else got))
    if n == 0:
        emit("SKIP", "audit-vs-cuobjdump", ("cuobjdump cannot read the %d files with device code" % unread)
             if unread else "no CUDA device code")
    elif bad:
        emit("FAIL", "audit-vs-cuobjdump", "%d of %d files disagree: %s" % (len(bad), n, summarize(bad)))
    else:
        emit("PASS", "audit-vs-cuobjdump", "%d files, %d entries, all as cuobjdump lists them%s" % (n, total,
             " (%d files only for sm_75..sm_90: cuobjdump 13 refuses their sm_30..sm_72 images)" % partial if partial else ""))


def metadata(whl):
    with zipfile.ZipFile(whl) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        text = z.read(name).decode("utf-8", "replace")
    head = text.split("\n\n", 1)[0]
    fields = {}
    for line in head.splitlines():
        if ":" in line and not line.startswith((" ", "\t")):
            k, v = line.split(":", 1)
            fields.setdefault(k.strip().lower(), []).append(v.strip())
    return fields


def canon(n):
    return re.sub(r"[-_.]+", "-", n).lower()


def reqs(input_whl, site, outputs):
    from importlib import metadata as md
    from pip._vendor.packaging.requirements import Requirement
    before = set(metadata(input_whl).get("requires-dist", []))
    added = []
    for o in outputs:
        for r in metadata(o).get("requires-dist", []):
            if r not in before:
                added.append(r)
    installed = {canon(d.metadata["Name"]): d.version for d in md.distributions(path=[site])}
    bad = []
    for r in added:
        req = Requirement(r)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        v = installed.get(canon(req.name))
        if v is None or (req.specifier and not req.specifier.contains(v, prereleases=True)):
            bad.append("%s (installed: %s)" % (r, v or "none"))
    if bad:
        emit("FAIL", "requires", "added requirements not met by the outputs: %s" % summarize(bad))
    else:
        emit("PASS", "requires", "%d added requirement(s) met by the output set: %s" % (len(added), summarize(added) or "-"))


def keeps(input_whl, output_whl):
    def payload(w):
        with zipfile.ZipFile(w) as z:
            return {i.filename: i.file_size for i in z.infolist()
                    if ".dist-info/" not in i.filename and not i.filename.endswith("/")}
    a, b = payload(input_whl), payload(output_whl)
    gone = sorted(set(a) - set(b))
    if gone:
        emit("FAIL", "vendor-keeps", "the vendor's own wheel lost %d of %d files: %s" % (len(gone), len(a), summarize(gone)))
    else:
        emit("PASS", "vendor-keeps", "all %d payload files stay in the vendor's own wheel" % len(a))


def self_req(outputs):
    bad = []
    for o in outputs:
        m = metadata(o)
        me = canon(m.get("name", ["?"])[0])
        for r in m.get("requires-dist", []):
            n = canon(re.split(r"[\s;<>=!~\[(]", r, 1)[0])
            if n == me:
                bad.append("%s requires itself: %s" % (os.path.basename(o), r))
    emit("FAIL" if bad else "PASS", "self-require", summarize(bad) if bad else "no output requires its own project")


def cuda_major(outputs, want):
    """Runtime wheels and requirements must name the CUDA major the input was built for."""
    seen = []
    for o in outputs:
        m = metadata(o)
        for text in [os.path.basename(o)] + m.get("requires-dist", []):
            for d in re.findall(r"(?<![a-z])cu(?:da)?[-_]?(\d{2,3})(?!\d)", text.lower()):
                major = int(d[:2]) if d.startswith("1") else int(d[0])
                if major != want:
                    seen.append("%s names CUDA %d" % (text.split(";")[0].strip(), major))
    if seen:
        emit("FAIL", "cuda-major", "the input is CUDA %d: %s" % (want, summarize(sorted(set(seen)))))
    else:
        emit("PASS", "cuda-major", "no output names another CUDA major than %d" % want)


def main(argv):
    cmd = argv[1]
    if cmd == "probe":
        native = "--native" in argv
        py = argv[argv.index("--python") + 1] if "--python" in argv else sys.executable
        probe(argv[2], argv[3], native, py)
    elif cmd == "compare":
        sm = argv[argv.index("--sm") + 1] if "--sm" in argv else ""
        gfx = argv[argv.index("--gfx") + 1] if "--gfx" in argv else ""
        compare(argv[2], argv[3], argv[4], sm, gfx)
    elif cmd == "audit-count":
        audit_count(argv[2], argv[3])
    elif cmd == "reqs":
        reqs(argv[2], argv[3], argv[4:])
    elif cmd == "keeps":
        keeps(argv[2], argv[3])
    elif cmd == "cuda-major":
        cuda_major(argv[3:], int(argv[2]))
    elif cmd == "self-req":
        self_req(argv[2:])
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main(sys.argv)
