//! The named temporary files wheelslim writes next to its outputs, and what happens to them
//! when a run is interrupted.
//!
//! Every finished wheel is first written to `.wheelslim-<pid>-<ns>-XXXXXX.tmp` in its target
//! folder (`<ns>`: the inode of the process's pid namespace) and renamed into place only when
//! the whole run has passed its checks. Those files are created through [`create_in`], which
//! keeps a list of the ones alive, and holds an advisory lock (`flock`) on each while it is in
//! use:
//!
//! - SIGINT, SIGTERM and SIGHUP (see [`install_signal_handler`]) remove every file on the list
//!   and exit with 128 + the signal's number (130, 143, 129). A rename in progress
//!   ([`commit_guard`]) is let finish (or roll back) first, so an interrupted commit is still
//!   all-or-nothing.
//! - A run killed with SIGKILL cannot clean up; the next run that writes into the same folder
//!   removes what it left there, but only files that are provably stale: the name is ours,
//!   the pid namespace is ours, no process with that pid exists, and nobody holds the lock.
//!   Anything else (other names, other namespaces, a pid that is alive) is left alone.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const PREFIX: &str = ".wheelslim-";
const SUFFIX: &str = ".tmp";

/// The temporary files alive now, by token.
static LIVE: Mutex<Option<HashMap<u64, PathBuf>>> = Mutex::new(None);
/// Held while outputs are renamed into place.
static COMMIT: Mutex<()> = Mutex::new(());
/// Folders already swept for stale files in this run.
static SWEPT: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
static NEXT: AtomicU64 = AtomicU64::new(1);
/// Set once a commit has put its outputs in place.
static COMMITTED: AtomicBool = AtomicBool::new(false);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The inode of this process's pid namespace; 0 when it cannot be read (then nothing is ever
/// judged stale, since a pid cannot be proved gone).
fn pid_namespace() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino())
}

/// The name prefix of this process's temporary files.
fn own_prefix() -> String {
    format!("{PREFIX}{}-{}-", std::process::id(), pid_namespace())
}

/// Keeps a temporary file on the list of those an interrupt removes, until dropped.
#[derive(Debug)]
pub struct Registered {
    token: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(live) = lock(&LIVE).as_mut() {
            live.remove(&self.token);
        }
    }
}

/// A temporary file made by [`create_in`]: the file, and its place on the list. Declare the
/// file before the registration in structs that hold both, so that the file is deleted before
/// it leaves the list.
pub struct TempFile {
    pub file: tempfile::NamedTempFile,
    pub registered: Registered,
}

/// Creates a temporary file in `dir`, locked and on the list of those an interrupt removes.
/// The first time a folder is used in a run, stale files a killed run left there are removed.
pub fn create_in(dir: &Path) -> io::Result<TempFile> {
    let first = lock(&SWEPT)
        .get_or_insert_with(HashSet::new)
        .insert(dir.to_path_buf());
    if first {
        sweep(dir);
    }
    // Created under the list's lock, so an interrupt never finds a file that is not listed.
    let mut live = lock(&LIVE);
    let file = tempfile::Builder::new()
        .prefix(&own_prefix())
        .suffix(SUFFIX)
        .tempfile_in(dir)?;
    // Best effort: where the file system has no locks, sweeps cannot take one either and so
    // leave the file alone.
    let _ = rustix::fs::flock(
        file.as_file(),
        rustix::fs::FlockOperation::NonBlockingLockExclusive,
    );
    let token = NEXT.fetch_add(1, Ordering::Relaxed);
    live.get_or_insert_with(HashMap::new)
        .insert(token, file.path().to_path_buf());
    drop(live);
    Ok(TempFile {
        file,
        registered: Registered { token },
    })
}

/// Held while a set of outputs is renamed into place: an interrupt waits for it.
pub fn commit_guard() -> std::sync::MutexGuard<'static, ()> {
    lock(&COMMIT)
}

/// Notes (under [`commit_guard`]) that the outputs are in place, for the interrupt's message.
pub fn note_committed() {
    COMMITTED.store(true, Ordering::SeqCst);
}

/// Removes every listed temporary file. The list stays locked (no new file can be created)
/// until the process exits, which the caller does next.
fn remove_all_and_hold() -> usize {
    let commit = lock(&COMMIT);
    let live = lock(&LIVE);
    let mut removed = 0;
    if let Some(files) = live.as_ref() {
        for p in files.values() {
            if std::fs::remove_file(p).is_ok() {
                removed += 1;
            }
        }
    }
    std::mem::forget(live);
    std::mem::forget(commit);
    removed
}

/// Installs handlers for SIGINT, SIGTERM and SIGHUP that remove the temporary files in flight
/// and exit with 128 + the signal's number. For the commands that write.
pub fn install_signal_handler() -> io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new()
        .name("wheelslim-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                let removed = remove_all_and_hold();
                let outputs = if COMMITTED.load(Ordering::SeqCst) {
                    "the outputs were already in place"
                } else {
                    "no output was written or replaced"
                };
                #[allow(clippy::print_stderr)]
                {
                    eprintln!(
                        "\nwheelslim: interrupted (signal {sig}); removed {removed} unfinished file(s); {outputs}"
                    );
                }
                std::process::exit(128 + sig);
            }
        })?;
    Ok(())
}

