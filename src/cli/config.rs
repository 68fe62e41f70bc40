//! Options from `[tool.wheelslim]` in the project's `pyproject.toml`.
//!
//! The file is looked for in the current folder, then in each folder above it, up to the
//! project's root: the first `pyproject.toml` with a `[tool.wheelslim]` table is used (one
//! without is passed over, as ruff and mypy do), and the search stops after a folder that holds
//! `.git` or `.hg`, or at the filesystem root.
//!
//! Keys are long option names (`max-size`, `profile`, `sm`, `upstream`, `runtime-dir`...); a
//! `[tool.wheelslim.<command>]` table applies to one command only and wins over the general
//! table. They become command-line arguments placed before the user's own, and only for options
//! the user did not give (in either form, `--unhash` or `--no-unhash`): the command line always
//! wins. Every key and value is checked, whichever command runs: a key no command has, a key in
//! a command's table that is another command's option, or a value of the wrong type is an error
//! that names the file and the key.
//!
//! ```toml
//! [tool.wheelslim]
//! profile = ["cuda12", "cudnn"]
//! max-size = "100MiB"
//!
//! [tool.wheelslim.split]
//! unhash = true
//! runtime-dir = "runtime-wheels"
//! sm = "80,90"
//! ```

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory};

use super::Cli;

/// The `pyproject.toml` whose `[tool.wheelslim]` table was used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Used {
    /// As messages show it: relative to the current folder (`pyproject.toml`, `../pyproject.toml`).
    pub shown: PathBuf,
    pub absolute: PathBuf,
    /// The arguments it added, in order.
    pub added: Vec<String>,
}

/// What the search for a configuration found, for `-v`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Used(Used),
    /// No `pyproject.toml` with `[tool.wheelslim]` from `from` up to `to`.
    NoneFound {
        from: PathBuf,
        to: PathBuf,
    },
    /// The command line does not parse (or asks for help): clap says why; nothing was read.
    NotSearched,
}

impl Lookup {
    /// The line `-v` prints.
    pub fn describe(&self) -> Option<String> {
        match self {
            Lookup::Used(u) => Some(format!(
                "configuration: [tool.wheelslim] of {} ({}){}",
                u.shown.display(),
                u.absolute.display(),
                if u.added.is_empty() {
                    ": nothing to add to this command line".to_string()
                } else {
                    format!(" adds {}", u.added.join(" "))
                }
            )),
            Lookup::NoneFound { from, to } => Some(if from == to {
                format!(
                    "configuration: none (no pyproject.toml with [tool.wheelslim] in {})",
                    from.display()
                )
            } else {
                format!(
                    "configuration: none (no pyproject.toml with [tool.wheelslim] from {} up to {})",
                    from.display(),
                    to.display()
                )
            }),
            Lookup::NotSearched => None,
        }
    }
}

/// A `[tool.wheelslim]` table and the file it came from.
struct Found {
    shown: PathBuf,
    absolute: PathBuf,
    table: toml::Table,
}

/// Looks for the configuration from `cwd` upward (see the module's documentation). `Err(last)`
/// names the last folder searched when there is none.
fn find(cwd: &Path) -> Result<Result<Found, PathBuf>> {
    let mut dir = cwd.to_path_buf();
    let mut up = PathBuf::new();
    loop {
        let file = dir.join("pyproject.toml");
        let shown = up.join("pyproject.toml");
        if std::fs::symlink_metadata(&file).is_ok() {
            let text = crate::input::read_text(&file)
                .map_err(|e| anyhow!("cannot read `{}`: {e}", shown.display()))?;
            let doc: toml::Table = toml::from_str(&text).map_err(|e| {
                anyhow!(
                    "cannot parse `{}`: {}",
                    shown.display(),
                    e.to_string().trim()
                )
            })?;
            if let Some(t) = doc.get("tool").and_then(|t| t.get("wheelslim")) {
                let Some(table) = t.as_table() else {
                    bail!(
                        "{}: `tool.wheelslim` must be a table ([tool.wheelslim]), not {}",
                        shown.display(),
                        describe(t)
                    );
                };
                return Ok(Ok(Found {
                    shown,
                    absolute: file,
                    table: table.clone(),
                }));
            }
        }
        let root = [".git", ".hg"]
            .iter()
            .any(|m| std::fs::symlink_metadata(dir.join(m)).is_ok());
        match dir.parent() {
            Some(parent) if !root => {
                dir = parent.to_path_buf();
                up.push("..");
            }
            _ => return Ok(Err(dir)),
        }
    }
}

