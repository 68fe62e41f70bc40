//! `split` and device-code companions (issue 14): the companion plan of each runtime library
//! too big for one wheel even alone, where each companion would go, and what the refusal of
//! such a library says about companions.

use serde::Serialize;

use super::{MemberKey, RUNTIME_OVERHEAD, SplitRun};
use crate::diagnostic::{Diagnostic, Severity};
use crate::error::Error;
use crate::plan::companions::Rooms;
use crate::plan::companions::{
    self, CompanionAdvice, CompanionFile, Library, Verdict, library_of_member,
};
use crate::plan::pack::pack;
use crate::plan::{ElfEdit, LibraryPlan, MainPlan, RuntimeSet, SplitPlan};

/// One companion of a plan and the runtime wheel it goes into.
#[derive(Debug, Clone, Serialize)]
pub struct PlacedCompanion {
    #[serde(flatten)]
    pub file: CompanionFile,
    /// The runtime wheel (distribution name) it goes into, beside its host's set.
    pub wheel: String,
    /// Its size installed, once written (0 in a dry run).
    #[serde(skip_serializing_if = "is_zero")]
    pub installed_bytes: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The companion plan of one runtime library (`split --companions --dry-run`; `companions[]`
/// in `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct CompanionMove {
    /// The host's (input, member), for the real run's rewrite.
    #[serde(skip)]
    pub(super) key: MemberKey,
    /// For the project's own library, which stays in its main wheel: the index of that main
    /// wheel in the plan. Its companions then go into wheels of their own
    /// ([`super::devcode`]), which the main wheel requires.
    #[serde(skip)]
    pub(super) main: Option<usize>,
    /// The compressed bytes the plan gave the host (for the plan to be made again).
    #[serde(skip)]
    pub(super) room: u64,
    /// Why the host keeps its installed size (the moved containers were zeroed in place, not
    /// cut), when it does; set once written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zeroed: Option<String>,
    /// True for the project's own library (its companions are in their own wheels).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub own: bool,
    /// `wheel!member` of the host library.
    pub library: String,
    /// The runtime set it moves into, and its file name in the set's `lib/` (for the
    /// project's own library: the companion wheels' name, and its file name).
    pub runtime_set: String,
    pub file: String,
    /// The runtime wheel the host goes into (its main wheel's file name for the project's own
    /// library).
    pub host_wheel: String,
    /// Compressed bytes of the host now (after the trim, estimated, when there is one).
    pub compressed_before: u64,
    /// Estimated compressed bytes of the host once its device code has moved.
    pub host_after: u64,
    /// Containers the host keeps (they still fit beside its other bytes).
    pub kept_containers: usize,
    pub companions: Vec<PlacedCompanion>,
}

/// The library as the planner sees it, at `bytes` compressed (its size in the wheel, after
/// the dry run's trim when there is one).
fn at_size(mut lib: Library, bytes: u64) -> Library {
    let moved: u64 = lib.blocks.iter().map(|b| b.compressed).sum();
    lib.compressed = bytes;
    lib.rest_compressed = bytes.saturating_sub(moved);
    lib
}

/// Where a library too big for its wheel lives, and so where its companions go.
#[derive(Clone, Copy)]
pub(super) enum Home<'p> {
    /// A runtime library: its companions go beside it, into its set's wheels.
    Set(&'p RuntimeSet, &'p LibraryPlan),
    /// The project's own library, which stays in main wheel `main` (an index into the plan's
    /// mains); its other members leave the host `host_room` compressed bytes. Its companions
    /// go into wheels of their own ([`super::devcode`]), installed into the host's folder.
    Main {
        main: usize,
        plan: &'p MainPlan,
        member: &'p str,
        edit: Option<&'p ElfEdit>,
        host_room: u64,
    },
}

impl Home<'_> {
    /// The host's (input, member).
    pub(super) fn key(&self) -> (usize, &str) {
        match self {
            Home::Set(_, l) => (l.input, &l.member),
            Home::Main { plan, member, .. } => (plan.input, member),
        }
    }

    /// The host's edit before `$ORIGIN` is added.
    pub(super) fn edit(&self) -> Option<&ElfEdit> {
        match self {
            Home::Set(_, l) => Some(&l.edit),
            Home::Main { edit, .. } => *edit,
        }
    }
}

/// Makes a refusal of a library too big alone say what companions would do: that
/// `--companions` makes it fit (first, as it keeps every architecture), or why not.
pub(super) fn with_companion_hint(e: Error, advice: &CompanionAdvice, given: bool) -> Error {
    let Error::Refused { message, hint } = e else {
        return e;
    };
    let old = hint.unwrap_or_default();
    let hint = match (&advice.reason, given) {
        (None, false) => format!(
            "{} (they are the default: split without --no-companions; `split --dry-run` shows the plan); or {old}",
            advice.sentence()
        ),
        (None, true) => old,
        (Some(_), _) => format!("{old}; {}", advice.sentence()),
    };
    Error::Refused {
        message,
        hint: Some(hint),
    }
}

