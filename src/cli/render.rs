//! Renders reports as text for people.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::audit::{AuditReport, WheelAudit};
use crate::diagnostic::Severity;
use crate::links::Resolution;

pub fn size(b: u64) -> String {
    const K: f64 = 1024.0;
    let f = b as f64;
    if f < K {
        format!("{b} B")
    } else if f < K * K {
        format!("{:.1} KiB", f / K)
    } else if f < K * K * K {
        format!("{:.1} MiB", f / (K * K))
    } else {
        format!("{:.2} GiB", f / (K * K * K))
    }
}

fn resolution(r: &Resolution) -> String {
    match r {
        Resolution::Installed { path, .. } => format!("→ {path}"),
        Resolution::AlreadyLoaded { path } => format!("→ {path} (already loaded)"),
        Resolution::System => "→ system (manylinux)".into(),
        Resolution::Provided { by } => format!("→ provided by the machine: {by}"),
        Resolution::Missing { searched } if searched.is_empty() => {
            "→ not in this wheel (no RPATH/RUNPATH)".into()
        }
        Resolution::Missing { searched } => {
            format!("→ not found (searched {})", searched.join(", "))
        }
    }
}

pub fn audit(report: &AuditReport, verbose: u8) -> String {
    let mut o = String::new();
    for w in &report.wheels {
        wheel(&mut o, w, report.max_size, verbose);
        o.push('\n');
    }
    if !report.shared_across_wheels.is_empty() {
        let total: u64 = report.shared_across_wheels.iter().map(|g| g.wasted).sum();
        let _ = writeln!(
            o,
            "Shared across wheels: {} payloads, {} repeated (a runtime wheel would hold one copy)",
            report.shared_across_wheels.len(),
            size(total)
        );
        for g in report
            .shared_across_wheels
            .iter()
            .take(if verbose > 0 { usize::MAX } else { 10 })
        {
            let _ = writeln!(
                o,
                "  {:>10}  ×{}  {}",
                size(g.size),
                g.copies.len(),
                g.copies.join("  ")
            );
        }
        o.push('\n');
    }
    o
}

fn wheel(o: &mut String, w: &WheelAudit, max_size: u64, verbose: u8) {
    wheel_summary(o, w, max_size);
    let search_paths = elf_objects(o, w, verbose);
    let debug_total = debug_info(o, w);
    search_path_list(o, &search_paths);
    vendor_libraries(o, w);
    licensed_files(o, w, verbose);
    if !w.device_code.is_empty() {
        let _ = writeln!(o, "\n  Device code");
        device_code(o, &w.device_code, verbose);
    }
    duplicates(o, w, verbose);
    licence_flags(o, w);
    violations(o, w);
    to_fit(o, w, max_size, debug_total);
    companion_advice(o, &w.companions);
    problems(o, w, verbose);
}

/// `audit`: a wheel's path, tags, sizes, PyPI verdict and largest members.
fn wheel_summary(o: &mut String, w: &WheelAudit, max_size: u64) {
    let _ = writeln!(o, "{}", w.path);
    let _ = writeln!(o, "  {} {}  [{}]", w.name, w.version, w.tags.join(", "));
    let _ = writeln!(
        o,
        "  {} compressed, {} installed, {} members",
        size(w.compressed_size),
        size(w.installed_size),
        w.members
    );
    let verdict = if w.pypi_ok {
        "PyPI: would accept".to_string()
    } else {
        let n = w.violations.iter().filter(|v| v.pypi).count();
        format!(
            "PyPI: WOULD REJECT ({n} problem{})",
            if n == 1 { "" } else { "s" }
        )
    };
    let _ = writeln!(o, "  {verdict} (limit {})", size(max_size));

    let _ = writeln!(o, "\n  Largest members");
    for m in &w.largest {
        let _ = writeln!(
            o,
            "    {:>10} {:>10}  {}",
            size(m.size),
            size(m.compressed_size),
            m.name
        );
    }
}

