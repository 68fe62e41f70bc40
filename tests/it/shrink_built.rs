//! `elf::shrink::shrink` on libraries built at test time from the fixture sources around
//! hand-embedded fatbin containers (`fixtures/src/embed`): fatbins big enough to free 64 KiB
//! granules on aarch64 and ppc64le (loaded under qemu with 64 KiB pages), GNU ld RELR, lld,
//! a non-PIE executable whose wrapper has no relocation, and the references that must make
//! the shrinker fall back to zeroing.

use std::path::{Path, PathBuf};
use std::process::Command;

use wheelslim::elf::shrink::{ShrinkMethod, ShrinkOutcome, shrink};

use crate::common::{fixture, tempdir};
use crate::shrink_support::*;

/// The real container of `fix_sm80_sm90_compute90.fatbin` (ELF sm_80, PTX sm_90, ELF sm_90)
/// with its entries repeated `times` times: a valid container cuobjdump lists.
fn big_container(times: usize) -> Vec<u8> {
    let c = std::fs::read(fixture("cuda/loose/fix_sm80_sm90_compute90.fatbin")).unwrap();
    let walked = cuda_containers(&c);
    let first = &walked[0];
    let picks: Vec<usize> = (0..times).flat_map(|_| 0..first.entries.len()).collect();
    rebuild_cuda(&c, first, &picks)
}

fn sh(cmd: &mut Command) {
    let (ok, out, err) = run_out(cmd);
    assert!(ok, "{cmd:?} failed:\n{out}\n{err}");
}

/// Assembles `fatbin_embed.S` around each container (wrapper `fix_wrapper_<name>`).
fn embed(cc: &str, dir: &Path, containers: &[(&str, &[u8])]) -> Vec<PathBuf> {
    let src = fixture("src/embed/fatbin_embed.S");
    containers
        .iter()
        .map(|(name, bytes)| {
            std::fs::write(dir.join(format!("{name}.fatbin")), bytes).unwrap();
            let obj = dir.join(format!("fatbin_{name}.o"));
            sh(Command::new(cc)
                .args(["-c", "-fPIC"])
                .arg(format!("-DFATBIN_FILE=\"{name}.fatbin\""))
                .arg(format!("-DWRAPPER=fix_wrapper_{name}"))
                .arg(format!("-Wa,-I,{}", dir.display()))
                .arg(&src)
                .arg("-o")
                .arg(&obj));
            obj
        })
        .collect()
}

fn stub(cc: &str, dir: &Path) -> PathBuf {
    let obj = dir.join("cuda_stub.o");
    sh(Command::new(cc)
        .args(["-O2", "-fPIC", "-fvisibility=hidden", "-c"])
        .arg(fixture("src/embed/cuda_stub.c"))
        .arg("-o")
        .arg(&obj));
    obj
}

/// `fix_phdrs()`: what `dl_iterate_phdr` (the unwinder's way in) reports for this object, as
/// `e_phnum * 100 + PT_LOAD count + 10 * (PT_GNU_EH_FRAME found)`; -1 if the object is not found.
const PHDRS_C: &str = "#define _GNU_SOURCE\n#include <link.h>\n\
    int fix_host(int);\n\
    static int fix_phdrs_cb(struct dl_phdr_info *i, size_t n, void *out) {\n\
        (void)n;\n\
        ElfW(Addr) me = (ElfW(Addr))&fix_host;\n\
        int loads = 0, eh = 0, mine = 0;\n\
        for (int k = 0; k < i->dlpi_phnum; k++) {\n\
            const ElfW(Phdr) *p = &i->dlpi_phdr[k];\n\
            if (p->p_type == PT_LOAD) {\n\
                loads++;\n\
                if (me >= i->dlpi_addr + p->p_vaddr && me < i->dlpi_addr + p->p_vaddr + p->p_memsz) mine = 1;\n\
            }\n\
            if (p->p_type == PT_GNU_EH_FRAME) eh = 1;\n\
        }\n\
        if (mine) { *(int *)out = i->dlpi_phnum * 100 + eh * 10 + loads; return 1; }\n\
        return 0;\n\
    }\n\
    __attribute__((visibility(\"default\"))) int fix_phdrs(void) {\n\
        int out = -1;\n\
        dl_iterate_phdr(fix_phdrs_cb, &out);\n\
        return out;\n\
    }\n";