/// What a temporary file's name says about who made it: `(pid, namespace)`.
fn parse_name(name: &str) -> Option<(u32, u64)> {
    let rest = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    let mut parts = rest.splitn(3, '-');
    let pid = parts.next()?.parse().ok()?;
    let ns = parts.next()?.parse().ok()?;
    parts.next().filter(|r| !r.is_empty())?;
    Some((pid, ns))
}

/// Whether `path` is a temporary file a killed wheelslim left: ours by name, from this pid
/// namespace, its process gone, and not locked by anyone.
fn is_stale(path: &Path, own_ns: u64) -> bool {
    let Some((pid, ns)) = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(parse_name)
    else {
        return false;
    };
    if own_ns == 0 || ns != own_ns || pid == std::process::id() {
        return false;
    }
    // /proc must be there to prove a pid gone.
    if !Path::new("/proc/self").exists() || Path::new(&format!("/proc/{pid}")).exists() {
        return false;
    }
    if !std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file()) {
        return false;
    }
    let Ok(f) = File::open(path) else {
        return false;
    };
    rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok()
}

/// Removes the stale temporary files in `dir` (see [`is_stale`]); returns how many.
pub fn sweep(dir: &Path) -> usize {
    let own_ns = pid_namespace();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let p = e.path();
        if is_stale(&p, own_ns) && std::fs::remove_file(&p).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// A name for a backup of `target` in its folder (`.wheelslim-<pid>-<ns>-<n>.bak`); see
/// [`super::writer::commit`].
pub fn backup_name(target: &Path, n: u64) -> PathBuf {
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    dir.join(format!("{}{n}.bak", own_prefix()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_pid_and_namespace() {
        assert_eq!(
            parse_name(".wheelslim-123-4026531836-aB3xYz.tmp"),
            Some((123, 4026531836))
        );
        assert_eq!(parse_name(".wheelslim-aB3xYz.tmp"), None);
        assert_eq!(parse_name(".wheelslim-123-4026531836-.tmp"), None);
        assert_eq!(parse_name(".wheelslim-123-4026531836-x.bak"), None);
        assert_eq!(parse_name("wheelslim-123-4-x.tmp"), None);
    }

    /// A pid that existed a moment ago and is gone now.
    fn dead_pid() -> u32 {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    }

    #[test]
    fn sweep_removes_only_provably_stale_files() {
        let dir = tempfile::tempdir().unwrap();
        let ns = pid_namespace();
        assert_ne!(ns, 0, "/proc/self/ns/pid is readable on Linux");
        let dead = dead_pid();
        let write = |name: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, b"partial").unwrap();
            p
        };
        let stale = write(&format!(".wheelslim-{dead}-{ns}-abc123.tmp"));
        // Alive: this process, and our parent.
        let own = write(&format!(
            ".wheelslim-{}-{ns}-abc123.tmp",
            std::process::id()
        ));
        let parent = std::os::unix::process::parent_id();
        let alive = write(&format!(".wheelslim-{parent}-{ns}-abc123.tmp"));
        // Another pid namespace, an old-style name, someone else's file.
        let other_ns = write(&format!(".wheelslim-{dead}-{}-abc123.tmp", ns + 1));
        let old_style = write(".wheelslim-abc123.tmp");
        let foreign = write(&format!("{dead}.tmp"));
        // Dead pid but locked by someone (here: us) is in use.
        let locked = write(&format!(".wheelslim-{dead}-{ns}-locked.tmp"));
        let held = File::open(&locked).unwrap();
        rustix::fs::flock(&held, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();

        assert_eq!(sweep(dir.path()), 1);
        assert!(!stale.exists());
        for p in [&own, &alive, &other_ns, &old_style, &foreign, &locked] {
            assert!(p.exists(), "{} was removed", p.display());
        }
        drop(held);
        assert_eq!(sweep(dir.path()), 1);
        assert!(!locked.exists());
    }

    #[test]
    fn created_files_are_listed_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let t = create_in(dir.path()).unwrap();
        let path = t.file.path().to_path_buf();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        assert!(name.starts_with(&own_prefix()), "{name}");
        assert!(lock(&LIVE).as_ref().unwrap().values().any(|p| *p == path));
        // Locked while alive: a sweep by another process could not take it.
        let other = File::open(&path).unwrap();
        assert!(
            rustix::fs::flock(&other, rustix::fs::FlockOperation::NonBlockingLockExclusive)
                .is_err()
        );
        drop(t);
        assert!(!path.exists());
        assert!(!lock(&LIVE).as_ref().unwrap().values().any(|p| *p == path));
    }
}
