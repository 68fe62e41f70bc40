//! Companion wheels of the project's own libraries (issue 14).
//!
//! A library that stays in its main wheel (it is the project's own, or NVIDIA's own in
//! NVIDIA's wheel) and leaves that wheel over the limit has its device code moved into
//! companions like a runtime library does. Its companions cannot go into a runtime wheel (no
//! runtime set holds the host), so they get wheels of their own:
//!
//! * named `{project}-devcode`, then `{project}-devcode-part2`, … when one wheel cannot hold
//!   them all, at the main wheel's version; the main wheel requires each of them exactly
//!   (`Requires-Dist: {name}=={version}`);
//! * each companion installs into its host's own folder (`torch/lib/libtorch_cuda.wsdev1.so`
//!   beside `torch/lib/libtorch_cuda.so`), so the host's `$ORIGIN` finds it, as with runtime
//!   libraries, and nothing else of the main package changes;
//! * a companion is pure data for the loader, with no Python in it: when every main wheel that
//!   needs a companion wheel of one name gets byte-identical members (the cp311 … cp313 builds
//!   of one library usually do), one wheel tagged `py3-none-{platform}` serves them all;
//!   otherwise each main wheel gets its own, tagged with the main wheel's Python and ABI tags
//!   (pip prefers that more specific tag, so even a mix of both installs the right one);
//! * the main wheel's licence files (its `.dist-info/licenses/` and licence files directly in
//!   its `.dist-info`) travel with it, since the device code is the project's.

use std::collections::HashMap;

use super::companions::CompanionMove;
use super::runtime::{LicenseCopy, is_license_name};
use super::{Built, Gen, Generated, MemberKey, Rewritten, SplitRun};
use crate::error::Error;
use crate::output::{OutMember, Source, elf_facts, order_dist_info_last};
use crate::plan::SplitPlan;
use crate::plan::pack::pack;
use crate::wheel::filename::filename_safe_name;
use crate::wheel::headers::HeaderFile;
use crate::wheel::normalize_name;

/// Compressed bytes a companion wheel keeps for its own files (METADATA, WHEEL, RECORD and the
/// zip's directory), besides its licence files.
const DEVCODE_OVERHEAD: u64 = 16 * 1024;

/// Room a main wheel keeps beside its members for the central directory and the
/// regenerated RECORD (as `checks::main_cannot_fit` asks for).
pub(super) const MAIN_MARGIN: u64 = 8 * 1024;

/// Compressed bytes one member costs in a wheel besides its data: its local and central
/// headers, and its RECORD line.
pub(super) fn entry_cost(name: &str) -> u64 {
    200 + 2 * name.len() as u64
}

/// One companion wheel of the project's own libraries.
pub(super) struct DevcodeWheel {
    /// Distribution name (`nvidia-nccl-cu12-devcode`, `…-devcode-part2`).
    pub name: String,
    pub version: String,
    /// The main wheels (indices into the plan's mains) that require it.
    pub mains: Vec<usize>,
    /// The input of the first of them (its metadata and licences are the wheel's).
    pub input: usize,
    /// `python-abi-platform` of its file name.
    pub tag: String,
    /// Its companions: (host, index of the companion in the host's rewrite), and the path
    /// each installs to.
    pub members: Vec<(MemberKey, usize, String)>,
    /// The licence files it carries (those of its first main wheel).
    pub licenses: Vec<LicenseCopy>,
}

impl DevcodeWheel {
    pub(super) fn file_name(&self) -> String {
        format!(
            "{}-{}-{}.whl",
            filename_safe_name(&self.name),
            self.version,
            self.tag
        )
    }

    fn dist_info(&self) -> String {
        format!(
            "{}-{}.dist-info",
            filename_safe_name(&self.name),
            self.version
        )
    }
}

/// The path a companion of the host `member` installs to: beside it.
fn beside(member: &str, soname: &str) -> String {
    match member.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{soname}"),
        None => soname.to_string(),
    }
}