/// Puts a sentence first in a refusal's hint.
pub(super) fn with_hint_first(e: Error, first: &str) -> Error {
    match e {
        Error::Refused { message, hint } => Error::Refused {
            message,
            hint: Some(match hint {
                Some(h) => format!("{first}; or {h}"),
                None => first.to_string(),
            }),
        },
        other => other,
    }
}

/// Adds a sentence to a refusal's hint.
pub(super) fn with_note(e: Error, note: &str) -> Error {
    match e {
        Error::Refused { message, hint } => Error::Refused {
            message,
            hint: Some(match hint {
                Some(h) => format!("{h}; {note}"),
                None => note.to_string(),
            }),
        },
        other => other,
    }
}

impl SplitRun<'_> {
    /// The companion plan of one library at `bytes` compressed (`trimmed`: the dry run's
    /// view of it after the trim); `None` for a member with no device-code sections.
    pub(super) fn companion_verdict(
        &self,
        (input, member): (usize, &str),
        bytes: u64,
        trimmed: Option<&Library>,
        rooms: Rooms,
    ) -> Option<(Library, Verdict)> {
        let facts = &self.inputs[input].1;
        let lib = match trimmed {
            Some(l) => l.clone(),
            None => library_of_member(facts.members.iter().find(|f| f.name == member)?)?,
        };
        let lib = at_size(lib, bytes);
        let names: std::collections::HashSet<&str> = self
            .inputs
            .iter()
            .flat_map(|(_, f)| f.members.iter().map(|m| m.file_name()))
            .collect();
        let v = companions::plan_rooms(&lib, rooms, &|n: &str| names.contains(n));
        Some((lib, v))
    }

    /// The rooms of a plan for a library at home in `home`.
    pub(super) fn rooms(&self, home: &Home) -> Rooms {
        let room = self.opts.max_size.saturating_sub(RUNTIME_OVERHEAD);
        match home {
            // The packing counts each file's zip entry too.
            Home::Set(_, l) => Rooms {
                host: room.saturating_sub(super::devcode::entry_cost(&l.file)),
                companion: room,
            },
            Home::Main {
                plan, host_room, ..
            } => Rooms {
                host: *host_room,
                companion: self.devcode_room(plan.input),
            },
        }
    }

    /// The refusal of a library at `bytes` that does not fit at home: too big for a runtime
    /// wheel alone, or for the room its main wheel's other members leave.
    pub(super) fn refusal(&self, home: &Home, bytes: u64, trimmed: Option<&Library>) -> Error {
        match home {
            Home::Set(_, l) => self.too_big_after(l.input, &l.member, bytes, trimmed),
            Home::Main {
                plan,
                member,
                host_room,
                ..
            } => {
                let loc = self.inputs[plan.input].0.member_location(member);
                let e = Error::refused(
                    format!(
                        "{loc} is {} compressed, over the {} its main wheel `{}` has room for beside its other members",
                        crate::cli_size(bytes),
                        crate::cli_size(*host_room),
                        plan.file_name
                    ),
                    Some(format!(
                        "trim its device code to the GPUs you ship for (--sm/--gfx), or ask the index for a larger limit and pass --max-size (now {})",
                        crate::cli_size(self.opts.max_size)
                    )),
                );
                match self.companion_verdict(home.key(), bytes, trimmed, self.rooms(home)) {
                    Some((lib, v)) => match CompanionAdvice::new(member, &lib, *host_room, &v) {
                        Some(a) => with_companion_hint(e, &a, self.opts.companions),
                        None => e,
                    },
                    None => e,
                }
            }
        }
    }

    /// The refusal of a library too big for a runtime wheel alone, with what companions
    /// would do for it.
    pub(super) fn too_big_after(
        &self,
        input: usize,
        member: &str,
        bytes: u64,
        trimmed: Option<&Library>,
    ) -> Error {
        let e = super::too_big(
            &self.inputs[input].0,
            member,
            bytes,
            self.opts.max_size,
            self.has_device(input, member),
            self.trimming(),
            self.unstripped_debug(input, member),
        );
        if trimmed.is_none() && self.changes(input, member) && !self.opts.dry_run {
            // Rewritten by the trim/strip: its containers as inspected are not what is left.
            return with_note(
                e,
                "`split --dry-run` with the same options (without --no-companions) shows whether device-code companions would make what the trim leaves fit",
            );
        }
        let room = self.opts.max_size.saturating_sub(RUNTIME_OVERHEAD);
        let rooms = Rooms {
            host: room,
            companion: room,
        };
        match self.companion_verdict((input, member), bytes, trimmed, rooms) {
            Some((lib, v)) => match CompanionAdvice::new(member, &lib, room, &v) {
                Some(a) => with_companion_hint(e, &a, self.opts.companions),
                None => e,
            },
            None => e,
        }
    }

    /// With `--companions`, the plan for a library too big for its home: `Ok(None)` when
    /// companions cannot help (the caller refuses it). A real run carries it out in the
    /// rewrite stage ([`host_rewrite`]).
    pub(super) fn companion_move(
        &self,
        home: &Home,
        bytes: u64,
        trimmed: Option<&Library>,
    ) -> Result<Option<CompanionMove>, Error> {
        if !self.opts.companions {
            return Ok(None);
        }
        Ok(self.plan_move(home, bytes, trimmed))
    }

    /// The companion plan for a library too big for its home, whether or not companions are
    /// on (a refusal says what they would do); `None` when they cannot help.
    pub(super) fn plan_move(
        &self,
        home: &Home,
        bytes: u64,
        trimmed: Option<&Library>,
    ) -> Option<CompanionMove> {
        let (input, member) = home.key();
        let Some((
            _,
            Verdict::Companions {
                host_after,
                kept,
                files,
            },
        )) = self.companion_verdict((input, member), bytes, trimmed, self.rooms(home))
        else {
            return None;
        };
        let location = self.inputs[input].0.member_location(member).to_string();
        let (main, runtime_set, file, host_wheel) = match home {
            Home::Set(set, l) => (None, set.name.clone(), l.file.clone(), set.name.clone()),
            Home::Main { main, plan, .. } => (
                Some(*main),
                self.devcode_name(plan.input),
                member.rsplit('/').next().unwrap_or(member).to_string(),
                plan.file_name.clone(),
            ),
        };
        Some(CompanionMove {
            key: (input, member.to_string()),
            room: self.rooms(home).host,
            zeroed: None,
            main,
            own: main.is_some(),
            library: location,
            companions: files
                .into_iter()
                .map(|file| PlacedCompanion {
                    file,
                    wheel: runtime_set.clone(),
                    installed_bytes: 0,
                })
                .collect(),
            runtime_set,
            file,
            host_wheel,
            compressed_before: bytes,
            host_after,
            kept_containers: kept.len(),
        })
    }
}

