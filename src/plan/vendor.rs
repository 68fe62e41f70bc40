//! Which vendor libraries of a wheel leave it, and which stay and why. `audit` and `split` ask
//! the same question, so both call [`classify`].
//!
//! A library a profile matches leaves the wheel (moved, provided upstream, or removed for a
//! `forbid` rule) unless:
//!
//! * the wheel *is* the library's upstream package (`nvidia-curand-cu12` holding
//!   `libcurand.so.10`): moving it would empty NVIDIA's own wheel, and `--upstream` would make the
//!   wheel require itself;
//! * no ELF object in the wheel links it (no `DT_NEEDED` names its file or its SONAME). Such a
//!   library is loaded by path (`ctypes.CDLL(os.path.join(...))`, a profiler opening CUPTI from a
//!   fixed folder), and moving it breaks that at run time. It stays unless the user asks
//!   (`--move-unlinked`).
//!
//! Plugins a vendor library opens itself with `dlopen` (NVRTC's builtins, cuDNN's sub-libraries,
//! NVSHMEM's transports, CUPTI's libcheckpoint) are not linked either, but they are found beside
//! the library that opens them. So an unlinked library leaves with a linked library of the same
//! profile rule that leaves from the same folder, and stays where none does.

use serde::Serialize;

use crate::facts::MemberFacts;
use crate::links::{expand_entry, parent_dir};
use crate::profile::{Action, Match, NameGlobs, Profile, ProfileSet};
use crate::wheel::normalize_name;

/// Moves and keeps asked for on the command line (`split --move GLOB`, `--keep GLOB`), without a
/// profile.
///
/// * `--move`: the library leaves the wheel even when no ELF object links it. A library no profile
///   matches moves into a runtime wheel of its own set, `{project}-runtime-extra`, as if a
///   profile named `extra` listed it; one a profile matches keeps that profile's rule (its set,
///   its upstream package, its licence).
/// * `--keep`: the library stays in the main wheel whatever a profile says, and does not move
///   as a dependency of a library that moves.
#[derive(Debug, Clone, Default)]
pub struct AdHoc {
    pub moves: NameGlobs,
    pub keeps: NameGlobs,
}

/// The name of the profile `--move` makes (and of its runtime wheels' suffix).
pub const AD_HOC_PROFILE: &str = "extra";