/// A C host that registers the wrappers `names` from a constructor and exports `fix_host`.
fn host_c(dir: &Path, names: &[&str], extra: &str) -> PathBuf {
    let mut c = String::from(
        "struct fatbin_wrapper;\n\
         void **__cudaRegisterFatBinary(void *) __attribute__((visibility(\"hidden\")));\n\
         void __cudaRegisterFatBinaryEnd(void **) __attribute__((visibility(\"hidden\")));\n",
    );
    for n in names {
        c.push_str(&format!(
            "extern const struct fatbin_wrapper fix_wrapper_{n} __attribute__((visibility(\"hidden\")));\n"
        ));
    }
    c.push_str("__attribute__((constructor)) static void fix_register(void) {\n");
    for n in names {
        c.push_str(&format!(
            "    __cudaRegisterFatBinaryEnd(__cudaRegisterFatBinary((void *)&fix_wrapper_{n}));\n"
        ));
    }
    c.push_str(
        "}\n__attribute__((visibility(\"default\"))) int fix_host(int v) { return 2 * v + 1; }\n",
    );
    c.push_str(PHDRS_C);
    c.push_str(extra);
    let p = dir.join("host.c");
    std::fs::write(&p, c).unwrap();
    p
}

/// An x86_64 shared object embedding `containers`, built by `cc` (gcc: GNU ld; clang-19:
/// whatever `ldflags` select).
fn build_x86_with(
    cc: &str,
    dir: &Path,
    containers: &[(&str, &[u8])],
    extra_asm: &str,
    ldflags: &[&str],
) -> PathBuf {
    need(cc, cc);
    let mut objs = embed(cc, dir, containers);
    objs.push(stub(cc, dir));
    let names: Vec<&str> = containers.iter().map(|c| c.0).collect();
    let host = host_c(dir, &names, "");
    let mut cmd = Command::new(cc);
    cmd.args(["-O2", "-fPIC", "-shared", "-Wl,--no-undefined"])
        .args(ldflags)
        .arg(host)
        .args(&objs);
    if !extra_asm.is_empty() {
        let s = dir.join("extra.S");
        std::fs::write(&s, extra_asm).unwrap();
        cmd.arg(s);
    }
    let out = dir.join("libembed.so");
    sh(cmd.arg("-o").arg(&out));
    out
}

/// The same with gcc and GNU ld.
fn build_x86(
    dir: &Path,
    containers: &[(&str, &[u8])],
    extra_asm: &str,
    ldflags: &[&str],
) -> PathBuf {
    build_x86_with("gcc", dir, containers, extra_asm, ldflags)
}

/// `fix_host(3) fix_fatbin_check() fix_fatbin_entries() fix_fatbin_elves()` through ctypes.
fn load_embed(path: &Path) -> String {
    let data = std::fs::read(path).unwrap();
    let elf = goblin::elf::Elf::parse(&data).unwrap();
    let loads = elf
        .program_headers
        .iter()
        .filter(|p| p.p_type == goblin::elf::program_header::PT_LOAD)
        .count();
    let eh = elf
        .program_headers
        .iter()
        .any(|p| p.p_type == goblin::elf::program_header::PT_GNU_EH_FRAME);
    let expect_phdrs = elf.program_headers.len() * 100 + usize::from(eh) * 10 + loads;
    let got = load_embed_raw(path);
    let (head, phdrs) = got.rsplit_once(' ').unwrap();
    assert_eq!(
        phdrs,
        expect_phdrs.to_string(),
        "dl_iterate_phdr does not see the program headers"
    );
    head.to_string()
}

fn load_embed_raw(path: &Path) -> String {
    let py = crate::common::tool_env("WHEELSLIM_PYTHON");
    let (ok, out, err) = run_out(
        Command::new(py)
            .args([
                "-c",
                "import ctypes,sys; l=ctypes.CDLL(sys.argv[1]); print(l.fix_host(3), l.fix_fatbin_check(), l.fix_fatbin_entries(), l.fix_fatbin_elves(), l.fix_phdrs())",
            ])
            .arg(path)
            .env("LD_BIND_NOW", "1"),
    );
    assert!(ok, "loading {} failed: {out}{err}", path.display());
    out.trim().to_string()
}

fn trim_first(data: &[u8]) -> (ShrinkOutcome, Vec<Vec<u8>>) {
    let (edit, news, _) = cuda_edit(data, ".nv_fatbin", Keep::First);
    (shrink(data, &[edit], true).unwrap(), news)
}

fn reason(o: &ShrinkOutcome) -> &str {
    match &o.method {
        ShrinkMethod::Zeroed { reason } => reason,
        m => panic!("expected a fallback to zeroing, got {m:?} ({:?})", o.notes),
    }
}

