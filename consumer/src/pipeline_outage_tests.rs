//! Outage mode and pull silence: requests refused as a whole hold every row (nothing acked,
//! nothing dead-lettered) until the cause is fixed, and a silent pull is reopened, then reported.

use super::*;

fn refused(code: &'static str, reason: &str) -> Result<(), SinkError> {
    Err(SinkError::Refused {
        code,
        reason: reason.into(),
    })
}

fn dead_letters(events: &[Ev]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Ev::DeadLettered(..)))
        .count()
}

/// A dropped column: BigQuery refuses the whole request (the real answer is INVALID_ARGUMENT
/// "Input schema has more fields than BigQuery schema"). Good trades must not be dead-lettered:
/// held, unacked, unhealthy, retried with a backoff capped at 60 s, and all land after the fix.
#[tokio::test(start_paused = true)]
async fn a_request_refused_as_a_whole_holds_every_row_until_the_fix_and_dead_letters_none() {
    let drift = "Input schema has more fields than BigQuery schema, extra fields: 'source'";
    let h = start(Options {
        script: (0..9).map(|_| refused("invalid_argument", drift)).collect(),
        ..Options::default()
    });
    for i in 1..=3 {
        h.send(&format!("m{i}"), &trade(i));
    }
    tokio::time::sleep(Duration::from_secs(20)).await;
    let events = h.events();
    assert!(
        events.is_empty(),
        "nothing acked, nacked or dead-lettered: {events:?}"
    );
    let health = h.metrics.health();
    assert!(!health.is_ok() && !health.wedged, "{health:?}");
    assert!(health.problems[0].contains(drift), "{health:?}");
    assert!(
        h.metrics.encode().contains(
            "consumer_append_refused_total{table=\"trades_raw\",code=\"invalid_argument\"}"
        )
    );
    assert!(!h.task.is_finished(), "the pipeline stays up");

    // 1, 2, 4, ... 32, then 60 s between attempts (jittered to at least half): ~4 minutes.
    tokio::time::sleep(Duration::from_secs(600)).await;
    let events = h.events();
    assert_eq!(events[0], Ev::Appended(vec![1, 2, 3]));
    assert_eq!(acked(&events).len(), 3);
    assert_eq!(dead_letters(&events), 0);
    assert!(h.metrics.is_healthy(), "{:?}", h.metrics.health());
    let attempts = h.attempts();
    assert_eq!(attempts.len(), 10);
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|g| *g <= Duration::from_secs(61)),
        "capped at 60 s: {gaps:?}"
    );
    assert!(
        gaps[6..].iter().all(|g| *g >= Duration::from_secs(30)),
        "not a hot loop: {gaps:?}"
    );
    let (_, m) = h.stop().await;
    let s = m.snapshot(Table::Trades);
    assert_eq!((s.refused, s.dead_lettered, s.rows_appended), (9, 0, 3));
}

/// Even a request of one valid row refused as a whole blames no row.
#[tokio::test(start_paused = true)]
async fn a_single_valid_row_refused_as_a_whole_is_not_dead_lettered() {
    let h = start(Options {
        max_rows: 1,
        script: vec![
            refused(
                "invalid_argument",
                "The proto field mismatched with BigQuery field",
            ),
            refused("out_of_range", "out of range"),
        ],
        ..Options::default()
    });
    h.send("m1", &trade(1));
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (events, m) = h.stop().await;
    assert_eq!(
        events,
        vec![Ev::Appended(vec![1]), Ev::Acked("m1".into())],
        "held, then landed"
    );
    assert_eq!(m.snapshot(Table::Trades).dead_lettered, 0);
}

/// A missing table or a revoked permission is an outage too: the pipeline does not exit and
/// nacks nothing (a restart loop would only redeliver), and recovers when the table appears.
#[tokio::test(start_paused = true)]
async fn a_missing_table_is_an_outage_the_pipeline_waits_out_without_exiting() {
    let h = start(Options {
        script: vec![
            refused("not_found", "Table not found"),
            refused("permission_denied", "bigquery.tables.updateData denied"),
            refused("not_found", "Table not found"),
        ],
        ..Options::default()
    });
    for i in 1..=3 {
        h.send(&format!("m{i}"), &trade(i));
    }
    h.settle().await;
    assert!(!h.task.is_finished());
    assert!(!h.metrics.is_healthy());
    assert!(h.events().is_empty(), "{:?}", h.events());
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(h.metrics.is_healthy());
    let (events, m) = h.stop().await;
    assert_eq!(acked(&events).len(), 3);
    assert_eq!(m.snapshot(Table::Trades).nacked, 0);
}

