//! SIGTERM (what systemd, Docker and Cloud Run send) or Ctrl-C asks a binary to stop: reads stop,
//! buffers drain and flush, and only then does the process exit.

use tokio_util::sync::CancellationToken;

/// Resolves at the first SIGTERM or Ctrl-C. Where SIGTERM cannot be listened for, Ctrl-C only.
pub async fn signalled() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A token cancelled at the first signal (logged as `stop requested` with `what` it means for
/// this binary). Must be called inside a Tokio runtime.
pub fn on_signal(what: &'static str) -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        signalled().await;
        tracing::info!(then = what, "stop requested");
        t.cancel();
    });
    token
}

#[cfg(all(test, unix))]
mod tests {
    use std::time::Duration;

    #[tokio::test]
    async fn sigterm_cancels_the_token() {
        let token = super::on_signal("test");
        // Let the task install its handler before the signal is raised.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!token.is_cancelled());
        // SAFETY: raise() only delivers a signal to this process; the handler above takes it.
        unsafe { libc::raise(libc::SIGTERM) };
        tokio::time::timeout(Duration::from_secs(5), token.cancelled())
            .await
            .expect("SIGTERM cancels the token");
    }
}
