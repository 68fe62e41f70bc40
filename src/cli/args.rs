//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "wheelslim",
    version,
    about = "Split fat GPU/NPU wheels into slim wheels plus shared runtime wheels, trim device code, and audit what PyPI will refuse",
    after_help = "Exit codes: 0 ok, 1 a check found something, 2 error.\n\
Options can also come from [tool.wheelslim] in pyproject.toml (this folder or one above, up to \
the project's root; -v says which); the command line wins, and every flag has a --no-… form \
that undoes it (listed in --help).\n\
Shell completions: `wheelslim completions bash|zsh|fish`; a man page: `wheelslim man`."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Print less (only errors and the result).
    #[arg(short, long, global = true, overrides_with = "no_quiet")]
    pub quiet: bool,
    /// Undo --quiet (one set in pyproject.toml, say).
    #[arg(long, global = true, overrides_with = "quiet", hide_short_help = true)]
    pub no_quiet: bool,
    /// Print more detail.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Machine-readable JSON on stdout (human messages go to stderr).
    #[arg(long, global = true, overrides_with = "no_json")]
    pub json: bool,
    /// Undo --json (one set in pyproject.toml, say).
    #[arg(long, global = true, overrides_with = "json", hide_short_help = true)]
    pub no_json: bool,
    /// Never draw progress bars.
    #[arg(long, global = true, overrides_with = "progress")]
    pub no_progress: bool,
    /// Undo --no-progress: draw progress bars when stderr is a terminal (the default).
    #[arg(
        long,
        global = true,
        overrides_with = "no_progress",
        hide_short_help = true
    )]
    pub progress: bool,
    /// Worker threads (default: one per core).
    #[arg(short, long, global = true, value_name = "N")]
    pub jobs: Option<usize>,
}

/// Limits on the archives a command reads; only the commands that open wheels take them.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Archive limits")]
pub struct ArchiveArgs {
    /// Refuse archives with more members than this.
    #[arg(long, value_name = "N", default_value_t = 250_000)]
    pub max_members: usize,
    /// Refuse archives that inflate to more than this in all (e.g. `64GiB`).
    #[arg(long, value_name = "SIZE", default_value = "64GiB", value_parser = parse_size)]
    pub max_inflated: u64,
    /// Bytes of members kept in memory at once, across workers (the largest single member is
    /// always allowed).
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_size)]
    pub memory: u64,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Report what wheels hold: sizes, ELF objects and their links, vendor libraries, GPU
    /// architectures, duplicates, licences, and PyPI's verdict.
    #[command(after_help = AUDIT_EXAMPLES)]
    Audit(AuditArgs),
    /// Move vendor libraries into shared runtime wheels (or onto upstream wheels), rewire the
    /// ELF objects that need them, and fit every output under the size limit.
    #[command(after_help = SPLIT_EXAMPLES)]
    Split(SplitArgs),
    /// Keep only the device code the chosen GPUs need (CUDA fatbins, HIP offload bundles,
    /// loose cubin/PTX/code-object files), and really shrink the files.
    #[command(after_help = TRIM_EXAMPLES)]
    Trim(TrimArgs),
    /// Prove a set of wheels: RECORD, PyPI's upload rules, and that every NEEDED of every ELF
    /// object resolves once they are installed together.
    #[command(after_help = VERIFY_EXAMPLES)]
    Verify(VerifyArgs),
    /// List the built-in profiles, or print one as TOML.
    #[command(after_help = PROFILES_EXAMPLES)]
    Profiles(ProfilesArgs),
    /// Print a completion script for a shell (bash, zsh, fish, elvish, powershell).
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions {
        /// The shell to complete for.
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), generated from these same definitions.
    #[command(hide = true)]
    Man,
}