impl SplitRun<'_> {
    /// The inspected ELF facts of a member.
    pub(super) fn host_info(&self, input: usize, member: &str) -> Option<&crate::elf::ElfInfo> {
        self.inputs[input]
            .1
            .members
            .iter()
            .find(|f| f.name == member)
            .and_then(|f| f.host_elf())
    }

    /// In a real run, a runtime library the trim or strip rewrites, once the trim is done
    /// (`trimmed`: its bytes after it, `None` when it changed nothing; `gone`: the bytes it
    /// removed): the library as the trim leaves it, at that size, and its companion plan
    /// when it is still too big. The size is the dry run's estimate, so the dry run shows this
    /// plan; the exact sizes are checked once it is compressed ([`Self::replan`]).
    pub(super) fn plan_after_trim(
        &self,
        home: &Home,
        trimmed: Option<&[u8]>,
        gone: u64,
    ) -> Result<(Option<Library>, Option<CompanionMove>), Error> {
        let (input, member) = home.key();
        let Some(f) = self.inputs[input]
            .1
            .members
            .iter()
            .find(|f| f.name == member)
        else {
            return Ok((None, None));
        };
        let removed = self.debug_of(input, member).saturating_add(gone);
        let bytes = super::estimate_after(f.compressed_size, f.size, removed);
        let after = trimmed
            .and_then(|d| library_after_trim(&f.name, d, bytes))
            .or_else(|| library_of_member(f))
            .map(|lib| at_size(lib, bytes));
        if bytes <= self.rooms(home).host {
            return Ok((after, None));
        }
        let mv = self.companion_move(home, bytes, after.as_ref())?;
        Ok((after, mv))
    }

    /// A runtime library whose device code moved (planned before any work, or after the trim
    /// or strip rewrote it), compressed: `host` bytes, and `moved` bytes for each companion
    /// of `planned` (its plan, from `view`: the library as the trim left it at its estimated
    /// size, or `None` for the input's own view). When one is over the room a wheel has, the estimate
    /// was too low: the view is scaled by how far off it was and planned again, for the
    /// member to be rewritten with that plan (at most twice; then the packing refuses it).
    /// `Ok(None)`: it fits. Companions that cannot help make the refusal, saying why.
    pub(super) fn replan(
        &self,
        home: &Home,
        view: Option<Library>,
        planned: Option<&CompanionMove>,
        (host, moved): (u64, &[u64]),
        tries: u8,
    ) -> Result<Option<Forced>, Error> {
        let rooms = self.rooms(home);
        // As the packing counts them: a companion with its zip entry.
        let companion_fits = |(&c, p): (&u64, &PlacedCompanion)| {
            c + super::devcode::entry_cost(&p.file.soname) <= rooms.companion
        };
        let all_fit = moved
            .iter()
            .zip(planned.iter().flat_map(|m| &m.companions))
            .all(companion_fits);
        if tries >= 2 || (host <= rooms.host && all_fit) {
            return Ok(None);
        }
        let (input, member) = home.key();
        let view = view.or_else(|| {
            let f = self.inputs[input]
                .1
                .members
                .iter()
                .find(|f| f.name == member)?;
            library_of_member(f)
        });
        let Some(view) = view else {
            return Err(self.refusal(home, host, None));
        };
        // (observed, predicted) of the output that is furthest over its estimate.
        let mut off = (host, planned.map_or(view.compressed, |m| m.host_after));
        for (&c, p) in moved.iter().zip(planned.iter().flat_map(|m| &m.companions)) {
            let predicted = p.file.compressed_bytes;
            if c as u128 * off.1 as u128 > off.0 as u128 * predicted as u128 {
                off = (c, predicted);
            }
        }
        if off.0 <= off.1 {
            return Ok(None);
        }
        // First with each output's own error put where it was made; then, as before, with
        // every estimate scaled alike by the worst one.
        let fine = refined(&view, planned, host, moved);
        if let Some(mv) = self.companion_move(home, fine.compressed, Some(&fine))? {
            return Ok(Some(Forced {
                mv,
                view: fine,
                tries: tries + 1,
            }));
        }
        let lib = scaled(&view, off.0, off.1.max(1));
        match self.companion_move(home, lib.compressed, Some(&lib))? {
            Some(mv) => Ok(Some(Forced {
                mv,
                view: lib,
                tries: tries + 1,
            })),
            None => Err(self.refusal(home, lib.compressed, Some(&lib))),
        }
    }
}