/// The arguments with the configuration's options added (see the module's documentation), and
/// what was found. `cwd` is where the search starts.
pub fn with_config(args: Vec<OsString>, cwd: &Path) -> Result<(Vec<OsString>, Lookup)> {
    let mut cmd = Cli::command();
    cmd.build();
    let Ok(matches) = cmd.clone().try_get_matches_from(&args) else {
        return Ok((args, Lookup::NotSearched));
    };
    let found = match find(cwd)? {
        Ok(f) => f,
        Err(last) => {
            let lookup = Lookup::NoneFound {
                from: cwd.to_path_buf(),
                to: last,
            };
            return Ok((args, lookup));
        }
    };
    let options = check(&found, &cmd)?;
    let Some((sub_name, sub_matches)) = matches.subcommand() else {
        return Ok((args, used(&found, Vec::new())));
    };
    let Some(sub) = cmd.find_subcommand(sub_name) else {
        return Ok((args, used(&found, Vec::new())));
    };
    // General keys first, then the command's own table (which wins).
    let mut chosen: Vec<&Setting> = Vec::new();
    for s in options
        .iter()
        .filter(|s| s.command.is_none() || s.command.as_deref() == Some(sub_name))
    {
        chosen.retain(|c| c.key != s.key);
        chosen.push(s);
    }
    let mut extra: Vec<String> = Vec::new();
    for s in chosen {
        let Some(arg) = long_arg(sub, &s.key) else {
            continue; // an option of other commands only
        };
        if given(sub, sub_matches, arg) {
            continue;
        }
        extra.extend(arguments(&found, &s.place(), sub, arg, &s.key, &s.value)?);
    }
    if extra.is_empty() {
        return Ok((args, used(&found, extra)));
    }
    // Insert right after the subcommand's name.
    let pos = args
        .iter()
        .position(|a| a.to_str() == Some(sub_name))
        .map_or(args.len(), |p| p + 1);
    let mut out = args;
    out.splice(pos..pos, extra.iter().map(OsString::from));
    Ok((out, used(&found, extra)))
}

fn used(found: &Found, added: Vec<String>) -> Lookup {
    Lookup::Used(Used {
        shown: found.shown.clone(),
        absolute: found.absolute.clone(),
        added,
    })
}

/// One key of the configuration, with the command whose table it is in.
struct Setting {
    command: Option<String>,
    key: String,
    value: toml::Value,
}

impl Setting {
    /// `[tool.wheelslim]` or `[tool.wheelslim.split]`.
    fn place(&self) -> String {
        match &self.command {
            None => "[tool.wheelslim]".into(),
            Some(c) => format!("[tool.wheelslim.{c}]"),
        }
    }
}

/// The commands a configuration may have a table for.
fn commands(cmd: &Command) -> impl Iterator<Item = &Command> {
    cmd.get_subcommands().filter(|s| s.get_name() != "help")
}

fn long_arg<'c>(cmd: &'c Command, key: &str) -> Option<&'c Arg> {
    cmd.get_arguments().find(|a| a.get_long() == Some(key))
}

