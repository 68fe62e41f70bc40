//! Planning device-code companions (issue 14): `audit`'s per-library verdict, the "cannot
//! fit even alone" refusal of `split`, and `split --companions --dry-run`'s plan, on the CUDA
//! and HIP fixtures under limits small enough that a fixture library does not fit.
//!
//! Every runtime wheel keeps 256 KiB for its own files, so `--max-size 270KiB` leaves 14 KiB
//! for a library: `libfix_plain.so` (16.5 KiB compressed, 3 containers) is over it, and its
//! host bytes without device code are not.

use crate::common::*;

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

/// Nothing was written: the folder is missing or empty.
fn nothing_in(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}

const LIMIT: &str = "270KiB";

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

/// The fixture's libraries are the project's own and stay in its main wheel (about 123 KiB
/// compressed): at 80 KiB their device code must go, at 60 KiB the host bytes of the largest
/// are too much even without it. audit says so per library, by the room the main wheel's other
/// members leave (as split plans it: `companion_own::audit_advice_for_own_libraries_is_the_split_plan`).
#[test]
fn audit_says_per_library_whether_companions_make_it_fit() {
    let w = fixture(CUDAFIX);
    let line = |text: &str, member: &str| -> String {
        text.lines()
            .find(|l| l.trim_start().starts_with(&format!("{member}:")))
            .unwrap_or_else(|| panic!("no line for {member}:\n{text}"))
            .to_string()
    };
    let text = stdout(&wheelslim(&["audit", s(&w), "--max-size", "80KiB"]));
    assert!(
        text.contains("Device-code companions (libraries too big for their wheel)"),
        "{text}"
    );
    let plain = line(&text, "cudafix/libfix_plain.so");
    assert!(
        plain.contains("--companions would make it fit")
            && plain.contains("1 companion file (libfix_plain.wsdev1.so"),
        "{plain}"
    );
    let text = stdout(&wheelslim(&["audit", s(&w), "--max-size", "60KiB"]));
    let all = line(&text, "cudafix/libfix_compress_all.so");
    assert!(
        all.contains("companions cannot make it fit: the host's non-device data")
            && all.contains(".strtab")
            && all.contains("even without any device code"),
        "{all}"
    );

    let v = json(&wheelslim(&[
        "--json",
        "audit",
        s(&w),
        "--max-size",
        "80KiB",
    ]));
    let list = v["wheels"][0]["companions"]
        .as_array()
        .expect("companions[]");
    let find = |m: &str| list.iter().find(|a| a["member"] == m).expect(m);
    let p = find("cudafix/libfix_plain.so");
    assert_eq!(p["fits_with_companions"], true, "{p}");
    assert_eq!(p["own"], true, "{p}");
    assert_eq!(p["files"], 1, "{p}");
    assert_eq!(p["companions"][0]["soname"], "libfix_plain.wsdev1.so");
    let moved = p["companions"][0]["containers"].as_u64().unwrap();
    assert_eq!(moved + p["kept_containers"].as_u64().unwrap(), 3, "{p}");
    assert!(p["host_after"].as_u64().unwrap() <= p["room"].as_u64().unwrap());
    let v = json(&wheelslim(&[
        "--json",
        "audit",
        s(&w),
        "--max-size",
        "60KiB",
    ]));
    let list = v["wheels"][0]["companions"].as_array().unwrap();
    let a = list
        .iter()
        .find(|a| a["member"] == "cudafix/libfix_compress_all.so")
        .expect("libfix_compress_all.so");
    assert_eq!(a["fits_with_companions"], false, "{a}");
    assert!(
        a["reason"].as_str().unwrap().contains("non-device data"),
        "{a}"
    );

    // At 270 KiB the main wheel fits as it is: nothing to say (and no key), although one
    // library alone would be over a runtime wheel's room there. The 'one library too big
    // for a runtime wheel' advice is the planner's `plan` (plan::companions tests), shown by
    // split's dry run for a library that moves (the tests below).
    let o = wheelslim(&["--json", "audit", s(&w), "--max-size", LIMIT]);
    assert!(json(&o)["wheels"][0].get("companions").is_none());
    let o = wheelslim(&["--json", "audit", s(&w)]);
    assert!(json(&o)["wheels"][0].get("companions").is_none());
}

