//! Companions of the project's own libraries (issue 14): a main wheel over the limit because of
//! its own libraries' device code keeps the libraries, and their device code moves into
//! companion wheels of its own (`{project}-devcode`), which the main wheel requires.
//!
//! The CUDA fixture's main wheel is about 123 KiB compressed, its six libraries most of it;
//! under `--max-size 80KiB` several of them must give up their device code.

use crate::common::*;
use crate::companion_host::{Rig, cuobjdump_list_or_empty, wrapper_sections};

const LIMIT: &str = "80KiB";
const LIMIT_BYTES: u64 = 80 * 1024;

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

/// The wheels a real split of `inputs` wrote into `out`, sorted by name.
fn split_own(inputs: &[&std::path::Path], out: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut args = vec!["split"];
    args.extend(inputs.iter().map(|p| s(p)));
    args.extend(["-w", s(out), "--max-size", LIMIT]);
    let o = wheelslim(&args);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let mut wheels: Vec<_> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    wheels.sort();
    wheels
}

fn member_text(w: &std::path::Path, suffix: &str) -> String {
    read_zip(w)
        .into_iter()
        .find(|(n, _)| n.ends_with(suffix))
        .map(|(_, b)| String::from_utf8(b).unwrap())
        .unwrap_or_else(|| panic!("{} has no {suffix}", w.display()))
}

