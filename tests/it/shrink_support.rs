//! Test-only helpers for the ELF shrinker: tiny walkers for CUDA containers and HIP bundles
//! (deliberately independent of the crate's fatbin parser), rebuilders that keep a subset of
//! entries, and runners for the outside oracles (readelf, cuobjdump, ctypes, qemu).

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use wheelslim::elf::shrink::{Block, SectionEdit, ShrinkMethod, ShrinkOutcome};

use crate::common::{fixture, tool_env};

pub fn rd16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
pub fn rd32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
pub fn rd64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// (file offset, address, size) of a section, read with goblin.
pub fn section(data: &[u8], name: &str) -> Option<(usize, u64, usize)> {
    let elf = goblin::elf::Elf::parse(data).expect("goblin parses the file");
    elf.section_headers.iter().find_map(|sh| {
        (elf.shdr_strtab.get_at(sh.sh_name) == Some(name)).then_some((
            sh.sh_offset as usize,
            sh.sh_addr,
            sh.sh_size as usize,
        ))
    })
}

/// Largest PT_LOAD alignment, read with goblin.
pub fn load_align(data: &[u8]) -> u64 {
    let elf = goblin::elf::Elf::parse(data).unwrap();
    elf.program_headers
        .iter()
        .filter(|p| p.p_type == goblin::elf::program_header::PT_LOAD)
        .map(|p| p.p_align)
        .max()
        .unwrap()
}

/// A container of a device section: offset from the section start, length, and its entries
/// (offset from the container start, length).
#[derive(Debug, Clone)]
pub struct Container {
    pub off: usize,
    pub len: usize,
    pub entries: Vec<(usize, usize)>,
}

/// Walks the CUDA containers of a section (8-aligned, back to back, zero padding between).
pub fn cuda_containers(sec: &[u8]) -> Vec<Container> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + 16 <= sec.len() {
        if rd32(sec, at) != 0xBA55ED50 {
            assert!(
                sec[at..at + 8].iter().all(|&b| b == 0),
                "junk between containers at +{at:#x}"
            );
            at += 8;
            continue;
        }
        let hdr = rd16(sec, at + 6) as usize;
        let total = hdr + rd64(sec, at + 8) as usize;
        let mut entries = Vec::new();
        let mut e = hdr;
        while e < total {
            let n = rd32(sec, at + e + 4) as usize + rd64(sec, at + e + 8) as usize;
            entries.push((e, n));
            e += n;
        }
        assert_eq!(e, total, "entries run past the container at +{at:#x}");
        out.push(Container {
            off: at,
            len: total,
            entries,
        });
        at = (at + total + 7) & !7;
    }
    out
}

/// A container with only the entries at `keep` (header copied, size patched).
pub fn rebuild_cuda(sec: &[u8], c: &Container, keep: &[usize]) -> Vec<u8> {
    let base = c.off;
    let hdr = c.entries.first().map_or(16, |e| e.0);
    let mut out = sec[base..base + hdr].to_vec();
    for &k in keep {
        let (o, n) = c.entries[k];
        out.extend_from_slice(&sec[base + o..base + o + n]);
    }
    let size = (out.len() - hdr) as u64;
    out[8..16].copy_from_slice(&size.to_le_bytes());
    out
}

/// Which entries of a container to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Only the first entry.
    First,
    /// The last two entries (one when there is only one).
    LastPair,
    /// Everything (the container is not rebuilt).
    All,
}

impl Keep {
    pub fn pick(self, n: usize) -> Vec<usize> {
        match self {
            Keep::First => vec![0],
            Keep::LastPair if n >= 2 => vec![n - 2, n - 1],
            Keep::LastPair => vec![0],
            Keep::All => (0..n).collect(),
        }
    }
}

/// The edit of one CUDA section, and the new containers in section order.
pub fn cuda_edit(data: &[u8], name: &str, keep: Keep) -> (SectionEdit, Vec<Vec<u8>>, usize) {
    let (off, _, size) = section(data, name).unwrap_or_else(|| panic!("no section {name}"));
    let sec = &data[off..off + size];
    let mut blocks = Vec::new();
    let mut news = Vec::new();
    let mut kept_entries = 0;
    for c in cuda_containers(sec) {
        let pick = keep.pick(c.entries.len());
        kept_entries += pick.len();
        let new = rebuild_cuda(sec, &c, &pick);
        news.push(new.clone());
        blocks.push(Block {
            old_offset: c.off as u64,
            old_len: c.len as u64,
            new_bytes: new,
            align: 8,
        });
    }
    (
        SectionEdit {
            name: name.into(),
            blocks,
        },
        news,
        kept_entries,
    )
}