/// Checks every key and value of the configuration against the commands, whichever command
/// runs, and returns them in order (general table first).
fn check(found: &Found, cmd: &Command) -> Result<Vec<Setting>> {
    let file = found.shown.display();
    let mut general = Vec::new();
    let mut own = Vec::new();
    for (k, v) in &found.table {
        if let Some(t) = v.as_table() {
            let Some(sub) = commands(cmd).find(|s| s.get_name() == k) else {
                let names: Vec<&str> = commands(cmd).map(Command::get_name).collect();
                bail!(
                    "{file}: [tool.wheelslim.{k}]: there is no `{k}` command (there are {})",
                    names.join(", ")
                );
            };
            for (key, value) in t {
                let s = Setting {
                    command: Some(k.clone()),
                    key: key.clone(),
                    value: value.clone(),
                };
                let Some(arg) = long_arg(sub, key) else {
                    let others: Vec<&str> = commands(cmd)
                        .filter(|c| long_arg(c, key).is_some())
                        .map(Command::get_name)
                        .collect();
                    if value.is_table() {
                        bail!(
                            "{file}: [tool.wheelslim.{k}.{key}]: `{k}` has no sub-tables; keys are its long options"
                        );
                    }
                    if others.is_empty() {
                        bail!(
                            "{file}: `{key}` in {} is not an option of `wheelslim {k}` (see `wheelslim {k} --help`; keys are long option names without `--`)",
                            s.place()
                        );
                    }
                    bail!(
                        "{file}: `{key}` in {} is not an option of `wheelslim {k}` but of `{}`: move it to [tool.wheelslim.{}]",
                        s.place(),
                        others.join("`, `"),
                        others[0]
                    );
                };
                arguments(found, &s.place(), sub, arg, key, value)?;
                own.push(s);
            }
            continue;
        }
        let s = Setting {
            command: None,
            key: k.clone(),
            value: v.clone(),
        };
        let mut any = false;
        for sub in commands(cmd) {
            if let Some(arg) = long_arg(sub, k) {
                arguments(found, &s.place(), sub, arg, k, v)?;
                any = true;
            }
        }
        if !any {
            bail!(
                "{file}: `{k}` in [tool.wheelslim] is not an option of any wheelslim command (keys are long option names without `--`, such as `max-size`)"
            );
        }
        general.push(s);
    }
    general.extend(own);
    Ok(general)
}

/// True when the user gave `arg`, or the flag that undoes it, on the command line.
fn given(sub: &Command, m: &ArgMatches, arg: &Arg) -> bool {
    let from_cli = |id: &str| m.value_source(id) == Some(ValueSource::CommandLine);
    if from_cli(arg.get_id().as_str()) {
        return true;
    }
    arg.get_long()
        .map(super::args::negation)
        .and_then(|n| long_arg(sub, &n))
        .is_some_and(|neg| from_cli(neg.get_id().as_str()))
}

/// The value in words, for messages.
fn describe(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("the string {s:?}"),
        toml::Value::Integer(i) => format!("the number {i}"),
        toml::Value::Float(f) => format!("the number {f}"),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => format!("the date {d}"),
        toml::Value::Array(_) => "a list".into(),
        toml::Value::Table(_) => "a table".into(),
    }
}