/// A companion plan a rewrite is made again with, after the exact sizes showed the estimate
/// too low ([`SplitRun::replan`]).
pub(super) struct Forced {
    pub mv: CompanionMove,
    /// The library as the plan saw it.
    pub view: Library,
    /// How many times the plan was made again.
    pub tries: u8,
}

/// The library as the exact sizes of a rewrite show it: each companion's containers scaled by
/// how far that companion was over its estimate, and the host's excess over its estimate put
/// on the containers it kept (in proportion to their estimates), or on its other bytes when
/// it kept none. Near-identical containers that compress to almost nothing beside each other
/// in the input (two bundles in one deflate block) cost their full size apart: this puts the
/// error on them, so the next plan moves them, where scaling everything alike would call the
/// host's other bytes too big as well.
fn refined(view: &Library, planned: Option<&CompanionMove>, host: u64, moved: &[u64]) -> Library {
    let mut out = view.clone();
    let files: Vec<&CompanionFile> = planned
        .map(|m| m.companions.iter().map(|c| &c.file).collect())
        .unwrap_or_default();
    let home_of = |b: &companions::Block| {
        files.iter().position(|f| {
            f.containers
                .iter()
                .any(|c| (c.section.as_str(), c.offset) == (b.section.as_str(), b.offset))
        })
    };
    for (k, f) in files.iter().enumerate() {
        let Some(&obs) = moved.get(k) else { continue };
        let pred = f.compressed_bytes.max(1);
        if obs <= pred {
            continue;
        }
        for b in out.blocks.iter_mut().filter(|b| home_of(b) == Some(k)) {
            b.compressed = (b.compressed as u128 * obs as u128 / pred as u128) as u64;
        }
    }
    let predicted = planned.map_or(view.compressed, |m| m.host_after);
    let excess = host.saturating_sub(predicted);
    let kept: u64 = out
        .blocks
        .iter()
        .filter(|b| home_of(b).is_none())
        .map(|b| b.compressed)
        .sum();
    if excess > 0 && kept > 0 {
        for b in out.blocks.iter_mut().filter(|b| home_of(b).is_none()) {
            b.compressed += (excess as u128 * b.compressed as u128 / kept as u128) as u64;
        }
    } else {
        out.rest_compressed += excess;
    }
    out.compressed = out.rest_compressed + out.blocks.iter().map(|b| b.compressed).sum::<u64>();
    out
}

/// The library with every compressed size scaled by `num / den`.
fn scaled(lib: &Library, num: u64, den: u64) -> Library {
    let f = |x: u64| (x as u128 * num as u128 / den.max(1) as u128) as u64;
    let mut out = lib.clone();
    out.compressed = f(lib.compressed);
    out.rest_compressed = f(lib.rest_compressed);
    for b in &mut out.blocks {
        b.compressed = f(b.compressed);
    }
    for h in &mut out.rest_sections {
        h.compressed = f(h.compressed);
    }
    out
}