/// `audit`: the ELF objects; returns the long search paths of missing
/// libraries, numbered in the order they are referenced.
fn elf_objects(o: &mut String, w: &WheelAudit, verbose: u8) -> Vec<Vec<String>> {
    let mut search_paths: Vec<Vec<String>> = Vec::new();
    if !w.elf_objects.is_empty() {
        let _ = writeln!(o, "\n  ELF objects");
        for e in &w.elf_objects {
            if let Some(u) = &e.unsupported {
                let _ = writeln!(o, "    {}  {} {}: {u}", e.member, e.machine, e.kind);
                continue;
            }
            let mut line = format!("    {}  {} {}", e.member, e.machine, e.kind);
            if let Some(s) = &e.soname {
                let _ = write!(line, "  soname {s}");
            }
            if let Some(g) = &e.glibc {
                let _ = write!(line, "  GLIBC_{g}");
            }
            if let Some(g) = &e.glibcxx {
                let _ = write!(line, "  GLIBCXX_{g}");
            }
            let _ = write!(line, "  align {:#x}", e.load_align);
            if e.stripped {
                line.push_str("  stripped");
            }
            if e.debug_bytes > 0 {
                let _ = write!(line, "  debug {}", size(e.debug_bytes));
            }
            let _ = writeln!(o, "{line}");
            if !e.rpath.is_empty() {
                let _ = writeln!(o, "      RPATH   {}", e.rpath.join(":"));
            }
            if !e.runpath.is_empty() {
                let _ = writeln!(o, "      RUNPATH {}", e.runpath.join(":"));
            }
            for n in &e.needed {
                if verbose == 0 && matches!(n.resolution, Resolution::System) {
                    continue;
                }
                let text = match &n.resolution {
                    Resolution::Missing { searched } if verbose == 0 && searched.len() > 3 => {
                        let k = match search_paths.iter().position(|p| p == searched) {
                            Some(k) => k,
                            None => {
                                search_paths.push(searched.clone());
                                search_paths.len() - 1
                            }
                        };
                        format!(
                            "→ not found (searched search path #{}, {} entries, listed below)",
                            k + 1,
                            searched.len()
                        )
                    }
                    r => resolution(r),
                };
                let _ = writeln!(o, "      NEEDED  {} {text}", n.name);
            }
            if verbose > 0 {
                for s in e.sections.iter().take(8) {
                    let _ = writeln!(o, "      {:>10}  {}", size(s.size), s.name);
                }
            }
        }
    }
    search_paths
}

/// `audit`: the debug-info summary line; returns the total `.debug_*` bytes.
fn debug_info(o: &mut String, w: &WheelAudit) -> u64 {
    let debug: Vec<_> = w.elf_objects.iter().filter(|e| e.debug_bytes > 0).collect();
    let debug_total: u64 = debug.iter().map(|e| e.debug_bytes).sum();
    if let Some(largest) = debug.iter().max_by_key(|e| e.debug_bytes) {
        let _ = writeln!(
            o,
            "\n  Debug info: {} of .debug_* sections in {} object{} (never loaded at run time); largest {} in {}",
            size(debug_total),
            debug.len(),
            if debug.len() == 1 { "" } else { "s" },
            size(largest.debug_bytes),
            largest.member
        );
    }
    debug_total
}

/// `audit`: the search paths referenced by number from the ELF objects.
fn search_path_list(o: &mut String, search_paths: &[Vec<String>]) {
    if !search_paths.is_empty() {
        let _ = writeln!(o, "\n  Search paths");
        for (k, p) in search_paths.iter().enumerate() {
            let _ = writeln!(o, "    #{}: {}", k + 1, p.join(", "));
        }
    }
}

/// `audit`: the vendor libraries and what split does with each.
fn vendor_libraries(o: &mut String, w: &WheelAudit) {
    if !w.vendor_libraries.is_empty() {
        let _ = writeln!(o, "\n  Vendor libraries");
        for v in &w.vendor_libraries {
            let mut line = format!(
                "    {:>10}  {}  {}/{}  {}",
                size(v.size),
                v.member,
                v.profile,
                v.library,
                v.action.as_str()
            );
            if let Some(p) = &v.upstream_package {
                let _ = write!(line, " → {p}");
            }
            if let Some(l) = &v.license {
                let _ = write!(line, "  [{l}]");
            }
            if let Some(why) = v.split.why_it_stays() {
                let _ = write!(line, "\n                stays: {why}");
            } else if let crate::plan::vendor::Fate::LeavesWith { library } = &v.split {
                let _ = write!(
                    line,
                    "\n                not linked; leaves with {library}, which loads it"
                );
            }
            let _ = writeln!(o, "{line}");
        }
    }
}