// ---------------------------------------------------------------- HIP bundles

const BUNDLE_MAGIC: &[u8] = b"__CLANG_OFFLOAD_BUNDLE__";

/// (offset, length) of each bundle of `.hip_fatbin` (4096-aligned, zero padding between).
pub fn hip_bundles(sec: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < sec.len() {
        let rest = &sec[at..];
        let len = if rest.starts_with(BUNDLE_MAGIC) {
            let count = rd64(rest, 24) as usize;
            let mut p = 32;
            let mut end = 0;
            for _ in 0..count {
                let (o, s, t) = (
                    rd64(rest, p) as usize,
                    rd64(rest, p + 8) as usize,
                    rd64(rest, p + 16) as usize,
                );
                end = end.max(o + s);
                p += 24 + t;
            }
            end.max(p)
        } else if rest.starts_with(b"CCOB") {
            match rd16(rest, 4) {
                2 => rd32(rest, 8) as usize,
                3 => rd64(rest, 8) as usize,
                v => panic!("CCOB version {v} has no total size"),
            }
        } else {
            assert!(
                rest.iter().take(4096).all(|&b| b == 0),
                "junk between bundles at +{at:#x}"
            );
            at += 4096;
            continue;
        };
        out.push((at, len));
        at = (at + len + 4095) & !4095;
    }
    out
}

/// (triple, offset, size) of each entry of an uncompressed bundle.
pub fn bundle_entries(b: &[u8]) -> Vec<(String, usize, usize)> {
    assert!(b.starts_with(BUNDLE_MAGIC));
    let count = rd64(b, 24) as usize;
    let mut p = 32;
    let mut out = Vec::new();
    for _ in 0..count {
        let (o, s, t) = (
            rd64(b, p) as usize,
            rd64(b, p + 8) as usize,
            rd64(b, p + 16) as usize,
        );
        out.push((
            String::from_utf8(b[p + 24..p + 24 + t].to_vec()).unwrap(),
            o,
            s,
        ));
        p += 24 + t;
    }
    out
}

/// An uncompressed bundle with only the host entry and the triples `keep` accepts; code
/// objects at 4096-aligned offsets.
pub fn rebuild_bundle(b: &[u8], keep: &dyn Fn(&str) -> bool) -> Vec<u8> {
    let kept: Vec<_> = bundle_entries(b)
        .into_iter()
        .filter(|(t, _, _)| t.starts_with("host-") || keep(t))
        .collect();
    let table_len: usize = 32 + kept.iter().map(|(t, _, _)| 24 + t.len()).sum::<usize>();
    let mut cur = (table_len + 4095) & !4095;
    let mut offsets = Vec::new();
    for (_, _, s) in &kept {
        offsets.push(cur);
        if *s > 0 {
            cur = (cur + s + 4095) & !4095;
        }
    }
    let mut out = BUNDLE_MAGIC.to_vec();
    out.extend_from_slice(&(kept.len() as u64).to_le_bytes());
    for ((t, _, s), o) in kept.iter().zip(&offsets) {
        out.extend_from_slice(&(*o as u64).to_le_bytes());
        out.extend_from_slice(&(*s as u64).to_le_bytes());
        out.extend_from_slice(&(t.len() as u64).to_le_bytes());
        out.extend_from_slice(t.as_bytes());
    }
    for ((_, old, s), o) in kept.iter().zip(&offsets) {
        if *s > 0 {
            out.resize(*o, 0);
            out.extend_from_slice(&b[*old..*old + *s]);
        }
    }
    out
}

/// A CCOB v2 (zstd) bundle rebuilt the same way: decompressed, pruned, recompressed.
pub fn rebuild_ccob(b: &[u8], keep: &dyn Fn(&str) -> bool) -> Vec<u8> {
    assert_eq!(&b[..4], b"CCOB");
    assert_eq!(rd16(b, 4), 2, "only CCOB v2 is rebuilt here");
    assert_eq!(rd16(b, 6), 1, "only zstd CCOB is rebuilt here");
    let total = rd32(b, 8) as usize;
    let mut inner = Vec::new();
    zstd::stream::Decoder::new(&b[24..total])
        .unwrap()
        .read_to_end(&mut inner)
        .unwrap();
    assert_eq!(inner.len(), rd32(b, 12) as usize);
    let pruned = rebuild_bundle(&inner, keep);
    let comp = zstd::stream::encode_all(&pruned[..], 19).unwrap();
    use md5::Digest;
    let digest = md5::Md5::digest(&pruned);
    let mut out = b"CCOB".to_vec();
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&((24 + comp.len()) as u32).to_le_bytes());
    out.extend_from_slice(&(pruned.len() as u32).to_le_bytes());
    out.extend_from_slice(&digest[..8]);
    out.extend_from_slice(&comp);
    out
}

