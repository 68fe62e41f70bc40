//! The plan stage: a pure function from facts and settings to a [`SplitPlan`] — which member
//! goes into which output wheel, which edits each ELF object gets, which requirements METADATA
//! gains. Nothing here reads or writes files, so every decision can be tested directly, and
//! `--dry-run` is a view of the plan.

pub mod companions;
pub mod pack;
pub mod split;
pub mod vendor;

pub use split::{
    ElfEdit, KeptLibrary, LibraryPlan, MainPlan, MemberAction, RemovedLibrary, RuntimeSet,
    SplitPlan, SplitSettings, plan_split,
};