/// `audit`: vendor programs and static archives, with their licence notes.
fn licensed_files(o: &mut String, w: &WheelAudit, verbose: u8) {
    if !w.licensed_files.is_empty() {
        let _ = writeln!(
            o,
            "\n  Vendor programs and static archives (split leaves them in place)"
        );
        let shown = cap(w.licensed_files.len(), verbose);
        for f in &w.licensed_files[..shown] {
            let _ = writeln!(
                o,
                "    {:>10}  {}  {}/{}  {}  [{}]",
                size(f.size),
                f.member,
                f.profile,
                f.rule,
                f.kind.as_str(),
                f.license.as_deref().unwrap_or("licence not stated")
            );
        }
        more(o, w.licensed_files.len() - shown);
        let mut notes: Vec<&str> = w
            .licensed_files
            .iter()
            .filter_map(|f| f.license_note.as_deref())
            .collect();
        notes.sort_unstable();
        notes.dedup();
        for n in notes {
            let _ = writeln!(o, "    licence: {n}");
        }
    }
}

/// `audit`: groups of members with identical payloads.
fn duplicates(o: &mut String, w: &WheelAudit, verbose: u8) {
    if !w.duplicates.is_empty() {
        let _ = writeln!(o, "\n  Duplicate payloads");
        let shown = cap(w.duplicates.len(), verbose);
        for g in &w.duplicates[..shown] {
            let copies = if verbose == 0 && g.copies.len() > LIST_CAP {
                format!(
                    "{}  … and {} more (use -v)",
                    g.copies[..LIST_CAP].join("  "),
                    g.copies.len() - LIST_CAP
                )
            } else {
                g.copies.join("  ")
            };
            let _ = writeln!(o, "    {:>10}  ×{}  {copies}", size(g.size), g.copies.len());
        }
        more(o, w.duplicates.len() - shown);
    }
}

/// `audit`: vendor libraries whose licence is a `LicenseRef`.
fn licence_flags(o: &mut String, w: &WheelAudit) {
    let licences: Vec<_> = w
        .vendor_libraries
        .iter()
        .filter(|v| {
            v.license
                .as_deref()
                .is_some_and(|l| l.contains("LicenseRef"))
        })
        .collect();
    if !licences.is_empty() {
        let _ = writeln!(o, "\n  Licence flags");
        for v in licences {
            let _ = writeln!(
                o,
                "    {}: {}{}",
                v.member,
                v.license.as_deref().unwrap_or(""),
                v.license_note
                    .as_deref()
                    .map(|n| format!(" — {n}"))
                    .unwrap_or_default()
            );
        }
    }
}

/// `audit`: the failed checks.
fn violations(o: &mut String, w: &WheelAudit) {
    if !w.violations.is_empty() {
        let _ = writeln!(o, "\n  Checks failed");
        for v in &w.violations {
            let _ = writeln!(
                o,
                "    [{}]{} {}",
                v.rule,
                if v.pypi { " (PyPI)" } else { "" },
                v.message
            );
        }
    }
}