/// The `.hip_fatbin` edit keeping host + gfx90a in every bundle; also returns the number of
/// code objects kept.
pub fn hip_edit(data: &[u8]) -> (SectionEdit, usize) {
    let (off, _, size) = section(data, ".hip_fatbin").unwrap();
    let sec = &data[off..off + size];
    let keep = |t: &str| t.ends_with("gfx90a");
    let mut blocks = Vec::new();
    let mut objects = 0;
    for (o, n) in hip_bundles(sec) {
        let b = &sec[o..o + n];
        let new = if b.starts_with(b"CCOB") {
            rebuild_ccob(b, &keep)
        } else {
            let r = rebuild_bundle(b, &keep);
            objects += bundle_entries(&r).iter().filter(|e| e.2 > 0).count();
            r
        };
        assert!(new.len() <= n, "rebuilt bundle grew");
        blocks.push(Block {
            old_offset: o as u64,
            old_len: n as u64,
            new_bytes: new,
            align: 4096,
        });
    }
    (
        SectionEdit {
            name: ".hip_fatbin".into(),
            blocks,
        },
        objects,
    )
}

// ---------------------------------------------------------------- oracles

pub use crate::tools::need;

pub fn run_out(cmd: &mut Command) -> (bool, String, String) {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `(ELF|PTX, sm_XX)` lines of `cuobjdump --list-elf --list-ptx [-all]`.
pub fn cuobjdump_list(path: &Path, all: bool) -> Vec<(String, String)> {
    let tool = tool_env("WHEELSLIM_CUOBJDUMP");
    let mut cmd = Command::new(tool);
    if all {
        cmd.arg("-all");
    }
    cmd.args(["--list-elf", "--list-ptx"]).arg(path);
    let (ok, out, err) = run_out(&mut cmd);
    assert!(ok, "cuobjdump failed on {}: {out}{err}", path.display());
    out.lines()
        .filter_map(|l| {
            let kind = if l.starts_with("ELF file") {
                "ELF"
            } else if l.starts_with("PTX file") {
                "PTX"
            } else {
                return None;
            };
            let at = l.find("sm_")?;
            let arch: String = l[at..].chars().take_while(|&c| c != '.').collect();
            Some((kind.to_string(), arch))
        })
        .collect()
}

/// What cuobjdump lists for standalone containers, in order (the oracle for a trimmed file).
pub fn cuobjdump_of_containers(dir: &Path, containers: &[Vec<u8>]) -> Vec<(String, String)> {
    let mut all = Vec::new();
    for (i, c) in containers.iter().enumerate() {
        let p = dir.join(format!("container{i}.fatbin"));
        std::fs::write(&p, c).unwrap();
        all.extend(cuobjdump_list(&p, false));
    }
    all
}

/// readelf's stderr over the usual views (warnings and errors).
pub fn readelf_complaints(path: &Path) -> String {
    need("readelf", "binutils");
    let (ok, _, err) = run_out(
        Command::new("readelf")
            .args(["-lSrdsW", "--dyn-syms"])
            .arg(path),
    );
    assert!(ok, "readelf failed on {}: {err}", path.display());
    err
}

/// (offset, vaddr, filesz, memsz, align) of each PT_LOAD, as readelf prints them.
pub fn readelf_loads(path: &Path) -> Vec<(u64, u64, u64, u64, u64)> {
    let (ok, out, err) = run_out(Command::new("readelf").arg("-lW").arg(path));
    assert!(ok, "readelf -lW failed: {err}");
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    out.lines()
        .filter(|l| l.trim_start().starts_with("LOAD "))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                hex(f[1]),
                hex(f[2]),
                hex(f[4]),
                hex(f[5]),
                hex(f[f.len() - 1]),
            )
        })
        .collect()
}