/// HIP bundles are planned by gfx family: `libhipfix.so`, moved into a runtime wheel, is over
/// a runtime wheel's room at 262 KiB and its companions hold gfx9 code objects.
#[test]
fn hip_bundles_are_planned_by_gfx_family() {
    let tmp = tempdir();
    let o = wheelslim(&[
        "--json",
        "split",
        s(&fixture(HIPFIX)),
        "-w",
        s(&tmp.path().join("out")),
        "--move",
        "libhipfix.so",
        "--max-size",
        "262KiB",
        "--dry-run",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = json(&o);
    let list = v["companions"].as_array().expect("companions[]");
    let a = list
        .iter()
        .find(|a| {
            a["library"]
                .as_str()
                .unwrap()
                .ends_with("!hipfix/libhipfix.so")
        })
        .expect("libhipfix.so");
    let fams = a["companions"][0]["families"][0].as_str().unwrap();
    assert!(fams.starts_with("gfx9"), "{fams}");
}

/// Without `--companions` the refusal says they would help, and with it the dry run shows
/// which containers go into which companion and wheel; `--no-companions` undoes it.
#[test]
fn split_refusal_names_companions_and_the_dry_run_shows_the_plan() {
    let tmp = tempdir();
    let out = tmp.path().join("out");
    let w = fixture(CUDAFIX);
    let base = [
        "split",
        s(&w),
        "-w",
        s(&out),
        "--move",
        "libfix_plain.so",
        "--max-size",
        LIMIT,
        "--dry-run",
    ];
    let mut refused = base.to_vec();
    refused.push("--no-companions");
    let o = wheelslim(&refused);
    let err = stderr(&o);
    assert_eq!(code(&o), 2, "{err}");
    assert!(err.contains("cannot fit in a wheel even alone"), "{err}");
    assert!(
        err.contains("--companions would make it fit")
            && err.contains("split without --no-companions; `split --dry-run` shows the plan"),
        "{err}"
    );
    // Companions are the default: the plan is the same without the flag.
    let plain = wheelslim(&base);
    assert_eq!(code(&plain), 0, "{}", stderr(&plain));

    let mut with = base.to_vec();
    with.push("--companions");
    let o = wheelslim(&with);
    let text = stdout(&o);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        text.contains("companions for ") && text.contains("cudafix/libfix_plain.so"),
        "{text}"
    );
    assert!(
        text.contains("libfix_plain.wsdev1.so → cudafix-runtime-extra"),
        "{text}"
    );
    assert!(text.contains(".nv_fatbin +0x"), "{text}");
    assert_eq!(stdout(&plain), text);
    let note = stderr(&o);
    assert!(
        note.contains("cudafix/libfix_plain.so: would move its device code into 1 companion file (libfix_plain.wsdev1.so)")
            && note.contains("(sizes estimated; the real run checks the exact sizes)"),
        "{note}"
    );

    let mut undone = with.clone();
    undone.push("--no-companions");
    assert_eq!(code(&wheelslim(&undone)), 2);

    let mut j = vec!["--json"];
    j.extend(&with);
    let v = json(&wheelslim(&j));
    let m = &v["companions"][0];
    assert_eq!(m["runtime_set"], "cudafix-runtime-extra", "{m}");
    assert_eq!(m["file"], "libfix_plain.so");
    let c = &m["companions"][0];
    assert_eq!(c["soname"], "libfix_plain.wsdev1.so");
    assert!(
        c["wheel"]
            .as_str()
            .unwrap()
            .starts_with("cudafix-runtime-extra")
    );
    let containers = c["containers"].as_array().unwrap();
    assert!(!containers.is_empty());
    for b in containers {
        assert_eq!(b["section"], ".nv_fatbin", "{b}");
        assert_eq!(b["offset"].as_u64().unwrap() % 8, 0, "{b}");
    }
    assert!(nothing_in(&out));
}

/// The output wheels of a real `split --companions` of the CUDA fixture, sorted by name.
fn split_with_companions(out: &std::path::Path) -> Vec<std::path::PathBuf> {
    let o = wheelslim(&[
        "split",
        s(&fixture(CUDAFIX)),
        "-w",
        s(out),
        "--move",
        "libfix_plain.so",
        "--max-size",
        LIMIT,
        "--companions",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let mut wheels: Vec<_> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    wheels.sort();
    wheels
}

/// A real run writes the companion beside its host, in a runtime wheel of the host's set, and
/// every output fits; `verify` passes; the set installs with pip; the installed host (its
/// `$ORIGIN` finding the companion) hands the stand-in runtime the same containers as the
/// original; cuobjdump over host and companion lists the original's entries; two runs give
/// the same bytes.
#[test]
fn a_real_split_writes_companions_that_install_load_and_list_the_same_device_code() {
    use crate::companion_host::{Rig, cuobjdump_list_or_empty, wrapper_sections};
    let tmp = tempdir();
    let out = tmp.path().join("out");
    let wheels = split_with_companions(&out);
    assert!(wheels.len() >= 2, "{wheels:?}");
    let limit = 270 * 1024;
    let host_name = "cudafix_runtime_extra/lib/libfix_plain.so";
    let comp_name = "cudafix_runtime_extra/lib/libfix_plain.wsdev1.so";
    let (mut host_in, mut comp_in) = (None, None);
    for w in &wheels {
        let len = std::fs::metadata(w).unwrap().len();
        assert!(len <= limit, "{} is {len} bytes, over {limit}", w.display());
        let members = read_zip(w);
        let record = members
            .iter()
            .find(|(n, _)| n.ends_with(".dist-info/RECORD"))
            .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        for (n, _) in &members {
            if n == host_name {
                host_in = Some(w.clone());
            }
            if n == comp_name {
                comp_in = Some(w.clone());
                assert!(record.contains(&format!("{comp_name},sha256=")), "{record}");
            }
        }
    }
    assert!(
        host_in.is_some() && comp_in.is_some(),
        "host or companion missing from {wheels:?}"
    );
    // The host's NEEDED companion resolves: the fixture's libcudart is the only problem.
    let report = verify_only_cudart_unresolved(&wheels);
    assert!(
        report.contains(&format!("{}: ok", s(comp_in.as_ref().unwrap()))),
        "{report}"
    );

    // Deterministic: a second run writes the same bytes.
    let again = split_with_companions(&tmp.path().join("again"));
    assert_eq!(again.len(), wheels.len());
    for (a, b) in wheels.iter().zip(&again) {
        assert_eq!(a.file_name(), b.file_name());
        assert!(
            std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
            "{a:?} differs"
        );
    }

    // pip installs the set (the fixture's CUDA runtime requirement is not on this machine).
    let venv = crate::split::Venv::new(tmp.path(), "venv");
    let mut pip = vec!["--no-deps"];
    pip.extend(wheels.iter().map(|w| s(w)));
    venv.pip_install(&pip);
    let lib = venv.site_packages().join("cudafix_runtime_extra/lib");
    let (host, comp) = (
        lib.join("libfix_plain.so"),
        lib.join("libfix_plain.wsdev1.so"),
    );
    assert!(host.is_file() && comp.is_file(), "{lib:?}");

    let original = read_zip(&fixture(CUDAFIX))
        .into_iter()
        .find(|(n, _)| n == "cudafix/libfix_plain.so")
        .expect("the fixture's libfix_plain.so")
        .1;
    let rig = Rig::new();
    let orig_dir = rig.dir.path().join("orig");
    std::fs::create_dir_all(&orig_dir).unwrap();
    let orig = orig_dir.join("libfix_plain.so");
    std::fs::write(&orig, &original).unwrap();
    let want = rig.load(&orig, &wrapper_sections(&original)).unwrap();
    assert!(
        want.iter().any(|l| l.starts_with("register wrapper")),
        "{want:#?}"
    );
    // Only the stand-in on LD_LIBRARY_PATH: the host's own search path finds its companion.
    let rt = rig.dir.path().join("rt");
    let installed = std::fs::read(&host).unwrap();
    let got = rig
        .load_with(&host, &wrapper_sections(&installed), s(&rt))
        .unwrap_or_else(|e| panic!("the installed host does not load: {e}"));
    assert_eq!(got, want);

    let mut listed = cuobjdump_list_or_empty(&host);
    listed.extend(crate::shrink_support::cuobjdump_list(&comp, true));
    let mut expected = crate::shrink_support::cuobjdump_list(&orig, true);
    listed.sort();
    expected.sort();
    assert!(!expected.is_empty());
    assert_eq!(listed, expected);
}

/// A library whose host bytes alone are over the room: the refusal says why companions
/// cannot help, naming its largest non-device sections.
#[test]
fn split_refusal_says_why_companions_cannot_help() {
    let tmp = tempdir();
    let w = fixture(CUDAFIX);
    for extra in [None, Some("--companions"), Some("--no-companions")] {
        let mut args = vec![
            "split",
            s(&w),
            "-w",
            s(tmp.path()),
            "--move",
            "libfix_compress_all.so",
            "--max-size",
            LIMIT,
            "--dry-run",
        ];
        args.extend(extra);
        let o = wheelslim(&args);
        let err = stderr(&o);
        assert_eq!(code(&o), 2, "{err}");
        assert!(
            err.contains("companions cannot make it fit: the host's non-device data")
                && err.contains(".strtab"),
            "{err}"
        );
    }
}

/// With `--sm`, the trim comes first and the plan holds what it leaves.
#[test]
fn trim_first_then_plan_what_is_left() {
    let tmp = tempdir();
    let o = wheelslim(&[
        "--json",
        "split",
        s(&fixture(CUDAFIX)),
        "-w",
        s(tmp.path()),
        "--move",
        "libfix_plain.so",
        "--max-size",
        "264KiB",
        "--sm",
        "80,90,100",
        "--companions",
        "--dry-run",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = json(&o);
    let m = &v["companions"][0];
    assert!(m["compressed_before"].as_u64().unwrap() < 16897, "{m}");
    for c in m["companions"].as_array().unwrap() {
        for b in c["containers"].as_array().unwrap() {
            let fam = b["family"].as_str().unwrap();
            assert!(!fam.contains("sm_5x") && !fam.contains("sm_12x"), "{fam}");
        }
    }
    let est = v["size_estimates"].as_array().unwrap();
    let rt = est
        .iter()
        .find(|e| e["kind"] == "runtime")
        .expect("runtime estimate");
    assert_eq!(rt["fits"], true, "{rt}");
}

/// `companions = true` in `[tool.wheelslim.split]` turns it on, like the flag.
#[test]
fn companions_come_from_the_configuration() {
    let tmp = tempdir();
    std::fs::create_dir(tmp.path().join(".git")).unwrap();
    std::fs::write(
        tmp.path().join("pyproject.toml"),
        "[tool.wheelslim.split]\ncompanions = true\n",
    )
    .unwrap();
    let w = fixture(CUDAFIX);
    let out = tmp.path().join("out");
    let args = [
        "split",
        s(&w),
        "-w",
        s(&out),
        "--move",
        "libfix_plain.so",
        "--max-size",
        LIMIT,
        "--dry-run",
    ];
    let o = wheelslim_in(&args, tmp.path());
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("libfix_plain.wsdev1.so"));
    let mut no = args.to_vec();
    no.push("--no-companions");
    assert_eq!(code(&wheelslim_in(&no, tmp.path())), 2);
    // `companions = false` refuses as `--no-companions` does; `--companions` undoes it.
    std::fs::write(
        tmp.path().join("pyproject.toml"),
        "[tool.wheelslim.split]\ncompanions = false\n",
    )
    .unwrap();
    let o = wheelslim_in(&args, tmp.path());
    assert_eq!(code(&o), 2, "{}", stdout(&o));
    assert!(stderr(&o).contains("--companions would make it fit"));
    let mut yes = args.to_vec();
    yes.push("--companions");
    assert_eq!(code(&wheelslim_in(&yes, tmp.path())), 0);
}

/// The plan, carried out by the host rewrite on the fixtures: every container the plan moves
/// is accepted, and the host and each companion, deflated, come out within the room the plan
/// packed into (the estimates hold).
#[test]
fn the_plan_carried_out_by_the_host_rewrite_fits() {
    use std::io::Write;
    use wheelslim::plan::companions::{Verdict, library_of, plan, targets};
    let deflated = |b: &[u8]| -> u64 {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap().len() as u64
    };
    let room = 14 * 1024;
    let mut planned = 0;
    for (name, bytes) in read_zip(&fixture(CUDAFIX)) {
        if !name.ends_with(".so") {
            continue;
        }
        let Ok(wheelslim::elf::Inspected::Host(info)) = wheelslim::elf::inspect(&bytes) else {
            continue;
        };
        let device = wheelslim::device::scan_elf(&bytes, &info).unwrap();
        let compressed = deflated(&bytes);
        let size = bytes.len() as u64;
        let est = |a: u64, b: u64| {
            wheelslim::plan::companions::compressed_range(&[], size, compressed, a, b)
        };
        let Some(lib) = library_of(&name, &info, &device, compressed, &est) else {
            continue;
        };
        let Verdict::Companions { files, .. } = plan(&lib, room, &|_| false) else {
            continue;
        };
        let out = wheelslim::elf::companion::move_device_code(&bytes, &targets(&files))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(out.companions.len(), files.len(), "{name}");
        let moved: u64 = files.iter().map(|f| f.stored_bytes).sum();
        assert_eq!(out.moved_bytes, moved, "{name}");
        let host = deflated(&out.host);
        assert!(host <= room, "{name}: host {host} over {room}");
        for ((soname, c), f) in out.companions.iter().zip(&files) {
            assert_eq!(soname, &f.soname);
            let z = deflated(c);
            assert!(z <= room, "{name}: {soname} {z} over {room}");
        }
        planned += 1;
    }
    assert!(
        planned >= 3,
        "only {planned} fixture libraries were planned"
    );
}

/// The members of the wheels `split` wrote into `dir`, by name.
fn members_of(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut all = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let w = e.unwrap().path();
        let len = std::fs::metadata(&w).unwrap().len();
        assert!(len <= 266 * 1024, "{} is {len} bytes", w.display());
        all.extend(read_zip(&w));
    }
    all
}

/// The companion plans of a split's `--json` report: (soname, [(section, offset)]).
fn plans(v: &serde_json::Value) -> Vec<(String, Vec<(String, u64)>)> {
    v["companions"][0]["companions"]
        .as_array()
        .unwrap_or_else(|| panic!("no companions in {v}"))
        .iter()
        .map(|c| {
            let blocks = c["containers"].as_array().unwrap().iter();
            let blocks = blocks.map(|b| {
                (
                    b["section"].as_str().unwrap().to_string(),
                    b["offset"].as_u64().unwrap(),
                )
            });
            (c["soname"].as_str().unwrap().to_string(), blocks.collect())
        })
        .collect()
}

/// A real split with `--sm` of a library still too big after the trim: the trim comes first,
/// then what is left moves into companions (the default), as the dry run planned; cuobjdump
/// over host and companion lists exactly what the trim alone leaves, and the stand-in runtime
/// is handed the same containers as from the trimmed library.
#[test]
fn a_real_split_trims_first_then_moves_what_is_left() {
    use crate::companion_host::{Rig, cuobjdump_list_or_empty, wrapper_sections};
    let tmp = tempdir();
    let w = fixture(CUDAFIX);
    let run = |out: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "--json",
            "split",
            s(&w),
            "-w",
            s(out),
            "--move",
            "libfix_plain.so",
            "--sm",
            "80,90,100",
        ];
        args.extend(extra);
        let o = wheelslim(&args);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        (json(&o), stderr(&o))
    };
    // The trim alone, under a limit it fits: its library is over 10 KiB compressed.
    let (trim_only, _) = run(&tmp.path().join("trim"), &[]);
    let t = trim_only["trimmed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["member"] == "cudafix/libfix_plain.so")
        .unwrap();
    assert!(t["zip_after"].as_u64().unwrap() > 10 * 1024, "{t}");
    let (dry, _) = run(
        &tmp.path().join("dry"),
        &["--max-size", "266KiB", "--dry-run"],
    );
    let out = tmp.path().join("out");
    let (real, notes) = run(&out, &["--max-size", "266KiB"]);
    assert_eq!(plans(&real), plans(&dry));
    assert!(
        notes.contains("cudafix/libfix_plain.so: moved its device code into 1 companion file (libfix_plain.wsdev1.so)")
            && notes.contains("the trim left"),
        "{notes}"
    );
    let trimmed = members_of(&tmp.path().join("trim"));
    let written = members_of(&out);
    let lib = "cudafix_runtime_extra/lib/";
    let dir = tmp.path().join("lib");
    std::fs::create_dir_all(dir.join("trimmed")).unwrap();
    let (host, comp, alone) = (
        dir.join("libfix_plain.so"),
        dir.join("libfix_plain.wsdev1.so"),
        dir.join("trimmed/libfix_plain.so"),
    );
    std::fs::write(&host, &written[&format!("{lib}libfix_plain.so")]).unwrap();
    std::fs::write(&comp, &written[&format!("{lib}libfix_plain.wsdev1.so")]).unwrap();
    std::fs::write(&alone, &trimmed[&format!("{lib}libfix_plain.so")]).unwrap();

    let mut listed = cuobjdump_list_or_empty(&host);
    listed.extend(crate::shrink_support::cuobjdump_list(&comp, true));
    let mut expected = crate::shrink_support::cuobjdump_list(&alone, true);
    listed.sort();
    expected.sort();
    assert!(!expected.is_empty());
    assert_eq!(listed, expected);

    let rig = Rig::new();
    let want = rig
        .load(&alone, &wrapper_sections(&std::fs::read(&alone).unwrap()))
        .unwrap();
    assert!(
        want.iter().any(|l| l.starts_with("register wrapper")),
        "{want:#?}"
    );
    let rt = rig.dir.path().join("rt");
    let got = rig
        .load_with(
            &host,
            &wrapper_sections(&std::fs::read(&host).unwrap()),
            s(&rt),
        )
        .unwrap_or_else(|e| panic!("the host does not load: {e}"));
    assert_eq!(got, want);
}

/// Under a limit where the estimate says the trimmed library fits but its exact size does not,
/// the real run plans its companions from the exact size (the dry run, estimating, plans none).
#[test]
fn the_exact_size_after_the_trim_decides() {
    let tmp = tempdir();
    let out = tmp.path().join("out");
    let w = fixture(CUDAFIX);
    let args = [
        "--json",
        "split",
        s(&w),
        "-w",
        s(&out),
        "--move",
        "libfix_plain.so",
        "--sm",
        "80,90,100",
        "--max-size",
        "268KiB",
    ];
    let mut dry = args.to_vec();
    dry.push("--dry-run");
    let d = wheelslim(&dry);
    assert_eq!(code(&d), 0, "{}", stderr(&d));
    assert!(json(&d).get("companions").is_none(), "{}", stdout(&d));
    let o = wheelslim(&args);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = json(&o);
    let m = &v["companions"][0];
    assert_eq!(m["file"], "libfix_plain.so", "{v}");
    assert!(m["compressed_before"].as_u64().unwrap() > 12 * 1024, "{m}");
    let limit = 268 * 1024 - 256 * 1024;
    assert!(m["host_after"].as_u64().unwrap() <= limit, "{m}");
    for e in std::fs::read_dir(&out).unwrap() {
        let p = e.unwrap().path();
        assert!(
            std::fs::metadata(&p).unwrap().len() <= 268 * 1024,
            "{}",
            p.display()
        );
    }
    // --no-companions refuses it on its exact size, saying companions would make it fit.
    let mut no = args.to_vec();
    no.push("--no-companions");
    let o = wheelslim(&no);
    assert_eq!(code(&o), 2);
    let err = json(&o)["error"]["hint"].as_str().unwrap().to_string();
    assert!(err.contains("--companions would make it fit"), "{err}");
}

/// Without any flag, a real split gives a library too big alone its companions, and says so
/// (text and `--json`), naming it and how many companion files it took.
#[test]
fn companions_are_the_default_and_the_summary_says_so() {
    let tmp = tempdir();
    let out = tmp.path().join("out");
    let w = fixture(CUDAFIX);
    let args = [
        "split",
        s(&w),
        "-w",
        s(&out),
        "--move",
        "libfix_plain.so",
        "--max-size",
        LIMIT,
    ];
    let o = wheelslim(&args);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("note: ") && err.contains("cudafix-0.1.0-cp311-cp311-manylinux_2_34_x86_64.whl!cudafix/libfix_plain.so: moved its device code into 1 companion file (libfix_plain.wsdev1.so) beside it in cudafix-runtime-extra"),
        "{err}"
    );
    assert!(stdout(&o).contains("companions for "), "{}", stdout(&o));
    // The runtime set's line counts the companion and its installed bytes with the host's.
    let installed: u64 = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| s(p).contains("runtime_extra"))
        .flat_map(|p| read_zip(&p))
        .filter(|(n, _)| n.ends_with(".so"))
        .map(|(_, b)| b.len() as u64)
        .sum();
    let line = format!(
        "runtime cudafix-runtime-extra 0.1.0 [manylinux_2_34_x86_64]: 1 libraries and 1 device-code companion, {:.1} KiB installed",
        installed as f64 / 1024.0
    );
    assert!(stdout(&o).contains(&line), "{line}\n{}", stdout(&o));
    let out2 = tmp.path().join("out2");
    let mut j = vec!["--json"];
    j.extend(args);
    j[4] = s(&out2);
    let v = json(&wheelslim(&j));
    assert_eq!(
        v["companions"][0]["companions"][0]["soname"], "libfix_plain.wsdev1.so",
        "{v}"
    );
    let notes = v["notes"].as_array().unwrap();
    assert!(
        notes.iter().any(|n| n["severity"] == "note"
            && n["location"]
                .as_str()
                .unwrap()
                .ends_with("!cudafix/libfix_plain.so")
            && n["message"].as_str().unwrap().contains("1 companion file")),
        "{notes:?}"
    );
    let written: Vec<_> = std::fs::read_dir(&out2)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(written.iter().any(|p| {
        read_zip(p)
            .iter()
            .any(|(n, _)| n.ends_with("/libfix_plain.wsdev1.so"))
    }));
}