/// `audit`: for a wheel over the limit, what would make it fit.
fn to_fit(o: &mut String, w: &WheelAudit, max_size: u64, debug_total: u64) {
    if let Some(f) = &w.to_fit {
        let _ = writeln!(o, "\n  To fit under {}", size(max_size));
        let _ = writeln!(o, "    over by {}", size(f.over_by));
        let _ = writeln!(
            o,
            "    `wheelslim split` would move out {} of vendor libraries: {}",
            size(f.split_moves_out),
            if f.fits_after_split {
                "enough"
            } else {
                "not enough"
            }
        );
        for m in &f.too_big_alone {
            let _ = writeln!(
                o,
                "    split would refuse {}: {} compressed, {} more than a runtime wheel under the limit holds ({})",
                m.name,
                crate::checks::mib_text(m.compressed_size),
                crate::checks::mib_text(m.compressed_size.saturating_sub(f.runtime_room)),
                crate::checks::mib_text(f.runtime_room),
            );
        }
        for m in &f.also_remove {
            let _ = writeln!(
                o,
                "    would also have to leave: {} ({} compressed)",
                m.name,
                size(m.compressed_size)
            );
        }
        if debug_total > 0 {
            let _ = writeln!(
                o,
                "    debug sections take {} installed: `wheelslim trim --strip-debug` (or `split --strip-debug`) removes them, keeping every loaded byte; or build without -g",
                size(debug_total)
            );
        }
        if let Some(t) = f.trim_could_drop {
            let _ = writeln!(
                o,
                "    trimming device code to one architecture would drop about {} installed",
                size(t)
            );
        }
        if !f.fits_after_split {
            let _ = writeln!(
                o,
                "    {}without a trim, split fits only under a limit of {} MiB: ask the index for that (PyPI: a file size limit request) and pass --max-size {}MiB",
                if f.trim_could_drop.is_none() {
                    "no trim can help (no device code); "
                } else {
                    ""
                },
                f.limit_without_trim_mib,
                f.limit_without_trim_mib,
            );
        }
    }
}

/// `audit`: the diagnostics (notes only with `-v`).
fn problems(o: &mut String, w: &WheelAudit, verbose: u8) {
    let problems: Vec<_> = w
        .diagnostics
        .iter()
        .filter(|d| verbose > 0 || d.severity > Severity::Note)
        .collect();
    if !problems.is_empty() {
        let _ = writeln!(o, "\n  Problems");
        let shown = cap(problems.len(), verbose);
        let hidden = problems.len() - shown;
        for d in problems.into_iter().take(shown) {
            let label = match d.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
                Severity::Note => "note",
            };
            let _ = writeln!(o, "    {label}: {}: {}", d.location, d.message);
            if let Some(h) = &d.hint {
                let _ = writeln!(o, "      hint: {h}");
            }
        }
        more(o, hidden);
    }
}

/// `audit`: per library too big for its wheel (a runtime wheel's room, or what the main
/// wheel's other members leave), whether companions would make it fit.
fn companion_advice(o: &mut String, all: &[crate::plan::companions::CompanionAdvice]) {
    if all.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "\n  Device-code companions (libraries too big for their wheel)"
    );
    for a in all {
        let _ = writeln!(
            o,
            "    {}: {} compressed, room for {}: {}",
            a.member,
            size(a.compressed_size),
            size(a.room),
            a.sentence()
        );
    }
}

pub fn verify(r: &crate::verify::VerifyReport) -> String {
    let mut o = String::new();
    for w in &r.wheels {
        let errors = w.diagnostics.iter().any(|d| d.severity == Severity::Error);
        let status = if w.violations.is_empty() && !errors {
            "ok"
        } else {
            "FAILED"
        };
        let _ = writeln!(o, "{}: {status}", w.path);
        for v in &w.violations {
            let _ = writeln!(
                o,
                "  [{}]{} {}",
                v.rule,
                if v.pypi { " (PyPI)" } else { "" },
                v.message
            );
        }
        for v in &w.inherited {
            let _ = writeln!(
                o,
                "  inherited [{}]{} {} (the baseline input already had it)",
                v.rule,
                if v.pypi { " (PyPI)" } else { "" },
                v.message
            );
        }
        for d in w.diagnostics.iter().filter(|d| d.severity > Severity::Note) {
            let _ = writeln!(o, "  {}: {}", d.location, d.message);
            if let Some(h) = d.hint.as_ref().filter(|_| d.severity == Severity::Error) {
                let _ = writeln!(o, "    hint: {h}");
            }
        }
    }
    for c in &r.conflicts {
        let _ = writeln!(o, "conflict: {c} is installed by more than one wheel");
    }
    for u in &r.unresolved {
        let searched = if u.searched.is_empty() {
            "nothing: no RPATH/RUNPATH".to_string()
        } else {
            u.searched.join(", ")
        };
        let via = if u.loading == u.object {
            String::new()
        } else {
            format!("when loading {}; ", u.loading)
        };
        let _ = writeln!(
            o,
            "unresolved: {} needs {} ({via}searched {searched})",
            u.object, u.needed
        );
    }
    if !r.inherited_unresolved.is_empty() {
        let shown: Vec<String> = r
            .inherited_unresolved
            .iter()
            .take(LIST_CAP)
            .map(|u| format!("{} needs {}", u.object, u.needed))
            .collect();
        let _ = writeln!(
            o,
            "inherited: {} NEEDED already unresolved in the baseline input ({}{})",
            r.inherited_unresolved.len(),
            shown.join(", "),
            if r.inherited_unresolved.len() > LIST_CAP {
                ", …; --json lists them all"
            } else {
                ""
            }
        );
    }
    for n in &r.from_upstream {
        let _ = writeln!(
            o,
            "upstream: {} gets {} from {}",
            n.object, n.needed, n.from_package
        );
    }
    let _ = writeln!(
        o,
        "{} wheel(s), {} ELF object(s) checked: {}",
        r.wheels.len(),
        r.objects_checked,
        if r.ok && !r.has_errors() {
            "OK"
        } else {
            "PROBLEMS FOUND"
        }
    );
    o
}

