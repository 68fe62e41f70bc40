//! The ELF dynamic-section rewriter on real files, proven four ways: the layout checker
//! (`elf::check`), an independent parser (goblin via `elf::inspect`), GNU binutils `readelf`
//! (and elfutils `eu-elflint`: no new complaints), and `ld.so` itself: every output is loaded
//! with `LD_BIND_NOW=1`, its function is called, and the dependency sits *only* in the folder
//! named by the new search path, so the new path is what found it.
//!
//! Inputs are built at test time with gcc (GNU ld: default, `-z separate-code`,
//! `-z noseparate-code`, RUNPATH, RPATH), clang-19 + lld, cross gcc for aarch64 (64 KiB
//! `p_align`, loaded under `qemu-aarch64-static -p 65536`) and ppc64le, patchelf (to make a
//! patchelf-edited input), plus two committed fixtures: an auditwheel-repaired wheel and an
//! aarch64 CUDA-fatbin library (fixtures/README.md).
//!
//! A missing tool fails the test with the package to install; nothing is skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use wheelslim::elf::{
    self, DynamicEdits, ElfError, ElfInfo, Inspected, Method, PatchOutcome, PathKind,
};

// ------------------------------------------------------------------------------------- tools

use crate::tools::need;

/// clang-19 with lld-19 next to it (the tests that use it link with `-fuse-ld=lld`).
fn clang_lld() -> PathBuf {
    need("ld.lld-19", "lld-19");
    need("clang-19", "clang-19")
}

fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs `cmd`, fails the test with its stderr unless it succeeds, returns stdout.
fn run(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `readelf ARGS FILE`; any warning on stderr fails the test.
fn readelf(args: &[&str], file: &Path) -> String {
    let out = output(
        Command::new(need("readelf", "binutils"))
            .args(args)
            .arg(file),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "readelf {args:?} {}: {err}",
        file.display()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The messages of `eu-elflint --gnu-ld` (it prints "No errors" when there are none).
fn elflint(file: &Path) -> Vec<String> {
    let out = output(
        Command::new(need("eu-elflint", "elfutils"))
            .arg("--gnu-ld")
            .arg(file),
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty() && l.trim() != "No errors")
        .map(|l| l.trim().to_string())
        .collect()
}

fn write_exec(path: &Path, data: &[u8]) {
    std::fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn mkdir(path: &Path) -> PathBuf {
    std::fs::create_dir_all(path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
    path.to_path_buf()
}

fn s(p: &Path) -> String {
    p.to_str().expect("test paths are UTF-8").to_string()
}

// ------------------------------------------------------------------------------------ sources

const DEP_C: &str = "int dep_value(int x) { return x * 2 + 1; }\n";
const DEP_MAP: &str = "LIBDEP_1.0 { global: dep_value; local: *; };\n";
/// `zlibdep.so.1` is a dynamic symbol whose name ends with the DT_NEEDED string `libdep.so.1`:
/// GNU ld stores the two as one string (suffix sharing), so overwriting the NEEDED string in
/// place would rename the symbol too.
const USE_C: &str = r#"
extern int dep_value(int);
int use_value(int x) { return dep_value(x) + 100; }
int shared_suffix_marker __asm__("zlibdep.so.1") = 42;
"#;
const MAIN_C: &str = r#"
#include <stdio.h>
extern int use_value(int);
int main(void) { printf("%d\n", use_value(5)); return 0; }
"#;
const LOADER_C: &str = r#"
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
    void *h = dlopen(argv[1], RTLD_NOW);
    if (!h) { printf("dlopen failed: %s\n", dlerror()); return 1; }
    for (int i = 2; i < argc; i++) {
        char name[256]; int arg = 0;
        const char *c = strchr(argv[i], ':');
        size_t n = c ? (size_t)(c - argv[i]) : strlen(argv[i]);
        memcpy(name, argv[i], n); name[n] = 0;
        if (c) arg = atoi(c + 1);
        int (*f)(int) = (int (*)(int))dlsym(h, name);
        if (!f) { printf("dlsym(%s) failed: %s\n", name, dlerror()); return 1; }
        printf("%s(%d) = %d\n", name, arg, f(arg));
    }
    return 0;
}
"#;
/// `use_value(5)` = `dep_value(5) + 100`.
const USE_5: &str = "111";
/// An original search path longer than any temporary folder, so a new folder fits in place.
fn long_orig_path() -> String {
    format!("/nonexistent/original/search/path/{}", "o".repeat(250))
}

// ---------------------------------------------------------------------------------- toolchains

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arch {
    X86_64,
    Aarch64,
    Ppc64le,
}

impl Arch {
    fn gcc(self) -> PathBuf {
        match self {
            Arch::X86_64 => need("gcc", "gcc"),
            Arch::Aarch64 => need(
                "aarch64-linux-gnu-gcc",
                "gcc-aarch64-linux-gnu libc6-dev-arm64-cross",
            ),
            Arch::Ppc64le => need(
                "powerpc64le-linux-gnu-gcc",
                "gcc-powerpc64le-linux-gnu libc6-dev-ppc64el-cross",
            ),
        }
    }

    fn page_flags(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => &[],
            Arch::Aarch64 | Arch::Ppc64le => &["-Wl,-z,max-page-size=65536"],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Linker {
    Gnu,
    GnuSeparate,
    GnuNoSeparate,
    Lld,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OrigPath {
    None,
    Runpath,
    Rpath,
}

/// A build folder with `libdep.so.1` (versioned `LIBDEP_1.0`), its link-time `libdep.so`, and
/// the sources.
struct Build {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    arch: Arch,
}

impl Build {
    fn new(arch: Arch) -> Build {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().to_path_buf();
        let b = Build {
            _tmp: tmp,
            root,
            arch,
        };
        for (name, text) in [
            ("dep.c", DEP_C),
            ("dep.map", DEP_MAP),
            ("use.c", USE_C),
            ("main.c", MAIN_C),
        ] {
            std::fs::write(b.root.join(name), text).expect("write source");
        }
        let mut cmd = Command::new(arch.gcc());
        cmd.current_dir(&b.root)
            .args(["-shared", "-fPIC", "-O2", "-o", "libdep.so.1", "dep.c"])
            .args(["-Wl,-soname,libdep.so.1", "-Wl,--version-script=dep.map"])
            .args(arch.page_flags());
        run(&mut cmd);
        std::os::unix::fs::symlink("libdep.so.1", b.root.join("libdep.so")).expect("symlink");
        b
    }

    fn dep(&self) -> PathBuf {
        self.root.join("libdep.so.1")
    }

    /// Builds `libuse_<name>.so`, which needs `libdep.so.1`.
    fn consumer(&self, linker: Linker, orig: OrigPath) -> PathBuf {
        let name = format!("libuse_{linker:?}_{orig:?}.so");
        let mut cmd = match linker {
            Linker::Lld => {
                let mut c = Command::new(clang_lld());
                c.arg("-fuse-ld=lld");
                match self.arch {
                    Arch::X86_64 => {}
                    Arch::Aarch64 => {
                        c.arg("--target=aarch64-linux-gnu");
                    }
                    Arch::Ppc64le => {
                        c.arg("--target=powerpc64le-linux-gnu");
                    }
                }
                c
            }
            _ => Command::new(self.arch.gcc()),
        };
        cmd.current_dir(&self.root)
            .args([
                "-shared", "-fPIC", "-O2", "-o", &name, "use.c", "-L.", "-ldep",
            ])
            .args(self.arch.page_flags());
        match linker {
            Linker::GnuSeparate => {
                cmd.arg("-Wl,-z,separate-code");
            }
            Linker::GnuNoSeparate => {
                cmd.arg("-Wl,-z,noseparate-code");
            }
            Linker::Gnu | Linker::Lld => {}
        }
        match orig {
            OrigPath::None => {}
            OrigPath::Runpath => {
                cmd.arg(format!("-Wl,-rpath,{}", long_orig_path()))
                    .arg("-Wl,--enable-new-dtags");
            }
            OrigPath::Rpath => {
                cmd.arg(format!("-Wl,-rpath,{}", long_orig_path()))
                    .arg("-Wl,--disable-new-dtags");
            }
        }
        run(&mut cmd);
        let path = self.root.join(name);
        let d = readelf(&["-dW"], &path);
        match orig {
            OrigPath::None => assert!(!d.contains("(RPATH)") && !d.contains("(RUNPATH)"), "{d}"),
            OrigPath::Runpath => assert!(d.contains("(RUNPATH)") && !d.contains("(RPATH)"), "{d}"),
            OrigPath::Rpath => assert!(d.contains("(RPATH)") && !d.contains("(RUNPATH)"), "{d}"),
        }
        path
    }

    /// Builds a PIE executable (with PT_INTERP) that needs `libuse.so`, with a DT_RPATH.
    fn executable(&self, linker: Linker, rpath: &str) -> PathBuf {
        let lib = self.consumer(Linker::Gnu, OrigPath::None);
        std::fs::copy(&lib, self.root.join("libuse.so")).expect("copy");
        let name = format!("prog_{linker:?}");
        let mut cmd = match linker {
            Linker::Lld => {
                let mut c = Command::new(clang_lld());
                c.arg("-fuse-ld=lld");
                if self.arch == Arch::Aarch64 {
                    c.arg("--target=aarch64-linux-gnu");
                }
                c
            }
            _ => Command::new(self.arch.gcc()),
        };
        cmd.current_dir(&self.root)
            .args([
                "-O2",
                "-o",
                &name,
                "main.c",
                "-L.",
                "-luse",
                "-Wl,-rpath-link,.",
            ])
            .arg(format!("-Wl,-rpath,{rpath}"))
            .arg("-Wl,--disable-new-dtags");
        run(&mut cmd);
        self.root.join(name)
    }

    /// Builds the dlopen driver for this architecture.
    fn loader(&self) -> PathBuf {
        std::fs::write(self.root.join("loader.c"), LOADER_C).expect("write loader");
        run(Command::new(self.arch.gcc())
            .current_dir(&self.root)
            .args(["-O2", "-o", "loader", "loader.c", "-ldl"]));
        self.root.join("loader")
    }
}

// ------------------------------------------------------------------------------------- proving

fn patch_ok(input: &[u8], edits: &DynamicEdits) -> PatchOutcome {
    elf::patch(input, edits).unwrap_or_else(|e| panic!("patch {edits:?}: {e}"))
}

fn facts(data: &[u8]) -> ElfInfo {
    match elf::inspect(data).expect("goblin parses the output") {
        Inspected::Host(info) => *info,
        other => panic!("not a host object: {other:?}"),
    }
}

/// What the output must show.
#[derive(Debug, Default)]
struct Want {
    soname: Option<String>,
    needed: Vec<String>,
    rpath: Vec<String>,
    runpath: Vec<String>,
}

fn joined(list: &[String]) -> String {
    list.join(":")
}

/// Static proof: checker, goblin, readelf -d/-V/-a, eu-elflint (no new messages) and every
/// section outside the edited ones byte-identical.
fn prove_static(orig: &Path, out: &Path, want: &Want, outcome: &PatchOutcome) {
    let data = read(out);
    elf::check(&data)
        .unwrap_or_else(|e| panic!("{}: {e}\nnotes: {:#?}", out.display(), outcome.notes));
    let info = facts(&data);
    assert_eq!(info.soname, want.soname, "goblin SONAME");
    assert_eq!(info.needed, want.needed, "goblin NEEDED");
    assert_eq!(info.rpath, want.rpath, "goblin RPATH");
    assert_eq!(info.runpath, want.runpath, "goblin RUNPATH");

    let d = readelf(&["-dW"], out);
    for n in &want.needed {
        assert!(
            d.contains(&format!("Shared library: [{n}]")),
            "readelf -d lacks NEEDED {n}:\n{d}"
        );
    }
    assert_eq!(d.matches("(NEEDED)").count(), want.needed.len(), "{d}");
    match &want.soname {
        Some(so) => assert!(d.contains(&format!("Library soname: [{so}]")), "{d}"),
        None => assert!(!d.contains("(SONAME)"), "{d}"),
    }
    for (list, tag, label) in [
        (&want.rpath, "(RPATH)", "rpath"),
        (&want.runpath, "(RUNPATH)", "runpath"),
    ] {
        if list.is_empty() {
            assert!(!d.contains(tag), "readelf -d still shows {tag}:\n{d}");
        } else {
            assert!(
                d.contains(&format!("Library {label}: [{}]", joined(list))),
                "readelf -d lacks {tag}:\n{d}"
            );
        }
    }
    let v = readelf(&["-VW"], out);
    for line in v.lines().filter(|l| l.contains("File: ")) {
        let file = line
            .split("File: ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or("");
        assert!(
            want.needed.iter().any(|n| n == file),
            "readelf -V: version file `{file}` is not NEEDED:\n{v}"
        );
    }
    readelf(&["-aW"], out);

    let before = elflint(orig);
    let after = elflint(out);
    let new: Vec<&String> = after.iter().filter(|m| !before.contains(m)).collect();
    assert!(
        new.is_empty(),
        "eu-elflint complains about the output only: {new:#?}\nnotes: {:#?}",
        outcome.notes
    );

    assert_untouched(&read(orig), &data, outcome);
}

/// Every section other than the edited ones (`.dynstr`, `.dynamic`, `.gnu.version_r`) keeps its
/// bytes, and its address unless the outcome says it moved (executables); in `.symtab` only
/// symbols defined in edited or moved sections may change their value.
fn assert_untouched(orig: &[u8], out: &[u8], outcome: &PatchOutcome) {
    let moved: &[String] = match &outcome.method {
        Method::NewSegment { moved_sections, .. } => moved_sections,
        _ => &[],
    };
    let a = goblin::elf::Elf::parse(orig).expect("goblin parses the input");
    let b = goblin::elf::Elf::parse(out).expect("goblin parses the output");
    assert_eq!(a.section_headers.len(), b.section_headers.len());
    let mut edited_index = Vec::new();
    for (i, (sa, sb)) in a.section_headers.iter().zip(&b.section_headers).enumerate() {
        let name = a.shdr_strtab.get_at(sa.sh_name).unwrap_or("?");
        if [".dynstr", ".dynamic", ".gnu.version_r"].contains(&name) {
            edited_index.push(i);
            continue;
        }
        if name == ".symtab" || sa.sh_type == goblin::elf::section_header::SHT_NOBITS {
            continue;
        }
        if moved.iter().any(|m| m == name) {
            edited_index.push(i);
            assert_ne!(
                sa.sh_addr, sb.sh_addr,
                "section {name} was reported as moved"
            );
        } else {
            assert_eq!(sa.sh_addr, sb.sh_addr, "section {name} moved in memory");
        }
        let ra = sa.sh_offset as usize..(sa.sh_offset + sa.sh_size) as usize;
        let rb = sb.sh_offset as usize..(sb.sh_offset + sb.sh_size) as usize;
        assert!(orig[ra] == out[rb], "section {name} changed");
    }
    assert_eq!(a.syms.len(), b.syms.len(), "symbol count");
    for (x, y) in a.syms.iter().zip(b.syms.iter()) {
        let mut y_as_x = y;
        if edited_index.contains(&x.st_shndx) {
            y_as_x.st_value = x.st_value;
        }
        assert_eq!(
            x, y_as_x,
            "a `.symtab` symbol outside the edited sections changed"
        );
    }
    assert_eq!(a.dynsyms.len(), b.dynsyms.len(), "dynamic symbol count");
    for (x, y) in a.dynsyms.iter().zip(b.dynsyms.iter()) {
        assert_eq!(x, y, "a dynamic symbol changed");
    }
}

/// Loads `lib` in a fresh python3 with `LD_BIND_NOW=1` and no `LD_LIBRARY_PATH`, calls
/// `use_value(5)` and returns what it printed, or the failure.
fn load_x86(lib: &Path) -> Result<String, String> {
    let out = output(
        Command::new(need("python3", "python3"))
            .args([
                "-c",
                "import ctypes,sys; print(ctypes.CDLL(sys.argv[1]).use_value(5))",
            ])
            .arg(lib)
            .env("LD_BIND_NOW", "1")
            .env_remove("LD_LIBRARY_PATH")
            .env_remove("LD_PRELOAD"),
    );
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Runs the cross `loader` on `lib` under qemu with `LD_BIND_NOW=1` (and 64 KiB pages for
/// aarch64): `Ok(stdout)` or the failure.
fn load_cross(arch: Arch, loader: &Path, lib: &Path, calls: &[&str]) -> Result<String, String> {
    let (qemu, ld_so, libc, pages): (&str, &str, &str, &[&str]) = match arch {
        Arch::Aarch64 => (
            "qemu-aarch64-static",
            "/usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1",
            "libc6-arm64-cross",
            &["-p", "65536"],
        ),
        Arch::Ppc64le => (
            "qemu-ppc64le-static",
            "/usr/powerpc64le-linux-gnu/lib/ld64.so.2",
            "libc6-ppc64el-cross",
            &["-p", "65536"],
        ),
        Arch::X86_64 => unreachable!("x86_64 loads natively"),
    };
    // The sysroot is the folder above the cross libc's lib/.
    let ld_so = need(ld_so, libc);
    let sysroot = ld_so.parent().and_then(Path::parent).unwrap();
    let out = output(
        Command::new(need(qemu, "qemu-user-static"))
            .args(pages)
            .arg("-L")
            .arg(sysroot)
            .args(["-E", "LD_BIND_NOW=1", "-U", "LD_LIBRARY_PATH"])
            .arg(loader)
            .arg(lib)
            .args(calls),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

fn load(arch: Arch, loader: Option<&Path>, lib: &Path) -> Result<String, String> {
    match (arch, loader) {
        (Arch::X86_64, _) => load_x86(lib),
        (_, Some(l)) => load_cross(arch, l, lib, &["use_value:5"]).map(|o| {
            o.lines()
                .find_map(|l| l.strip_prefix("use_value(5) = "))
                .unwrap_or("")
                .to_string()
        }),
        (_, None) => panic!("a cross load needs a loader"),
    }
}

/// One rewrite scenario: the consumer goes to `case/lib/`, its dependency to `case/deps/` only.
struct Case {
    lib_dir: PathBuf,
    deps: PathBuf,
}

impl Case {
    fn new(root: &Path, name: &str, dep: &Path, dep_name: &str) -> Case {
        let base = mkdir(&root.join(name));
        let deps = mkdir(&base.join("deps"));
        std::fs::copy(dep, deps.join(dep_name)).expect("copy dep");
        Case {
            lib_dir: mkdir(&base.join("lib")),
            deps,
        }
    }
}

fn edits_path(list: Vec<String>, kind: PathKind) -> DynamicEdits {
    DynamicEdits {
        search_path: Some(list),
        path_kind: kind,
        ..DynamicEdits::default()
    }
}

/// A search path longer than every string in the inputs, ending with `dir`.
fn long_list(dir: &Path) -> Vec<String> {
    vec![format!("/nonexistent/{}", "l".repeat(600)), s(dir)]
}

/// The four standard scenarios on one consumer: long path (append/new segment), short path
/// (in place when the file had a path), NEEDED rename with a renamed dependency whose SONAME
/// was patched, and adding a RUNPATH.
fn scenarios(
    b: &Build,
    consumer: &Path,
    orig: OrigPath,
    loader: Option<&Path>,
) -> Vec<(String, Method)> {
    let input = read(consumer);
    let base_name = consumer
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("x")
        .to_string();
    let sc = Scenarios {
        b,
        consumer,
        orig,
        loader,
        root: mkdir(&b.root.join(format!("cases_{base_name}"))),
        orig_info: facts(&input),
        input,
    };
    vec![
        ("long path".to_string(), sc.long_path()),
        ("short path".to_string(), sc.short_path()),
        ("rename".to_string(), sc.rename()),
        ("add runpath".to_string(), sc.add_runpath()),
    ]
}

/// One consumer under the standard scenarios: each writes its case under `root` and returns
/// the method the patch took.
struct Scenarios<'a> {
    b: &'a Build,
    consumer: &'a Path,
    orig: OrigPath,
    loader: Option<&'a Path>,
    input: Vec<u8>,
    root: PathBuf,
    orig_info: ElfInfo,
}

impl Scenarios<'_> {
    /// A new search path is written as the consumer's own kind had it: (rpath, runpath).
    fn want_paths(&self, list: Vec<String>) -> (Vec<String>, Vec<String>) {
        if self.orig == OrigPath::Runpath {
            (Vec::new(), list)
        } else {
            (list, Vec::new())
        }
    }

    /// The patched consumer at `path` loads from its case folder and calls its dependency.
    fn assert_loads(&self, path: &Path, what: &str, out: &PatchOutcome) {
        assert_eq!(
            load(self.b.arch, self.loader, path).as_deref(),
            Ok(USE_5),
            "{what}: {:#?}",
            out.notes
        );
    }

    /// 1. A long search path.
    fn long_path(&self) -> Method {
        let case = Case::new(&self.root, "long", &self.b.dep(), "libdep.so.1");
        let list = long_list(&case.deps);
        let out = patch_ok(&self.input, &edits_path(list.clone(), PathKind::Keep));
        assert!(
            !matches!(out.method, Method::InPlace | Method::Unchanged),
            "a long path cannot fit in place: {out:?}"
        );
        self.prove_search_path(&case, list, "long path", &out);
        // Control: the unpatched library does not find the dependency from there.
        let control = case.lib_dir.join("libuse_orig.so");
        write_exec(&control, &self.input);
        assert!(
            load(self.b.arch, self.loader, &control).is_err(),
            "the original must not find {}",
            case.deps.display()
        );
        out.method
    }

    /// Writes the patched library into the case's folder, proves its NEEDED and search paths
    /// with readelf (`list` is the search path asked for) and loads it.
    fn prove_search_path(&self, case: &Case, list: Vec<String>, what: &str, out: &PatchOutcome) {
        let path = case.lib_dir.join("libuse.so");
        write_exec(&path, &out.data);
        let (rpath, runpath) = self.want_paths(list);
        prove_static(
            self.consumer,
            &path,
            &Want {
                needed: self.orig_info.needed.clone(),
                rpath,
                runpath,
                ..Want::default()
            },
            out,
        );
        self.assert_loads(&path, what, out);
    }

    /// 2. A short search path: in place when the file already had a longer one.
    fn short_path(&self) -> Method {
        let case = Case::new(&self.root, "s", &self.b.dep(), "libdep.so.1");
        let out = patch_ok(
            &self.input,
            &edits_path(vec![s(&case.deps)], PathKind::Keep),
        );
        if self.orig != OrigPath::None {
            assert_eq!(out.method, Method::InPlace, "{:#?}", out.notes);
            assert_eq!(out.data.len(), self.input.len());
        }
        self.prove_search_path(&case, vec![s(&case.deps)], "short path", &out);
        out.method
    }

    /// 3. Rename NEEDED libdep.so.1 → libdep-renamed.so.1; the dependency is renamed on disk
    ///    and its SONAME patched by wheelslim too.
    fn rename(&self) -> Method {
        let case = Case::new(&self.root, "rename", &self.b.dep(), "unused");
        renamed_dependency(self.b, &case);
        let mut edits = edits_path(long_list(&case.deps), PathKind::Keep);
        edits.replace_needed = vec![("libdep.so.1".into(), "libdep-renamed.so.1".into())];
        let out = patch_ok(&self.input, &edits);
        let path = case.lib_dir.join("libuse.so");
        write_exec(&path, &out.data);
        let needed: Vec<String> = self
            .orig_info
            .needed
            .iter()
            .map(|n| {
                if n == "libdep.so.1" {
                    "libdep-renamed.so.1".into()
                } else {
                    n.clone()
                }
            })
            .collect();
        let (rpath, runpath) = self.want_paths(long_list(&case.deps));
        prove_static(
            self.consumer,
            &path,
            &Want {
                needed,
                rpath,
                runpath,
                ..Want::default()
            },
            &out,
        );
        let v = readelf(&["-VW"], &path);
        assert!(
            v.contains("File: libdep-renamed.so.1") && !v.contains("File: libdep.so.1"),
            "{v}"
        );
        self.assert_loads(&path, "rename", &out);
        out.method
    }

    /// 4. Add a RUNPATH (to a file without one), or switch to RUNPATH.
    fn add_runpath(&self) -> Method {
        let case = Case::new(&self.root, "runpath", &self.b.dep(), "libdep.so.1");
        let out = patch_ok(
            &self.input,
            &edits_path(vec![s(&case.deps)], PathKind::Runpath),
        );
        let path = case.lib_dir.join("libuse.so");
        write_exec(&path, &out.data);
        prove_static(
            self.consumer,
            &path,
            &Want {
                needed: self.orig_info.needed.clone(),
                runpath: vec![s(&case.deps)],
                ..Want::default()
            },
            &out,
        );
        self.assert_loads(&path, "runpath", &out);
        if self.orig == OrigPath::None {
            assert!(
                out.notes.iter().any(|n| n.contains("added a DT_RUNPATH")),
                "{:#?}",
                out.notes
            );
        }
        out.method
    }
}

/// The dependency in `case.deps` as `libdep-renamed.so.1` (in place of the copy named
/// `unused`), its SONAME patched by wheelslim and its version definition kept.
fn renamed_dependency(b: &Build, case: &Case) {
    let dep_out = patch_ok(
        &read(&b.dep()),
        &DynamicEdits {
            soname: Some("libdep-renamed.so.1".into()),
            ..DynamicEdits::default()
        },
    );
    let dep_path = case.deps.join("libdep-renamed.so.1");
    write_exec(&dep_path, &dep_out.data);
    std::fs::remove_file(case.deps.join("unused")).expect("rm");
    prove_static(
        &b.dep(),
        &dep_path,
        &Want {
            soname: Some("libdep-renamed.so.1".into()),
            needed: facts(&read(&b.dep())).needed,
            ..Want::default()
        },
        &dep_out,
    );
    assert!(
        readelf(&["-VW"], &dep_path).contains("Name: LIBDEP_1.0"),
        "the version definition survives"
    );
}

fn count_loads(file: &Path) -> usize {
    readelf(&["-lW"], file)
        .lines()
        .filter(|l| l.trim_start().starts_with("LOAD"))
        .count()
}

// --------------------------------------------------------------------------------- x86_64 tests

#[test]
fn gnu_ld_default_layout_all_scenarios() {
    let b = Build::new(Arch::X86_64);
    for orig in [OrigPath::None, OrigPath::Runpath, OrigPath::Rpath] {
        let lib = b.consumer(Linker::Gnu, orig);
        let methods = scenarios(&b, &lib, orig, None);
        // GNU ld leaves no room after the program header table: the table moves.
        assert!(
            methods.iter().any(|(_, m)| matches!(
                m,
                Method::NewSegment {
                    dynstr: true,
                    program_headers: true,
                    ..
                }
            )),
            "{orig:?}: {methods:?}"
        );
    }
}

#[test]
fn gnu_ld_separate_and_noseparate_code() {
    let b = Build::new(Arch::X86_64);
    let sep = b.consumer(Linker::GnuSeparate, OrigPath::Rpath);
    let nosep = b.consumer(Linker::GnuNoSeparate, OrigPath::Runpath);
    assert!(
        count_loads(&sep) > count_loads(&nosep),
        "the two layouts must differ"
    );
    scenarios(&b, &sep, OrigPath::Rpath, None);
    scenarios(&b, &nosep, OrigPath::Runpath, None);
}

#[test]
fn lld_layout_without_dynamic_slack_moves_dynamic() {
    let b = Build::new(Arch::X86_64);
    for orig in [OrigPath::None, OrigPath::Runpath] {
        let lib = b.consumer(Linker::Lld, orig);
        let l = readelf(&["-lW"], &lib);
        assert!(l.contains("PHDR"), "lld emits PT_PHDR:\n{l}");
        let methods = scenarios(&b, &lib, orig, None);
        if orig == OrigPath::None {
            // Adding an entry to a full dynamic array means moving it.
            assert!(
                methods
                    .iter()
                    .any(|(_, m)| matches!(m, Method::NewSegment { dynamic: true, .. })),
                "{methods:?}"
            );
        }
    }
}

#[test]
fn patchelf_edited_input_grows_its_header_table_in_place() {
    let b = Build::new(Arch::X86_64);
    let lib = b.consumer(Linker::Gnu, OrigPath::None);
    let edited = b.root.join("libuse_patchelfed.so");
    std::fs::copy(&lib, &edited).expect("copy");
    run(Command::new(need("patchelf", "patchelf"))
        .args(["--force-rpath", "--set-rpath", &long_orig_path()])
        .arg(&edited));
    assert!(
        count_loads(&edited) > count_loads(&lib),
        "patchelf added a PT_LOAD"
    );
    let methods = scenarios(&b, &edited, OrigPath::Rpath, None);
    // patchelf left its old `.dynstr` area unused right after the program header table: the
    // table grows in place there instead of moving.
    assert!(
        methods.iter().any(|(_, m)| matches!(
            m,
            Method::NewSegment {
                dynstr: true,
                program_headers: false,
                ..
            }
        )),
        "{methods:?}"
    );
}

/// Builds the executable, patches it in place (short path) and with a long path (the sections
/// after its program header table move; the table itself never does), and runs both.
fn executable_scenarios(arch: Arch, linker: Linker) {
    let b = Build::new(arch);
    let prog = b.executable(linker, &long_orig_path());
    let input = read(&prog);
    let needed = facts(&input).needed;
    for (name, long) in [("short", false), ("long", true)] {
        let dir = mkdir(&b.root.join(format!("exe_{linker:?}_{name}")));
        let libs = mkdir(&dir.join("libs"));
        std::fs::copy(b.root.join("libuse.so"), libs.join("libuse.so")).expect("copy");
        std::fs::copy(b.dep(), libs.join("libdep.so.1")).expect("copy");
        let list = if long {
            long_list(&libs)
        } else {
            vec![s(&libs)]
        };
        let out = patch_ok(&input, &edits_path(list.clone(), PathKind::Keep));
        let path = dir.join("prog");
        write_exec(&path, &out.data);
        let mut perms = std::fs::metadata(&path).expect("stat").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&path, perms).expect("chmod");
        prove_static(
            &prog,
            &path,
            &Want {
                needed: needed.clone(),
                rpath: list,
                ..Want::default()
            },
            &out,
        );
        if long {
            match &out.method {
                Method::NewSegment {
                    program_headers: false,
                    moved_sections,
                    ..
                } => {
                    assert!(
                        moved_sections.iter().any(|m| m == ".interp"),
                        "{moved_sections:?}"
                    );
                }
                other => panic!("{other:?}"),
            }
            let before = goblin::elf::Elf::parse(&input).expect("parse");
            let after = goblin::elf::Elf::parse(&out.data).expect("parse");
            assert_eq!(
                after.header.e_phoff, before.header.e_phoff,
                "an executable's table never moves"
            );
            assert_eq!(after.interpreter, before.interpreter);
        } else {
            assert_eq!(out.method, Method::InPlace);
        }
        let ran = match arch {
            Arch::X86_64 => run(Command::new(&path)
                .env("LD_BIND_NOW", "1")
                .env_remove("LD_LIBRARY_PATH")),
            Arch::Aarch64 => run(
                Command::new(need("qemu-aarch64-static", "qemu-user-static"))
                    .args([
                        "-p",
                        "65536",
                        "-L",
                        "/usr/aarch64-linux-gnu",
                        "-E",
                        "LD_BIND_NOW=1",
                        "-U",
                        "LD_LIBRARY_PATH",
                    ])
                    .arg(&path),
            ),
            Arch::Ppc64le => unreachable!("not exercised"),
        };
        assert_eq!(ran.trim(), USE_5, "{name}: {:#?}", out.notes);
    }
}

#[test]
fn executables_keep_their_table_and_run() {
    executable_scenarios(Arch::X86_64, Linker::Gnu);
    // lld leaves no DT_NULL slack either: `.dynamic` moves too.
    executable_scenarios(Arch::X86_64, Linker::Lld);
}

#[test]
fn aarch64_executables_keep_their_table_and_run_under_qemu() {
    executable_scenarios(Arch::Aarch64, Linker::Gnu);
    executable_scenarios(Arch::Aarch64, Linker::Lld);
}

#[test]
fn shared_suffixes_are_never_overwritten() {
    let b = Build::new(Arch::X86_64);
    let lib = b.consumer(Linker::Gnu, OrigPath::None);
    let input = read(&lib);
    // The test is only meaningful if GNU ld really shared the bytes.
    let parsed = goblin::elf::Elf::parse(&input).expect("parse");
    let needed_off = parsed
        .dynamic
        .as_ref()
        .and_then(|d| {
            d.dyns.iter().find(|e| {
                e.d_tag == goblin::elf::dynamic::DT_NEEDED
                    && parsed.dynstrtab.get_at(e.d_val as usize) == Some("libdep.so.1")
            })
        })
        .map(|e| e.d_val as usize)
        .expect("NEEDED libdep.so.1");
    assert_eq!(
        parsed.dynstrtab.get_at(needed_off - 1),
        Some("zlibdep.so.1"),
        "GNU ld tail-merged the strings"
    );

    // A shorter name would fit over the old bytes, but the symbol shares them: append instead.
    let case = Case::new(&b.root, "suffix", &b.dep(), "unused");
    let dep_out = patch_ok(
        &read(&b.dep()),
        &DynamicEdits {
            soname: Some("libd.so.1".into()),
            ..DynamicEdits::default()
        },
    );
    // libdep's SONAME shares its bytes with the BASE version definition: not in place either.
    assert!(
        !matches!(dep_out.method, Method::InPlace),
        "{:#?}",
        dep_out.notes
    );
    assert!(
        readelf(&["-VW"], &{
            let p = case.deps.join("libd.so.1");
            write_exec(&p, &dep_out.data);
            p
        })
        .contains("Flags: BASE  Index: 1  Cnt: 1  Name: libdep.so.1")
    );
    std::fs::remove_file(case.deps.join("unused")).expect("rm");
    let mut edits = edits_path(vec![s(&case.deps)], PathKind::Keep);
    edits.replace_needed = vec![("libdep.so.1".into(), "libd.so.1".into())];
    let out = patch_ok(&input, &edits);
    assert!(
        out.notes
            .iter()
            .any(|n| n.contains("NEEDED `libdep.so.1`") && n.contains("appended")),
        "{:#?}",
        out.notes
    );
    let path = case.lib_dir.join("libuse.so");
    write_exec(&path, &out.data);
    prove_static(
        &lib,
        &path,
        &Want {
            needed: vec!["libd.so.1".into()],
            rpath: vec![s(&case.deps)],
            ..Want::default()
        },
        &out,
    );
    assert!(
        readelf(&["--dyn-syms", "-W"], &path).contains(" zlibdep.so.1"),
        "the symbol keeps its name"
    );
    assert_eq!(load_x86(&path).as_deref(), Ok(USE_5));
}

#[test]
fn a_stale_version_file_is_caught_statically_and_breaks_loading() {
    let b = Build::new(Arch::X86_64);
    let lib = b.consumer(Linker::Gnu, OrigPath::None);
    let input = read(&lib);
    let case = Case::new(&b.root, "stale", &b.dep(), "libdep-renamed.so.1");
    let mut edits = edits_path(long_list(&case.deps), PathKind::Keep);
    edits.replace_needed = vec![("libdep.so.1".into(), "libdep-renamed.so.1".into())];
    let out = patch_ok(&input, &edits);
    // Undo only the `.gnu.version_r` rename: the old string is still in the table.
    let parsed = goblin::elf::Elf::parse(&input).expect("parse");
    let vr = parsed
        .section_headers
        .iter()
        .find(|s| parsed.shdr_strtab.get_at(s.sh_name) == Some(".gnu.version_r"))
        .expect(".gnu.version_r");
    let field = vr.sh_offset as usize + 4;
    let mut broken = out.data.clone();
    broken[field..field + 4].copy_from_slice(&input[field..field + 4]);
    match elf::check(&broken) {
        Err(ElfError::Layout(m)) => assert!(
            m.contains("needed != NULL") && m.contains("libdep.so.1"),
            "{m}"
        ),
        other => panic!("the checker must flag the stale version file: {other:?}"),
    }
    let path = case.lib_dir.join("libuse.so");
    write_exec(&path, &broken);
    assert!(load_x86(&path).is_err(), "ld.so rejects it too");
    write_exec(&path, &out.data);
    assert_eq!(load_x86(&path).as_deref(), Ok(USE_5));
}

/// The auditwheel-repaired fixture: undo the hash-renaming (the `split` use case). The
/// libraries' SONAMEs go back to the public names, the extension module's NEEDED entries follow,
/// and its RPATH points at a separate runtime folder.
#[test]
fn auditwheel_repaired_wheel_renamed_back_to_public_sonames() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wheel = Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "fixtures/wheels/slimdemo-0.1.0-cp38-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
    );
    let mut zip =
        zip::ZipArchive::new(std::fs::File::open(&wheel).expect("open wheel")).expect("zip");
    let mut member = |name: &str| {
        let mut f = zip.by_name(name).expect("member");
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut v).expect("read member");
        v
    };
    let native = member("slimdemo/_native.abi3.so");
    let cublas = member("slimdemo.libs/libcublas-d368dffb.so.12");
    let cudart = member("slimdemo.libs/libcudart-aa97f077.so.12");
    let init = member("slimdemo/__init__.py");

    let originals = mkdir(&tmp.path().join("orig"));
    let pkg = mkdir(&tmp.path().join("site/slimdemo"));
    let runtime = mkdir(&tmp.path().join(format!("runtime/{}/lib", "r".repeat(40))));
    std::fs::write(pkg.join("__init__.py"), init).expect("write");

    let rename = |from: &str, to: &str| (from.to_string(), to.to_string());
    let jobs: [(&str, &[u8], DynamicEdits, PathBuf); 3] = [
        (
            "libcudart-aa97f077.so.12",
            &cudart,
            DynamicEdits {
                soname: Some("libcudart.so.12".into()),
                ..DynamicEdits::default()
            },
            runtime.join("libcudart.so.12"),
        ),
        (
            "libcublas-d368dffb.so.12",
            &cublas,
            DynamicEdits {
                soname: Some("libcublas.so.12".into()),
                replace_needed: vec![rename("libcudart-aa97f077.so.12", "libcudart.so.12")],
                search_path: Some(vec!["$ORIGIN".into()]),
                path_kind: PathKind::Keep,
            },
            runtime.join("libcublas.so.12"),
        ),
        (
            "_native.abi3.so",
            &native,
            DynamicEdits {
                soname: None,
                replace_needed: vec![
                    rename("libcublas-d368dffb.so.12", "libcublas.so.12"),
                    rename("libcudart-aa97f077.so.12", "libcudart.so.12"),
                ],
                search_path: Some(vec![s(&runtime)]),
                path_kind: PathKind::Keep,
            },
            pkg.join("_native.abi3.so"),
        ),
    ];
    for (name, data, edits, dest) in jobs {
        let orig_path = originals.join(name);
        write_exec(&orig_path, data);
        let out = patch_ok(data, &edits);
        write_exec(&dest, &out.data);
        let before = facts(data);
        let want = Want {
            soname: edits.soname.clone().or(before.soname.clone()),
            needed: before
                .needed
                .iter()
                .map(|n| {
                    edits
                        .replace_needed
                        .iter()
                        .find(|(o, _)| o == n)
                        .map_or(n.clone(), |(_, new)| new.clone())
                })
                .collect(),
            rpath: edits.search_path.clone().unwrap_or(before.rpath.clone()),
            runpath: Vec::new(),
        };
        prove_static(&orig_path, &dest, &want, &out);
        if name == "_native.abi3.so" {
            // auditwheel's patchelf left `.dynstr` as the tail of the last PT_LOAD.
            assert_eq!(out.method, Method::AppendedDynstr, "{:#?}", out.notes);
        }
        let v = readelf(&["-VW"], &dest);
        assert!(
            !v.contains("File: libcudart-aa97f077") && !v.contains("File: libcublas-d368dffb"),
            "{v}"
        );
    }
    let py = output(
        Command::new(need("python3", "python3"))
            .args(["-c", "import slimdemo; print(slimdemo.cublas_version(), slimdemo.runtime_version(), slimdemo.runtime_via_cublas())"])
            .current_dir(pkg.parent().expect("site"))
            .env("LD_BIND_NOW", "1")
            .env_remove("LD_LIBRARY_PATH")
            .env_remove("PYTHONPATH"),
    );
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&py.stdout).trim(),
        "120904 12080 12080"
    );
}

// ------------------------------------------------------------------------------ other machines

/// Every PT_LOAD of an aarch64/ppc64le output is congruent modulo 64 KiB, including the new one.
fn assert_congruent_64k(file: &Path) {
    let info = facts(&read(file));
    for seg in info.segments.iter().filter(|s| s.kind == "LOAD") {
        assert_eq!(seg.align, 0x10000, "{seg:?}");
        assert_eq!(seg.offset % 0x10000, seg.vaddr % 0x10000, "{seg:?}");
    }
}

#[test]
fn aarch64_64k_pages_load_under_qemu() {
    let b = Build::new(Arch::Aarch64);
    let loader = b.loader();
    for (linker, orig) in [
        (Linker::Gnu, OrigPath::None),
        (Linker::Gnu, OrigPath::Runpath),
        (Linker::Lld, OrigPath::None),
    ] {
        let lib = b.consumer(linker, orig);
        let methods = scenarios(&b, &lib, orig, Some(&loader));
        for entry in std::fs::read_dir(b.root.join(format!(
            "cases_{}",
            lib.file_stem().and_then(|s| s.to_str()).unwrap_or("")
        )))
        .expect("cases")
        {
            assert_congruent_64k(&entry.expect("entry").path().join("lib/libuse.so"));
        }
        if linker == Linker::Lld {
            assert!(
                methods
                    .iter()
                    .any(|(_, m)| matches!(m, Method::NewSegment { dynamic: true, .. })),
                "{methods:?}"
            );
        }
    }
}

#[test]
fn aarch64_misaligned_segment_is_rejected_by_the_64k_harness() {
    // Negative control for the harness above: shift the new PT_LOAD by 4 KiB (congruent for
    // 4 KiB pages only) and the 64 KiB-page loader must refuse it.
    let b = Build::new(Arch::Aarch64);
    let loader = b.loader();
    let lib = b.consumer(Linker::Gnu, OrigPath::None);
    let case = Case::new(&b.root, "misaligned", &b.dep(), "libdep.so.1");
    let out = patch_ok(
        &read(&lib),
        &edits_path(long_list(&case.deps), PathKind::Keep),
    );
    let good = case.lib_dir.join("good.so");
    write_exec(&good, &out.data);
    assert_eq!(
        load(Arch::Aarch64, Some(&loader), &good).as_deref(),
        Ok(USE_5)
    );
    let mut bad = out.data.clone();
    let parsed = goblin::elf::Elf::parse(&out.data).expect("parse");
    let last = parsed
        .program_headers
        .iter()
        .rposition(|p| p.p_type == goblin::elf::program_header::PT_LOAD)
        .expect("load");
    let at = parsed.header.e_phoff as usize + last * 56;
    let vaddr = parsed.program_headers[last].p_vaddr + 0x1000;
    bad[at + 16..at + 24].copy_from_slice(&vaddr.to_le_bytes());
    bad[at + 24..at + 32].copy_from_slice(&vaddr.to_le_bytes());
    bad[at + 48..at + 56].copy_from_slice(&0x1000u64.to_le_bytes());
    let path = case.lib_dir.join("bad.so");
    write_exec(&path, &bad);
    let err = load(Arch::Aarch64, Some(&loader), &path).expect_err("must not load");
    assert!(err.contains("not page-aligned"), "{err}");
}

#[test]
fn aarch64_fatbin_fixture_keeps_working() {
    let b = Build::new(Arch::Aarch64);
    let loader = b.loader();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/aarch64/libfix_a64.so");
    let input = read(&fixture);
    let dir = mkdir(&b.root.join("fix"));
    let edits = edits_path(long_list(&dir), PathKind::Runpath);
    let out = patch_ok(&input, &edits);
    assert!(
        matches!(out.method, Method::NewSegment { dynstr: true, .. }),
        "{out:?}"
    );
    let path = dir.join("libfix_a64.so");
    write_exec(&path, &out.data);
    let before = facts(&input);
    prove_static(
        &fixture,
        &path,
        &Want {
            soname: before.soname.clone(),
            needed: before.needed.clone(),
            runpath: long_list(&dir),
            ..Want::default()
        },
        &out,
    );
    assert_congruent_64k(&path);
    let calls = [
        "fix_a64_host:3",
        "fix_throw_catch:7",
        "fix_fatbin_check",
        "fix_fatbin_entries",
        "fix_fatbin_elves",
    ];
    let want = load_cross(Arch::Aarch64, &loader, &fixture, &calls).expect("the fixture loads");
    let got = load_cross(Arch::Aarch64, &loader, &path, &calls).expect("the output loads");
    assert_eq!(got, want);
    assert!(
        got.contains("fix_throw_catch(7) = 73"),
        "a C++ exception still unwinds: {got}"
    );
}

#[test]
fn ppc64le_patched_library_checks_and_loads() {
    let b = Build::new(Arch::Ppc64le);
    let loader = b.loader();
    let lib = b.consumer(Linker::Gnu, OrigPath::Rpath);
    scenarios(&b, &lib, OrigPath::Rpath, Some(&loader));
    let lib = b.consumer(Linker::Gnu, OrigPath::None);
    scenarios(&b, &lib, OrigPath::None, Some(&loader));
    for entry in std::fs::read_dir(b.root.join("cases_libuse_Gnu_None")).expect("cases") {
        assert_congruent_64k(&entry.expect("entry").path().join("lib/libuse.so"));
    }
}

// ---------------------------------------------------------------------------- refusals, hostile

#[test]
fn refusals_are_errors_with_reasons() {
    let b = Build::new(Arch::X86_64);
    let input = read(&b.consumer(Linker::Gnu, OrigPath::None));
    let rename = |old: &str, new: &str| DynamicEdits {
        replace_needed: vec![(old.into(), new.into())],
        ..DynamicEdits::default()
    };
    assert_eq!(
        elf::patch(&input, &rename("libnot-there.so", "x.so")).err(),
        Some(ElfError::NeededNotFound("libnot-there.so".into()))
    );
    for bad in [
        edits_path(vec![String::new()], PathKind::Keep),
        edits_path(vec!["a:b".into()], PathKind::Keep),
        DynamicEdits {
            soname: Some(String::new()),
            ..DynamicEdits::default()
        },
        rename("libdep.so.1", "nul\0.so"),
    ] {
        assert!(
            matches!(elf::patch(&input, &bad), Err(ElfError::InvalidEdit(_))),
            "{bad:?}"
        );
    }
    let same = patch_ok(&input, &edits_path(vec![], PathKind::Keep));
    assert_eq!((same.method, same.data == input), (Method::Unchanged, true));
    // The object file, a 32-bit and a big-endian library (built for real, no libc needed).
    let clang = clang_lld();
    for (target, what) in [
        ("i686-linux-gnu", "32-bit"),
        ("powerpc64-linux-gnu", "big-endian"),
    ] {
        let out = b.root.join(format!("lib_{target}.so"));
        run(Command::new(&clang)
            .current_dir(&b.root)
            .args(["-shared", "-fPIC", "-nostdlib", "-fuse-ld=lld", "-o"])
            .arg(&out)
            .arg(format!("--target={target}"))
            .arg("dep.c"));
        let data = read(&out);
        match elf::patch(&data, &edits_path(vec!["/x".into()], PathKind::Keep)) {
            Err(ElfError::Unsupported(m)) => assert!(m.contains(what), "{m}"),
            other => panic!("{target}: {:?}", other.map(|o| o.method)),
        }
        assert!(matches!(elf::check(&data), Err(ElfError::Unsupported(_))));
    }
    run(Command::new(&clang)
        .current_dir(&b.root)
        .args(["-c", "-fPIC", "-o", "dep.o", "dep.c"]));
    assert!(matches!(
        elf::patch(&read(&b.root.join("dep.o")), &DynamicEdits::default()),
        Err(ElfError::Unsupported(_))
    ));
    assert!(matches!(
        elf::patch(b"\x7fELF", &DynamicEdits::default()),
        Err(ElfError::Unsupported(_) | ElfError::Truncated(_))
    ));
    assert!(matches!(
        elf::patch(b"MZ\x90\x00", &DynamicEdits::default()),
        Err(ElfError::NotElf(_))
    ));
}

fn set_u64(data: &mut [u8], at: usize, v: u64) {
    data[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn hostile_inputs_give_errors_not_panics() {
    let b = Build::new(Arch::X86_64);
    let input = read(&b.consumer(Linker::Gnu, OrigPath::Runpath));
    let edits = edits_path(long_list(Path::new("/some/where")), PathKind::Keep);
    let parsed = goblin::elf::Elf::parse(&input).expect("parse");

    // Every truncation is refused.
    for len in (0..input.len()).step_by(7) {
        assert!(
            elf::patch(&input[..len], &edits).is_err(),
            "truncated to {len}"
        );
        assert!(elf::check(&input[..len]).is_err(), "truncated to {len}");
    }
    // Bogus DT_STRTAB.
    let dyn_off = parsed
        .program_headers
        .iter()
        .find(|p| p.p_type == goblin::elf::program_header::PT_DYNAMIC)
        .expect("dynamic")
        .p_offset as usize;
    let mut bogus = input.clone();
    let strtab_slot = (0..)
        .map(|i| dyn_off + i * 16)
        .find(|&at| u64::from_le_bytes(bogus[at..at + 8].try_into().unwrap()) == 5)
        .expect("DT_STRTAB");
    set_u64(&mut bogus, strtab_slot + 8, 0xdead_0000);
    assert!(
        matches!(elf::patch(&bogus, &edits), Err(ElfError::Layout(m)) if m.contains("DT_STRTAB"))
    );
    // Section header table past the end of the file.
    let mut past = input.clone();
    set_u64(&mut past, 40, input.len() as u64 - 16);
    assert!(matches!(
        elf::patch(&past, &edits),
        Err(ElfError::Truncated(_))
    ));
    // A segment past the end of the file.
    let mut seg = input.clone();
    set_u64(&mut seg, parsed.header.e_phoff as usize + 32, 1 << 40);
    assert!(matches!(elf::check(&seg), Err(ElfError::Layout(m)) if m.contains("past the file")));
    assert!(elf::patch(&seg, &edits).is_err());
    // Huge table counts are bounded by the file size before anything is allocated.
    let mut many = input.clone();
    many[56..58].copy_from_slice(&0xfffeu16.to_le_bytes());
    assert!(matches!(
        elf::patch(&many, &edits),
        Err(ElfError::Truncated(_))
    ));

    // An empty section may carry any offset (nothing reads it); the layout must not trip on it.
    let comment = parsed
        .section_headers
        .iter()
        .position(|s| parsed.shdr_strtab.get_at(s.sh_name) == Some(".comment"))
        .expect(".comment");
    let mut empty = input.clone();
    let at = parsed.header.e_shoff as usize + comment * 64;
    set_u64(&mut empty, at + 24, u64::MAX - 4);
    set_u64(&mut empty, at + 32, 0);
    let out = patch_ok(&empty, &edits);
    elf::check(&out.data).expect("output passes");
    // A version-needs chain that points far outside its table.
    let vr = parsed
        .section_headers
        .iter()
        .find(|s| parsed.shdr_strtab.get_at(s.sh_name) == Some(".gnu.version_r"))
        .expect(".gnu.version_r");
    let mut chain = input.clone();
    chain[vr.sh_offset as usize + 8..vr.sh_offset as usize + 12]
        .copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    assert!(matches!(elf::patch(&chain, &edits), Err(ElfError::Layout(m)) if m.contains("vn_aux")));

    // Random corruption of the headers, tables and dynamic section: Ok (and then the output
    // passed its own check) or Err, never a panic.
    let hot: Vec<(usize, usize)> = vec![
        (0, 64),
        (
            parsed.header.e_phoff as usize,
            parsed.header.e_phnum as usize * 56,
        ),
        (
            parsed.header.e_shoff as usize,
            parsed.header.e_shnum as usize * 64,
        ),
        (dyn_off, 0x200),
        (0, input.len()),
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut accepted = 0;
    for round in 0..3000 {
        let mut data = input.clone();
        for _ in 0..1 + next() % 4 {
            let (start, len) = hot[(next() % hot.len() as u64) as usize];
            let at = (start + (next() as usize % len.max(1))).min(data.len() - 1);
            data[at] = next() as u8;
        }
        let result = std::panic::catch_unwind(|| {
            let _ = elf::check(&data);
            elf::patch(&data, &edits).map(|o| o.data)
        });
        match result {
            Ok(Ok(out)) => {
                accepted += 1;
                elf::check(&out)
                    .unwrap_or_else(|e| panic!("round {round}: returned output fails check: {e}"));
            }
            Ok(Err(_)) => {}
            Err(_) => panic!("round {round}: panic on a corrupted input"),
        }
    }
    assert!(
        accepted > 0,
        "some harmless corruptions must still be accepted"
    );
}

#[test]
fn repatching_our_output_and_patchelf_afterwards() {
    let b = Build::new(Arch::X86_64);
    for linker in [Linker::Gnu, Linker::Lld] {
        let lib = b.consumer(linker, OrigPath::None);
        let case = Case::new(
            &b.root,
            &format!("again_{linker:?}"),
            &b.dep(),
            "libdep.so.1",
        );
        let first = patch_ok(
            &read(&lib),
            &edits_path(long_list(&case.deps), PathKind::Keep),
        );
        assert!(
            matches!(first.method, Method::NewSegment { .. }),
            "{first:?}"
        );
        // The second edit finds `.dynstr` at the tail of the segment the first one added.
        let mut longer = long_list(&case.deps);
        longer.insert(0, format!("/second/{}", "w".repeat(200)));
        let edits = DynamicEdits {
            soname: Some("libuse-again.so".into()),
            ..edits_path(longer.clone(), PathKind::Keep)
        };
        let second = patch_ok(&first.data, &edits);
        assert_eq!(second.method, Method::AppendedDynstr, "{:#?}", second.notes);
        let once = case.lib_dir.join("once.so");
        write_exec(&once, &first.data);
        let path = case.lib_dir.join("libuse.so");
        write_exec(&path, &second.data);
        let needed = facts(&first.data).needed;
        prove_static(
            &once,
            &path,
            &Want {
                soname: Some("libuse-again.so".into()),
                needed,
                rpath: longer,
                ..Want::default()
            },
            &second,
        );
        assert_eq!(load_x86(&path).as_deref(), Ok(USE_5));
        // patchelf (what auditwheel runs) still understands our layout.
        let pe = case.lib_dir.join("patchelfed.so");
        write_exec(&pe, &second.data);
        let list = format!("{}:/third/{}", s(&case.deps), "z".repeat(300));
        run(Command::new(need("patchelf", "patchelf"))
            .args(["--set-rpath", &list])
            .arg(&pe));
        elf::check(&read(&pe)).expect("patchelf output passes the checker");
        assert_eq!(load_x86(&pe).as_deref(), Ok(USE_5));
    }
}
