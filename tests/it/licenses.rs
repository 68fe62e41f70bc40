//! Licence files travel with the libraries `split` moves (issue 10 item 18): the runtime wheel
//! carries the input's licence texts under `.dist-info/licenses/`, names each in a
//! `License-File` field, and states the profile's licence as an SPDX expression.

use std::path::Path;

use crate::common::*;

const INPUT: &str =
    "wheels/slimdemo-0.1.0-cp38-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl";

/// Copies `src` to `dst` with `extra` members added, RECORD rewritten.
fn with_members(src: &Path, dst: &Path, extra: &[(&str, &[u8])]) {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    use std::io::Write;
    let mut members = read_zip(src);
    let record_name = members
        .iter()
        .map(|(n, _)| n.clone())
        .find(|n| n.ends_with(".dist-info/RECORD"))
        .unwrap();
    members.retain(|(n, _)| *n != record_name && !n.ends_with('/'));
    members.extend(extra.iter().map(|(n, d)| (n.to_string(), d.to_vec())));
    let mut z = zip::ZipWriter::new(std::fs::File::create(dst).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default());
    let mut record = String::new();
    for (name, data) in &members {
        z.start_file(name.as_str(), opts).unwrap();
        z.write_all(data).unwrap();
        let digest = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(data));
        record.push_str(&format!("{name},sha256={digest},{}\n", data.len()));
    }
    record.push_str(&format!("{record_name},,\n"));
    z.start_file(record_name.as_str(), opts).unwrap();
    z.write_all(record.as_bytes()).unwrap();
    z.finish().unwrap();
}

fn split(input: &Path, tmp: &Path) -> (std::process::Output, Vec<(String, Vec<u8>)>) {
    let out = tmp.join("out");
    let rt = tmp.join("rt");
    let o = wheelslim(&[
        "split",
        input.to_str().unwrap(),
        "-w",
        out.to_str().unwrap(),
        "--runtime-dir",
        rt.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let runtime: Vec<_> = std::fs::read_dir(&rt)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runtime.len(), 1, "{runtime:?}");
    (o, read_zip(&runtime[0]))
}

#[test]
fn runtime_wheel_carries_the_licence_files_of_the_input() {
    let tmp = tempdir();
    let input = tmp
        .path()
        .join("slimdemo-0.1.0-cp38-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl");
    let eula = b"NVIDIA CUDA Toolkit EULA (test text)\n";
    let own = b"MIT License for slimdemo (test text)\n";
    let notice = b"Notice next to the bundled libraries\n";
    with_members(
        &fixture(INPUT),
        &input,
        &[
            ("slimdemo-0.1.0.dist-info/License.txt", eula),
            ("slimdemo-0.1.0.dist-info/licenses/LICENSE", own),
            ("slimdemo.libs/NOTICE.txt", notice),
            // Not licence text, or not next to a moved library: these stay behind.
            ("slimdemo.libs/license_check.py", b"print(1)\n"),
            ("slimdemo/NOTICE", b"the package's own notice\n"),
        ],
    );
    let (_, zip) = split(&input, tmp.path());
    let dist = zip
        .iter()
        .find_map(|(n, _)| n.strip_suffix("/METADATA"))
        .unwrap()
        .to_string();
    let mut licenses: Vec<(&str, &[u8])> = zip
        .iter()
        .filter_map(|(n, d)| {
            n.strip_prefix(&format!("{dist}/licenses/"))
                .map(|r| (r, d.as_slice()))
        })
        .collect();
    licenses.sort();
    assert_eq!(
        licenses,
        [
            ("LICENSE", own.as_slice()),
            ("License.txt", eula.as_slice()),
            ("slimdemo.libs/NOTICE.txt", notice.as_slice()),
        ]
    );
    let meta = String::from_utf8(
        zip.iter()
            .find(|(n, _)| *n == format!("{dist}/METADATA"))
            .unwrap()
            .1
            .clone(),
    )
    .unwrap();
    let header = meta.split("\n\n").next().unwrap();
    let files: Vec<&str> = header
        .lines()
        .filter_map(|l| l.strip_prefix("License-File: "))
        .collect();
    assert_eq!(
        files,
        ["LICENSE", "License.txt", "slimdemo.libs/NOTICE.txt"]
    );
    assert!(
        header.contains("\nLicense-Expression: LicenseRef-NVIDIA-Proprietary\n"),
        "{meta}"
    );
    assert!(header.starts_with("Metadata-Version: 2.4\n"), "{meta}");
    assert!(!header.contains("\nLicense: "), "{meta}");
    // RECORD names every licence file with its hash, so pip installs and checks them.
    let record = String::from_utf8(
        zip.iter()
            .find(|(n, _)| n.ends_with("/RECORD"))
            .unwrap()
            .1
            .clone(),
    )
    .unwrap();
    for f in &files {
        assert!(
            record.contains(&format!("{dist}/licenses/{f},sha256=")),
            "{f}:\n{record}"
        );
    }
    // The licence files also stay in the main wheel.
    let main = read_zip(&tmp.path().join("out").join(input.file_name().unwrap()));
    assert!(
        main.iter()
            .any(|(n, _)| n == "slimdemo-0.1.0.dist-info/License.txt")
    );
    assert!(main.iter().any(|(n, _)| n == "slimdemo.libs/NOTICE.txt"));
}

#[test]
fn a_proprietary_runtime_wheel_without_licence_text_is_reported() {
    let tmp = tempdir();
    let (o, zip) = split(&fixture(INPUT), tmp.path());
    assert!(!zip.iter().any(|(n, _)| n.contains(".dist-info/licenses/")));
    let err = stderr(&o);
    assert!(
        err.contains("carries no licence text for its LicenseRef-NVIDIA-Proprietary libraries"),
        "{err}"
    );
    assert!(err.contains("keep NVIDIA's licence text"), "{err}");
}