pub fn split(r: &crate::split::SplitReport, verbose: u8) -> String {
    let mut o = String::new();
    if r.dry_run {
        let _ = writeln!(o, "Plan (dry run: nothing written)");
    }
    let ad_hoc = &r.plan.ad_hoc;
    if !ad_hoc.is_empty() {
        let list = |option: &str, globs: &[String]| {
            globs
                .iter()
                .map(|g| format!("{option} {g}"))
                .collect::<Vec<_>>()
        };
        let mut all = list("--move", &ad_hoc.moves);
        all.extend(list("--keep", &ad_hoc.keeps));
        let _ = writeln!(o, "ad hoc: {}", all.join(", "));
    }
    for m in &r.plan.mains {
        split_main(&mut o, m);
    }
    for s in &r.plan.runtime_sets {
        // Its libraries' device-code companions install beside them.
        let companions: Vec<&crate::split::PlacedCompanion> = r
            .companions
            .iter()
            .filter(|mv| !mv.own && mv.runtime_set == s.name)
            .flat_map(|mv| &mv.companions)
            .collect();
        // A dry run's hosts are at their size before the move: the moved containers count
        // there instead of in the companions (what a cut saves on page rounding aside).
        let total: u64 = s.libraries.iter().map(|l| l.size).sum::<u64>()
            + companions
                .iter()
                .filter(|_| !r.dry_run)
                .map(|c| c.installed_bytes)
                .sum::<u64>();
        let with = match companions.len() {
            0 => String::new(),
            1 => " and 1 device-code companion".to_string(),
            n => format!(" and {n} device-code companions"),
        };
        let _ = writeln!(
            o,
            "runtime {} {} [{}]: {} libraries{with}, {}{} installed, into {}",
            s.name,
            s.version,
            s.platforms.join("."),
            s.libraries.len(),
            if r.dry_run && !companions.is_empty() {
                "about "
            } else {
                ""
            },
            size(total),
            s.lib_dir()
        );
    }
    split_trimmed(&mut o, r, verbose);
    crate::split::render_companions(&mut o, &r.companions, &size, cap(usize::MAX, verbose));
    for e in &r.size_estimates {
        let parts = if e.kind == crate::output::OutputKind::Runtime && e.wheels > 1 {
            format!(", {} wheels", e.wheels)
        } else {
            String::new()
        };
        let _ = writeln!(
            o,
            "size {} ({}): about {} compressed after the trim/strip (estimated; {} before){parts}{}",
            e.output,
            e.kind,
            size(e.bytes),
            size(e.bytes_before),
            if e.fits { "" } else { ", over the limit" }
        );
    }
    for out in &r.outputs {
        let _ = writeln!(
            o,
            "wrote {} ({}, {} members, {})",
            out.path,
            out.kind,
            out.members,
            size(out.size)
        );
    }
    if verbose > 0 && !r.dry_run {
        // How the rewritten members were compressed: the input's blocks copied where the
        // bytes stayed, and members the inspect pass could not keep for the rewrite.
        let _ = writeln!(
            o,
            "reused {} of the inputs' compressed blocks in rewritten members; {} member{} inflated a second time",
            size(r.reused_bytes),
            r.members_read_twice,
            if r.members_read_twice == 1 { "" } else { "s" }
        );
    }
    split_verified(&mut o, r);
    o
}

