//! `wheelslim profiles [show NAME]`.

use anyhow::Result;

use super::args::{ProfilesAction, ProfilesArgs};
use super::{Outcome, Printer};
use crate::profile::{Action, Profile};

pub fn run(args: &ProfilesArgs, printer: &Printer) -> Result<Outcome> {
    match &args.action {
        Some(ProfilesAction::Show { name }) => {
            let p = Profile::load(name)?;
            if printer.json {
                printer.json_value(&p)?;
            } else {
                printer.result(&p.text)?;
            }
        }
        None => {
            let all = Profile::all_built_in();
            if printer.json {
                printer.json_value(&all)?;
            } else {
                let mut out = String::new();
                for p in &all {
                    let count = |a| p.libraries.iter().filter(|l| l.action == a).count();
                    let files = if p.files.is_empty() {
                        String::new()
                    } else {
                        format!(", flag {} file rules", p.files.len())
                    };
                    out.push_str(&format!(
                        "{:<14} {} (move {}, upstream {}, forbid {}{files})\n",
                        p.name,
                        p.description,
                        count(Action::Move),
                        count(Action::Upstream),
                        count(Action::Forbid)
                    ));
                }
                printer.result(&out)?;
            }
        }
    }
    Ok(Outcome::Ok)
}