/// Checks done on every cut output with outside tools: size, readelf's view of the layout,
/// no new readelf or eu-elflint complaints, goblin parses it.
pub fn check_cut_layout(orig: &Path, out: &Path, outcome: &ShrinkOutcome) -> u64 {
    let a = std::fs::metadata(orig).unwrap().len();
    let b = std::fs::metadata(out).unwrap().len();
    let ShrinkMethod::Cut {
        file_bytes_removed,
        segments_split,
    } = outcome.method
    else {
        panic!(
            "expected a cut, got {:?} ({:?})",
            outcome.method, outcome.notes
        );
    };
    assert!(segments_split >= 1);
    assert_eq!(
        a - b,
        file_bytes_removed,
        "the file is not shorter by the reported bytes"
    );
    let data = std::fs::read(orig).unwrap();
    let granule = load_align(&data);
    assert!(file_bytes_removed > 0);
    if !outcome.notes.iter().any(|n| n.contains("end of the file")) {
        assert_eq!(file_bytes_removed % granule, 0, "cut is not whole granules");
    }
    let loads = readelf_loads(out);
    for w in loads.windows(2) {
        assert!(
            w[0].1 + w[0].3 <= w[1].1,
            "PT_LOADs unsorted or overlapping: {loads:x?}"
        );
    }
    for l in &loads {
        assert_eq!(
            l.0 % l.4,
            l.1 % l.4,
            "p_offset not congruent to p_vaddr: {l:x?}"
        );
    }
    assert_eq!(
        readelf_complaints(orig),
        "",
        "the fixture itself makes readelf complain"
    );
    assert_eq!(
        readelf_complaints(out),
        "",
        "readelf complains about the output"
    );
    let new = elflint_new_complaints(orig, out);
    assert!(
        new.is_empty(),
        "eu-elflint complains about the cut output only: {new:#?}\nnotes: {:#?}",
        outcome.notes
    );
    goblin::elf::Elf::parse(&std::fs::read(out).unwrap()).expect("goblin parses the output");
    file_bytes_removed
}

/// The messages of `eu-elflint --gnu-ld` on `path` (none when it says "No errors").
pub fn elflint(path: &Path) -> Vec<String> {
    let tool = need("eu-elflint", "elfutils");
    let o = Command::new(tool)
        .arg("--gnu-ld")
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run eu-elflint: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let shown = path.display().to_string();
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            l.trim_start_matches(&format!("{shown}: "))
                .trim()
                .to_string()
        })
        .filter(|l| !l.is_empty() && l != "No errors")
        .collect();
    assert!(
        o.status.success() || !lines.is_empty(),
        "eu-elflint failed on {shown} without a message"
    );
    lines
}

/// What eu-elflint says about `out` and not about `orig` (the input's own complaints, such
/// as an old linker's version records, are not the shrinker's doing). A program header named
/// by its index is named by its type and address instead, since a split shifts the indices
/// of the headers after it.
pub fn elflint_new_complaints(orig: &Path, out: &Path) -> Vec<String> {
    let before: Vec<String> = elflint(orig)
        .iter()
        .map(|m| name_phdrs(m, &phdr_names(orig)))
        .collect();
    let names = phdr_names(out);
    elflint(out)
        .iter()
        .map(|m| name_phdrs(m, &names))
        .filter(|m| !before.contains(m))
        .collect()
}

/// `type@vaddr` of each program header, by index.
fn phdr_names(path: &Path) -> Vec<String> {
    let data = std::fs::read(path).unwrap();
    let elf = goblin::elf::Elf::parse(&data).unwrap();
    elf.program_headers
        .iter()
        .map(|p| format!("type {:#x} at {:#x}", p.p_type, p.p_vaddr))
        .collect()
}

/// Replaces the index after "segment", "GNU_RELRO" or "program header entry" (bare or in
/// brackets) with
/// the header's name.
fn name_phdrs(msg: &str, names: &[String]) -> String {
    let mut out = String::new();
    let mut rest = msg;
    while let Some(at) = ["segment ", "GNU_RELRO ", "program header entry "]
        .iter()
        .filter_map(|k| rest.find(k).map(|i| (i, k.len())))
        .min()
    {
        let (i, klen) = at;
        out.push_str(&rest[..i + klen]);
        rest = &rest[i + klen..];
        let bracket = rest.starts_with('[');
        let body = if bracket { &rest[1..] } else { rest };
        let digits = body.chars().take_while(char::is_ascii_digit).count();
        let index = body[..digits].parse::<usize>().ok();
        match index.and_then(|n| names.get(n)) {
            Some(name) if !bracket || body[digits..].starts_with(']') => {
                out.push_str(&format!("<{name}>"));
                rest = &body[digits + usize::from(bracket)..];
            }
            _ => {}
        }
    }
    out.push_str(rest);
    out
}