/// `split`: one main wheel's plan: what moves, stays, is rewired and required.
fn split_main(o: &mut String, m: &crate::plan::MainPlan) {
    use crate::plan::{MemberAction, RemovedLibrary};
    let _ = writeln!(o, "{} → {}", m.input_path, m.file_name);
    for rem in &m.removed {
        match rem {
            RemovedLibrary::Runtime {
                member,
                set,
                file,
                dependency_of,
                moved_by,
            } => {
                let set = set.split('@').next().unwrap_or(set);
                let why = match (dependency_of, moved_by) {
                    (Some(d), _) => format!(" (needed by {d})"),
                    (None, Some(g)) => format!(" (--move {g})"),
                    (None, None) => String::new(),
                };
                let _ = writeln!(o, "  move     {member} → {set}: lib/{file}{why}");
            }
            RemovedLibrary::Upstream {
                member,
                package,
                folder,
                moved_by,
            } => {
                let by = moved_by
                    .as_ref()
                    .map(|g| format!(", --move {g}"))
                    .unwrap_or_default();
                let _ = writeln!(o, "  upstream {member} → {package} ({folder}{by})");
            }
            RemovedLibrary::Forbidden { member, rule } => {
                let _ = writeln!(o, "  remove   {member} ({rule}: provided by the machine)");
            }
        }
    }
    for k in &m.kept {
        let why = k.fate.why_it_stays().unwrap_or_default();
        let _ = writeln!(o, "  keep     {} ({}: {why})", k.member, k.rule);
    }
    for f in &m.licensed {
        let _ = writeln!(
            o,
            "  keep     {} ({}/{}: {}, licence {})",
            f.member,
            f.profile,
            f.rule,
            f.kind.as_str(),
            f.license.as_deref().unwrap_or("not stated")
        );
    }
    for a in &m.members {
        if let MemberAction::Edit { member, edit } = a {
            let _ = writeln!(o, "  rewire   {member}");
            for (old, new) in &edit.rename_needed {
                let _ = writeln!(o, "           NEEDED {old} → {new}");
            }
            if let Some(p) = &edit.search_path {
                let _ = writeln!(o, "           search path {}", p.join(":"));
            }
            for d in &edit.dropped_entries {
                let _ = writeln!(o, "           dropped {d}");
            }
        }
    }
    for req in m
        .runtime_sets
        .iter()
        .map(|s| s.split('@').next().unwrap_or(s))
        .chain(m.requirements.iter().map(String::as_str))
    {
        let _ = writeln!(o, "  requires {req}");
    }
}

/// `split`: the members trimmed on the way (the rest summed up without `-v`).
fn split_trimmed(o: &mut String, r: &crate::split::SplitReport, verbose: u8) {
    let shown = cap(r.trimmed.len(), verbose);
    let hidden = &r.trimmed[shown..];
    for t in &r.trimmed[..shown] {
        let _ = writeln!(
            o,
            "trimmed {}: {} → {} ({})",
            t.member,
            size(t.bytes_before),
            size(t.bytes_after),
            t.method
        );
        for l in &t.lost {
            let _ = writeln!(o, "  {}", loss_line(l, &[]));
        }
    }
    if !hidden.is_empty() {
        let sums = hidden_members(
            hidden
                .iter()
                .map(|t| (t.bytes_before, t.bytes_after, !t.lost.is_empty())),
        );
        let _ = writeln!(o, "trimmed {sums} (use -v)");
    }
}

/// `split`: the verdict of the check run on the written wheels.
fn split_verified(o: &mut String, r: &crate::split::SplitReport) {
    if let Some(v) = &r.verify {
        let links = if v.unresolved.is_empty() {
            "every NEEDED resolves".to_string()
        } else {
            format!(
                "{} NEEDED entr{} unresolved as in the inputs",
                v.unresolved.len(),
                if v.unresolved.len() == 1 {
                    "y stays"
                } else {
                    "ies stay"
                }
            )
        };
        let upstream = if v.from_upstream.is_empty() {
            String::new()
        } else {
            format!(" ({} from upstream wheels)", v.from_upstream.len())
        };
        let _ = writeln!(
            o,
            "verified: {} wheel(s), {} ELF object(s), {links}{upstream}",
            v.wheels.len(),
            v.objects_checked,
        );
        for u in &v.unresolved {
            let _ = writeln!(
                o,
                "  unresolved before and after: {} needs {}",
                u.object, u.needed
            );
        }
    }
}

