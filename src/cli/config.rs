//! Options from `[tool.wheelslim]` in `./pyproject.toml`.
//!
//! Keys are long option names (`max-size`, `profile`, `sm`, `upstream`, `runtime-dir`...); a
//! `[tool.wheelslim.<command>]` table applies to one command only and wins over the general
//! table. They become command-line arguments placed before the user's own, and only for options
//! the user did not give: the command line always wins.
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
use std::path::Path;

use anyhow::{Context, Result, bail};
use clap::CommandFactory;
use clap::parser::ValueSource;

use super::Cli;

/// The arguments with the configuration's options added, or the arguments as they were when
/// there is no `[tool.wheelslim]` table (or the command line does not parse: clap will say why).
pub fn with_config(args: Vec<OsString>, pyproject: &Path) -> Result<Vec<OsString>> {
    let text = match crate::input::read_text(pyproject) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(args),
        Err(e) => bail!("cannot read `{}`: {e}", pyproject.display()),
    };
    let doc: toml::Table =
        toml::from_str(&text).with_context(|| format!("cannot parse `{}`", pyproject.display()))?;
    let Some(table) = doc
        .get("tool")
        .and_then(|t| t.get("wheelslim"))
        .and_then(|t| t.as_table())
    else {
        return Ok(args);
    };
    let mut cmd = Cli::command();
    cmd.build();
    let Ok(matches) = cmd.clone().try_get_matches_from(&args) else {
        return Ok(args);
    };
    let Some((sub_name, sub_matches)) = matches.subcommand() else {
        return Ok(args);
    };
    let sub_name = sub_name.to_string();
    let Some(sub) = cmd.find_subcommand(&sub_name) else {
        return Ok(args);
    };
    let known = |key: &str| {
        cmd.get_subcommands()
            .flat_map(|s| s.get_arguments())
            .any(|a| a.get_long() == Some(key))
    };
    // General keys first, then the command's own table (which wins).
    let mut options: Vec<(String, toml::Value)> = Vec::new();
    for (k, v) in table {
        if v.is_table() {
            if cmd.find_subcommand(k).is_none() {
                bail!(
                    "`[tool.wheelslim.{k}]` in {}: there is no `{k}` command",
                    pyproject.display()
                );
            }
            continue;
        }
        options.push((k.clone(), v.clone()));
    }
    if let Some(own) = table.get(&sub_name).and_then(|t| t.as_table()) {
        for (k, v) in own {
            options.retain(|(o, _)| o != k);
            options.push((k.clone(), v.clone()));
        }
    }
    let mut extra: Vec<OsString> = Vec::new();
    for (key, value) in options {
        if !known(&key) {
            bail!(
                "`{key}` in [tool.wheelslim] of {} is not an option of any wheelslim command",
                pyproject.display()
            );
        }
        let Some(arg) = sub
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()))
        else {
            continue; // an option of another command
        };
        if sub_matches.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine) {
            continue;
        }
        let values: Vec<toml::Value> = match value {
            toml::Value::Array(a) => a,
            v => vec![v],
        };
        for v in values {
            match v {
                toml::Value::Boolean(true) => extra.push(format!("--{key}").into()),
                toml::Value::Boolean(false) => {}
                toml::Value::String(s) => extra.push(format!("--{key}={s}").into()),
                toml::Value::Integer(i) => extra.push(format!("--{key}={i}").into()),
                toml::Value::Float(f) => extra.push(format!("--{key}={f}").into()),
                other => bail!(
                    "`{key}` in [tool.wheelslim] of {}: unsupported value {other}",
                    pyproject.display()
                ),
            }
        }
    }
    if extra.is_empty() {
        return Ok(args);
    }
    // Insert right after the subcommand's name.
    let pos = args
        .iter()
        .position(|a| a.to_str() == Some(sub_name.as_str()))
        .map_or(args.len(), |p| p + 1);
    let mut out = args;
    out.splice(pos..pos, extra);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pyproject: &str, args: &[&str]) -> Result<Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pyproject.toml");
        std::fs::write(&path, pyproject).unwrap();
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        Ok(with_config(args, &path)?
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect())
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
        // Options of other commands are ignored; audit has no --sm.
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
    fn typos_are_errors_and_missing_tables_change_nothing() {
        assert!(
            run(
                "[tool.wheelslim]\nmax-sise = 1\n",
                &["wheelslim", "audit", "a.whl"]
            )
            .is_err()
        );
        assert!(
            run(
                "[tool.wheelslim.spilt]\nunhash = true\n",
                &["wheelslim", "audit", "a.whl"]
            )
            .is_err()
        );
        assert_eq!(
            run("[project]\nname='x'\n", &["wheelslim", "audit", "a.whl"]).unwrap(),
            ["wheelslim", "audit", "a.whl"]
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