/// `--canonical-runtime` re-deflates the runtime wheels' libraries; a library too big alone
/// still gets its companions (it was refused as too big before): every wheel fits, the
/// companion sits beside its host, `verify` passes, and cuobjdump over host and companion
/// lists the original's entries.
#[test]
fn canonical_runtime_wheels_get_companions_too() {
    let tmp = tempdir();
    let out = tmp.path().join("out");
    let o = wheelslim(&[
        "split",
        s(&fixture(CUDAFIX)),
        "-w",
        s(&out),
        "--move",
        "libfix_plain.so",
        "--max-size",
        LIMIT,
        "--canonical-runtime",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let mut wheels: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    wheels.sort();
    let dir = tmp.path().join("lib");
    std::fs::create_dir_all(&dir).unwrap();
    for w in &wheels {
        assert!(std::fs::metadata(w).unwrap().len() <= 270 * 1024, "{w:?}");
        for (n, b) in read_zip(w) {
            if n.starts_with("cudafix_runtime_extra/lib/libfix_plain") {
                std::fs::write(dir.join(n.rsplit('/').next().unwrap()), b).unwrap();
            }
        }
    }
    let (host, comp) = (
        dir.join("libfix_plain.so"),
        dir.join("libfix_plain.wsdev1.so"),
    );
    assert!(host.is_file() && comp.is_file(), "{wheels:?}");
    verify_only_cudart_unresolved(&wheels);
    let orig = tmp.path().join("libfix_plain.so");
    let original = read_zip(&fixture(CUDAFIX))
        .into_iter()
        .find(|(n, _)| n == "cudafix/libfix_plain.so")
        .unwrap()
        .1;
    std::fs::write(&orig, original).unwrap();
    let mut listed = crate::companion_host::cuobjdump_list_or_empty(&host);
    listed.extend(crate::shrink_support::cuobjdump_list(&comp, true));
    let mut expected = crate::shrink_support::cuobjdump_list(&orig, true);
    listed.sort();
    expected.sort();
    assert!(!expected.is_empty());
    assert_eq!(listed, expected);
}
