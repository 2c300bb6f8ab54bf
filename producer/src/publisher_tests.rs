//! The publisher task against fake Pub/Sub sinks: retries pause only their key, permanent
//! errors and the deadline give back what is unpublished, max_in_flight and health.

use super::*;

/// A fake Pub/Sub: fails the first `fail_first` publishes of key "BAD" (then pauses the key
/// like the real client until resumed), records what it accepted.
#[derive(Default)]
struct Fake {
    accepted: Mutex<Vec<(String, i64)>>,
    fail_left: Mutex<u32>,
    paused: Mutex<bool>,
    resumes: Mutex<u32>,
    permanent: bool,
}

impl Sink for Fake {
    fn publish(&self, m: &Outgoing) -> BoxFuture<'static, Result<(), SinkError>> {
        let id = m.order();
        let result = if m.key == "BAD" {
            let mut paused = self.paused.lock().unwrap();
            let mut left = self.fail_left.lock().unwrap();
            if self.permanent {
                Err(SinkError::Permanent("topic not found".into()))
            } else if *paused {
                Err(SinkError::Retry("ordering key paused".into()))
            } else if *left > 0 {
                *left -= 1;
                *paused = true;
                Err(SinkError::Retry("unavailable".into()))
            } else {
                Ok(())
            }
        } else {
            Ok(())
        };
        if result.is_ok() {
            self.accepted.lock().unwrap().push((m.key.clone(), id));
        }
        Box::pin(async move { result })
    }
    fn resume(&self, key: &str) {
        if key == "BAD" {
            *self.paused.lock().unwrap() = false;
            *self.resumes.lock().unwrap() += 1;
        }
    }
}

fn msg(key: &str, id: i64) -> Outgoing {
    Outgoing {
        key: key.into(),
        data: Bytes::from_static(b"x"),
        attributes: [("symbol", key.into()), ("source", "stream".into())],
        kind: Kind::Trade {
            sym: 0,
            id,
            source: Source::Stream,
            trade_time_us: 0,
        },
        enqueued: Instant::now(),
    }
}

/// A publisher of at most 3 messages in flight behind a queue of 4: the backpressure tests.
fn spawn_three_in_flight<S: Sink>(sink: Arc<S>) -> (mpsc::Sender<Outgoing>, Arc<Metrics>) {
    let (tx, rx) = mpsc::channel(4);
    let m = metrics();
    tokio::spawn(run_publisher(
        sink,
        rx,
        PublisherConfig {
            max_in_flight: 3,
            ..Default::default()
        },
        m.clone(),
        None,
        None,
        CancellationToken::new(),
    ));
    (tx, m)
}

fn metrics() -> Arc<Metrics> {
    Arc::new(Metrics::new(&["X".into()]))
}