#[test]
fn aarch64_big_fatbin_is_cut_in_64k_granules_and_loads_with_64k_pages() {
    let x = "aarch64-linux-gnu";
    need(
        "aarch64-linux-gnu-gcc",
        "gcc-aarch64-linux-gnu libc6-dev-arm64-cross",
    );
    need("aarch64-linux-gnu-g++", "g++-aarch64-linux-gnu");
    let dir = tempdir();
    let d = dir.path();
    let (ka, kb) = (big_container(12), big_container(9));
    let mut objs = embed(&format!("{x}-gcc"), d, &[("ka", &ka), ("kb", &kb)]);
    objs.push(stub(&format!("{x}-gcc"), d));
    let host = d.join("a64.o");
    sh(Command::new(format!("{x}-g++"))
        .args(["-O2", "-fPIC", "-c"])
        .arg(fixture("src/aarch64/a64.cpp"))
        .arg("-o")
        .arg(&host));
    let lib = d.join("libbig_a64.so");
    sh(Command::new(format!("{x}-g++"))
        .args([
            "-shared",
            "-Wl,-z,max-page-size=65536",
            "-Wl,--no-undefined",
        ])
        .arg(&host)
        .args(&objs)
        .arg("-o")
        .arg(&lib));
    let calls = [
        "fix_a64_host:3",
        "fix_throw_catch:7",
        "fix_fatbin_check",
        "fix_fatbin_entries",
        "fix_fatbin_elves",
    ];
    assert_eq!(
        load_qemu("aarch64", &lib, &calls)[2..],
        [
            "fix_fatbin_check(0) = 2",
            "fix_fatbin_entries(0) = 63",
            "fix_fatbin_elves(0) = 42"
        ]
    );
    let data = std::fs::read(&lib).unwrap();
    assert_eq!(load_align(&data), 0x10000);
    let (outcome, news) = trim_first(&data);
    let out = write(d, "libbig_a64_trimmed.so", &outcome.data);
    let removed = check_cut_layout(&lib, &out, &outcome);
    assert!(removed >= 0x20000, "{removed:#x} {:?}", outcome.notes);
    assert_eq!(
        cuobjdump_list(&out, false),
        cuobjdump_of_containers(d, &news)
    );
    assert_eq!(
        load_qemu("aarch64", &out, &calls),
        [
            "fix_a64_host(3) = 13",
            "fix_throw_catch(7) = 73",
            "fix_fatbin_check(0) = 2",
            "fix_fatbin_entries(0) = 2",
            "fix_fatbin_elves(0) = 2"
        ]
    );
}

#[test]
fn ppc64le_big_fatbin_is_cut_and_loads() {
    let x = "powerpc64le-linux-gnu";
    need(
        "powerpc64le-linux-gnu-gcc",
        "gcc-powerpc64le-linux-gnu libc6-dev-ppc64el-cross",
    );
    let dir = tempdir();
    let d = dir.path();
    let ka = big_container(12);
    let mut objs = embed(&format!("{x}-gcc"), d, &[("ka", &ka)]);
    objs.push(stub(&format!("{x}-gcc"), d));
    let lib = d.join("libbig_ppc.so");
    sh(Command::new(format!("{x}-gcc"))
        .args(["-O2", "-fPIC", "-shared", "-Wl,--no-undefined"])
        .arg(fixture("src/ppc64le/ppc.c"))
        .args(&objs)
        .arg("-o")
        .arg(&lib));
    let data = std::fs::read(&lib).unwrap();
    let (outcome, news) = trim_first(&data);
    let out = write(d, "libbig_ppc_trimmed.so", &outcome.data);
    let removed = check_cut_layout(&lib, &out, &outcome);
    assert!(removed >= 0x10000, "{removed:#x}");
    assert_eq!(
        cuobjdump_list(&out, false),
        cuobjdump_of_containers(d, &news)
    );
    assert_eq!(
        load_qemu(
            "ppc64le",
            &out,
            &[
                "fix_ppc_host:3",
                "fix_fatbin_check",
                "fix_fatbin_entries",
                "fix_fatbin_elves"
            ]
        ),
        [
            "fix_ppc_host(3) = 16",
            "fix_fatbin_check(0) = 1",
            "fix_fatbin_entries(0) = 1",
            "fix_fatbin_elves(0) = 1"
        ]
    );
}