impl SplitRun<'_> {
    /// The real run's companion moves, those planned before any work and those the rewrite
    /// stage planned, by library: each with the runtime wheels its host and its companions
    /// went into and their compressed sizes as written.
    pub(super) fn written(
        &self,
        mut moves: Vec<CompanionMove>,
        rewritten: &std::collections::HashMap<MemberKey, super::Rewritten>,
        wheels: &[super::RuntimeWheel],
    ) -> Vec<CompanionMove> {
        let mut keys: Vec<&MemberKey> = rewritten
            .iter()
            .filter(|(_, r)| r.planned.is_some())
            .map(|(k, _)| k)
            .collect();
        keys.sort();
        // A plan made again from the exact sizes replaces the one made before any work.
        moves.retain(|m| !keys.contains(&&m.key));
        moves.extend(
            keys.into_iter()
                .filter_map(|k| rewritten[k].planned.clone()),
        );
        for mv in &mut moves {
            let Some(r) = rewritten.get(&mv.key) else {
                continue;
            };
            mv.host_after = r.compressed.stored_len();
            mv.zeroed = r.zeroed.clone();
            for (c, out) in mv.companions.iter_mut().zip(&r.companions) {
                c.file.compressed_bytes = out.compressed.stored_len();
                c.installed_bytes = out.compressed.size;
            }
            for rw in wheels
                .iter()
                .filter(|w| !mv.own && w.set.name == mv.runtime_set)
            {
                let Some(j) = rw
                    .set
                    .libraries
                    .iter()
                    .position(|l| (l.input, &l.member) == (mv.key.0, &mv.key.1))
                else {
                    continue;
                };
                if rw.libraries.contains(&j) {
                    mv.host_wheel = rw.name.clone();
                }
                for &(h, k) in &rw.companions {
                    if let Some(c) = mv.companions.get_mut(k).filter(|_| h == j) {
                        c.wheel = rw.name.clone();
                    }
                }
            }
        }
        moves.sort_by(|a, b| a.library.cmp(&b.library));
        moves
    }

    /// A note per library whose device code moves into companions (the dry run: would move,
    /// its sizes estimated), naming it and its companion files.
    pub(super) fn companion_notes(&self, moves: &[CompanionMove]) -> Vec<Diagnostic> {
        let size = crate::cli_size;
        moves
            .iter()
            .map(|mv| {
                let n = mv.companions.len();
                let names: Vec<&str> = mv.companions.iter().map(|c| c.file.soname.as_str()).collect();
                let mut wheels: Vec<&str> = vec![mv.host_wheel.as_str()];
                for c in &mv.companions {
                    if !wheels.contains(&c.wheel.as_str()) {
                        wheels.push(&c.wheel);
                    }
                }
                let dry = self.opts.dry_run;
                let location = self.inputs[mv.key.0].0.member_location(&mv.key.1);
                if mv.own {
                    let message = format!(
                        "{} its device code into {n} companion file{} ({}) in wheels of their own ({}), installed beside it, keeping every GPU architecture: at {} compressed{} it leaves {} over the limit{}",
                        if dry { "would move" } else { "moved" },
                        if n == 1 { "" } else { "s" },
                        names.join(", "),
                        wheels[1..].join(", "),
                        size(mv.compressed_before),
                        if self.changes(mv.key.0, &mv.key.1) { " after the trim/strip" } else { "" },
                        mv.host_wheel,
                        if dry { " (sizes estimated; the real run checks the exact sizes)" } else { "" },
                    );
                    let message = with_zeroed(message, mv);
                    return Diagnostic::new(Severity::Note, &location, message).with_hint(
                        "the main wheel requires its companion wheels exactly, so they install with it; split --no-companions refuses such a wheel instead",
                    );
                }
                let message = format!(
                    "{} its device code into {n} companion file{} ({}) beside it in {}, keeping every GPU architecture{}: at {} compressed{} it does not fit in a wheel even alone{}",
                    if dry { "would move" } else { "moved" },
                    if n == 1 { "" } else { "s" },
                    names.join(", "),
                    wheels.join(", "),
                    if self.trimming() { " the trim left" } else { "" },
                    size(mv.compressed_before),
                    if self.changes(mv.key.0, &mv.key.1) { " after the trim/strip" } else { "" },
                    if dry { " (sizes estimated; the real run checks the exact sizes)" } else { "" },
                );
                let message = with_zeroed(message, mv);
                Diagnostic::new(Severity::Note, &location, message).with_hint(
                    "its runtime wheels install together (the main wheel requires them); split --no-companions refuses such a library instead",
                )
            })
            .collect()
    }
}

/// A companion note, with why the host keeps its installed size when it does.
fn with_zeroed(message: String, mv: &CompanionMove) -> String {
    match &mv.zeroed {
        Some(z) => format!(
            "{message}; {z}, so installed it takes as much room as before plus its companions"
        ),
        None => message,
    }
}

