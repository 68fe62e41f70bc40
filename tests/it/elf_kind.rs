//! What `inspect` calls an ELF object: a position-independent executable is an executable,
//! not a shared object, whether the linker marked it `DF_1_PIE` or (older linkers) it only
//! asks for an interpreter; a library that also has PT_INTERP (like glibc's) stays a library.

use std::path::Path;
use std::process::Command;

use wheelslim::elf::inspect::{Inspected, inspect};

use crate::common::tempdir;
use crate::shrink_support::{need, run_out};

fn kind(path: &Path) -> &'static str {
    match inspect(&std::fs::read(path).unwrap()).unwrap() {
        Inspected::Host(info) => info.kind,
        other => panic!("{} is not a host object: {other:?}", path.display()),
    }
}

fn gcc(dir: &Path, name: &str, args: &[&str]) -> std::path::PathBuf {
    need("gcc", "gcc");
    let src = dir.join("k.c");
    std::fs::write(
        &src,
        "int k_fn(int v) { return v + 1; }\nint main(void) { return k_fn(-1); }\n",
    )
    .unwrap();
    let out = dir.join(name);
    let (ok, o, e) = run_out(Command::new("gcc").args(args).arg(&src).arg("-o").arg(&out));
    assert!(ok, "gcc {args:?} failed: {o}{e}");
    out
}

/// Clears `DF_1_PIE` in `DT_FLAGS_1`, as an object from a linker older than that flag has it.
fn clear_df_1_pie(path: &Path) {
    let mut data = std::fs::read(path).unwrap();
    let elf = goblin::elf::Elf::parse(&data).unwrap();
    let dynsec = elf
        .section_headers
        .iter()
        .find(|s| elf.shdr_strtab.get_at(s.sh_name) == Some(".dynamic"))
        .unwrap();
    let (start, end) = (
        dynsec.sh_offset as usize,
        (dynsec.sh_offset + dynsec.sh_size) as usize,
    );
    let mut found = false;
    for at in (start..end).step_by(16) {
        let tag = u64::from_le_bytes(data[at..at + 8].try_into().unwrap());
        if tag == goblin::elf::dynamic::DT_FLAGS_1 {
            let v = u64::from_le_bytes(data[at + 8..at + 16].try_into().unwrap());
            assert_ne!(v & goblin::elf::dynamic::DF_1_PIE, 0);
            let v = v & !goblin::elf::dynamic::DF_1_PIE;
            data[at + 8..at + 16].copy_from_slice(&v.to_le_bytes());
            found = true;
        }
    }
    assert!(found, "no DT_FLAGS_1 in {}", path.display());
    std::fs::write(path, data).unwrap();
}

#[test]
fn pie_executables_are_executables_and_libraries_stay_libraries() {
    let dir = tempdir();
    let d = dir.path();
    let pie = gcc(d, "k_pie", &["-O2", "-fPIE", "-pie"]);
    assert_eq!(kind(&pie), "executable");
    let exe = gcc(d, "k_exe", &["-O2", "-no-pie"]);
    assert_eq!(kind(&exe), "executable");
    let lib = gcc(
        d,
        "libk.so",
        &["-O2", "-fPIC", "-shared", "-Wl,-soname,libk.so.1"],
    );
    assert_eq!(kind(&lib), "shared-object");

    // An old-style PIE: PT_INTERP, no soname, no DF_1_PIE.
    let old = gcc(d, "k_old_pie", &["-O2", "-fPIE", "-pie"]);
    clear_df_1_pie(&old);
    let (_, flags, _) = run_out(Command::new("readelf").arg("-dW").arg(&old));
    assert!(!flags.contains("PIE"), "{flags}");
    assert_eq!(kind(&old), "executable");

    // A runnable library: PT_INTERP and a soname, no DF_1_PIE. glibc's libc.so.6 is one;
    // like it, this one asks for the interpreter through its own `.interp` section.
    let interp = d.join("interp.c");
    std::fs::write(
        &interp,
        "const char k_interp[] __attribute__((section(\".interp\"))) = \"/lib64/ld-linux-x86-64.so.2\";\n",
    )
    .unwrap();
    let interp = interp.to_str().unwrap();
    let runnable = gcc(
        d,
        "librun.so",
        &[
            "-O2",
            "-fPIC",
            "-shared",
            "-Wl,-soname,librun.so.1",
            "-Wl,-e,main",
            interp,
        ],
    );
    let (_, phdrs, _) = run_out(Command::new("readelf").arg("-lW").arg(&runnable));
    assert!(
        phdrs.contains("INTERP"),
        "the linker wrote no PT_INTERP:\n{phdrs}"
    );
    assert_eq!(kind(&runnable), "shared-object");
}