/// GNU ld with `-z pack-relative-relocs`: the wrapper pointers are RELR words (in place).
#[test]
fn x86_relr_wrappers_are_re_pointed() {
    let dir = tempdir();
    let (ka, kb) = (big_container(3), big_container(2));
    let lib = build_x86(
        dir.path(),
        &[("ka", &ka), ("kb", &kb)],
        "",
        &["-Wl,-z,pack-relative-relocs"],
    );
    let (ok, dynamic, _) = run_out(Command::new("readelf").arg("-dW").arg(&lib));
    assert!(
        ok && dynamic.contains("(RELR)"),
        "the linker did not use RELR:\n{dynamic}"
    );
    assert_eq!(load_embed(&lib), "7 2 15 10");
    let data = std::fs::read(&lib).unwrap();
    let (outcome, news) = trim_first(&data);
    let out = write(dir.path(), "librelr.so", &outcome.data);
    check_cut_layout(&lib, &out, &outcome);
    assert_eq!(
        cuobjdump_list(&out, false),
        cuobjdump_of_containers(dir.path(), &news)
    );
    assert_eq!(load_embed(&out), "7 2 2 2");
}

/// Flags and ranges of the PT_LOADs, as readelf prints them: `(vaddr, memsz, "R E")`.
fn load_flags(path: &Path) -> Vec<(u64, u64, String)> {
    let (ok, out, err) = run_out(Command::new("readelf").arg("-lW").arg(path));
    assert!(ok, "readelf -lW failed: {err}");
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    out.lines()
        .filter(|l| l.trim_start().starts_with("LOAD "))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // LOAD off vaddr paddr filesz memsz FLAGS... align
            (hex(f[2]), hex(f[5]), f[6..f.len() - 1].join(" "))
        })
        .collect()
}

/// GNU ld with `-z noseparate-code` (the layout of most vendor libraries built with older
/// toolchains): one `R E` PT_LOAD holds `.text`, `.rodata`, `.nv_fatbin` and `.eh_frame`. The
/// piece after the hole holds no code and must not stay executable (eu-elflint: "loadable
/// segment is executable but contains no executable sections"); the head keeps `R E`.
#[test]
fn noseparate_code_tail_after_the_hole_is_not_executable() {
    let dir = tempdir();
    let (ka, kb) = (big_container(3), big_container(2));
    let lib = build_x86(
        dir.path(),
        &[("ka", &ka), ("kb", &kb)],
        "",
        &["-Wl,-z,noseparate-code"],
    );
    let data = std::fs::read(&lib).unwrap();
    let (_, fat, fat_len) = section(&data, ".nv_fatbin").unwrap();
    let (_, text, _) = section(&data, ".text").unwrap();
    let before = load_flags(&lib);
    let holder = before
        .iter()
        .find(|l| l.0 <= fat && fat + fat_len as u64 <= l.0 + l.1)
        .expect("a PT_LOAD holds .nv_fatbin");
    assert_eq!(
        holder.2, "R E",
        "the fixture's fatbin is not in the text segment: {before:x?}"
    );
    assert!(holder.0 <= text && text < fat, "{before:x?}");
    assert!(elflint(&lib).iter().all(|m| !m.contains("no executable")));
    assert_eq!(load_embed(&lib), "7 2 15 10");

    let (outcome, news) = trim_first(&data);
    let out = write(dir.path(), "libnosep.so", &outcome.data);
    check_cut_layout(&lib, &out, &outcome);
    let after = load_flags(&out);
    assert_eq!(after.len(), before.len() + 1, "{after:x?}");
    let head = after.iter().find(|l| l.0 == holder.0).unwrap();
    assert_eq!(head.2, "R E", "the head holds .text: {after:x?}");
    let tail = after
        .iter()
        .find(|l| l.0 > head.0 && l.0 + l.1 == holder.0 + holder.1)
        .expect("the tail ends where the parent did");
    assert_eq!(tail.2, "R", "the tail holds no code: {after:x?}");
    assert!(
        outcome
            .notes
            .iter()
            .any(|n| n.contains("holds no code: mapped R instead of R E")),
        "{:#?}",
        outcome.notes
    );
    assert_eq!(
        cuobjdump_list(&out, false),
        cuobjdump_of_containers(dir.path(), &news)
    );
    assert_eq!(load_embed(&out), "7 2 2 2");
}