#[tokio::test(start_paused = true)]
async fn transient_failures_pause_only_their_key_and_everything_is_published_once() {
    let fake = Arc::new(Fake {
        fail_left: Mutex::new(3),
        ..Default::default()
    });
    let (tx, rx) = mpsc::channel(16);
    let ledger = Arc::new(Mutex::new(Ledger::new(1)));
    ledger.lock().unwrap().start_after(0, -1);
    let task = tokio::spawn(run_publisher(
        fake.clone(),
        rx,
        PublisherConfig {
            max_in_flight: 4,
            ..Default::default()
        },
        metrics(),
        None,
        Some(ledger.clone()),
        CancellationToken::new(),
    ));
    for id in 0..50 {
        tx.send(msg(if id % 2 == 0 { "BAD" } else { "GOOD" }, id))
            .await
            .unwrap();
    }
    drop(tx);
    let report = task.await.unwrap().unwrap();
    assert_eq!(report.published, 50);
    let accepted = fake.accepted.lock().unwrap().clone();
    let mut ids: Vec<i64> = accepted.iter().map(|(_, id)| *id).collect();
    ids.sort();
    assert_eq!(ids, (0..50).collect::<Vec<_>>(), "each exactly once");
    assert!(*fake.resumes.lock().unwrap() >= 3, "the key was resumed");
    // Within the failing key, ids stay in order.
    let bad: Vec<i64> = accepted
        .iter()
        .filter(|(k, _)| k == "BAD")
        .map(|(_, id)| *id)
        .collect();
    assert!(bad.windows(2).all(|w| w[0] < w[1]), "{bad:?}");
    assert_eq!(
        ledger.lock().unwrap().through(0),
        Some(49),
        "every ack confirmed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_permanent_error_fails_loudly_with_what_was_not_published() {
    let fake = Arc::new(Fake {
        permanent: true,
        ..Default::default()
    });
    let (tx, rx) = mpsc::channel(16);
    for id in 0..5 {
        tx.send(msg("BAD", id)).await.unwrap();
    }
    let err = run_publisher(
        fake,
        rx,
        PublisherConfig::default(),
        metrics(),
        None,
        None,
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("topic not found"), "{err}");
    assert_eq!(err.unpublished.len(), 5);
}

#[tokio::test(start_paused = true)]
async fn abandoning_reports_everything_still_unpublished() {
    let fake = Arc::new(Fake {
        fail_left: Mutex::new(u32::MAX),
        ..Default::default()
    });
    let (tx, rx) = mpsc::channel(16);
    let abandon = CancellationToken::new();
    let ledger = Arc::new(Mutex::new(Ledger::new(1)));
    ledger.lock().unwrap().start_after(0, -1);
    let task = tokio::spawn(run_publisher(
        fake.clone(),
        rx,
        PublisherConfig::default(),
        metrics(),
        None,
        Some(ledger.clone()),
        abandon.clone(),
    ));
    for id in 0..6 {
        tx.send(msg(if id < 4 { "BAD" } else { "GOOD" }, id))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    abandon.cancel();
    let report = task.await.unwrap().unwrap();
    assert_eq!(report.published, 2);
    let mut left: Vec<i64> = report.unpublished.iter().map(Outgoing::order).collect();
    left.sort();
    assert_eq!(left, vec![0, 1, 2, 3]);
    // 4 and 5 were acknowledged but 0..=3 were not: the resume point must not pass them.
    let l = ledger.lock().unwrap();
    assert_eq!((l.through(0), l.ranges_ahead(0)), (Some(-1), 1));
}

#[tokio::test(start_paused = true)]
async fn messages_held_for_a_paused_key_count_against_max_in_flight() {
    // Every publish of "BAD" fails: the key stays paused and its messages are held. Held
    // messages are memory too, so the queue must stop draining at max_in_flight.
    let fake = Arc::new(Fake {
        fail_left: Mutex::new(u32::MAX),
        ..Default::default()
    });
    let (tx, m) = spawn_three_in_flight(fake);
    for id in 0..7 {
        tx.send(msg("BAD", id)).await.unwrap();
        // Let the failures come back and the retries cycle.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let blocked = tokio::time::timeout(Duration::from_secs(60), tx.send(msg("BAD", 7))).await;
    assert!(blocked.is_err(), "held messages escaped the cap");
    assert_eq!(m.queue_depth.get(), 7, "3 outstanding + 4 queued");
}

/// A sink whose publishes hang until the gate opens (a frozen Pub/Sub answers nothing).
struct Gate(tokio::sync::watch::Receiver<bool>);
impl Sink for Gate {
    fn publish(&self, _: &Outgoing) -> BoxFuture<'static, Result<(), SinkError>> {
        let mut open = self.0.clone();
        Box::pin(async move {
            let _ = open.wait_for(|o| *o).await;
            Ok(())
        })
    }
    fn resume(&self, _: &str) {}
}

#[tokio::test(start_paused = true)]
async fn hanging_publishes_turn_health_to_not_publishing_and_back() {
    let (gate, gate_rx) = tokio::sync::watch::channel(false);
    let (tx, rx) = mpsc::channel(16);
    let health = Arc::new(Health::default());
    let m = metrics();
    let task = tokio::spawn(run_publisher(
        Arc::new(Gate(gate_rx)),
        rx,
        PublisherConfig::default(),
        m.clone(),
        Some(health.clone()),
        None,
        CancellationToken::new(),
    ));
    // Idle for a long time is not stuck.
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(health.publishing.load(Ordering::Relaxed), "idle is healthy");
    tx.send(msg("A", 1)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert!(health.publishing.load(Ordering::Relaxed), "not stuck yet");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !health.publishing.load(Ordering::Relaxed),
        "stuck after 30 s"
    );
    assert_eq!(m.publishing.get(), 0);
    gate.send(true).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(health.publishing.load(Ordering::Relaxed), "recovered");
    assert_eq!(m.publishing.get(), 1);
    drop(tx);
    assert_eq!(task.await.unwrap().unwrap().published, 1);
}

#[tokio::test(start_paused = true)]
async fn backpressure_stops_taking_from_the_queue_at_max_in_flight() {
    struct Never;
    impl Sink for Never {
        fn publish(&self, _: &Outgoing) -> BoxFuture<'static, Result<(), SinkError>> {
            Box::pin(futures::future::pending())
        }
        fn resume(&self, _: &str) {}
    }
    let (tx, m) = spawn_three_in_flight(Arc::new(Never));
    for id in 0..7 {
        tx.send(msg("A", id)).await.unwrap();
    }
    // 3 in flight + 4 queued: the next send must wait.
    let blocked = tokio::time::timeout(Duration::from_secs(1), tx.send(msg("A", 7))).await;
    assert!(blocked.is_err(), "the queue should be full");
    assert_eq!(m.queue_depth.get(), 7);
}