/// One line for GPUs a trim leaves with nothing to run.
fn loss_line(l: &crate::trim::Loss, targets: &[String]) -> String {
    let had = l.had.join(", ");
    let n = l.containers;
    match l.gpus.as_str() {
        "all" => format!("warning: no device code left for any GPU (held {had}; --unmatched drop)"),
        "newer" => format!(
            "warning: GPUs newer than {} can no longer JIT {n} container(s): their only plain PTX ({had}) was dropped (--ptx none; the default --ptx newest keeps it)",
            if targets.is_empty() {
                "the targets".to_string()
            } else {
                targets.join(", ")
            }
        ),
        t => format!("warning: {t} lost its last usable image in {n} container(s) (held {had})"),
    }
}

pub fn trim(r: &crate::trim::TrimReport, verbose: u8) -> String {
    let mut o = String::new();
    let mut targets = r.sm.clone();
    targets.extend(r.gfx.iter().cloned());
    let _ = writeln!(
        o,
        "{} to {}",
        if r.dry_run {
            "Would trim (dry run)"
        } else {
            "Trimmed"
        },
        if targets.is_empty() {
            "no device targets (only --strip-debug)".to_string()
        } else {
            targets.join(", ")
        }
    );
    for w in &r.wheels {
        let _ = writeln!(o, "{}", w.input);
        if w.members.is_empty() && w.loose_groups_unmatched == 0 {
            let _ = writeln!(o, "  no device code to trim");
        } else if w.members.is_empty() {
            let _ = writeln!(o, "  nothing trimmed");
        }
        let shown = cap(w.members.len(), verbose);
        for m in &w.members[..shown] {
            let _ = writeln!(
                o,
                "  {}: {} → {} ({}){}",
                m.member,
                size(m.bytes_before),
                size(m.bytes_after),
                m.method,
                if m.zip_after > 0 {
                    format!(
                        ", in the wheel {} → {}",
                        size(m.zip_before),
                        size(m.zip_after)
                    )
                } else {
                    String::new()
                }
            );
            if let Some(reason) = &m.reason {
                let _ = writeln!(o, "    why: {reason}");
            }
            for a in &m.archs {
                let _ = writeln!(
                    o,
                    "    {:<12} kept {:>3} ({:>10})  dropped {:>3} ({:>10})",
                    a.arch,
                    a.kept,
                    size(a.kept_bytes),
                    a.dropped,
                    size(a.dropped_bytes)
                );
            }
            if m.unmatched_containers > 0 {
                let _ = writeln!(
                    o,
                    "    {} container(s) held nothing for these targets and were kept whole (--unmatched drop to drop them)",
                    m.unmatched_containers
                );
            }
            for n in &m.notes {
                let _ = writeln!(o, "    note: {n}");
            }
            if let Some(g) = &m.group {
                let _ = writeln!(o, "    group: {g}");
            }
            for l in &m.lost {
                let _ = writeln!(o, "    {}", loss_line(l, &targets));
            }
        }
        let hidden = &w.members[shown..];
        if !hidden.is_empty() {
            let sums = hidden_members(
                hidden
                    .iter()
                    .map(|m| (m.bytes_before, m.bytes_after, !m.lost.is_empty())),
            );
            let _ = writeln!(o, "  … and {sums} (use -v)");
        }
        if w.loose_groups_unmatched > 0 {
            let _ = writeln!(
                o,
                "  {} of {} group(s) of loose device files held nothing for these targets and were kept whole (--unmatched drop to drop them)",
                w.loose_groups_unmatched, w.loose_groups
            );
        }
        if let Some(out) = &w.output {
            let _ = writeln!(
                o,
                "  wrote {out}: {} → {} ({} → {} installed)",
                size(w.size_before),
                size(w.size_after),
                size(w.installed_before),
                size(w.installed_after)
            );
        }
    }
    o
}