/// The command-line arguments one key stands for in `sub`, or an error naming the file and the
/// key when the value does not fit the option.
fn arguments(
    found: &Found,
    place: &str,
    sub: &Command,
    arg: &Arg,
    key: &str,
    value: &toml::Value,
) -> Result<Vec<String>> {
    let bad = |what: String| anyhow!("{}: `{key}` in {place}{what}", found.shown.display());
    match arg.get_action() {
        ArgAction::SetTrue => match value {
            toml::Value::Boolean(true) => Ok(vec![format!("--{key}")]),
            toml::Value::Boolean(false) => {
                let neg = super::args::negation(key);
                Ok(long_arg(sub, &neg)
                    .map(|_| format!("--{neg}"))
                    .into_iter()
                    .collect())
            }
            other => Err(bad(format!(
                " must be true or false, not {}",
                describe(other)
            ))),
        },
        ArgAction::Count => {
            let n = match value {
                toml::Value::Boolean(b) => u8::from(*b),
                toml::Value::Integer(i) if (0..=255).contains(i) => *i as u8,
                other => {
                    return Err(bad(format!(
                        " must be how many times (0 to 255) or true or false, not {}",
                        describe(other)
                    )));
                }
            };
            Ok(vec![format!("--{key}"); usize::from(n)])
        }
        ArgAction::Set | ArgAction::Append => {
            let many = matches!(arg.get_action(), ArgAction::Append);
            let values: Vec<&toml::Value> = match value {
                toml::Value::Array(a) if many => a.iter().collect(),
                toml::Value::Array(_) => {
                    return Err(bad(" takes one value, not a list".into()));
                }
                v => vec![v],
            };
            let example = arg
                .get_value_names()
                .and_then(|n| n.first())
                .map_or("VALUE".to_string(), |n| n.to_string());
            let mut out = Vec::new();
            for v in values {
                let text = match v {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    other => {
                        return Err(bad(format!(
                            " takes a {example} (a string or a number){}, not {}",
                            if many { " or a list of them" } else { "" },
                            describe(other)
                        )));
                    }
                };
                out.push(format!("--{key}={text}"));
            }
            // The option's own parser judges the values, alone in a command of its own, so the
            // error is about this key and not the rest of the command line.
            let alone = Command::new("wheelslim")
                .no_binary_name(true)
                .disable_help_flag(true)
                .disable_version_flag(true)
                .arg(arg.clone().required(false).global(false));
            if let Err(e) = alone.try_get_matches_from(&out) {
                return Err(bad(format!(": {}", clap_reason(&e))));
            }
            Ok(out)
        }
        _ => Err(bad(" cannot be set in pyproject.toml".into())),
    }
}

