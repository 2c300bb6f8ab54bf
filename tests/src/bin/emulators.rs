//! Starts a Pub/Sub emulator and a bqemulator, prints their endpoints as shell `export` lines
//! (the `PIPELINE_*` variables the test harness reads), and keeps them until stdin closes or
//! SIGTERM/SIGINT/SIGHUP arrives; then stops both. `scripts/test` and the local stack use it so
//! that one pair serves every test.

use std::io::{Read as _, Write as _};

use pipeline_tests::{BigQueryEmulator, PubsubEmulator, env};

fn main() {
    // Block the stop signals in every thread and wait for them in one place, so that the
    // emulators (each in its own process group) are always killed by their handles' Drop.
    // SAFETY: plain libc signal-mask calls on a zeroed sigset_t owned by this frame.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    let bq = std::thread::spawn(BigQueryEmulator::start);
    let pubsub = PubsubEmulator::start();
    let bq = bq.join().expect("bqemulator start-up panicked");
    let mut out = std::io::stdout().lock();
    writeln!(out, "export {}={}", env::PUBSUB, pubsub.endpoint).ok();
    writeln!(out, "export {}={}", env::BQ_REST, bq.rest_endpoint).ok();
    writeln!(out, "export {}={}", env::BQ_GRPC, bq.grpc_endpoint).ok();
    writeln!(out, "# ready").ok();
    out.flush().ok();
    drop(out);
    // stdin closing (our parent went away) counts as a stop signal.
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        // SAFETY: signals our own process.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGTERM);
        }
    });
    let mut sig = 0;
    // SAFETY: waits on the set built above.
    unsafe {
        libc::sigwait(&set, &mut sig);
    }
    drop(pubsub);
    drop(bq);
}