/// The dry run shows the plan (`own` in `--json`, the companion wheel's name), the real run
/// carries it out: every wheel fits, the main wheel keeps its libraries and requires the
/// companion wheel, which holds the companions beside their hosts' install paths with RECORD
/// lines; `verify` passes; pip installs both; each installed host, with only the stand-in
/// runtime on LD_LIBRARY_PATH, hands it the same containers as the original library; cuobjdump
/// over host and companion lists the original's entries; a second run writes the same bytes.
#[test]
fn own_libraries_keep_their_place_and_their_device_code_moves_to_a_companion_wheel() {
    let tmp = tempdir();
    let input = fixture(CUDAFIX);
    let dry = wheelslim(&[
        "--json",
        "split",
        s(&input),
        "-w",
        s(&tmp.path().join("dry")),
        "--max-size",
        LIMIT,
        "--dry-run",
    ]);
    assert_eq!(code(&dry), 0, "{}", stderr(&dry));
    let v: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    let planned = v["companions"].as_array().expect("companions[]");
    assert!(!planned.is_empty(), "{v:#}");
    for c in planned {
        assert_eq!(c["own"], true, "{c:#}");
        for f in c["companions"].as_array().unwrap() {
            assert!(
                f["wheel"].as_str().unwrap().starts_with("cudafix-devcode"),
                "{c:#}"
            );
        }
    }
    assert!(!tmp.path().join("dry").exists());

    let out = tmp.path().join("out");
    let wheels = split_own(&[&input], &out);
    let names: Vec<String> = wheels
        .iter()
        .map(|w| w.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let main = out.join("cudafix-0.1.0-cp311-cp311-manylinux_2_34_x86_64.whl");
    let devcode = out.join("cudafix_devcode-0.1.0-cp311-cp311-manylinux_2_34_x86_64.whl");
    assert!(main.is_file() && devcode.is_file(), "{names:?}");
    for w in &wheels {
        let len = std::fs::metadata(w).unwrap().len();
        assert!(len <= LIMIT_BYTES, "{} is {len} bytes", w.display());
    }
    let meta = member_text(&main, "dist-info/METADATA");
    assert!(
        meta.lines()
            .any(|l| l == "Requires-Dist: cudafix-devcode==0.1.0"),
        "{meta}"
    );
    let original = read_zip(&input);
    let main_members = read_zip(&main);
    for (n, _) in original.iter().filter(|(n, _)| n.ends_with(".so")) {
        assert!(
            main_members.iter().any(|(m, _)| m == n),
            "{n} left the main wheel"
        );
    }
    let record = member_text(&devcode, "dist-info/RECORD");
    let companions: Vec<(String, Vec<u8>)> = read_zip(&devcode)
        .into_iter()
        .filter(|(n, _)| n.ends_with(".so"))
        .collect();
    assert!(companions.len() >= 2, "{companions:?}");
    for (n, _) in &companions {
        assert!(n.starts_with("cudafix/lib") && n.contains(".wsdev"), "{n}");
        assert!(record.contains(&format!("{n},sha256=")), "{record}");
    }

    verify_only_cudart_unresolved(&wheels);

    let again = split_own(&[&input], &tmp.path().join("again"));
    assert_eq!(again.len(), wheels.len());
    for (a, b) in wheels.iter().zip(&again) {
        assert!(
            std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
            "{a:?} differs"
        );
    }

    let venv = crate::split::Venv::new(tmp.path(), "venv");
    let mut pip = vec!["--no-deps"];
    pip.extend(wheels.iter().map(|w| s(w)));
    venv.pip_install(&pip);
    let site = venv.site_packages();
    let rig = Rig::new();
    let rt = rig.dir.path().join("rt");
    for (comp, _) in &companions {
        let stem = comp.split(".wsdev").next().unwrap();
        let host_name = format!("{stem}.so");
        let orig_bytes = &original.iter().find(|(n, _)| *n == host_name).unwrap().1;
        let orig_dir = rig.dir.path().join(stem.replace('/', "_"));
        std::fs::create_dir_all(&orig_dir).unwrap();
        let orig = orig_dir.join(host_name.rsplit('/').next().unwrap());
        std::fs::write(&orig, orig_bytes).unwrap();
        let want = rig.load(&orig, &wrapper_sections(orig_bytes)).unwrap();
        assert!(
            want.iter().any(|l| l.starts_with("register wrapper")),
            "{want:#?}"
        );
        let host = site.join(&host_name);
        let installed = std::fs::read(&host).unwrap();
        let got = rig
            .load_with(&host, &wrapper_sections(&installed), s(&rt))
            .unwrap_or_else(|e| panic!("the installed {host_name} does not load: {e}"));
        assert_eq!(got, want, "{host_name}");
        let mut listed = cuobjdump_list_or_empty(&host);
        listed.extend(cuobjdump_list_or_empty(&site.join(comp)));
        let mut expected = crate::shrink_support::cuobjdump_list(&orig, true);
        listed.sort();
        expected.sort();
        assert!(!expected.is_empty());
        assert_eq!(listed, expected, "{host_name}");
    }
}

/// Two Python versions' builds of the same libraries give byte-identical companions: one
/// `py3-none` companion wheel serves both main wheels, and both require it.
#[test]
fn identical_companions_of_two_python_versions_share_one_wheel() {
    let tmp = tempdir();
    let cp311 = fixture(CUDAFIX);
    let cp312 = tmp
        .path()
        .join("cudafix-0.1.0-cp312-cp312-manylinux_2_34_x86_64.whl");
    rewrite_wheel(&cp311, &cp312, |name, data| {
        if name.ends_with(".dist-info/WHEEL") {
            String::from_utf8(data)
                .unwrap()
                .replace("cp311", "cp312")
                .into_bytes()
        } else {
            data
        }
    });
    let out = tmp.path().join("out");
    let wheels = split_own(&[&cp311, &cp312], &out);
    let names: Vec<String> = wheels
        .iter()
        .map(|w| w.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let shared = "cudafix_devcode-0.1.0-py3-none-manylinux_2_34_x86_64.whl";
    assert!(names.iter().any(|n| n == shared), "{names:?}");
    assert_eq!(
        names
            .iter()
            .filter(|n| n.starts_with("cudafix_devcode"))
            .count(),
        1,
        "{names:?}"
    );
    let wheel = member_text(&out.join(shared), "dist-info/WHEEL");
    assert!(
        wheel.contains("Tag: py3-none-manylinux_2_34_x86_64"),
        "{wheel}"
    );
    for py in ["cp311", "cp312"] {
        let main = out.join(format!("cudafix-0.1.0-{py}-{py}-manylinux_2_34_x86_64.whl"));
        let meta = member_text(&main, "dist-info/METADATA");
        assert!(
            meta.contains("Requires-Dist: cudafix-devcode==0.1.0"),
            "{meta}"
        );
    }
}

/// Without companions the main wheel over the limit is refused as before, the hint saying
/// first that companions would make it fit; under a limit where even the hosts' other bytes
/// are too much, the refusal says why companions cannot help. Nothing is written.
#[test]
fn a_refused_main_wheel_says_what_companions_would_do() {
    let tmp = tempdir();
    let out = tmp.path().join("out");
    let input = fixture(CUDAFIX);
    for (limit, extra, says) in [
        (
            LIMIT,
            Some("--no-companions"),
            "hint: --companions would make it fit",
        ),
        (
            "40KiB",
            None,
            "companions cannot make it fit: the main wheel's other members take all its room",
        ),
        (
            "60KiB",
            None,
            "companions cannot make it fit: the host's non-device data",
        ),
    ] {
        let mut args = vec!["split", s(&input), "-w", s(&out)];
        args.extend(["--max-size", limit]);
        args.extend(extra);
        let o = wheelslim(&args);
        assert_eq!(code(&o), 2, "{}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("over the") && err.contains(says), "{err}");
        assert!(std::fs::read_dir(&out).map_or(true, |mut d| d.next().is_none()));
    }
}

/// `audit` says what `split` does for the project's own libraries (one planner): where the
/// split moves their device code, audit lists the same libraries with the same number of
/// companion files and the same host size; where split refuses, audit gives the same reason.
#[test]
fn audit_advice_for_own_libraries_is_the_split_plan() {
    let tmp = tempdir();
    let input = fixture(CUDAFIX);
    let audit_of = |limit: &str| -> Vec<serde_json::Value> {
        let o = wheelslim(&["--json", "audit", s(&input), "--max-size", limit]);
        let v: serde_json::Value =
            serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&o)));
        v["wheels"][0]["companions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let advice = audit_of(LIMIT);
    let dry = wheelslim(&[
        "--json",
        "split",
        s(&input),
        "-w",
        s(&tmp.path().join("w")),
        "--max-size",
        LIMIT,
        "--dry-run",
    ]);
    assert_eq!(code(&dry), 0, "{}", stderr(&dry));
    let v: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    let planned = v["companions"].as_array().unwrap();
    let key = |lib: &str| lib.rsplit_once('!').map_or(lib, |(_, m)| m).to_string();
    let mut from_split: Vec<(String, usize, u64)> = planned
        .iter()
        .map(|c| {
            let files = c["companions"].as_array().unwrap().len();
            (
                key(c["library"].as_str().unwrap()),
                files,
                c["host_after"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut from_audit: Vec<(String, usize, u64)> = advice
        .iter()
        .map(|a| {
            assert_eq!(a["own"], true, "{a:#}");
            assert_eq!(a["fits_with_companions"], true, "{a:#}");
            let after = a["host_after"].as_u64().unwrap();
            (
                a["member"].as_str().unwrap().to_string(),
                a["files"].as_u64().unwrap() as usize,
                after,
            )
        })
        .collect();
    from_split.sort();
    from_audit.sort();
    assert!(!from_split.is_empty());
    assert_eq!(from_audit, from_split);
    let text = wheelslim(&["audit", s(&input), "--max-size", LIMIT]);
    assert!(
        stdout(&text).contains("--companions would make it fit"),
        "{}",
        stdout(&text)
    );

    // Where split refuses, audit says why, in split's words.
    for limit in ["40KiB", "60KiB"] {
        let o = wheelslim(&[
            "split",
            s(&input),
            "-w",
            s(&tmp.path().join("w")),
            "--max-size",
            limit,
        ]);
        assert_eq!(code(&o), 2, "{}", stderr(&o));
        let advice = audit_of(limit);
        assert_eq!(advice.len(), 1, "{advice:#?}");
        let a = &advice[0];
        assert_eq!(a["fits_with_companions"], false, "{a:#}");
        let why = a["reason"].as_str().unwrap();
        assert!(
            stderr(&o).contains(why),
            "split: {}\naudit: {why}",
            stderr(&o)
        );
    }
    // Under a limit the main wheel fits, audit has nothing to say.
    assert!(audit_of("1MiB").is_empty());
}

/// Real wheels whose own libraries need companions (not in `./test.sh`: they are hundreds of
/// MB). `WHEELSLIM_OWN_REAL` lists `wheel|split options` items separated by `;`, for example
/// `nvidia_nccl_cu12-2.27.3-….whl|--sm 80,90,100`. Each wheel is trimmed alone (`trim` with
/// the same `--sm`/`--gfx`) and split; the split set installs with pip; each installed host,
/// loaded with `LD_BIND_NOW=1` and its companions beside it, hands the runtime the same
/// containers as the trimmed-only library (the stand-in for a dynamic `libcudart`, or the
/// wrappers walked in the loaded process for a static one); readelf and eu-elflint have no new
/// complaint; cuobjdump over host and companions lists the trimmed-only library's entries.
#[test]
#[ignore]
#[allow(clippy::print_stdout)] // the measurements are the point of this test
fn real_wheels_from_the_environment() {
    let list = std::env::var("WHEELSLIM_OWN_REAL").expect("WHEELSLIM_OWN_REAL");
    let rig = Rig::new();
    for item in list.split(';').filter(|i| !i.trim().is_empty()) {
        let (wheel, opts) = item.split_once('|').unwrap_or((item, ""));
        let opts: Vec<&str> = opts.split_whitespace().collect();
        let tmp = tempdir();
        let (trimmed_dir, split_dir) = (tmp.path().join("trimmed"), tmp.path().join("split"));
        let mut args = vec!["split", wheel, "-w", s(&split_dir)];
        args.extend(&opts);
        let o = wheelslim(&args);
        assert_eq!(code(&o), 0, "{wheel}: {}", stderr(&o));
        let wheels: Vec<std::path::PathBuf> = std::fs::read_dir(&split_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        let trims: Vec<&str> = opts
            .chunks(2)
            .filter(|c| c.len() == 2 && matches!(c[0], "--sm" | "--gfx"))
            .flatten()
            .copied()
            .collect();
        let trimmed_members = if trims.is_empty() {
            read_zip(std::path::Path::new(wheel))
        } else {
            // The trimmed-only wheel is the reference, not an output: no size limit.
            let mut args = vec!["trim", wheel, "-w", s(&trimmed_dir), "--max-size", "64GiB"];
            args.extend(&trims);
            let o = wheelslim(&args);
            assert_eq!(code(&o), 0, "{wheel}: {}", stderr(&o));
            let t = std::fs::read_dir(&trimmed_dir).unwrap().next().unwrap();
            read_zip(&t.unwrap().path())
        };
        let venv = crate::split::Venv::new(tmp.path(), "venv");
        let mut pip = vec!["--no-deps"];
        pip.extend(wheels.iter().map(|w| s(w)));
        venv.pip_install(&pip);
        let site = venv.site_packages();
        let mut companions: Vec<String> = Vec::new();
        for w in wheels.iter().filter(|w| s(w).contains("_devcode")) {
            companions.extend(
                read_zip(w)
                    .into_iter()
                    .map(|(n, _)| n)
                    .filter(|n| n.contains(".wsdev")),
            );
        }
        assert!(!companions.is_empty(), "{wheel}: no companion written");
        let mut hosts: Vec<String> = companions
            .iter()
            .map(|c| {
                let (dir, base) = c.rsplit_once('/').unwrap();
                let stem = base.split(".wsdev").next().unwrap();
                let host = trimmed_members
                    .iter()
                    .map(|(n, _)| n)
                    .find(|n| {
                        n.rsplit_once('/')
                            .is_some_and(|(d, b)| d == dir && b.starts_with(&format!("{stem}.so")))
                    })
                    .unwrap_or_else(|| panic!("{wheel}: no host for {c}"));
                host.clone()
            })
            .collect();
        hosts.sort();
        hosts.dedup();
        for host in &hosts {
            check_real_host(
                &rig,
                (wheel, &opts),
                host,
                &trimmed_members,
                &site,
                &companions,
                tmp.path(),
            );
        }
        for w in &wheels {
            println!("  {} {} bytes", s(w), std::fs::metadata(w).unwrap().len());
        }
    }
}

/// [`real_wheels_from_the_environment`] for one host of one wheel: `trimmed`, the members of
/// the reference (the input trimmed alone); `site`, where the split set is installed.
#[allow(clippy::print_stdout)]
fn check_real_host(
    rig: &Rig,
    (wheel, opts): (&str, &[&str]),
    host: &str,
    trimmed_members: &[(String, Vec<u8>)],
    site: &std::path::Path,
    companions: &[String],
    tmp: &std::path::Path,
) {
    let orig_bytes = &trimmed_members.iter().find(|(n, _)| n == host).unwrap().1;
    let orig_dir = tmp.join("orig");
    std::fs::create_dir_all(&orig_dir).unwrap();
    let orig = orig_dir.join(host.rsplit('/').next().unwrap());
    std::fs::write(&orig, orig_bytes).unwrap();
    let installed = site.join(host);
    let data = std::fs::read(&installed).unwrap();
    // A library that needs what this machine lacks (torch's libtorch_cuda.so needs
    // NVIDIA's wheels) cannot be loaded, original or not: then only the static checks
    // below speak for it, and the output says so.
    let loaded = match rig.load(&orig, &wrapper_sections(orig_bytes)) {
        Ok(want) => {
            let got = rig
                .load(&installed, &wrapper_sections(&data))
                .unwrap_or_else(|e| panic!("{wheel}: the installed {host} does not load: {e}"));
            assert_eq!(got.len(), want.len(), "{wheel}: {host}");
            assert!(
                got == want,
                "{wheel}: {host}: the wrappers reach other bytes"
            );
            format!("{} wrappers reach the same bytes", want.len())
        }
        Err(e) => format!(
            "not loaded (the original does not load here either: {})",
            e.lines().next().unwrap_or("")
        ),
    };
    let dir = host.rsplit_once('/').map_or("", |(d, _)| d);
    let mine: Vec<std::path::PathBuf> = companions
        .iter()
        .filter(|c| c.rsplit_once('/').map_or("", |(d, _)| d) == dir)
        .map(|c| site.join(c))
        .collect();
    crate::companion_host::check_static(&orig, &installed, &mine);
    // cuobjdump, where it can read the original whole.
    let listing = if cuobjdump_reads(&orig) {
        let mut listed = cuobjdump_list_or_empty(&installed);
        for c in &mine {
            listed.extend(cuobjdump_list_or_empty(c));
        }
        let mut expected = cuobjdump_list_or_empty(&orig);
        listed.sort();
        expected.sort();
        assert_eq!(listed, expected, "{wheel}: {host}");
        format!("cuobjdump lists the same {} entries", expected.len())
    } else {
        "cuobjdump cannot read the original whole, so it is not asked".to_string()
    };
    // cuobjdump gives up part way on some real libraries (torch 2.4.1's
    // libtorch_cuda.so: "Invalid ELF" after two entries, on the input too), so the
    // containers themselves are compared as well: read with goblin and walked by the
    // test's own parser, host and companions hold exactly the original's, byte for
    // byte.
    let mut have = containers_of(&data);
    for c in &mine {
        have.extend(containers_of(&std::fs::read(c).unwrap()));
    }
    let mut had = containers_of(orig_bytes);
    have.sort();
    had.sort();
    assert!(!had.is_empty(), "{wheel}: {host} has no CUDA container");
    assert!(
        have == had,
        "{wheel}: {host}: the containers differ from the original's"
    );
    println!(
        "{wheel} {}: {host} {} bytes trimmed → {} bytes beside {} companion(s); {loaded}; {listing}; {} containers byte-identical",
        opts.join(" "),
        orig_bytes.len(),
        data.len(),
        mine.len(),
        had.len()
    );
}

/// The sha256 of every CUDA container in `data`'s `.nv_fatbin` and `__nv_relfatbin`, with its
/// section's name.
fn containers_of(data: &[u8]) -> Vec<(String, [u8; 32])> {
    use sha2::{Digest, Sha256};
    let mut out = Vec::new();
    for name in [".nv_fatbin", "__nv_relfatbin"] {
        let Some((off, _, size)) = crate::shrink_support::section(data, name) else {
            continue;
        };
        let sec = &data[off..off + size];
        for c in crate::shrink_support::cuda_containers(sec) {
            out.push((
                name.to_string(),
                Sha256::digest(&sec[c.off..c.off + c.len]).into(),
            ));
        }
    }
    out
}

/// Whether cuobjdump lists every entry of `path` without an error.
fn cuobjdump_reads(path: &std::path::Path) -> bool {
    let tool = tool_env("WHEELSLIM_CUOBJDUMP");
    std::process::Command::new(tool)
        .args(["-all", "--list-elf", "--list-ptx"])
        .arg(path)
        .output()
        .is_ok_and(|o| o.status.success())
}