/// What clap says is wrong with a value, without its framing, and with the value.
fn clap_reason(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    if let Some(src) = std::error::Error::source(e) {
        let reason = src.to_string();
        return match e.get(ContextKind::InvalidValue) {
            Some(ContextValue::String(v)) if !reason.contains(v.as_str()) => {
                format!("{v:?}: {reason}")
            }
            _ => reason,
        };
    }
    if let Some(ContextValue::Strings(valid)) = e.get(ContextKind::ValidValue) {
        return format!("it must be one of {}", valid.join(", "));
    }
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("");
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_in(dir: &Path, args: &[&str]) -> Result<(Vec<String>, Lookup)> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let (args, lookup) = with_config(args, dir)?;
        Ok((
            args.into_iter().map(|a| a.into_string().unwrap()).collect(),
            lookup,
        ))
    }

    fn run(pyproject: &str, args: &[&str]) -> Result<Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join("pyproject.toml"), pyproject).unwrap();
        run_in(dir.path(), args).map(|(a, _)| a)
    }

    fn err(pyproject: &str, args: &[&str]) -> String {
        format!("{:#}", run(pyproject, args).unwrap_err())
    }

    #[test]
    fn config_fills_in_what_the_command_line_leaves_out() {
        let py = "[project]\nname='x'\n[tool.wheelslim]\nmax-size = \"50MiB\"\nprofile = [\"cuda12\", \"cudnn\"]\nsm = \"80\"\n[tool.wheelslim.split]\nunhash = true\nsm = \"90\"\n";
        let got = run(py, &["wheelslim", "split", "a.whl", "--max-size", "1GiB"]).unwrap();
        assert_eq!(
            got,
            [
                "wheelslim",
                "split",
                "--profile=cuda12",
                "--profile=cudnn",
                "--sm=90",
                "--unhash",
                "a.whl",
                "--max-size",
                "1GiB"
            ]
        );
        // General keys of other commands are passed over; audit has no --sm.
        let got = run(py, &["wheelslim", "audit", "a.whl"]).unwrap();
        assert_eq!(
            got,
            [
                "wheelslim",
                "audit",
                "--max-size=50MiB",
                "--profile=cuda12",
                "--profile=cudnn",
                "a.whl"
            ]
        );
    }

    #[test]
    fn the_no_form_on_the_command_line_wins_and_false_writes_it() {
        let py = "[tool.wheelslim]\nupstream = true\n[tool.wheelslim.split]\nunhash = false\n";
        let got = run(py, &["wheelslim", "split", "a.whl", "--no-upstream"]).unwrap();
        assert_eq!(
            got,
            [
                "wheelslim",
                "split",
                "--no-unhash",
                "a.whl",
                "--no-upstream"
            ]
        );
        let got = run(py, &["wheelslim", "split", "a.whl"]).unwrap();
        assert_eq!(
            got,
            ["wheelslim", "split", "--upstream", "--no-unhash", "a.whl"]
        );
    }

    #[test]
    fn typos_are_errors_and_missing_tables_change_nothing() {
        let e = err(
            "[tool.wheelslim]\nmax-sise = 1\n",
            &["wheelslim", "audit", "a.whl"],
        );
        assert!(
            e.starts_with("pyproject.toml: `max-sise` in [tool.wheelslim] is not an option"),
            "{e}"
        );
        let e = err(
            "[tool.wheelslim.spilt]\nunhash = true\n",
            &["wheelslim", "audit", "a.whl"],
        );
        assert!(e.contains("there is no `spilt` command"), "{e}");
        assert_eq!(
            run("[project]\nname='x'\n", &["wheelslim", "audit", "a.whl"]).unwrap(),
            ["wheelslim", "audit", "a.whl"]
        );
    }

    #[test]
    fn keys_of_another_command_are_errors_whichever_command_runs() {
        for cmd in ["split", "audit"] {
            let e = err(
                "[tool.wheelslim.split]\nlargest = 5\n",
                &["wheelslim", cmd, "a.whl"],
            );
            assert_eq!(
                e,
                "pyproject.toml: `largest` in [tool.wheelslim.split] is not an option of `wheelslim split` but of `audit`: move it to [tool.wheelslim.audit]"
            );
        }
        let e = err(
            "[tool.wheelslim.audit]\nbogus = 1\n",
            &["wheelslim", "audit", "a.whl"],
        );
        assert!(
            e.starts_with(
                "pyproject.toml: `bogus` in [tool.wheelslim.audit] is not an option of `wheelslim audit`"
            ),
            "{e}"
        );
    }

    #[test]
    fn type_errors_name_the_file_and_the_key() {
        let cases = [
            (
                "[tool.wheelslim.split]\nunhash = \"yes\"\n",
                "pyproject.toml: `unhash` in [tool.wheelslim.split] must be true or false, not the string \"yes\"",
            ),
            (
                "[tool.wheelslim]\nmax-size = \"5 parsecs\"\n",
                "pyproject.toml: `max-size` in [tool.wheelslim]: unknown size unit \"parsecs\" in \"5 parsecs\"",
            ),
            (
                "[tool.wheelslim]\nmax-size = true\n",
                "pyproject.toml: `max-size` in [tool.wheelslim] takes a SIZE (a string or a number), not true",
            ),
            (
                "[tool.wheelslim.trim]\nsm = [\"80\", \"90\"]\n",
                "pyproject.toml: `sm` in [tool.wheelslim.trim] takes one value, not a list",
            ),
            (
                "[tool.wheelslim.trim]\nptx = \"some\"\n",
                "pyproject.toml: `ptx` in [tool.wheelslim.trim]: `some` is not a PTX policy (newest, all, none)",
            ),
            (
                "[tool.wheelslim]\njobs = -1\n",
                "pyproject.toml: `jobs` in [tool.wheelslim]: \"-1\": invalid digit found in string",
            ),
            (
                "[tool.wheelslim]\nprofile = [\"cuda12\", 3.5, {a = 1}]\n",
                "pyproject.toml: `profile` in [tool.wheelslim] takes a NAME|PATH (a string or a number) or a list of them, not a table",
            ),
            (
                "[tool.wheelslim]\nverbose = 300\n",
                "pyproject.toml: `verbose` in [tool.wheelslim] must be how many times (0 to 255) or true or false, not the number 300",
            ),
        ];
        for (py, says) in cases {
            assert_eq!(err(py, &["wheelslim", "audit", "a.whl"]), says, "{py}");
        }
    }

    #[test]
    fn the_file_is_found_upward_and_the_search_stops_at_the_project_root() {
        let root = tempfile::tempdir().unwrap();
        let project = root.path().join("project");
        let deep = project.join("src/pkg");
        std::fs::create_dir_all(&deep).unwrap();
        // Above the project's root: never read.
        std::fs::write(
            root.path().join("pyproject.toml"),
            "[tool.wheelslim]\nmax-size = \"1KiB\"\n",
        )
        .unwrap();
        std::fs::create_dir(project.join(".git")).unwrap();
        let (args, lookup) = run_in(&deep, &["wheelslim", "audit", "a.whl"]).unwrap();
        assert_eq!(args, ["wheelslim", "audit", "a.whl"]);
        assert_eq!(
            lookup,
            Lookup::NoneFound {
                from: deep.clone(),
                to: project.clone()
            }
        );
        // The project's own file, two folders up; one without [tool.wheelslim] in between is
        // passed over.
        std::fs::write(
            project.join("pyproject.toml"),
            "[tool.wheelslim.audit]\nmax-size = \"2KiB\"\n",
        )
        .unwrap();
        std::fs::write(
            project.join("src/pyproject.toml"),
            "[project]\nname = 'x'\n",
        )
        .unwrap();
        let (args, lookup) = run_in(&deep, &["wheelslim", "audit", "a.whl"]).unwrap();
        assert_eq!(args, ["wheelslim", "audit", "--max-size=2KiB", "a.whl"]);
        let Lookup::Used(used) = &lookup else {
            panic!("{lookup:?}")
        };
        assert_eq!(used.shown, Path::new("../../pyproject.toml"));
        assert_eq!(used.absolute, project.join("pyproject.toml"));
        let said = lookup.describe().unwrap();
        assert!(said.contains("../../pyproject.toml"), "{said}");
        assert!(said.contains("--max-size=2KiB"), "{said}");
        // Errors name the file as found.
        std::fs::write(
            project.join("pyproject.toml"),
            "[tool.wheelslim.audit]\nmax-size = []\n",
        )
        .unwrap();
        let e = run_in(&deep, &["wheelslim", "audit", "a.whl"]).unwrap_err();
        assert!(
            format!("{e:#}")
                .starts_with("../../pyproject.toml: `max-size` in [tool.wheelslim.audit]"),
            "{e:#}"
        );
    }

    #[test]
    fn help_and_bad_command_lines_read_nothing() {
        let e = run(
            "[tool.wheelslim]\nbogus = 1\n",
            &["wheelslim", "audit", "--help"],
        )
        .unwrap();
        assert_eq!(e, ["wheelslim", "audit", "--help"]);
    }

    #[test]
    fn companions_false_writes_the_no_form() {
        let py = "[tool.wheelslim.split]\ncompanions = false\n";
        assert_eq!(
            run(py, &["wheelslim", "split", "a.whl"]).unwrap(),
            ["wheelslim", "split", "--no-companions", "a.whl"]
        );
        let py = "[tool.wheelslim.split]\ncompanions = true\n";
        assert_eq!(
            run(py, &["wheelslim", "split", "a.whl"]).unwrap(),
            ["wheelslim", "split", "--companions", "a.whl"]
        );
    }

    #[test]
    fn preload_hook_comes_from_the_split_table() {
        let py = "[tool.wheelslim.split]\npreload-hook = true\n";
        assert_eq!(
            run(py, &["wheelslim", "split", "a.whl"]).unwrap(),
            ["wheelslim", "split", "--preload-hook", "a.whl"]
        );
    }
}
