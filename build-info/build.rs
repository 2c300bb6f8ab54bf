//! Finds the git revision of the tree being built and hands it to the crate as
//! `BUILD_INFO_GIT_REVISION`. The logic lives in `src/revision.rs` (shared with the unit tests).
//!
//! Order: a non-empty `GIT_REVISION` environment variable (the Docker build arg; the build
//! context has no `.git`), else `git rev-parse --short=12 HEAD` plus `-dirty` when tracked files
//! differ from HEAD, else `unknown` with a cargo warning.

#[path = "src/revision.rs"]
#[allow(dead_code)] // the tests use more of the module than the build script does
mod revision;

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed={}", revision::ENV_VAR);
    // Listing any path turns off cargo's default "rerun when any file of the package changes".
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/revision.rs");

    let dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let from_env = std::env::var(revision::ENV_VAR).ok();
    let resolved = match revision::resolve(from_env.as_deref(), &dir) {
        Ok(resolved) => resolved,
        Err(e) => panic!("build-info: {e}"),
    };
    for path in &resolved.watch {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    if resolved.source == revision::Source::Unknown {
        println!(
            "cargo:warning=build-info: no git repository and {} is unset; the revision is '{}'",
            revision::ENV_VAR,
            revision::UNKNOWN
        );
    }
    println!(
        "cargo:rustc-env=BUILD_INFO_GIT_REVISION={}",
        resolved.revision
    );
}