/// Loads a CUDA fixture (or its rewrite) with ctypes and `LD_BIND_NOW=1`; returns
/// `fix_ka_host(3) fix_kb_host(3) fix_throw_catch(7)`.
pub fn load_cuda(path: &Path) -> String {
    let py = tool_env("WHEELSLIM_PYTHON");
    let lib = tool_env("WHEELSLIM_CUDA_LIB");
    let (ok, out, err) = run_out(
        Command::new(py)
            .args([
                "-c",
                "import ctypes,sys; l=ctypes.CDLL(sys.argv[1]); print(l.fix_ka_host(3), l.fix_kb_host(3), l.fix_throw_catch(7))",
            ])
            .arg(path)
            .env("LD_BIND_NOW", "1")
            .env("LD_LIBRARY_PATH", lib),
    );
    assert!(ok, "loading {} failed: {out}{err}", path.display());
    out.trim().to_string()
}

/// Loads a HIP fixture: `fix_hip_host(3) fix_throw_catch(7) fix_hip_check() fix_hip_code_objects() fix_hip_functions()`.
pub fn load_hip(path: &Path) -> String {
    let py = tool_env("WHEELSLIM_PYTHON");
    let (ok, out, err) = run_out(
        Command::new(py)
            .args([
                "-c",
                "import ctypes,sys; l=ctypes.CDLL(sys.argv[1]); print(l.fix_hip_host(3), l.fix_throw_catch(7), l.fix_hip_check(), l.fix_hip_code_objects(), l.fix_hip_functions())",
            ])
            .arg(path)
            .env("LD_BIND_NOW", "1"),
    );
    assert!(ok, "loading {} failed: {out}{err}", path.display());
    out.trim().to_string()
}

/// Runs the cross loader under qemu (`arch` = aarch64 or ppc64le) and returns its output lines
/// after "loaded".
pub fn load_qemu(arch: &str, lib: &Path, calls: &[&str]) -> Vec<String> {
    let (qemu, loader, sysroot) = match arch {
        "aarch64" => {
            need(
                "/usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1",
                "libc6-arm64-cross",
            );
            need(
                "/usr/aarch64-linux-gnu/lib/libstdc++.so.6",
                "libstdc++6-arm64-cross",
            );
            (
                need("qemu-aarch64-static", "qemu-user-static"),
                fixture("aarch64/loader"),
                "/usr/aarch64-linux-gnu",
            )
        }
        _ => {
            need(
                "/usr/powerpc64le-linux-gnu/lib/ld64.so.2",
                "libc6-ppc64el-cross",
            );
            (
                need("qemu-ppc64le-static", "qemu-user-static"),
                fixture("ppc64le/loader"),
                "/usr/powerpc64le-linux-gnu",
            )
        }
    };
    let mut cmd = Command::new(qemu);
    if arch == "aarch64" {
        cmd.args(["-p", "65536"]);
    }
    cmd.args(["-L", sysroot, "-E", "LD_BIND_NOW=1"])
        .arg(loader)
        .arg(lib)
        .args(calls);
    let (ok, out, err) = run_out(&mut cmd);
    assert!(
        ok,
        "qemu-{arch} could not load {}: {out}{err}",
        lib.display()
    );
    out.lines().skip(1).map(str::to_string).collect()
}

pub fn deflated_len(data: &[u8]) -> usize {
    use std::io::Write;
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(data).unwrap();
    e.finish().unwrap().len()
}

/// Writes a test output into `dir` (and, for inspection by hand, into
/// `$WHEELSLIM_KEEP_OUTPUTS` when that is set).
pub fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    if let Some(keep) = std::env::var_os("WHEELSLIM_KEEP_OUTPUTS") {
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::write(Path::new(&keep).join(name), data).unwrap();
    }
    p
}

#[test]
fn elflint_messages_name_headers_by_type_and_address() {
    let names = vec![
        "type 0x1 at 0x0".to_string(),
        "type 0x7 at 0x4000".to_string(),
    ];
    assert_eq!(
        name_phdrs(
            "loadable segment [1] is writable but contains no writable sections",
            &names
        ),
        "loadable segment <type 0x7 at 0x4000> is writable but contains no writable sections"
    );
    assert_eq!(
        name_phdrs(
            "section [ 5] '.x' is executable in nonexecutable segment 0",
            &names
        ),
        "section [ 5] '.x' is executable in nonexecutable segment <type 0x1 at 0x0>"
    );
    assert_eq!(
        name_phdrs(
            "loadable segment [0] flags do not match GNU_RELRO [1] flags",
            &names
        ),
        "loadable segment <type 0x1 at 0x0> flags do not match GNU_RELRO <type 0x7 at 0x4000> flags"
    );
    // No index, or one out of range: left as it is.
    assert_eq!(
        name_phdrs(
            "entry 1 has invalid offset; program header entry 1: x; segment [9] x",
            &names
        ),
        "entry 1 has invalid offset; program header entry <type 0x7 at 0x4000>: x; segment [9] x"
    );
}
