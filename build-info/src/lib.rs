//! The version and git revision of the build, for `--version` and the first log line of every
//! binary.
//!
//! - [`PKG_VERSION`]: the workspace version (every crate uses `version.workspace = true`, so this
//!   crate's version is each binary's).
//! - [`GIT_REVISION`]: 12 hex digits of the commit, `-dirty` when tracked files differed from it,
//!   or the `GIT_REVISION` build arg of a Docker build, or `unknown` (see [`revision`]).
//! - [`VERSION`]: both, as clap's `version` (`producer 0.1.0 (rev 0123456789ab)`).
//!
//! Use: `#[command(version = build_info::VERSION)]` on the clap `Parser`, and
//! [`log_start`]`("producer")` once logging is set up.

pub mod revision;

/// The workspace version (`Cargo.toml` `[workspace.package] version`).
pub const PKG_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git revision the binary was built from (see [`revision`] for how it is found).
pub const GIT_REVISION: &str = env!("BUILD_INFO_GIT_REVISION");

/// `"<version> (rev <revision>)"`, e.g. `0.1.0 (rev 0123456789ab)`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (rev ",
    env!("BUILD_INFO_GIT_REVISION"),
    ")"
);

/// The build's key/value pairs, named as [`log_start`] logs them.
pub fn fields() -> [(&'static str, &'static str); 2] {
    [("version", PKG_VERSION), ("git_revision", GIT_REVISION)]
}

/// Logs `starting` at INFO with the fields `binary`, `version` and `git_revision`. Call it once,
/// right after the tracing subscriber is installed.
pub fn log_start(binary: &'static str) {
    tracing::info!(
        binary,
        version = PKG_VERSION,
        git_revision = GIT_REVISION,
        "starting"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_the_package_version_and_the_revision() {
        assert_eq!(VERSION, format!("{PKG_VERSION} (rev {GIT_REVISION})"));
        assert!(!PKG_VERSION.is_empty());
    }

    #[test]
    fn the_compiled_revision_obeys_the_rules() {
        // Whatever the build saw (git, GIT_REVISION or nothing), the value is a valid one.
        assert_eq!(
            revision::validate(GIT_REVISION).as_deref(),
            Ok(GIT_REVISION)
        );
        if GIT_REVISION != revision::UNKNOWN && option_env!("GIT_REVISION").is_none() {
            let hash = GIT_REVISION
                .strip_suffix(revision::DIRTY_SUFFIX)
                .unwrap_or(GIT_REVISION);
            assert_eq!(hash.len(), revision::SHORT_LEN, "{GIT_REVISION}");
            assert!(
                hash.chars().all(|c| c.is_ascii_hexdigit()),
                "{GIT_REVISION}"
            );
        }
    }

    #[test]
    fn fields_name_what_log_start_logs() {
        assert_eq!(
            fields(),
            [("version", PKG_VERSION), ("git_revision", GIT_REVISION)]
        );
    }
}
