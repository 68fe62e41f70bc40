//! `audit`'s device-code companion advice, worked out by `split`'s own planner so the two
//! never disagree (issue 14: audit once judged the project's own libraries by a runtime
//! wheel's room, and said companions could not help a wheel `split` then fitted).
//!
//! `audit` has no `split` options, so the plan is the one `split --dry-run` makes with its
//! defaults at audit's `--max-size`: vendor libraries move into runtime wheels and are judged
//! by a runtime wheel's room, one library at a time; the project's own libraries stay in the
//! main wheel and are judged together, by the room the main wheel's other members leave.

use std::collections::HashSet;
use std::path::PathBuf;

use super::{DryTrim, Estimates, OTHERS_TAKE_ALL, OwnVerdict, SplitOptions, SplitRun};
use crate::budget::Budget;
use crate::facts::WheelFacts;
use crate::plan::companions::{CompanionAdvice, CompanionSummary};
use crate::plan::{SplitSettings, plan_split};
use crate::profile::ProfileSet;
use crate::wheel::Wheel;
use crate::wheel::writer::ZipTime;

/// What `split` would do with one wheel's libraries too big for their wheel.
#[derive(Default)]
pub struct WheelAdvice {
    /// The members `split` moves into runtime wheels (judged alone by a runtime wheel's room);
    /// `None` when the wheel cannot be planned (audit reports why elsewhere).
    pub moved: Option<HashSet<String>>,
    /// The advice for the project's own libraries, which stay in the main wheel: empty when
    /// the main wheel fits.
    pub own: Vec<CompanionAdvice>,
}

/// Plans `split --dry-run` of one wheel at `max_size` and says what companions do for its own
/// libraries. The wheel and its facts are handed back.
pub fn companion_advice(
    wheel: Wheel,
    facts: WheelFacts,
    profiles: &ProfileSet,
    max_size: u64,
) -> (Wheel, WheelFacts, WheelAdvice) {
    let opts = SplitOptions {
        settings: SplitSettings::default(),
        wheel_dir: PathBuf::new(),
        runtime_dir: PathBuf::new(),
        max_size,
        limits: crate::wheel::Limits::default(),
        memory_budget: 0,
        time: ZipTime::EPOCH,
        dry_run: true,
        canonical_runtime: false,
        trim: Default::default(),
        strip_debug: false,
        preload_hook: false,
        companions: true,
        progress: crate::progress::none(),
        sparse: crate::facts::Sparse::default(),
    };
    let budget = Budget::new(0);
    let run = SplitRun::new(&opts, &budget, vec![(wheel, facts)]);
    let advice = run.advice(profiles);
    let (wheel, facts) = run.inputs.into_iter().next().expect("one input");
    (wheel, facts, advice)
}

impl SplitRun<'_> {
    fn advice(&self, profiles: &ProfileSet) -> WheelAdvice {
        let Ok(plan) = plan_split(&self.refs(), profiles, &self.opts.settings) else {
            return WheelAdvice::default();
        };
        let moved = plan
            .runtime_sets
            .iter()
            .flat_map(|s| &s.libraries)
            .map(|l| l.member.clone())
            .collect();
        let dry = DryTrim::default();
        let mut own = Vec::new();
        for (mi, m) in plan.mains.iter().enumerate() {
            let staying = self.staying(m, &Estimates::default());
            let total: u64 = staying.iter().map(|(_, b)| b).sum();
            if total > self.opts.max_size {
                own.extend(self.own_advice(mi, m, &staying, &dry, total));
            }
        }
        WheelAdvice {
            moved: Some(moved),
            own,
        }
    }

    /// The advice for main wheel `m`, `total` compressed bytes as it stands.
    fn own_advice(
        &self,
        mi: usize,
        m: &crate::plan::MainPlan,
        staying: &[(String, u64)],
        dry: &DryTrim,
        total: u64,
    ) -> Vec<CompanionAdvice> {
        let max = self.opts.max_size;
        let largest = || self.largest_with_device(m.input, staying);
        let cannot = |name: &str, bytes: u64, room: u64, why: String| CompanionAdvice {
            reason: Some(why),
            own: true,
            ..CompanionAdvice::blank(name, bytes, room)
        };
        match self.own_verdict(mi, m, staying, dry) {
            OwnVerdict::Fits { moves, .. } => moves
                .iter()
                .map(|mv| CompanionAdvice {
                    fits_with_companions: true,
                    files: mv.companions.len(),
                    host_after: Some(mv.host_after),
                    kept_containers: mv.kept_containers,
                    companions: mv
                        .companions
                        .iter()
                        .map(|c| CompanionSummary::of(&c.file))
                        .collect(),
                    own: true,
                    ..CompanionAdvice::blank(&mv.key.1, mv.compressed_before, mv.room)
                })
                .collect(),
            OwnVerdict::Cannot(mut a) => {
                a.own = true;
                vec![a]
            }
            OwnVerdict::NoRoom => largest()
                .map(|(n, b)| cannot(n, *b, 0, OTHERS_TAKE_ALL.to_string()))
                .into_iter()
                .collect(),
            OwnVerdict::Short { after, .. } => largest()
                .map(|(n, b)| {
                    let why = format!(
                        "the main wheel is {} compressed, and with the device code of its libraries moved out it would still be about {}, over the {} limit",
                        crate::cli_size(total),
                        crate::cli_size(after),
                        crate::cli_size(max)
                    );
                    cannot(n, *b, max, why)
                })
                .into_iter()
                .collect(),
            OwnVerdict::Nothing => Vec::new(),
        }
    }
}