/// lld: the RELA addend holds the container address and the word in place is 0.
#[test]
fn x86_lld_wrappers_are_re_pointed() {
    need("ld.lld-19", "lld-19");
    let dir = tempdir();
    let (ka, kb) = (big_container(3), big_container(2));
    let lib = build_x86_with(
        "clang-19",
        dir.path(),
        &[("ka", &ka), ("kb", &kb)],
        "",
        &["-fuse-ld=lld"],
    );
    let (_, comment, _) = run_out(Command::new("readelf").args(["-p", ".comment"]).arg(&lib));
    assert!(comment.contains("LLD"), "not linked by lld:\n{comment}");
    let data = std::fs::read(&lib).unwrap();
    let (seg, _, _) = section(&data, ".nvFatBinSegment").unwrap();
    assert_eq!(
        rd64(&data, seg + 8),
        0,
        "lld wrote the wrapper pointer in place"
    );
    let (outcome, news) = trim_first(&data);
    let out = write(dir.path(), "liblld.so", &outcome.data);
    check_cut_layout(&lib, &out, &outcome);
    assert_eq!(
        cuobjdump_list(&out, false),
        cuobjdump_of_containers(dir.path(), &news)
    );
    assert_eq!(load_embed(&out), "7 2 2 2");
}

/// A non-PIE executable: the wrapper's pointer is a link-time constant with no relocation, and
/// there is a PT_PHDR that must stay mapped.
#[test]
fn non_pie_executable_wrappers_without_relocations() {
    let dir = tempdir();
    let d = dir.path();
    let ka = big_container(4);
    let mut objs = embed("gcc", d, &[("ka", &ka)]);
    objs.push(stub("gcc", d));
    let host = host_c(
        d,
        &["ka"],
        "#include <stdio.h>\nint fix_fatbin_check(void); int fix_fatbin_entries(void); int fix_fatbin_elves(void);\n\
         int main(void) { printf(\"%d %d %d\\n\", fix_fatbin_check(), fix_fatbin_entries(), fix_fatbin_elves()); return 0; }\n",
    );
    let exe = d.join("embed_exe");
    sh(Command::new("gcc")
        .args(["-O2", "-no-pie"])
        .arg(host)
        .args(&objs)
        .arg("-o")
        .arg(&exe));
    let data = std::fs::read(&exe).unwrap();
    let (ok, relocs, _) = run_out(Command::new("readelf").arg("-rW").arg(&exe));
    assert!(
        ok && !relocs.contains("RELATIVE"),
        "expected no RELATIVE relocation:\n{relocs}"
    );
    let (outcome, _) = trim_first(&data);
    let out = write(d, "embed_exe_trimmed", &outcome.data);
    check_cut_layout(&exe, &out, &outcome);
    let mut perm = std::fs::metadata(&out).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&out, perm).unwrap();
    let (ok, stdout, err) = run_out(&mut Command::new(&out));
    assert!(ok, "the trimmed executable does not run: {err}");
    assert_eq!(stdout.trim(), "1 1 1");
}

/// A RELATIVE relocation (a data pointer) into the middle of a container: zeroed, with why.
#[test]
fn pointer_into_a_container_falls_back_to_zeroing() {
    let dir = tempdir();
    let ka = big_container(4);
    // fatbin_embed.S's label is local, so the extra pointer goes through a second label.
    let asm = "    .section .nv_fatbin, \"a\"\n    .balign 8\nmid_label:\n    .incbin \"ka.fatbin\"\n\
               \n    .section .data.rel.ro, \"aw\"\n    .balign 8\n    .quad mid_label + 16\n\
               \n    .section .note.GNU-stack, \"\", @progbits\n";
    let asm = asm.replace(
        "ka.fatbin",
        &dir.path().join("ka.fatbin").display().to_string(),
    );
    let lib = build_x86(dir.path(), &[("ka", &ka)], &asm, &[]);
    let data = std::fs::read(&lib).unwrap();
    let (outcome, news) = trim_first(&data);
    let why = reason(&outcome);
    assert!(
        why.contains("R_X86_64_RELATIVE relocation at 0x")
            && why.contains("points into `.nv_fatbin` at +0x"),
        "{why}"
    );
    assert!(why.ends_with("not at a container start"), "{why}");
    assert_eq!(outcome.data.len(), data.len());
    let out = write(dir.path(), "libmid.so", &outcome.data);
    let mut expected = cuobjdump_of_containers(dir.path(), &news);
    expected.truncate(news.len()); // one entry per trimmed container
    assert_eq!(cuobjdump_list(&out, false), expected);
    assert_eq!(load_embed(&out), "7 1 1 1");
}