/// Which runtime wheel each host and companion goes into: each set is packed as the split
/// will pack it, the hosts at their size after the move and their companions beside them.
/// `size(l)`: a library's compressed size as the dry run sees it. Returns, per runtime set
/// with companions, its compressed bytes and how many wheels it takes with them.
pub(super) fn place(
    plan: &SplitPlan,
    moves: &mut [CompanionMove],
    max_size: u64,
    size: &dyn Fn(&LibraryPlan) -> u64,
) -> Vec<SetWithCompanions> {
    let mut sets = Vec::new();
    let capacity = max_size.saturating_sub(RUNTIME_OVERHEAD);
    let entry = |name: &str, bytes: u64| (name.to_string(), bytes + 200 + 2 * name.len() as u64);
    for set in &plan.runtime_sets {
        let mine: Vec<usize> = (0..moves.len())
            .filter(|&i| !moves[i].own && moves[i].runtime_set == set.name)
            .collect();
        if mine.is_empty() {
            continue;
        }
        let mut items: Vec<(String, u64)> = set
            .libraries
            .iter()
            .map(|l| {
                let after = mine
                    .iter()
                    .find(|&&i| moves[i].file == l.file)
                    .map_or_else(|| size(l), |&i| moves[i].host_after);
                entry(&l.file, after)
            })
            .collect();
        // (move, companion) of each further item.
        let mut owners: Vec<(usize, usize)> = Vec::new();
        for &i in &mine {
            for (k, c) in moves[i].companions.iter().enumerate() {
                items.push(entry(&c.file.soname, c.file.compressed_bytes));
                owners.push((i, k));
            }
        }
        let Ok(bins) = pack(&items, capacity) else {
            continue;
        };
        sets.push(SetWithCompanions {
            name: set.name.clone(),
            bytes: items.iter().map(|(_, b)| b).sum(),
            wheels: bins.len(),
        });
        let wheel_of = |item: usize| -> String {
            let k = bins.iter().position(|b| b.contains(&item)).unwrap_or(0);
            if k == 0 {
                set.name.clone()
            } else {
                format!("{}-part{}", set.name, k + 1)
            }
        };
        let n = set.libraries.len();
        for &i in &mine {
            if let Some(j) = set.libraries.iter().position(|l| l.file == moves[i].file) {
                moves[i].host_wheel = wheel_of(j);
            }
        }
        for (x, &(i, k)) in owners.iter().enumerate() {
            moves[i].companions[k].wheel = wheel_of(n + x);
        }
    }
    sets
}

/// A runtime set as the companion plan packs it.
pub(super) struct SetWithCompanions {
    name: String,
    bytes: u64,
    wheels: usize,
}

/// The dry run's size estimates of runtime sets, with their companions counted.
pub(super) fn apply_estimates(estimates: &mut [super::SizeEstimate], sets: &[SetWithCompanions]) {
    for e in estimates
        .iter_mut()
        .filter(|e| e.kind == crate::output::OutputKind::Runtime)
    {
        if let Some(s) = sets.iter().find(|s| s.name == e.output) {
            e.bytes = s.bytes;
            e.wheels = s.wheels;
            e.fits = true;
        }
    }
}

/// The dry run's view of a trimmed library, from its trimmed bytes: compressed sizes scale
/// with the bytes, the trim's own estimate.
pub(super) fn library_after_trim(
    name: &str,
    data: &[u8],
    compressed_after: u64,
) -> Option<Library> {
    let crate::elf::Inspected::Host(info) = crate::elf::inspect(data).ok()? else {
        return None;
    };
    let device = crate::device::scan_elf(data, &info).ok()?;
    let size = data.len() as u64;
    let estimate = |a: u64, b: u64| companions::compressed_range(&[], size, compressed_after, a, b);
    companions::library_of(name, &info, &device, compressed_after, &estimate)
}

/// Lines of the dry run's plan for the companions, listing at most `limit` containers per
/// companion (the rest are summed).
pub fn render(o: &mut String, moves: &[CompanionMove], size: &dyn Fn(u64) -> String, limit: usize) {
    use std::fmt::Write;
    for m in moves {
        let n = m.companions.len();
        let _ = writeln!(
            o,
            "companions for {} ({} compressed): {n} companion file{}; the host keeps {} container{}, about {} compressed, in {}",
            m.library,
            size(m.compressed_before),
            if n == 1 { "" } else { "s" },
            m.kept_containers,
            if m.kept_containers == 1 { "" } else { "s" },
            size(m.host_after),
            m.host_wheel,
        );
        for c in &m.companions {
            let f = &c.file;
            let _ = writeln!(
                o,
                "  {} → {}: {} container{} ({}), {} stored, about {} compressed",
                f.soname,
                c.wheel,
                f.containers.len(),
                if f.containers.len() == 1 { "" } else { "s" },
                f.families.join(", "),
                size(f.stored_bytes),
                size(f.compressed_bytes),
            );
            for b in f.containers.iter().take(limit) {
                let _ = writeln!(
                    o,
                    "    {} +{:#x}  {}  {}",
                    b.section,
                    b.offset,
                    size(b.size),
                    b.family
                );
            }
            let rest = &f.containers[f.containers.len().min(limit)..];
            if !rest.is_empty() {
                let _ = writeln!(
                    o,
                    "    … and {} more containers, {} stored (use -v)",
                    rest.len(),
                    size(rest.iter().map(|b| b.size).sum())
                );
            }
        }
    }
}

/// Keys of the members the dry run trimmed, with their view after the trim.
pub(super) type Trimmed = std::collections::HashMap<MemberKey, Library>;

/// The search path of a host whose companions sit beside it: `$ORIGIN` first unless an
/// entry already names the host's own folder. `None` when the edit has it already.
pub(super) fn with_origin(edit: &ElfEdit, info: Option<&crate::elf::ElfInfo>) -> Option<ElfEdit> {
    let current: Vec<String> = match (&edit.search_path, info) {
        (Some(p), _) => p.clone(),
        (None, Some(i)) if !i.runpath.is_empty() => i.runpath.clone(),
        (None, Some(i)) => i.rpath.clone(),
        (None, None) => Vec::new(),
    };
    let own = |e: &str| {
        matches!(
            e.trim_end_matches('/'),
            "$ORIGIN" | "${ORIGIN}" | "$ORIGIN/." | "${ORIGIN}/."
        )
    };
    if current.iter().any(|e| own(e)) {
        return None;
    }
    let mut out = edit.clone();
    let mut entries = vec!["$ORIGIN".to_string()];
    entries.extend(current);
    out.search_path = Some(entries);
    Some(out)
}