/// Row errors whose indices match no row of the request (out of range) blame no known row: an
/// outage with backoff, not an immediate re-append of the same batch forever.
#[tokio::test(start_paused = true)]
async fn row_errors_matching_no_row_are_an_outage_with_backoff_not_a_hot_loop() {
    let unmatched = || {
        Err(SinkError::RowErrors(vec![
            (7, "bad".into()),
            (9, "bad".into()),
        ]))
    };
    let h = start(Options {
        script: vec![unmatched(), unmatched(), unmatched()],
        ..Options::default()
    });
    for i in 1..=3 {
        h.send(&format!("m{i}"), &trade(i));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(h.attempts().len(), 1, "no re-append at once");
    assert!(!h.metrics.is_healthy());
    let health = h.metrics.health();
    assert!(health.problems[0].contains("[7, 9]"), "{health:?}");
    tokio::time::sleep(Duration::from_secs(30)).await;
    let (events, m) = h.stop().await;
    assert_eq!(events[0], Ev::Appended(vec![1, 2, 3]));
    assert_eq!(dead_letters(&events), 0);
    assert_eq!(m.snapshot(Table::Trades).refused, 3);
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_in_outage_mode_hands_the_held_rows_back_by_the_deadline() {
    let h = start(Options {
        script: (0..100)
            .map(|_| refused("not_found", "Table not found"))
            .collect(),
        ..Options::default()
    });
    for i in 1..=3 {
        h.send(&format!("m{i}"), &trade(i));
    }
    tokio::time::sleep(Duration::from_secs(300)).await;
    let t0 = Instant::now();
    let (events, m) = h.stop().await;
    assert!(t0.elapsed() <= Duration::from_secs(9), "{:?}", t0.elapsed());
    assert_eq!(
        events.iter().filter(|e| matches!(e, Ev::Nacked(_))).count(),
        3
    );
    assert_eq!(dead_letters(&events), 0);
    assert!(m.is_healthy(), "nothing held any more");
}

/// A streaming pull that stays open and silent (e.g. the Pub/Sub emulator SIGSTOPped) is
/// reopened after `pull_silence`; silent across the reopen, the pipeline reports unhealthy, and
/// the first message clears it.
#[tokio::test(start_paused = true)]
async fn a_silent_pull_is_reopened_and_turns_unhealthy_when_the_silence_outlasts_the_reopen() {
    let h = start(Options {
        pull_silence: Duration::from_secs(60),
        ..Options::default()
    });
    tokio::time::sleep(Duration::from_secs(59)).await;
    assert_eq!(h.reconnects.load(Ordering::SeqCst), 0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        h.reconnects.load(Ordering::SeqCst),
        1,
        "reopened after 60 s"
    );
    assert!(h.metrics.is_healthy(), "one silence may be a quiet minute");
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert_eq!(h.reconnects.load(Ordering::SeqCst), 2);
    let health = h.metrics.health();
    assert!(!health.is_ok() && health.wedged, "{health:?}");
    assert!(
        h.metrics
            .encode()
            .contains("consumer_pull_silent{table=\"trades_raw\"} 1")
    );
    h.send("m1", &trade(1));
    h.settle().await;
    assert!(h.metrics.is_healthy(), "{:?}", h.metrics.health());
    let (_, m) = h.stop().await;
    assert_eq!(m.snapshot(Table::Trades).reopened, 2);
}

#[tokio::test(start_paused = true)]
async fn messages_keep_the_pull_from_being_reopened_and_zero_turns_the_check_off() {
    let h = start(Options {
        pull_silence: Duration::from_secs(60),
        ..Options::default()
    });
    for i in 1..=10 {
        tokio::time::sleep(Duration::from_secs(50)).await;
        h.send(&format!("m{i}"), &trade(i));
    }
    h.settle().await;
    assert_eq!(h.reconnects.load(Ordering::SeqCst), 0);
    h.stop().await;

    let off = start(Options::default());
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(off.reconnects.load(Ordering::SeqCst), 0);
    assert!(off.metrics.is_healthy());
    off.stop().await;
}

/// While a batch waits for BigQuery nothing is pulled: that is not silence.
#[tokio::test(start_paused = true)]
async fn time_spent_waiting_for_bigquery_is_not_pull_silence() {
    let h = start(Options {
        pull_silence: Duration::from_secs(60),
        // At least 1+2+4+8+16+32+60+60+60+60 halved: ~150 s of refusals.
        script: (0..10)
            .map(|_| refused("not_found", "Table not found"))
            .collect(),
        ..Options::default()
    });
    for i in 1..=3 {
        h.send(&format!("m{i}"), &trade(i));
    }
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(h.events().is_empty(), "still refused");
    assert_eq!(h.reconnects.load(Ordering::SeqCst), 0);
    h.stop().await;
}