const AUDIT_EXAMPLES: &str = "Examples:
  wheelslim audit dist/torch-2.5.0-cp311-cp311-manylinux_2_28_x86_64.whl
  wheelslim audit --json dist/*.whl > audit.json      (one JSON document on stdout)
  wheelslim audit --check --max-size 100MiB dist/*.whl  (exit 1 when PyPI would refuse one)";

const SPLIT_EXAMPLES: &str = "Examples:
  wheelslim split -w wheelhouse --runtime-dir runtime dist/*.whl
  wheelslim split --upstream --unhash --sm 80,90 -w wheelhouse dist/*.whl
  wheelslim split --move 'libfoo*.so*' --keep libnvToolsExt.so.1 --dry-run dist/

  after cibuildwheel, on the host (recommended; every Python version's wheel at once):
    cibuildwheel --output-dir wheelhouse && wheelslim split wheelhouse/*.whl -w dist/ --unhash

  inside cibuildwheel (pyproject.toml [tool.cibuildwheel.linux]), one main wheel in {dest_dir};
  /output is cibuildwheel's internal folder (see README):
    repair-wheel-command = \"rm -rf /tmp/repaired && auditwheel repair -w /tmp/repaired {wheel} \\
      && wheelslim split /tmp/repaired/*.whl -w {dest_dir} --runtime-dir /output/runtime-wheels\"";

const TRIM_EXAMPLES: &str = "Examples:
  wheelslim trim --sm 80,86,90 -w wheelhouse dist/*.whl
  wheelslim trim --sm 90a --ptx none --dry-run dist/pkg-1.0-cp311-cp311-manylinux_2_28_x86_64.whl
  wheelslim trim --gfx gfx90a,gfx942 -w wheelhouse dist/*.whl";

const VERIFY_EXAMPLES: &str = "Examples:
  wheelslim verify wheelhouse/pkg-1.0-*.whl runtime-wheels/*.whl
  wheelslim verify --baseline dist/pkg-1.0-*.whl wheelhouse/pkg-1.0-*.whl runtime-wheels/*.whl
      (what dist/pkg already violated is reported as inherited, as split does)
  wheelslim verify --json --max-size 100MiB wheelhouse/*.whl";

const PROFILES_EXAMPLES: &str = "Examples:
  wheelslim profiles
  wheelslim profiles show cuda12 > my-cuda.toml   (a starting point for --profile my-cuda.toml)";

const COMPLETIONS_EXAMPLES: &str = "Examples:
  wheelslim completions bash > ~/.local/share/bash-completion/completions/wheelslim
  wheelslim completions zsh > \"${fpath[1]}/_wheelslim\"
  wheelslim completions fish > ~/.config/fish/completions/wheelslim.fish
  wheelslim man | man -l -";

#[derive(Debug, Args)]
pub struct SplitArgs {
    /// Wheels to split (for example every CPython version's build of one project).
    /// A folder stands for the `*.whl` files directly in it, in name order.
    #[arg(required = true, value_name = "WHEEL")]
    pub wheels: Vec<PathBuf>,
    /// Folder for the main wheels (made if missing).
    #[arg(short = 'w', long, value_name = "DIR", default_value = "wheelhouse")]
    pub wheel_dir: PathBuf,
    /// Folder for the runtime wheels (default: the same as --wheel-dir). cibuildwheel wants
    /// exactly one wheel in its {dest_dir}: put runtime wheels elsewhere.
    #[arg(long, value_name = "DIR")]
    pub runtime_dir: Option<PathBuf>,
    /// Profiles choosing what moves: a built-in name or a TOML file (repeatable; default:
    /// every built-in profile).
    #[arg(long = "profile", value_name = "NAME|PATH")]
    pub profiles: Vec<String>,
    /// Depend on upstream wheels (e.g. nvidia-cublas-cu12) instead of bundling, for libraries
    /// whose profile entry names one.
    #[arg(long, overrides_with = "no_upstream")]
    pub upstream: bool,
    /// Undo --upstream (one set in pyproject.toml, say).
    #[arg(long, overrides_with = "upstream", hide_short_help = true)]
    pub no_upstream: bool,
    /// Restore public sonames of auditwheel-renamed libraries (libcudart-80664282.so.12 →
    /// libcudart.so.12) in runtime wheels.
    #[arg(long, overrides_with = "no_unhash")]
    pub unhash: bool,
    /// Undo --unhash (one set in pyproject.toml, say).
    #[arg(long, overrides_with = "unhash", hide_short_help = true)]
    pub no_unhash: bool,
    /// Also move matched libraries that no ELF object in the wheel links. By default they stay
    /// where they are, since something loads them by path (a profiler opening CUPTI from its
    /// folder); plugins a moved library opens itself (NVRTC builtins, cuDNN sub-libraries)
    /// move with it either way.
    #[arg(long, overrides_with = "no_move_unlinked")]
    pub move_unlinked: bool,
    /// Undo --move-unlinked (one set in pyproject.toml, say).
    #[arg(long, overrides_with = "move_unlinked", hide_short_help = true)]
    pub no_move_unlinked: bool,
    /// Move bundled libraries by file name or soname glob such as `libfoo*.so*` (repeatable),
    /// even ones nothing links: one no profile lists goes into the runtime wheel
    /// `{project}-runtime-extra`, one a profile lists follows that profile's rule.
    #[arg(long = "move", value_name = "GLOB")]
    pub moves: Vec<String>,
    /// Keep a library in the main wheel that a profile would move (or that a moving library
    /// would take along), by file name or soname glob (repeatable).
    #[arg(long = "keep", value_name = "GLOB")]
    pub keeps: Vec<String>,
    /// Per-file size limit for every output.
    #[arg(long, value_name = "SIZE", default_value = "100MiB", value_parser = parse_size)]
    pub max_size: u64,
    /// Make each main package load its runtime wheels' libraries itself, from whichever
    /// sys.path entry they were installed into (a user site, a --target folder), before its
    /// extension modules load: adds `<package>/_wheelslim_preload.py` and one import line to
    /// the package's __init__.py. Without it, such installs must call preload().
    #[arg(long, overrides_with = "no_preload_hook")]
    pub preload_hook: bool,
    /// Undo --preload-hook (one set in pyproject.toml, say).
    #[arg(long, overrides_with = "preload_hook", hide_short_help = true)]
    pub no_preload_hook: bool,
    /// The default, stated: a library too big for one wheel even alone (after --sm/--gfx and
    /// --strip-debug, when given) keeps every GPU architecture it has: its fatbin containers
    /// / offload bundles move into companion shared objects beside it that its wrappers reach
    /// through the dynamic linker, so every output fits. `--dry-run` shows which containers
    /// go into which companion and wheel. Libraries that fit are never given companions.
    #[arg(long, overrides_with = "no_companions")]
    pub companions: bool,
    /// Refuse a library too big for one wheel even alone instead of giving it companions
    /// (the error says whether companions would make it fit).
    #[arg(long, overrides_with = "companions")]
    pub no_companions: bool,
    /// Print the plan and write nothing.
    #[arg(long, overrides_with = "no_dry_run")]
    pub dry_run: bool,
    /// Undo --dry-run (one set in pyproject.toml, say).
    #[arg(long, overrides_with = "dry_run", hide_short_help = true)]
    pub no_dry_run: bool,
    /// Re-deflate runtime-wheel members with wheelslim's own deterministic deflate, so the
    /// runtime wheel's bytes do not depend on how the input wheels were compressed (slower).
    #[arg(long, overrides_with = "no_canonical_runtime")]
    pub canonical_runtime: bool,
    /// Undo --canonical-runtime (one set in pyproject.toml, say).
    #[arg(long, overrides_with = "canonical_runtime", hide_short_help = true)]
    pub no_canonical_runtime: bool,
    /// Also remove the non-allocated debug sections (.debug_*) of every ELF object, in the
    /// main and the runtime wheels, keeping every loaded byte where it is (as `trim
    /// --strip-debug`): a wheel that fits only without its debug info splits in one step.
    #[arg(long, overrides_with = "no_strip_debug")]
    pub strip_debug: bool,
    /// Undo --strip-debug (one set in pyproject.toml, say).
    #[arg(long, overrides_with = "strip_debug", hide_short_help = true)]
    pub no_strip_debug: bool,
    /// Trim device code too, in every library that moves or stays (see `wheelslim trim`).
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub archive: ArchiveArgs,
}

/// Device-code selection, shared by `trim` and `split`.
#[derive(Debug, Clone, Args)]
pub struct DeviceArgs {
    /// CUDA architectures to keep, e.g. `80,86,90a,100f,120`: SASS that runs on them (same
    /// major, lower or equal minor; `a` images only on their exact SM) plus PTX per --ptx.
    #[arg(long, value_name = "LIST")]
    pub sm: Option<String>,
    /// Which PTX to keep: `newest` usable by the highest target (so newer GPUs can JIT; the
    /// default), `all` usable by some target, or `none` (except where a target would be left
    /// with nothing usable).
    #[arg(long, value_name = "POLICY", default_value = "newest")]
    pub ptx: crate::fatbin::select::PtxPolicy,
    /// Containers, bundles and groups of loose device files in which nothing matches the
    /// targets: `keep` them whole (default) or `drop` their images.
    #[arg(long, value_name = "POLICY", default_value = "keep")]
    pub unmatched: crate::fatbin::select::UnmatchedPolicy,
    /// AMD GPU targets to keep, e.g. `gfx90a,gfx942` (target features like `gfx90a:xnack+`).
    #[arg(long, value_name = "LIST")]
    pub gfx: Option<String>,
    /// Write a wheel even when the trim leaves it with no device code for any GPU (with
    /// `--unmatched drop`, when nothing in it matches the targets). Refused otherwise.
    #[arg(long, overrides_with = "no_allow_no_device_code")]
    pub allow_no_device_code: bool,
    /// Undo --allow-no-device-code (one set in pyproject.toml, say).
    #[arg(long, overrides_with = "allow_no_device_code", hide_short_help = true)]
    pub no_allow_no_device_code: bool,
    /// Never remove bytes from files: rewrite device code in place and zero what is dropped
    /// (the wheel still shrinks after compression).
    #[arg(long, overrides_with = "no_zero_only")]
    pub zero_only: bool,
    /// Undo --zero-only (one set in pyproject.toml, say).
    #[arg(long, overrides_with = "zero_only", hide_short_help = true)]
    pub no_zero_only: bool,
}

#[derive(Debug, Args)]
pub struct TrimArgs {
    /// Wheels to trim.
    /// A folder stands for the `*.whl` files directly in it, in name order.
    #[arg(required = true, value_name = "WHEEL")]
    pub wheels: Vec<PathBuf>,
    /// Folder for the trimmed wheels (made if missing).
    #[arg(short = 'w', long, value_name = "DIR", default_value = "wheelhouse")]
    pub wheel_dir: PathBuf,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Size limit to report against.
    #[arg(long, value_name = "SIZE", default_value = "100MiB", value_parser = parse_size)]
    pub max_size: u64,
    /// Show per library and architecture what would be kept and dropped; write nothing.
    #[arg(long, overrides_with = "no_dry_run")]
    pub dry_run: bool,
    /// Undo --dry-run (one set in pyproject.toml, say).
    #[arg(long, overrides_with = "dry_run", hide_short_help = true)]
    pub no_dry_run: bool,
    /// Also remove the non-allocated debug sections (.debug_*) of every ELF object, keeping
    /// every loaded byte where it is (.symtab stays).
    #[arg(long, overrides_with = "no_strip_debug")]
    pub strip_debug: bool,
    /// Undo --strip-debug (one set in pyproject.toml, say).
    #[arg(long, overrides_with = "strip_debug", hide_short_help = true)]
    pub no_strip_debug: bool,

    #[command(flatten)]
    pub archive: ArchiveArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Wheels that will be installed together.
    /// A folder stands for the `*.whl` files directly in it, in name order.
    #[arg(required = true, value_name = "WHEEL")]
    pub wheels: Vec<PathBuf>,
    /// Per-file upload limit.
    #[arg(long, value_name = "SIZE", default_value = "100MiB", value_parser = parse_size)]
    pub max_size: u64,
    /// Profiles that say which libraries the machine provides and where upstream wheels put
    /// theirs (default: all built-in profiles).
    #[arg(long = "profile", value_name = "NAME|PATH")]
    pub profiles: Vec<String>,
    /// A wheel the checked ones were made from (repeatable): what it already violated is
    /// reported as inherited and does not fail the check, as `split` and `trim` judge their
    /// outputs. Size rules always count.
    #[arg(long, value_name = "INPUT.whl")]
    pub baseline: Vec<PathBuf>,
    #[command(flatten)]
    pub archive: ArchiveArgs,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Wheels to audit.
    /// A folder stands for the `*.whl` files directly in it, in name order.
    #[arg(required = true, value_name = "WHEEL")]
    pub wheels: Vec<PathBuf>,
    /// Per-file upload limit (PyPI's default is 100 MiB).
    #[arg(long, value_name = "SIZE", default_value = "100MiB", value_parser = parse_size)]
    pub max_size: u64,
    /// Exit 1 when any check fails (size, upload rules, forbidden libraries, RECORD, manylinux).
    #[arg(long, overrides_with = "no_check")]
    pub check: bool,
    /// Undo --check (one set in pyproject.toml, say).
    #[arg(long, overrides_with = "check", hide_short_help = true)]
    pub no_check: bool,
    /// Profiles to match vendor libraries with: a built-in name or a TOML file (repeatable;
    /// default: all built-in profiles).
    #[arg(long = "profile", value_name = "NAME|PATH")]
    pub profiles: Vec<String>,
    /// How many of the largest members to list.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub largest: usize,
    #[command(flatten)]
    pub archive: ArchiveArgs,
}

#[derive(Debug, Args)]
pub struct ProfilesArgs {
    #[command(subcommand)]
    pub action: Option<ProfilesAction>,
}

#[derive(Debug, Subcommand)]
pub enum ProfilesAction {
    /// Print a profile as TOML.
    Show {
        /// A built-in name or a path to a TOML file.
        name: String,
    },
}

/// The flag that undoes a flag, by long name: `no-unhash` for `unhash`, `progress` for
/// `no-progress`. Every flag has one (a unit test holds them to it), so the command line can
/// always undo what `[tool.wheelslim]` sets.
pub fn negation(long: &str) -> String {
    match long.strip_prefix("no-") {
        Some(rest) => rest.to_string(),
        None => format!("no-{long}"),
    }
}

/// Parses sizes like `100MiB`, `1.5GB`, `104857600`, `64k`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (examples: 100MiB, 1.5GB, 104857600)"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "kb" => 1e3,
        "m" | "mib" => 1024.0 * 1024.0,
        "mb" => 1e6,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "gb" => 1e9,
        "t" | "tib" => 1024f64.powi(4),
        "tb" => 1e12,
        other => return Err(format!("unknown size unit {other:?} in {s:?}")),
    };
    let v = n * mult;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(v.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100MiB").unwrap(), 104_857_600);
        assert_eq!(parse_size("104857600").unwrap(), 104_857_600);
        assert_eq!(parse_size("1.5GB").unwrap(), 1_500_000_000);
        assert_eq!(parse_size("64k").unwrap(), 65536);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }

    #[test]
    fn every_flag_has_a_form_that_undoes_it_and_the_last_one_wins() {
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        cmd.build();
        let mut checked = 0;
        for sub in cmd.get_subcommands() {
            for arg in sub.get_arguments() {
                if !matches!(arg.get_action(), clap::ArgAction::SetTrue) {
                    continue;
                }
                let long = arg.get_long().expect("flags have long names");
                let neg = negation(long);
                let Some(undo) = sub.get_arguments().find(|a| a.get_long() == Some(&neg)) else {
                    panic!("`{} --{long}` has no `--{neg}`", sub.get_name());
                };
                assert!(matches!(undo.get_action(), clap::ArgAction::SetTrue));
                let name = sub.get_name();
                let mut base = vec!["wheelslim", name];
                match name {
                    "completions" => base.push("bash"),
                    "audit" | "split" | "trim" | "verify" => base.push("a.whl"),
                    _ => {}
                }
                let (on, off) = (format!("--{long}"), format!("--{neg}"));
                for (order, expect) in [([&on, &off], false), ([&off, &on], true)] {
                    let mut argv: Vec<&str> = base.clone();
                    argv.extend(order.iter().map(|s| s.as_str()));
                    let m = cmd.clone().try_get_matches_from(&argv).unwrap();
                    let (_, sm) = m.subcommand().unwrap();
                    let id = arg.get_id().as_str();
                    assert_eq!(sm.get_flag(id), expect, "{argv:?}");
                }
                checked += 1;
            }
        }
        assert!(checked >= 40, "only {checked} flags");
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
