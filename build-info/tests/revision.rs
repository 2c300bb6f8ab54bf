//! The revision rules against real git repositories made in temporary directories: clean,
//! dirty, untracked-only, detached, packed refs, worktrees, no repository, and the override.

use std::path::Path;
use std::process::Command;

use build_info::revision::{self, Source};
use rstest::rstest;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn repo_with_commit() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    std::fs::write(dir.path().join("a.txt"), "one\n").unwrap();
    git(dir.path(), &["add", "a.txt"]);
    git(dir.path(), &["commit", "-q", "-m", "first"]);
    dir
}

fn short_head(dir: &Path) -> String {
    git(dir, &["rev-parse", "--short=12", "HEAD"])
}

#[test]
fn clean_tree_gives_the_12_digit_hash_and_watches_head_and_the_branch() {
    let repo = repo_with_commit();
    let got = revision::resolve(None, repo.path()).unwrap();
    assert_eq!(got.source, Source::Git);
    assert_eq!(got.revision, short_head(repo.path()));
    assert_eq!(got.revision.len(), 12);
    let git_dir = repo.path().join(".git").canonicalize().unwrap();
    let watch: Vec<_> = got
        .watch
        .iter()
        .map(|p| p.canonicalize().unwrap())
        .collect();
    assert_eq!(
        watch,
        vec![git_dir.join("HEAD"), git_dir.join("refs/heads/main")]
    );
}

#[test]
fn modified_tracked_file_marks_dirty_but_untracked_does_not() {
    let repo = repo_with_commit();
    std::fs::write(repo.path().join("new.txt"), "untracked\n").unwrap();
    assert_eq!(
        revision::resolve(None, repo.path()).unwrap().revision,
        short_head(repo.path())
    );
    std::fs::write(repo.path().join("a.txt"), "two\n").unwrap();
    assert_eq!(
        revision::resolve(None, repo.path()).unwrap().revision,
        format!("{}-dirty", short_head(repo.path()))
    );
}

#[test]
fn a_new_commit_changes_the_revision_and_touches_a_watched_file() {
    let repo = repo_with_commit();
    let before = revision::resolve(None, repo.path()).unwrap();
    let branch = before.watch[1].clone();
    let old = std::fs::read_to_string(&branch).unwrap();
    std::fs::write(repo.path().join("a.txt"), "two\n").unwrap();
    git(repo.path(), &["commit", "-q", "-am", "second"]);
    let after = revision::resolve(None, repo.path()).unwrap();
    assert_ne!(after.revision, before.revision);
    assert_ne!(
        std::fs::read_to_string(&branch).unwrap(),
        old,
        "the watched ref file moved"
    );
}

#[test]
fn packed_ref_watches_packed_refs_and_the_directory_a_loose_ref_would_appear_in() {
    let repo = repo_with_commit();
    git(repo.path(), &["pack-refs", "--all", "--prune"]);
    let got = revision::resolve(None, repo.path()).unwrap();
    let git_dir = repo.path().join(".git").canonicalize().unwrap();
    let watch: Vec<_> = got
        .watch
        .iter()
        .map(|p| p.canonicalize().unwrap())
        .collect();
    assert_eq!(
        watch,
        vec![
            git_dir.join("HEAD"),
            git_dir.join("refs/heads"),
            git_dir.join("packed-refs")
        ]
    );
    assert_eq!(got.revision, short_head(repo.path()));
}

#[test]
fn detached_head_watches_head_only() {
    let repo = repo_with_commit();
    let full = git(repo.path(), &["rev-parse", "HEAD"]);
    git(repo.path(), &["checkout", "-q", "--detach", &full]);
    let got = revision::resolve(None, repo.path()).unwrap();
    assert_eq!(got.revision, full[..12]);
    assert_eq!(got.watch.len(), 1);
    assert!(got.watch[0].ends_with("HEAD"));
}