/// How many entries of a list the summary shows before "… and N more".
const LIST_CAP: usize = 20;

/// The number of entries to show of `n`: all under `-v`, else at most [`LIST_CAP`].
fn cap(n: usize, verbose: u8) -> usize {
    if verbose > 0 { n } else { n.min(LIST_CAP) }
}

/// "N more members: A → B[, K of them lose …]" for the trimmed members a short report leaves
/// out, from each one's (bytes before, bytes after, loses an image).
fn hidden_members(items: impl Iterator<Item = (u64, u64, bool)>) -> String {
    let (mut n, mut before, mut after, mut losing) = (0usize, 0u64, 0u64, 0usize);
    for (b, a, lost) in items {
        n += 1;
        before += b;
        after += a;
        losing += usize::from(lost);
    }
    let losing = if losing > 0 {
        format!(", {losing} of them lose their last usable image for a target")
    } else {
        String::new()
    };
    format!(
        "{n} more members: {} → {}{losing}",
        size(before),
        size(after)
    )
}

fn more(o: &mut String, hidden: usize) {
    if hidden > 0 {
        let _ = writeln!(o, "    … and {hidden} more (use -v)");
    }
}

fn folder_of(member: &str) -> &str {
    member.rsplit_once('/').map_or("", |(f, _)| f)
}

/// Device code per member. Without `-v`, loose device files (a `.cubin`, `.ptx`, `.hsaco`
/// member on its own) are summed per folder and kind: a wheel of thousands of loose cubins
/// gives a few lines, not four per file. Containers inside libraries are listed one by one,
/// at most [`LIST_CAP`] of them.
fn device_code(o: &mut String, all: &[crate::device::DeviceReport], verbose: u8) {
    use crate::device::DeviceReport;
    if verbose > 0 {
        for d in all {
            crate::device::render(o, d);
        }
        return;
    }
    let loose = |d: &DeviceReport| d.sections.is_empty() || d.sections == ["(file)"];
    let libraries: Vec<&DeviceReport> = all.iter().filter(|d| !loose(d)).collect();
    let shown = cap(libraries.len(), verbose);
    for d in &libraries[..shown] {
        crate::device::render(o, d);
    }
    more(o, libraries.len() - shown);
    // (folder, kind) → the files, and their rows and trim estimates summed.
    let mut groups: BTreeMap<(&str, &str), (Vec<&DeviceReport>, DeviceReport)> = BTreeMap::new();
    for d in all.iter().filter(|d| loose(d)) {
        let folder = folder_of(&d.member);
        let g = groups.entry((folder, d.kind.as_str())).or_insert_with(|| {
            (
                Vec::new(),
                DeviceReport {
                    member: String::new(),
                    kind: d.kind.clone(),
                    sections: Vec::new(),
                    containers: 0,
                    stored_bytes: 0,
                    rows: Vec::new(),
                    trims: Vec::new(),
                },
            )
        });
        g.0.push(d);
        g.1.stored_bytes += d.stored_bytes;
        for r in &d.rows {
            match g
                .1
                .rows
                .iter_mut()
                .find(|x| x.arch == r.arch && x.code == r.code)
            {
                Some(x) => {
                    x.entries += r.entries;
                    x.stored_bytes += r.stored_bytes;
                    x.uncompressed_bytes += r.uncompressed_bytes;
                }
                None => g.1.rows.push(r.clone()),
            }
        }
        for t in &d.trims {
            match g.1.trims.iter_mut().find(|x| x.target == t.target) {
                Some(x) => x.kept_bytes += t.kept_bytes,
                None => g.1.trims.push(t.clone()),
            }
        }
    }
    let n = groups.len();
    for ((folder, _), (files, mut d)) in groups.into_iter().take(LIST_CAP) {
        if let [one] = files.as_slice() {
            // One file: its own name says more than its folder.
            crate::device::render(o, one);
            continue;
        }
        d.rows.sort_by_key(crate::device::row_order);
        let shown_folder = if folder.is_empty() { "." } else { folder };
        d.member = format!("{shown_folder}/ ({} loose files)", files.len());
        crate::device::render(o, &d);
    }
    more(o, n.saturating_sub(LIST_CAP));
}
