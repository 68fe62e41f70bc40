//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(rel: &str) -> PathBuf {
    root().join("fixtures").join(rel)
}

pub const SLIMDEMO: &str =
    "wheels/slimdemo-0.1.0-cp38-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl";
pub const CUDAFIX: &str = "wheels/cudafix-0.1.0-cp311-cp311-manylinux_2_34_x86_64.whl";
pub const HIPFIX: &str = "wheels/hipfix-0.1.0-cp311-cp311-manylinux_2_34_x86_64.whl";
pub const PUREFIX: &str = "wheels/purefix-1.0-py3-none-any.whl";

/// An outside tool the test suite installs (`./test.sh` sets these). Missing → the test fails
/// and says how to get it; it never passes silently.
pub fn tool_env(var: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(v) if Path::new(&v).exists() => PathBuf::from(v),
        _ => panic!(
            "{var} is not set or does not exist: run the tests with ./test.sh, which installs the tools"
        ),
    }
}

pub fn wheelslim(args: &[&str]) -> Output {
    wheelslim_in(args, &root())
}

pub fn wheelslim_in(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wheelslim"))
        .args(args)
        .current_dir(cwd)
        .env("WHEELSLIM_NO_PROGRESS", "1")
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .expect("run wheelslim")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs a command and returns its stdout, failing the test (with its stderr) if it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("wheelslim-test-")
        .tempdir()
        .expect("tempdir")
}

/// Every member name and uncompressed bytes of a wheel, read with the `zip` crate (an
/// independent reader of what wheelslim writes).
pub fn read_zip(path: &Path) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let f = std::fs::File::open(path).unwrap();
    let mut z = zip::ZipArchive::new(f).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    for i in 0..z.len() {
        let mut e = z.by_index(i).unwrap();
        let mut v = Vec::new();
        e.read_to_end(&mut v).unwrap();
        let name = e
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|err| panic!("{}: bad member name: {err}", path.display()));
        out.push((name, v));
    }
    out
}

/// Writes a minimal valid wheel holding `files` (project `demo` 1.0) and returns its path.
pub fn make_wheel(dir: &Path, platform: &str, files: &[(&str, &[u8])]) -> PathBuf {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    use std::io::Write;
    let path = dir.join(format!("demo-1.0-py3-none-{platform}.whl"));
    let f = std::fs::File::create(&path).unwrap();
    let mut z = zip::ZipWriter::new(f);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default());
    let mut record = String::new();
    let wheel = format!(
        "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: py3-none-{platform}\n"
    );
    let meta = "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n\n".to_string();
    let mut all: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|(n, d)| (n.to_string(), d.to_vec()))
        .collect();
    all.push(("demo-1.0.dist-info/METADATA".into(), meta.into_bytes()));
    all.push(("demo-1.0.dist-info/WHEEL".into(), wheel.into_bytes()));
    for (name, data) in &all {
        z.start_file(name.as_str(), opts).unwrap();
        z.write_all(data).unwrap();
        let digest = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(data));
        record.push_str(&format!("{name},sha256={digest},{}\n", data.len()));
    }
    record.push_str("demo-1.0.dist-info/RECORD,,\n");
    z.start_file("demo-1.0.dist-info/RECORD", opts).unwrap();
    z.write_all(record.as_bytes()).unwrap();
    z.finish().unwrap();
    path
}

/// Copies a wheel member by member through `edit` (name, bytes → bytes), regenerating RECORD,
/// and writes it to `dst`.
pub fn rewrite_wheel(src: &Path, dst: &Path, edit: impl Fn(&str, Vec<u8>) -> Vec<u8>) {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    use std::io::Write;
    let members = read_zip(src);
    let record_name = members
        .iter()
        .map(|(n, _)| n)
        .find(|n| n.ends_with(".dist-info/RECORD"))
        .expect("RECORD")
        .clone();
    let f = std::fs::File::create(dst).unwrap();
    let mut z = zip::ZipWriter::new(f);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default());
    let mut record = String::new();
    for (name, data) in members {
        if name == record_name || name.ends_with('/') {
            continue;
        }
        let data = edit(&name, data);
        z.start_file(name.as_str(), opts).unwrap();
        z.write_all(&data).unwrap();
        let digest = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(&data));
        record.push_str(&format!("{name},sha256={digest},{}\n", data.len()));
    }
    record.push_str(&format!("{record_name},,\n"));
    z.start_file(record_name.as_str(), opts).unwrap();
    z.write_all(record.as_bytes()).unwrap();
    z.finish().unwrap();
}

/// `sm_90` → count and `compute_90` → count, as cuobjdump lists them (`-all` includes
/// `__nv_relfatbin`). cuobjdump prints family (`f`) cubins under their base name.
pub fn cuobjdump_counts(path: &Path) -> std::collections::BTreeMap<String, usize> {
    let cuobjdump = tool_env("WHEELSLIM_CUOBJDUMP");
    let out = run(Command::new(cuobjdump)
        .args(["-all", "--list-elf", "--list-ptx"])
        .arg(path));
    let mut counts = std::collections::BTreeMap::new();
    for line in out.lines() {
        let file = line.rsplit(' ').next().unwrap_or("");
        let arch = file.rsplit('.').nth(1).unwrap_or("");
        let key = if line.starts_with("ELF file") {
            arch.to_string()
        } else if line.starts_with("PTX file") {
            arch.replace("sm_", "compute_")
        } else {
            continue;
        };
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// `wheelslim verify` over `wheels`: its report, after checking that its only problem is
/// the CUDA fixture's `libcudart.so.13`, which no wheel here provides (unresolved in the
/// input already).
pub fn verify_only_cudart_unresolved(wheels: &[PathBuf]) -> String {
    let mut args = vec!["verify"];
    args.extend(wheels.iter().map(|w| w.to_str().unwrap()));
    let report = stdout(&wheelslim(&args));
    for l in report
        .lines()
        .filter(|l| !l.ends_with(": ok") && !l.contains("checked:"))
    {
        assert!(
            l.starts_with("unresolved: ") && l.contains("needs libcudart.so.13 "),
            "{report}"
        );
    }
    report
}

/// A wheel each around the CUDA 10.2/11.x fixture library and the aarch64 one (x86_64 and
/// aarch64 tags), made under `dir`: libraries with device code that the fixture wheels lack.
pub fn single_library_wheels(dir: &Path) -> Vec<PathBuf> {
    [
        ("cuda_old", "libold_toolkits.so", "manylinux_2_34_x86_64"),
        ("aarch64", "libfix_a64.so", "manylinux_2_34_aarch64"),
    ]
    .into_iter()
    .map(|(sub, so, platform)| {
        let lib = std::fs::read(fixture(&format!("{sub}/{so}"))).unwrap();
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).unwrap();
        make_wheel(&d, platform, &[(&format!("pkg/{so}"), &lib)])
    })
    .collect()
}