/// A symbolic R_X86_64_64 relocation against an exported symbol in `.nv_fatbin`.
#[test]
fn symbolic_relocation_into_the_section_falls_back_to_zeroing() {
    let dir = tempdir();
    let ka = big_container(4);
    let asm = "    .section .nv_fatbin, \"a\"\n    .balign 8\n    .globl fix_blob\n    .type fix_blob, @object\n\
               fix_blob:\n    .incbin \"PATH\"\n    .balign 8\n\
               \n    .data\n    .balign 8\n    .quad fix_blob\n\
               \n    .section .note.GNU-stack, \"\", @progbits\n";
    let asm = asm.replace("PATH", &dir.path().join("ka.fatbin").display().to_string());
    let lib = build_x86(dir.path(), &[("ka", &ka)], &asm, &[]);
    let data = std::fs::read(&lib).unwrap();
    let (outcome, _) = trim_first(&data);
    let why = reason(&outcome);
    assert!(
        why.contains("R_X86_64_64 relocation at 0x") && why.contains("`fix_blob`"),
        "{why}"
    );
    let out = write(dir.path(), "libsym.so", &outcome.data);
    assert_eq!(load_embed(&out), "7 1 1 1");
}

/// `__start___nv_relfatbin` marks a bound of the section: the section must not move.
#[test]
fn start_stop_symbols_fall_back_to_zeroing() {
    let dir = tempdir();
    let ka = big_container(4);
    let asm = "    .section __nv_relfatbin, \"a\"\n    .balign 8\n    .incbin \"PATH\"\n\
               \n    .section .data.rel.ro, \"aw\"\n    .balign 8\n    .quad __stop___nv_relfatbin\n\
               \n    .section .note.GNU-stack, \"\", @progbits\n";
    let asm = asm.replace("PATH", &dir.path().join("ka.fatbin").display().to_string());
    let lib = build_x86(dir.path(), &[("ka", &ka)], &asm, &[]);
    let data = std::fs::read(&lib).unwrap();
    let edits: Vec<_> = [".nv_fatbin", "__nv_relfatbin"]
        .iter()
        .map(|s| cuda_edit(&data, s, Keep::First).0)
        .collect();
    let outcome = shrink(&data, &edits, true).unwrap();
    let why = reason(&outcome);
    assert!(
        why.contains("__stop___nv_relfatbin") || why.contains("end of `__nv_relfatbin`"),
        "{why}"
    );
}

/// A copy of a real fixture with one RELATIVE addend edited to point 0x40 bytes into the
/// second container.
#[test]
fn edited_addend_into_a_container_falls_back_to_zeroing() {
    let path = fixture("cuda/libfix_plain.so");
    let mut data = std::fs::read(&path).unwrap();
    let (_, fat_addr, fat_size) = section(&data, ".nv_fatbin").unwrap();
    let (fat_off, _, _) = section(&data, ".nv_fatbin").unwrap();
    let second = cuda_containers(&data[fat_off..fat_off + fat_size])[1].off as u64;
    let elf = goblin::elf::Elf::parse(&data).unwrap();
    // The RELATIVE relocation at .data.rel.ro+8 (it points into .rodata).
    let victim = elf
        .dynrelas
        .iter()
        .position(|r| r.r_type == 8 && r.r_addend.is_some_and(|a| (0x3000..0x3170).contains(&a)))
        .expect("a RELATIVE relocation into .rodata");
    let (rela_off, _, _) = section(&data, ".rela.dyn").unwrap();
    let at = rela_off + victim * 24 + 16;
    let target = fat_addr + second + 0x40;
    data[at..at + 8].copy_from_slice(&target.to_le_bytes());
    let (edit, _, _) = cuda_edit(&data, ".nv_fatbin", Keep::First);
    let outcome = shrink(&data, &[edit], true).unwrap();
    let why = reason(&outcome);
    assert!(
        why.contains(&format!(
            "points into `.nv_fatbin` at +{:#x}, not at a container start",
            second + 0x40
        )),
        "{why}"
    );
}

const PAGE: u64 = 0x1000;

