//! Background tasks of a running simulator: the **pump**, which walks the tape second by second
//! and, as the simulator clock passes each trade's time, broadcasts the trades in small
//! per-symbol batches to every connection task; and the random connection drops.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::faults::next_drop_delay;
use crate::rng::{KeyedRng, Stream};
use crate::state::{Shared, TradeBatch};
use crate::tape::SEC_US;
use crate::trade::Trade;

/// Per-symbol pump cursor.
struct PumpCursor {
    sec: i64,
    buf: Vec<Trade>,
    idx: usize,
}

/// Emit trades as the clock passes them.
pub(crate) async fn pump(shared: Arc<Shared>) {
    let tape = shared.tape.clone();
    let start_us = shared.clock.start_us();
    let mut cursors: Vec<PumpCursor> = (0..tape.len())
        .map(|i| {
            let sec = start_us.div_euclid(SEC_US);
            let buf = tape.second(i, sec);
            let idx = buf.iter().take_while(|t| t.time_us <= start_us).count();
            PumpCursor { sec, buf, idx }
        })
        .collect();
    let tick = shared.config.pump_tick;
    loop {
        let now_us = shared.clock.now_us();
        let mut next_due = i64::MAX;
        for (i, c) in cursors.iter_mut().enumerate() {
            let mut out = Vec::new();
            loop {
                while c.idx < c.buf.len() && c.buf[c.idx].time_us <= now_us {
                    out.push(c.buf[c.idx]);
                    c.idx += 1;
                }
                if c.idx < c.buf.len() || (c.sec + 1) * SEC_US > now_us {
                    break;
                }
                c.sec += 1;
                c.buf.clear();
                tape.second_into(i, c.sec, &mut c.buf);
                c.idx = 0;
            }
            let due = c
                .buf
                .get(c.idx)
                .map(|t| t.time_us)
                .unwrap_or((c.sec + 1) * SEC_US);
            next_due = next_due.min(due);
            if let Some(last) = out.last() {
                let next_id = last.id + 1;
                let _ = shared.trades_tx.send(Arc::new(TradeBatch {
                    sym: i,
                    trades: out,
                }));
                shared.cursors[i].store(next_id, Ordering::Release);
            }
        }
        let wait = shared.clock.until(next_due).max(tick);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shared.shutdown.cancelled() => return,
        }
    }
}

/// Drop a random open connection at random intervals when enabled.
pub(crate) async fn random_drops(shared: Arc<Shared>) {
    let mut rng = KeyedRng::new(shared.config.seed, 0, Stream::Drops, 0);
    loop {
        let mean = shared
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drop_random_every_secs;
        let wait = if mean > 0.0 {
            Duration::from_secs_f64(next_drop_delay(&mut rng, mean))
        } else {
            Duration::from_millis(250)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shared.shutdown.cancelled() => return,
        }
        let still = shared
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drop_random_every_secs;
        if mean > 0.0 && still > 0.0 {
            let live = shared.live_conns();
            if !live.is_empty() {
                let victim = &live[rng.below(live.len() as u64) as usize];
                tracing::info!(connection = victim.id, "random drop");
                victim.drop_token.cancel();
            }
        }
    }
}