/// One companion as written: its file name (the soname) and its compressed bytes.
pub(super) struct CompanionOut {
    pub soname: String,
    pub compressed: crate::wheel::deflate::Compressed,
    pub sha256: [u8; 32],
    pub info: Option<crate::elf::ElfInfo>,
    /// Uncompressed bytes covered by reused input blocks.
    pub reused: u64,
}

/// A host whose device code moved: its bytes, its companions (compressed), and why the moved
/// containers were only zeroed in place, when the page cut could not drop them.
pub(super) struct HostMoved {
    pub host: Vec<u8>,
    pub companions: Vec<CompanionOut>,
    pub zeroed: Option<String>,
}

/// The input member a host is (not a trimmed or stripped copy of it): its archive, entry and
/// block marks, whose compressed blocks each companion reuses wherever it holds the input's
/// containers unchanged.
#[derive(Clone, Copy)]
pub(super) struct InputMember<'a> {
    pub archive: &'a crate::wheel::zip::ZipArchive,
    pub member: &'a crate::wheel::zip::Member,
    pub marks: &'a [crate::wheel::zip::BlockMark],
}

/// A host held without its CUDA sections ([`crate::facts::Apart`]), read back for the
/// companion move as it needs them; the containers are those the inspect pass parsed.
pub(super) struct HeldApart<'r, 'a> {
    pub reader: &'r crate::facts::ApartReader<'a>,
    pub device: &'r crate::device::DeviceFacts,
}

impl crate::elf::companion::Apart for HeldApart<'_, '_> {
    fn holes(&self) -> &[(u64, u64)] {
        self.reader.holes()
    }

    fn containers(&self, name: &str) -> Option<Vec<(u64, u64)>> {
        self.device
            .cuda
            .iter()
            .find(|s| s.name == name)
            .filter(|s| s.spans.len() == s.containers)
            .map(|s| s.spans.iter().map(|c| (c.offset, c.len)).collect())
    }

    fn read(&self, at: u64, out: &mut [u8]) -> Result<(), String> {
        self.reader.read_on(at, out).map_err(|e| e.to_string())
    }

    fn check(&self, host: &[u8]) -> Result<(), String> {
        self.reader.check(host).map_err(|e| e.to_string())
    }
}

/// Where a companion holds the input host's bytes, as `(offset in the host, bytes)`: one
/// range per run of containers that lie at the same distance in both (`placed`: offset in
/// the host, offset in the companion, length). For a host held without its device code, these
/// are the only bytes of its holes the splice can compare.
fn known_spans<'b>(placed: &[(u64, u64, u64)], companion: &'b [u8]) -> Vec<(u64, &'b [u8])> {
    let mut sorted = placed.to_vec();
    sorted.sort_unstable();
    let mut spans: Vec<(u64, u64, u64)> = Vec::new();
    for (from, at, len) in sorted {
        match spans.last_mut() {
            Some((f, a, l))
                if from >= *f && from - *f == at.wrapping_sub(*a) && from >= *f + *l =>
            {
                *l = from + len - *f;
            }
            _ => spans.push((from, at, len)),
        }
    }
    spans
        .into_iter()
        .filter_map(|(from, at, len)| {
            let a = usize::try_from(at).ok()?;
            let b = a.checked_add(usize::try_from(len).ok()?)?;
            Some((from, companion.get(a..b)?))
        })
        .collect()
}