impl AdHoc {
    /// Both lists, checked: a glob given to both is a contradiction.
    pub fn new(moves: &[String], keeps: &[String]) -> Result<AdHoc, String> {
        if let Some(both) = moves.iter().find(|m| keeps.contains(m)) {
            return Err(format!(
                "`{both}` is given to both --move and --keep: say which"
            ));
        }
        Ok(AdHoc {
            moves: NameGlobs::new("--move", moves)?,
            keeps: NameGlobs::new("--keep", keeps)?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.moves.is_empty() && self.keeps.is_empty()
    }

    /// `profiles` with the profile `--move` makes added last (so a real profile's rule wins),
    /// once.
    pub fn profiles(&self, profiles: &ProfileSet) -> ProfileSet {
        let mut out = profiles.clone();
        let made = out
            .profiles
            .last()
            .is_some_and(|p| p.name == AD_HOC_PROFILE && p.origin == "--move");
        if !self.moves.is_empty() && !made {
            out.profiles
                .push(Profile::ad_hoc(AD_HOC_PROFILE, "--move", &self.moves));
        }
        out
    }
}

/// What `split` does with one vendor library.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "fate", rename_all = "kebab-case")]
pub enum Fate {
    /// Leaves the wheel as its rule says (moved, provided upstream, or removed).
    Leaves,
    /// Leaves because `library` (same rule, same folder, linked) leaves: it is a plugin that
    /// library opens from its own folder.
    LeavesWith { library: String },
    /// Stays: this wheel is the library's upstream package.
    OwnPackage { package: String },
    /// Stays: no ELF object in the wheel links it, so it is probably loaded by path.
    Unlinked,
    /// Stays: `--keep` names it.
    Kept { by: String },
}

impl Fate {
    pub fn leaves(&self) -> bool {
        matches!(self, Fate::Leaves | Fate::LeavesWith { .. })
    }

    /// Why it stays, for people; `None` when it leaves.
    pub fn why_it_stays(&self) -> Option<String> {
        match self {
            Fate::Leaves | Fate::LeavesWith { .. } => None,
            Fate::OwnPackage { package } => Some(format!(
                "this wheel is {package}, the library's own upstream package"
            )),
            Fate::Unlinked => Some(
                "no ELF object in the wheel links it, so it is probably loaded by path (dlopen from Python); moving it would break that (--move-unlinked or --move moves it anyway)"
                    .into(),
            ),
            Fate::Kept { by } => Some(format!("--keep {by} keeps it in the main wheel")),
        }
    }
}

/// One vendor library of a wheel and its fate.
#[derive(Debug, Clone, Copy)]
pub struct VendorHit<'a> {
    pub member: &'a MemberFacts,
    pub hit: Match<'a>,
    /// True when some other ELF object in the wheel names it in `DT_NEEDED`.
    pub linked: bool,
    /// True when it matched one of the rule's `companions`, not its `patterns`.
    pub companion: bool,
}

/// Classifies the members `candidate` accepts. `project` is the wheel's project name; `profiles`
/// already holds the profile `ad_hoc` makes (see [`AdHoc::profiles`]).
pub fn classify<'a>(
    members: &'a [MemberFacts],
    candidate: impl Fn(&MemberFacts) -> bool,
    profiles: &'a ProfileSet,
    cuda: Option<u32>,
    project: &str,
    move_unlinked: bool,
    ad_hoc: &AdHoc,
) -> Vec<(VendorHit<'a>, Fate)> {
    let project = normalize_name(project);
    let soname = |m: &'a MemberFacts| m.host_elf().and_then(|e| e.soname.as_deref());
    // Linked: another object names it in DT_NEEDED and would find it there, in its own folder
    // or a folder its RUNPATH/RPATH names. A NEEDED name found elsewhere is not this copy.
    let linked = |m: &MemberFacts| {
        let own = [
            Some(m.file_name()),
            m.host_elf().and_then(|e| e.soname.as_deref()),
        ];
        let dir = parent_dir(&m.name);
        members.iter().filter(|o| o.name != m.name).any(|o| {
            o.host_elf().is_some_and(|e| {
                let names_it = e
                    .needed
                    .iter()
                    .any(|n| own.iter().flatten().any(|x| x == n));
                let origin = parent_dir(&o.name);
                let search = if e.runpath.is_empty() {
                    &e.rpath
                } else {
                    &e.runpath
                };
                names_it
                    && (origin == dir
                        || search
                            .iter()
                            .any(|s| expand_entry(s, origin).as_deref() == Some(dir)))
            })
        })
    };
    let mut hits: Vec<VendorHit<'a>> = Vec::new();
    for m in members.iter().filter(|m| candidate(m)) {
        if let Some(hit) = profiles.match_library(m.file_name(), soname(m), cuda) {
            hits.push(VendorHit {
                member: m,
                hit,
                linked: linked(m),
                companion: false,
            });
        }
    }
    // Companions: generic names that count only beside a library of their rule.
    let primaries = hits.clone();
    for m in members.iter().filter(|m| candidate(m)) {
        if hits.iter().any(|h| h.member.name == m.name) {
            continue;
        }
        let beside = primaries.iter().find(|h| {
            parent_dir(&h.member.name) == parent_dir(&m.name)
                && h.hit.rule.matches_companion(m.file_name(), soname(m))
        });
        if let Some(h) = beside {
            hits.push(VendorHit {
                member: m,
                hit: h.hit,
                linked: linked(m),
                companion: true,
            });
        }
    }
    let own_package = |h: &VendorHit<'a>| {
        let mut all = profiles.all_matches(h.member.file_name(), soname(h.member));
        let own = all.any(|x| {
            x.rule
                .upstream
                .as_ref()
                .is_some_and(|u| u.is_package(&project))
        }) || h
            .hit
            .rule
            .upstream
            .as_ref()
            .is_some_and(|u| u.is_package(&project));
        own.then(|| Fate::OwnPackage {
            package: project.clone(),
        })
    };
    let mut fates: Vec<Fate> = hits
        .iter()
        .map(|h| {
            let (file, so) = (h.member.file_name(), soname(h.member));
            own_package(h).unwrap_or(if let Some(by) = ad_hoc.keeps.matching(file, so) {
                Fate::Kept { by: by.to_string() }
            } else if h.hit.rule.action == Action::Forbid
                || h.linked
                || move_unlinked
                || ad_hoc.moves.matching(file, so).is_some()
            {
                Fate::Leaves
            } else {
                Fate::Unlinked
            })
        })
        .collect();
    // Plugins leave with the linked library of their rule that leaves from their folder.
    let key = |h: &VendorHit| {
        (
            h.hit.profile.name.clone(),
            h.hit.rule.name.clone(),
            parent_dir(&h.member.name).to_string(),
        )
    };
    let leaving: Vec<(usize, (String, String, String))> = hits
        .iter()
        .enumerate()
        .filter(|(i, h)| fates[*i] == Fate::Leaves && h.linked)
        .map(|(i, h)| (i, key(h)))
        .collect();
    for (i, h) in hits.iter().enumerate() {
        if fates[i] != Fate::Unlinked {
            continue;
        }
        let k = key(h);
        if let Some((j, _)) = leaving.iter().find(|(_, lk)| *lk == k) {
            fates[i] = Fate::LeavesWith {
                library: hits[*j].member.name.clone(),
            };
        }
    }
    hits.into_iter().zip(fates).collect()
}

/// A vendor program or static archive a profile's `[[file]]` rule flags. `audit` lists them
/// with their licence; `split` leaves them where they are and says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LicensedFile {
    pub member: String,
    pub profile: String,
    pub rule: String,
    /// `executable` or `static-archive`.
    pub kind: crate::profile::FileKind,
    pub license: Option<String>,
    pub license_note: Option<String>,
    pub size: u64,
    pub compressed_size: u64,
}

impl LicensedFile {
    /// One line for people: what it is, under which licence, and what `split` does with it.
    pub fn describe(&self) -> String {
        format!(
            "{} ({}/{}, {}): licence {}{}",
            self.member,
            self.profile,
            self.rule,
            self.kind.as_str(),
            self.license.as_deref().unwrap_or("not stated"),
            self.license_note
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        )
    }
}

/// The members `[[file]]` rules flag. A program counts only when the member is an ELF object
/// (NVIDIA's `nvcc.profile` beside `nvcc` is text); a static archive by its exact name.
pub fn licensed_files(members: &[MemberFacts], profiles: &ProfileSet) -> Vec<LicensedFile> {
    members
        .iter()
        .filter(|m| !m.name.ends_with('/'))
        .filter_map(|m| {
            let hit = profiles.match_file(m.file_name())?;
            if hit.rule.kind == crate::profile::FileKind::Executable && m.elf().is_none() {
                return None;
            }
            Some(LicensedFile {
                member: m.name.clone(),
                profile: hit.profile.name.clone(),
                rule: hit.rule.name.clone(),
                kind: hit.rule.kind,
                license: hit.rule.license.clone(),
                license_note: hit.rule.license_note.clone(),
                size: m.size,
                compressed_size: m.compressed_size,
            })
        })
        .collect()
}