#[test]
fn worktree_watches_its_own_head_and_the_shared_branch() {
    let repo = repo_with_commit();
    let wt_parent = tempfile::tempdir().unwrap();
    let wt = wt_parent.path().join("wt");
    git(
        repo.path(),
        &["worktree", "add", "-q", "-b", "side", wt.to_str().unwrap()],
    );
    let got = revision::resolve(None, &wt).unwrap();
    assert_eq!(got.revision, short_head(repo.path()));
    let common = repo.path().join(".git").canonicalize().unwrap();
    let watch: Vec<_> = got
        .watch
        .iter()
        .map(|p| p.canonicalize().unwrap())
        .collect();
    assert_eq!(watch[0], common.join("worktrees/wt/HEAD"));
    assert_eq!(watch[1], common.join("refs/heads/side"));
}

#[test]
fn outside_a_repository_the_revision_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    // GIT_CEILING_DIRECTORIES cannot be set per call here; a temp dir is not inside a repo.
    let got = revision::resolve(None, dir.path()).unwrap();
    assert_eq!(got.source, Source::Unknown);
    assert_eq!(got.revision, revision::UNKNOWN);
    assert!(got.watch.is_empty());
}

#[test]
fn the_environment_variable_wins_over_git_and_empty_means_unset() {
    let repo = repo_with_commit();
    let got = revision::resolve(Some("abcdef012345"), repo.path()).unwrap();
    assert_eq!(
        (got.revision.as_str(), got.source),
        ("abcdef012345", Source::Env)
    );
    assert!(got.watch.is_empty());
    let got = revision::resolve(Some("  "), repo.path()).unwrap();
    assert_eq!(got.source, Source::Git);
}

#[rstest]
#[case::short_hash("0123456789ab", Ok("0123456789ab"))]
#[case::trimmed(" v1.2.3\n", Ok("v1.2.3"))]
#[case::dirty("0123456789ab-dirty", Ok("0123456789ab-dirty"))]
#[case::empty("", Err("GIT_REVISION is empty"))]
#[case::space("abc def", Err("GIT_REVISION \"abc def\" contains ' '"))]
#[case::quote("abc\"", Err("GIT_REVISION \"abc\\\"\" contains '\"'"))]
#[case::too_long(&"a".repeat(65), Err("is 65 characters long; at most 64"))]
fn validate_cases(#[case] raw: &str, #[case] want: Result<&str, &str>) {
    match (revision::validate(raw), want) {
        (Ok(got), Ok(want)) => assert_eq!(got, want),
        (Err(got), Err(want)) => assert!(got.contains(want), "{got:?} lacks {want:?}"),
        (got, want) => panic!("validate({raw:?}) = {got:?}, want {want:?}"),
    }
}

#[test]
fn an_invalid_environment_value_is_an_error_naming_it() {
    let err = revision::resolve(Some("no/slashes"), Path::new(".")).unwrap_err();
    assert!(err.contains("\"no/slashes\""), "{err}");
}

#[rstest]
#[case::clean("0123456789ab\n", false, Ok("0123456789ab"))]
#[case::dirty("0123456789ab", true, Ok("0123456789ab-dirty"))]
#[case::longer_when_ambiguous("0123456789abc", false, Ok("0123456789abc"))]
#[case::too_short("0123456", false, Err("not a commit hash"))]
#[case::not_hex("fatal: bad", false, Err("\"fatal: bad\""))]
fn git_output_cases(#[case] out: &str, #[case] dirty: bool, #[case] want: Result<&str, &str>) {
    match (revision::from_git_output(out, dirty), want) {
        (Ok(got), Ok(want)) => assert_eq!(got, want),
        (Err(got), Err(want)) => assert!(got.contains(want), "{got:?} lacks {want:?}"),
        (got, want) => panic!("{out:?}: {got:?}, want {want:?}"),
    }
}

#[rstest]
#[case::branch("ref: refs/heads/main\n", Some("refs/heads/main"))]
#[case::nested("ref:refs/heads/feature/x", Some("refs/heads/feature/x"))]
#[case::detached("0123456789abcdef0123456789abcdef01234567\n", None)]
#[case::empty_ref("ref: ", None)]
fn head_ref_cases(#[case] head: &str, #[case] want: Option<&str>) {
    assert_eq!(revision::head_ref(head), want);
}