impl SplitRun<'_> {
    /// The companion wheels' distribution name for the main wheel of `input`.
    pub(super) fn devcode_name(&self, input: usize) -> String {
        let wheel = &self.inputs[input].0;
        format!("{}-devcode", normalize_name(&wheel.project_name()))
    }

    /// Compressed bytes one companion wheel of the main wheel of `input` has for companions.
    pub(super) fn devcode_room(&self, input: usize) -> u64 {
        let facts = &self.inputs[input].1;
        let licenses: u64 = self
            .main_licenses(input)
            .iter()
            .filter_map(|c| facts.members.iter().find(|f| f.name == c.member))
            .map(|f| f.compressed_size + entry_cost(&f.name))
            .sum();
        self.opts
            .max_size
            .saturating_sub(DEVCODE_OVERHEAD)
            .saturating_sub(licenses)
    }

    /// The licence files of an input's `.dist-info`.
    fn main_licenses(&self, input: usize) -> Vec<LicenseCopy> {
        let (wheel, facts) = &self.inputs[input];
        let licenses_dir = format!("{}/licenses/", wheel.dist_info);
        let mut out: Vec<LicenseCopy> = facts
            .members
            .iter()
            .filter(|f| f.size <= 4 * 1024 * 1024 && f.elf().is_none())
            .filter(|f| {
                wheel
                    .archive
                    .member(&f.name)
                    .is_some_and(|m| !m.is_dir && !m.is_symlink && m.problem.is_none())
            })
            .filter_map(|f| {
                let sha256 = f.sha256?;
                let dest = match f.name.strip_prefix(&licenses_dir) {
                    Some(rel) if !rel.is_empty() => rel.to_string(),
                    Some(_) => return None,
                    None => {
                        let (dir, base) = f.name.rsplit_once('/')?;
                        (dir == wheel.dist_info && is_license_name(base))
                            .then(|| base.to_string())?
                    }
                };
                Some(LicenseCopy {
                    input,
                    member: f.name.clone(),
                    dest,
                    sha256,
                })
            })
            .collect();
        out.sort_by(|a, b| a.dest.cmp(&b.dest));
        out.dedup_by(|a, b| a.dest == b.dest);
        out
    }

    /// The companion wheels of the written own-library moves: each main wheel's companions
    /// packed into wheels under the limit, and wheels that would hold the same bytes under the
    /// same name for several main wheels written once (`py3-none`). Sets each companion's
    /// wheel in `moves`.
    pub(super) fn pack_devcode(
        &self,
        plan: &SplitPlan,
        moves: &mut [CompanionMove],
        rewritten: &HashMap<MemberKey, Rewritten>,
    ) -> Result<Vec<DevcodeWheel>, Error> {
        let mut wheels: Vec<DevcodeWheel> = Vec::new();
        for (mi, m) in plan.mains.iter().enumerate() {
            let mut mine: Vec<usize> = (0..moves.len())
                .filter(|&i| moves[i].main == Some(mi))
                .collect();
            mine.sort_by(|&a, &b| moves[a].key.cmp(&moves[b].key));
            // (move, companion, path, stored bytes, sha256)
            let mut items: Vec<(usize, usize, String, u64, [u8; 32])> = Vec::new();
            for &i in &mine {
                let Some(r) = rewritten.get(&moves[i].key) else {
                    continue;
                };
                for (k, c) in r.companions.iter().enumerate() {
                    let path = beside(&moves[i].key.1, &c.soname);
                    items.push((i, k, path, c.compressed.stored_len(), c.sha256));
                }
            }
            if items.is_empty() {
                continue;
            }
            let sized: Vec<(String, u64)> = items
                .iter()
                .map(|(_, _, p, b, _)| (p.clone(), b + entry_cost(p)))
                .collect();
            let room = self.devcode_room(m.input);
            let bins = pack(&sized, room).map_err(|x| {
                Error::refused(
                    format!(
                        "{}: its companion {} is {} compressed, over the {} a companion wheel has room for",
                        moves[items[x].0].library,
                        items[x].2,
                        crate::cli_size(sized[x].1),
                        crate::cli_size(room)
                    ),
                    Some("the plan's estimate was too low: split again with a larger --max-size or trim the device code with --sm/--gfx".into()),
                )
            })?;
            let base = self.devcode_name(m.input);
            let wheel = &self.inputs[m.input].0;
            for (part, bin) in bins.into_iter().enumerate() {
                let name = if part == 0 {
                    base.clone()
                } else {
                    format!("{base}-part{}", part + 1)
                };
                let mut members: Vec<(MemberKey, usize, String)> = bin
                    .iter()
                    .map(|&x| {
                        (
                            moves[items[x].0].key.clone(),
                            items[x].1,
                            items[x].2.clone(),
                        )
                    })
                    .collect();
                members.sort_by(|a, b| a.2.cmp(&b.2));
                for &x in &bin {
                    moves[items[x].0].companions[items[x].1].wheel = name.clone();
                }
                let f = &wheel.filename;
                let own_tag = format!(
                    "{}-{}-{}",
                    f.python.join("."),
                    f.abi.join("."),
                    f.platform.join(".")
                );
                let new = DevcodeWheel {
                    name,
                    version: f.version.clone(),
                    mains: vec![mi],
                    input: m.input,
                    tag: own_tag,
                    members,
                    licenses: self.main_licenses(m.input),
                };
                self.merge_devcode(&mut wheels, new, rewritten);
            }
        }
        Ok(wheels)
    }

    /// Adds a companion wheel, or, when one of the same name and platform holds the same
    /// bytes at the same paths, shares that one (tagged `py3-none-{platform}` from then on).
    fn merge_devcode(
        &self,
        wheels: &mut Vec<DevcodeWheel>,
        new: DevcodeWheel,
        rewritten: &HashMap<MemberKey, Rewritten>,
    ) {
        let contents = |w: &DevcodeWheel| -> Vec<(String, [u8; 32])> {
            w.members
                .iter()
                .map(|(key, k, path)| {
                    let sha = rewritten
                        .get(key)
                        .and_then(|r| r.companions.get(*k))
                        .map_or([0; 32], |c| c.sha256);
                    (path.clone(), sha)
                })
                .collect()
        };
        let platform = |w: &DevcodeWheel| w.tag.rsplit('-').next().unwrap_or("").to_string();
        let same = wheels.iter_mut().find(|w| {
            w.name == new.name
                && w.version == new.version
                && platform(w) == platform(&new)
                && contents(w) == contents(&new)
        });
        match same {
            Some(w) => {
                w.mains.extend(new.mains);
                w.tag = format!("py3-none-{}", platform(w));
            }
            None => wheels.push(new),
        }
    }

    /// The dry run's companion wheels of the own-library moves: each main wheel's companions
    /// packed at their estimated sizes, naming the wheel each goes into.
    pub(super) fn place_own(&self, moves: &mut [CompanionMove]) {
        let mains: Vec<(usize, usize)> = {
            let mut v: Vec<(usize, usize)> = moves
                .iter()
                .filter_map(|m| m.main.map(|mi| (mi, m.key.0)))
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        for (mi, input) in mains {
            let mut owners: Vec<(usize, usize)> = Vec::new();
            let mut items: Vec<(String, u64)> = Vec::new();
            for (i, mv) in moves.iter().enumerate().filter(|(_, m)| m.main == Some(mi)) {
                for (k, c) in mv.companions.iter().enumerate() {
                    let path = beside(&mv.key.1, &c.file.soname);
                    items.push((path.clone(), c.file.compressed_bytes + entry_cost(&path)));
                    owners.push((i, k));
                }
            }
            let Ok(bins) = pack(&items, self.devcode_room(input)) else {
                continue;
            };
            let base = self.devcode_name(input);
            for (part, bin) in bins.iter().enumerate() {
                for &x in bin {
                    let (i, k) = owners[x];
                    moves[i].companions[k].wheel = if part == 0 {
                        base.clone()
                    } else {
                        format!("{base}-part{}", part + 1)
                    };
                }
            }
        }
    }

    /// A companion wheel's generated files: METADATA and WHEEL.
    pub(super) fn devcode_generated(&self, dw: &DevcodeWheel, g: &mut Generated) -> Vec<Gen> {
        let dist_info = dw.dist_info();
        let main = &self.inputs[dw.input].0;
        let project = main.project_name();
        let mut fields = vec![
            ("Metadata-Version", "2.4".to_string()),
            ("Name", dw.name.clone()),
            ("Version", dw.version.clone()),
            (
                "Summary",
                format!(
                    "Device code of {project} {}, moved out of its libraries by wheelslim so every wheel fits",
                    dw.version
                ),
            ),
        ];
        for field in ["License-Expression", "License"] {
            if let Some(v) = main.metadata.get(field).filter(|v| !v.contains('\n')) {
                fields.push((field, v.to_string()));
            }
        }
        let mut h = HeaderFile::build(&fields, None);
        for f in &dw.licenses {
            h.add("License-File", &f.dest);
        }
        h.add("Description-Content-Type", "text/markdown");
        let mut text = h.to_text();
        text.push_str(&format!(
            "\n# {}\n\nGPU device code of `{project}` {}: wheelslim moved these containers out of the libraries below into companion libraries, which install beside them. The libraries find them through their own search path (`$ORIGIN`); the CUDA/HIP runtime is handed the same bytes as before.\n\n",
            dw.name, dw.version
        ));
        for (_, _, path) in &dw.members {
            text.push_str(&format!("- `{path}`\n"));
        }
        let mut wheel = HeaderFile::build(
            &[
                ("Wheel-Version", "1.0".to_string()),
                (
                    "Generator",
                    format!("wheelslim {}", env!("CARGO_PKG_VERSION")),
                ),
                ("Root-Is-Purelib", "false".to_string()),
            ],
            None,
        );
        let mut parts = dw.tag.splitn(3, '-');
        let (py, abi, plat) = (
            parts.next().unwrap_or("py3"),
            parts.next().unwrap_or("none"),
            parts.next().unwrap_or("any"),
        );
        for p in py.split('.') {
            for a in abi.split('.') {
                for pl in plat.split('.') {
                    wheel.add("Tag", &format!("{p}-{a}-{pl}"));
                }
            }
        }
        vec![
            g.add(&format!("{dist_info}/METADATA"), text.as_bytes()),
            g.add(&format!("{dist_info}/WHEEL"), wheel.to_text().as_bytes()),
        ]
    }

    /// A companion wheel's members: its generated files, its companions and its licence
    /// files.
    pub(super) fn devcode_members<'o>(
        &'o self,
        dw: &'o DevcodeWheel,
        generated: &'o Generated,
        gens: &[Gen],
        built: &Built<'o>,
    ) -> Result<Vec<OutMember<'o>>, Error> {
        let mut members: Vec<OutMember> =
            gens.iter().map(|g| generated.member(g, 0o100644)).collect();
        for (key, k, path) in &dw.members {
            let c = built
                .rewritten
                .get(key)
                .and_then(|r| r.companions.get(*k))
                .ok_or_else(|| Error::internal(format_args!("no companion for {path}")))?;
            members.push(OutMember {
                facts: elf_facts(path, &c.compressed, c.sha256, c.info.clone()),
                name: path.clone(),
                source: Source::New(&c.compressed),
                sha256: c.sha256,
                size: c.compressed.size,
                mode: 0o100755,
            });
        }
        let dist_info = dw.dist_info();
        members.extend(self.license_members(&dist_info, &dw.licenses));
        members.sort_by(|a, b| a.name.cmp(&b.name));
        order_dist_info_last(&mut members, &dist_info);
        Ok(members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_companion_installs_beside_its_host() {
        assert_eq!(
            beside("nvidia/nccl/lib/libnccl.so.2", "libnccl.wsdev1.so"),
            "nvidia/nccl/lib/libnccl.wsdev1.so"
        );
        assert_eq!(beside("libx.so", "libx.wsdev1.so"), "libx.wsdev1.so");
    }
}