fn align(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

/// A library whose single container is followed by zero padding so that `.nv_fatbin` ends 64
/// bytes past a page boundary, and an edit whose packed end falls 16 bytes short of a page
/// boundary, with `pages` whole pages between: no dead bytes to speak of on either side of
/// the hole, so the program header table needs a granule given up or the end of the file.
fn tight_case(dir: &Path, pages: u64) -> (PathBuf, wheelslim::elf::shrink::SectionEdit) {
    let ka = big_container(1);
    let c = ka.len() as u64;
    let probe_dir = tempdir();
    let probe = build_x86(probe_dir.path(), &[("ka", &ka)], "", &[]);
    let (_, s, _) = section(&std::fs::read(&probe).unwrap(), ".nv_fatbin").unwrap();
    let trimmed = rebuild_cuda(&ka, &cuda_containers(&ka)[0], &[0]);
    let t = trimmed.len() as u64;
    let p1 = align(
        (s + t + 16).max((s + c).saturating_sub(64 + pages * PAGE)),
        PAGE,
    );
    let p2 = p1 + pages * PAGE;
    let pad = p2 + 64 - s - c;
    let mut padded = ka.clone();
    padded.resize((c + pad) as usize, 0);
    let lib = build_x86(dir, &[("ka", &padded)], "", &[]);
    let data = std::fs::read(&lib).unwrap();
    let (_, s2, size) = section(&data, ".nv_fatbin").unwrap();
    assert_eq!(
        (s2, s2 + size as u64),
        (s, p2 + 64),
        "the layout moved between builds"
    );
    let mut new = trimmed;
    new.resize((p1 - 16 - s) as usize, 0);
    assert!(new.len() as u64 <= c);
    let edit = wheelslim::elf::shrink::SectionEdit {
        name: ".nv_fatbin".into(),
        blocks: vec![wheelslim::elf::shrink::Block {
            old_offset: 0,
            old_len: c,
            new_bytes: new,
            align: 8,
        }],
    };
    (lib, edit)
}

/// Rule 6 (iii): no room beside a 3-page hole, so one page of it is given up to hold the table.
#[test]
fn phdr_table_takes_a_granule_given_up() {
    let dir = tempdir();
    let (lib, edit) = tight_case(dir.path(), 3);
    let data = std::fs::read(&lib).unwrap();
    let outcome = shrink(&data, &[edit], true).unwrap();
    assert!(
        matches!(
            outcome.method,
            ShrinkMethod::Cut {
                file_bytes_removed: 0x2000,
                segments_split: 1
            }
        ),
        "{:?} {:?}",
        outcome.method,
        outcome.notes
    );
    assert!(
        outcome
            .notes
            .iter()
            .any(|n| n.contains("giving up 1 granule")),
        "{:?}",
        outcome.notes
    );
    let out = write(dir.path(), "libtight3.so", &outcome.data);
    check_cut_layout(&lib, &out, &outcome);
    assert_eq!(load_embed(&out), "7 1 1 1");
}

/// Rule 6 (iv): a one-page hole with no room anywhere, in an object without PT_PHDR: the table
/// goes to the end of the file (not mapped; glibc copies it), and unwinding still finds
/// PT_GNU_EH_FRAME through `dl_iterate_phdr`.
#[test]
fn phdr_table_at_the_end_of_the_file() {
    let dir = tempdir();
    let (lib, edit) = tight_case(dir.path(), 1);
    let data = std::fs::read(&lib).unwrap();
    let outcome = shrink(&data, &[edit], true).unwrap();
    assert!(
        outcome.notes.iter().any(|n| n.contains("end of the file")),
        "{:?} {:?}",
        outcome.method,
        outcome.notes
    );
    let out = write(dir.path(), "libtight1.so", &outcome.data);
    let removed = check_cut_layout(&lib, &out, &outcome);
    assert!(removed > 0 && removed < PAGE);
    let elf = goblin::elf::Elf::parse(&outcome.data).unwrap();
    assert_eq!(
        elf.header.e_phoff + u64::from(elf.header.e_phnum) * 56,
        outcome.data.len() as u64
    );
    assert_eq!(load_embed(&out), "7 1 1 1");
}

/// Rule 6 (i): unused bytes after the table (as patchelf leaves them) let it grow in place.
/// Emulated by linking with a long build-id note and then retiring the note (section type
/// SHT_NULL, segment type PT_NULL), which leaves its bytes covered by nothing.
#[test]
fn phdr_table_grows_in_place_over_unused_bytes() {
    let dir = tempdir();
    let ka = big_container(4);
    let id = format!("-Wl,--build-id=0x{}", "ab".repeat(100));
    let lib = build_x86(dir.path(), &[("ka", &ka)], "", &[&id]);
    let mut data = std::fs::read(&lib).unwrap();
    let elf = goblin::elf::Elf::parse(&data).unwrap();
    let shoff = elf.header.e_shoff as usize;
    let phoff = elf.header.e_phoff as usize;
    let note_sec = elf
        .section_headers
        .iter()
        .position(|s| elf.shdr_strtab.get_at(s.sh_name) == Some(".note.gnu.build-id"))
        .unwrap();
    let note_seg = elf
        .program_headers
        .iter()
        .position(|p| p.p_type == goblin::elf::program_header::PT_NOTE)
        .unwrap();
    let phnum = elf.program_headers.len();
    drop(elf);
    data[shoff + note_sec * 64 + 4..shoff + note_sec * 64 + 8].copy_from_slice(&0u32.to_le_bytes());
    data[phoff + note_seg * 56..phoff + note_seg * 56 + 4].copy_from_slice(&0u32.to_le_bytes());
    let retired = write(dir.path(), "libretired.so", &data);
    assert_eq!(load_embed(&retired), "7 1 12 8");
    let (outcome, _) = trim_first(&data);
    assert!(
        outcome.notes.iter().any(|n| n.contains("grown in place")),
        "{:?} {:?}",
        outcome.method,
        outcome.notes
    );
    let out = write(dir.path(), "libinplace.so", &outcome.data);
    let elf = goblin::elf::Elf::parse(&outcome.data).unwrap();
    assert_eq!(elf.header.e_phoff as usize, phoff);
    assert_eq!(elf.program_headers.len(), phnum + 1);
    assert!(matches!(outcome.method, ShrinkMethod::Cut { .. }));
    assert_eq!(load_embed(&out), "7 1 1 1");
    assert_eq!(readelf_complaints(&out), readelf_complaints(&retired));
}

/// Two device sections with another section between them: each is packed on its own and
/// each frees its own hole, so the PT_LOAD is split twice (`docs/elf.md`, "Shrinking", step 5).
#[test]
fn two_separate_sections_give_two_holes() {
    let dir = tempdir();
    let d = dir.path();
    let (ka, kr) = (big_container(4), big_container(5));
    std::fs::write(d.join("kr.fatbin"), &kr).unwrap();
    let asm = format!(
        "    .section .nv_mid, \"a\"\n    .balign 8\n    .quad 0x1122334455667788\n\
         \n    .section __nv_relfatbin, \"a\"\n    .balign 8\nrelData:\n    .incbin \"{}\"\n    .balign 8\n\
         \n    .section .nvFatBinSegment, \"aw\"\n    .balign 8\n    .globl fix_wrapper_kr\n    .hidden fix_wrapper_kr\n\
         fix_wrapper_kr:\n    .long 0x466243B1\n    .long 1\n    .quad relData\n    .quad 0\n\
         \n    .section .note.GNU-stack, \"\", @progbits\n",
        d.join("kr.fatbin").display()
    );
    let mut objs = embed("gcc", d, &[("ka", &ka)]);
    objs.push(stub("gcc", d));
    let extra = d.join("extra.S");
    std::fs::write(&extra, asm).unwrap();
    let lib = d.join("libtwo.so");
    sh(Command::new("gcc")
        .args(["-O2", "-fPIC", "-shared", "-Wl,--no-undefined"])
        .arg(host_c(d, &["ka", "kr"], ""))
        .args(&objs)
        .arg(&extra)
        .arg("-o")
        .arg(&lib));
    let data = std::fs::read(&lib).unwrap();
    let (_, a, asz) = section(&data, ".nv_fatbin").unwrap();
    let (_, m, _) = section(&data, ".nv_mid").unwrap();
    let (_, r, _) = section(&data, "__nv_relfatbin").unwrap();
    assert!(a + asz as u64 <= m && m < r, "unexpected section order");
    assert_eq!(load_embed(&lib), "7 2 27 18");
    let mut edits = Vec::new();
    let mut news = Vec::new();
    for s in [".nv_fatbin", "__nv_relfatbin"] {
        let (e, n, _) = cuda_edit(&data, s, Keep::First);
        edits.push(e);
        news.extend(n);
    }
    let outcome = shrink(&data, &edits, true).unwrap();
    assert!(
        matches!(
            outcome.method,
            ShrinkMethod::Cut {
                segments_split: 2,
                ..
            }
        ),
        "{:?} {:?}",
        outcome.method,
        outcome.notes
    );
    let out = write(d, "libtwo_trimmed.so", &outcome.data);
    check_cut_layout(&lib, &out, &outcome);
    assert_eq!(
        cuobjdump_list(&out, true),
        cuobjdump_of_containers(d, &news)
    );
    assert_eq!(load_embed(&out), "7 2 2 2");
    // The section between the holes kept its address and bytes.
    let (mo, m2, _) = section(&outcome.data, ".nv_mid").unwrap();
    assert_eq!(m2, m);
    assert_eq!(
        outcome.data[mo..mo + 8],
        0x1122334455667788u64.to_le_bytes()
    );
}
