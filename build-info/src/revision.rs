//! How the git revision is found at build time. `build.rs` includes this file with `#[path]`, so
//! it uses `std` only; the crate exposes it so the same code is unit-tested against real
//! repositories made in temporary directories.
//!
//! Rules:
//! - A non-empty `GIT_REVISION` environment variable wins (Docker builds pass it as a build arg:
//!   the build context has no `.git`). It must be 1 to [`MAX_LEN`] characters of
//!   `[0-9A-Za-z._-]` (it ends up in logs, labels and `--version`).
//! - Otherwise `git rev-parse --short=12 HEAD`, plus [`DIRTY_SUFFIX`] when a tracked file differs
//!   from HEAD (`git status --porcelain --untracked-files=no`; untracked files do not count, as
//!   with `git describe --dirty`). Git runs with `GIT_OPTIONAL_LOCKS=0` so a build never takes
//!   `index.lock` from under someone committing.
//! - Otherwise (no git, not a repository) [`UNKNOWN`].
//!
//! Cargo reruns the build script when HEAD moves: [`watch_paths`] lists `HEAD`, the ref it points
//! to (or, when that ref is packed, `packed-refs` and the directory a new loose ref would appear
//! in). The dirty flag is computed when the script runs; editing a file without moving HEAD does
//! not rerun it (watching the index would relink every binary after each `git status`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Environment variable that overrides git (the Docker build arg of the same name).
pub const ENV_VAR: &str = "GIT_REVISION";
/// Revision when neither the variable nor git gives one.
pub const UNKNOWN: &str = "unknown";
/// Hex digits of the abbreviated commit (`git rev-parse --short=12`): 12 stay unique in far
/// larger repositories than ours, and match the image tag `cloudbuild.yaml` uses.
pub const SHORT_LEN: usize = 12;
/// Appended when tracked files differ from HEAD.
pub const DIRTY_SUFFIX: &str = "-dirty";
/// Longest accepted revision (a full 40-digit SHA-1 plus a suffix fits; 64-digit SHA-256 fits).
pub const MAX_LEN: usize = 64;

/// Where the revision came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The `GIT_REVISION` environment variable.
    Env,
    /// `git rev-parse` in the source tree.
    Git,
    /// Neither: the revision is [`UNKNOWN`].
    Unknown,
}

/// The outcome of [`resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// What `GIT_REVISION` will be.
    pub revision: String,
    /// Where it came from.
    pub source: Source,
    /// Files whose change must rerun the build script (empty unless `source` is git).
    pub watch: Vec<PathBuf>,
}

/// Checks a revision given from outside (trimmed). The error quotes the value.
pub fn validate(raw: &str) -> Result<String, String> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(format!("{ENV_VAR} is empty"));
    }
    if value.len() > MAX_LEN {
        return Err(format!(
            "{ENV_VAR} {value:?} is {} characters long; at most {MAX_LEN} are accepted",
            value.len()
        ));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{ENV_VAR} {value:?} contains {bad:?}; only letters, digits, '.', '_' and '-' are accepted"
        ));
    }
    Ok(value.to_owned())
}

/// Builds the revision from `git rev-parse --short=12 HEAD` output and the dirty flag.
pub fn from_git_output(short_hash: &str, dirty: bool) -> Result<String, String> {
    let hash = short_hash.trim();
    if hash.len() < SHORT_LEN || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "git rev-parse --short={SHORT_LEN} HEAD printed {hash:?}, not a commit hash"
        ));
    }
    Ok(if dirty {
        format!("{hash}{DIRTY_SUFFIX}")
    } else {
        hash.to_owned()
    })
}

/// The ref named by the contents of a `HEAD` file (`ref: refs/heads/main`), or `None` for a
/// detached HEAD (a bare hash).
pub fn head_ref(head_contents: &str) -> Option<&str> {
    head_contents
        .trim()
        .strip_prefix("ref:")
        .map(str::trim)
        .filter(|r| !r.is_empty())
}

/// Files to watch so the build script reruns when HEAD moves. Only existing paths are returned:
/// cargo treats a missing `rerun-if-changed` path as changed on every build.
pub fn watch_paths(git_dir: &Path, common_dir: &Path) -> Vec<PathBuf> {
    let mut watch = Vec::new();
    let head = git_dir.join("HEAD");
    let contents = std::fs::read_to_string(&head).unwrap_or_default();
    if head.is_file() {
        watch.push(head);
    }
    if let Some(reference) = head_ref(&contents) {
        // Per-worktree refs live in the worktree's git dir, branches in the common dir.
        let base = if git_dir.join(reference).is_file() {
            git_dir
        } else {
            common_dir
        };
        let loose = base.join(reference);
        if loose.is_file() {
            watch.push(loose);
        } else {
            // Packed: a commit writes a new loose file into this directory.
            let mut dir = loose.parent();
            while let Some(d) = dir {
                if d.is_dir() {
                    watch.push(d.to_path_buf());
                    break;
                }
                dir = d.parent();
            }
        }
        let packed = common_dir.join("packed-refs");
        if packed.is_file() {
            watch.push(packed);
        }
    }
    watch
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8(output.stdout).ok()
}

/// The revision of the repository containing `dir` and the files to watch, or `None` when git
/// is missing or `dir` is not in a repository with a commit.
pub fn git_revision(dir: &Path) -> Option<Result<(String, Vec<PathBuf>), String>> {
    let dirs = git(
        dir,
        &[
            "rev-parse",
            "--path-format=absolute",
            "--git-dir",
            "--git-common-dir",
        ],
    )?;
    let mut lines = dirs.lines();
    let git_dir = PathBuf::from(lines.next()?);
    let common_dir = lines.next().map_or_else(|| git_dir.clone(), PathBuf::from);
    let watch = watch_paths(&git_dir, &common_dir);
    let hash = git(dir, &["rev-parse", &format!("--short={SHORT_LEN}"), "HEAD"])?;
    let status = git(dir, &["status", "--porcelain", "--untracked-files=no"])?;
    Some(from_git_output(&hash, !status.trim().is_empty()).map(|revision| (revision, watch)))
}

/// Applies the rules of this module. `Err` only for an invalid `GIT_REVISION` or odd git output.
pub fn resolve(env_value: Option<&str>, dir: &Path) -> Result<Resolved, String> {
    if let Some(value) = env_value.filter(|v| !v.trim().is_empty()) {
        return Ok(Resolved {
            revision: validate(value)?,
            source: Source::Env,
            watch: Vec::new(),
        });
    }
    match git_revision(dir) {
        Some(found) => {
            let (revision, watch) = found?;
            Ok(Resolved {
                revision,
                source: Source::Git,
                watch,
            })
        }
        None => Ok(Resolved {
            revision: UNKNOWN.to_owned(),
            source: Source::Unknown,
            watch: Vec::new(),
        }),
    }
}