/// Carries out a companion plan on a host's bytes: the rewritten host and its companions,
/// compressed. A refusal names the library and says what to do; nothing is written then.
/// `host` is laid out and cut in its own buffer and given back as it was. `from`: the input
/// member `host` is, when it is not a trimmed or stripped copy.
pub(super) fn host_rewrite(
    loc: &crate::wheel::Location,
    host: &mut Vec<u8>,
    files: &[CompanionFile],
    spill: Option<&std::path::Path>,
    from: Option<InputMember<'_>>,
    apart: Option<&HeldApart<'_, '_>>,
) -> Result<HostMoved, Error> {
    // Each companion is compressed as soon as it is written, and its bytes let go: one is held
    // beside the host at a time.
    let mut written = Vec::with_capacity(files.len());
    let mut failed: Option<Error> = None;
    let mut encode_one = |soname: &str,
                          bytes: Vec<u8>,
                          placed: &[(u64, u64, u64)],
                          input: &[u8]| {
        // Where the companion holds the input's bytes: one shift per run of containers that
        // lie together in both.
        let mut shifts: Vec<i64> = placed
            .iter()
            .map(|&(at_host, at_companion, _)| at_companion as i64 - at_host as i64)
            .collect();
        shifts.sort_unstable();
        shifts.dedup();
        let inspect = |b: &[u8]| match crate::elf::inspect(b) {
            Ok(crate::elf::Inspected::Host(i)) => Ok(Some(*i)),
            Ok(_) => Ok(None),
            Err(err) => Err(Error::Elf {
                location: loc.clone(),
                err,
            }),
        };
        let known = known_spans(placed, &bytes);
        let data = match apart {
            Some(a) => crate::wheel::splice::Bytes::Holed {
                data: input,
                holes: a.reader.holes(),
                known: &known,
            },
            None => crate::wheel::splice::Bytes::Whole(input),
        };
        let original = from.map(|f| crate::wheel::splice::Original {
            archive: f.archive,
            member: f.member,
            data,
            marks: f.marks,
        });
        match crate::apply::rewrite::encode_from(&bytes, original.as_ref(), &shifts, spill, inspect)
        {
            Ok(e) => {
                written.push(CompanionOut {
                    soname: soname.to_string(),
                    compressed: e.compressed,
                    sha256: e.sha256,
                    info: e.info,
                    reused: e.reused,
                });
                Ok(())
            }
            Err(e) => {
                let text = e.to_string();
                failed = Some(e);
                Err(text)
            }
        }
    };
    let targets = companions::targets(files);
    let source = apart.map(|a| a as &dyn crate::elf::companion::Apart);
    let moved =
        crate::elf::companion::move_device_code_apart(host, &targets, source, &mut encode_one);
    let out = match (moved, failed) {
        (Ok(out), None) => out,
        (Err(_), Some(e)) | (Ok(_), Some(e)) => return Err(e),
        (Err(e), None) => {
            return Err(Error::refused(
                format!("{loc}: its device code cannot be moved into companions: {e}"),
                Some(
                    "split without --companions after trimming its device code (--sm/--gfx) until it fits, keep the library in the main wheel (leave it out of --move), or ask the index for a larger limit".into(),
                ),
            ));
        }
    };
    let zeroed = out
        .notes
        .iter()
        .find(|n| n.starts_with("the moved containers were zeroed in place"))
        .cloned();
    Ok(HostMoved {
        host: out.host,
        companions: written,
        zeroed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Vec<u8> {
        let p = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/cuda/libfix_plain.so");
        std::fs::read(p).expect("fixtures/cuda/libfix_plain.so")
    }

    #[test]
    fn known_spans_merge_containers_at_the_same_distance_only() {
        let companion: Vec<u8> = (0..200u8).collect();
        // Two containers 8 bytes apart in both, then one at another distance.
        let placed = [(1000, 10, 20), (1028, 38, 12), (2000, 100, 16)];
        let spans = known_spans(&placed, &companion);
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[0], (1000, &companion[10..50]));
        assert_eq!(spans[1], (2000, &companion[100..116]));
        // Out of order in, the same out; a placement past the companion is left out.
        let shuffled = [
            (2000, 100, 16),
            (1028, 38, 12),
            (1000, 10, 20),
            (3000, 190, 20),
        ];
        assert_eq!(known_spans(&shuffled, &companion), spans);
    }

    #[test]
    fn origin_is_added_once_and_kept_when_present() {
        let edit = ElfEdit::default();
        let added = with_origin(&edit, None).expect("no search path: $ORIGIN is added");
        assert_eq!(added.search_path, Some(vec!["$ORIGIN".to_string()]));
        assert!(with_origin(&added, None).is_none());
        let mut other = ElfEdit {
            search_path: Some(vec!["$ORIGIN/../../nvidia/cuda_runtime/lib".into()]),
            ..ElfEdit::default()
        };
        let e = with_origin(&other, None).unwrap();
        assert_eq!(e.search_path.unwrap()[0], "$ORIGIN");
        other.search_path = Some(vec!["${ORIGIN}/".into()]);
        assert!(with_origin(&other, None).is_none());
    }

    #[test]
    fn a_refused_move_names_the_library_and_says_what_to_do() {
        let loc = crate::wheel::Location::member(std::path::Path::new("a.whl"), "pkg/libx.so");
        let file = CompanionFile {
            soname: "libx.wsdev1.so".into(),
            families: vec!["sm_8x".into()],
            containers: vec![companions::Block {
                section: ".nv_fatbin".into(),
                offset: 3,
                size: 16,
                compressed: 16,
                family: "sm_8x".into(),
            }],
            stored_bytes: 16,
            compressed_bytes: 16,
        };
        for mut host in [fixture(), b"not an ELF object".to_vec()] {
            let Err(Error::Refused { message, hint }) = host_rewrite(
                &loc,
                &mut host,
                std::slice::from_ref(&file),
                None,
                None,
                None,
            )
            .map(|_| ()) else {
                panic!("the move was not refused");
            };
            assert!(
                message.starts_with("a.whl!pkg/libx.so: its device code cannot be moved"),
                "{message}"
            );
            let hint = hint.unwrap_or_default();
            assert!(
                hint.contains("--sm/--gfx") && hint.contains("--companions"),
                "{hint}"
            );
        }
    }
}
