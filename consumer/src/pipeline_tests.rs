//! The run loop against fakes (source, sink, dead-letter topic), in paused tokio time.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use trade_proto::{Source, Trade};

use super::*;
use crate::dead_letter::{DeadLetterError, Letter};
use crate::sink::Table;

#[path = "pipeline_outage_tests.rs"]
mod outage;

/// Everything that happened, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    /// An append BigQuery acknowledged, with the trade ids of its rows.
    Appended(Vec<i64>),
    Acked(String),
    Nacked(String),
    DeadLettered(String, String),
}

type Log = Arc<Mutex<Vec<Ev>>>;

struct FakeAck {
    id: String,
    log: Log,
}

impl Ack for FakeAck {
    fn ack(self) {
        self.log.lock().unwrap().push(Ev::Acked(self.id));
    }
    fn nack(self) {
        self.log.lock().unwrap().push(Ev::Nacked(self.id));
    }
}

struct FakeSource {
    rx: mpsc::UnboundedReceiver<Received<FakeAck>>,
    reconnects: Arc<AtomicUsize>,
}

impl MessageSource for FakeSource {
    type Ack = FakeAck;
    async fn next(&mut self) -> Result<Received<FakeAck>, String> {
        match self.rx.recv().await {
            Some(m) => Ok(m),
            None => std::future::pending().await,
        }
    }
    async fn reconnect(&mut self) {
        self.reconnects.fetch_add(1, Ordering::SeqCst);
    }
    async fn shutdown(self) {}
}

/// Answers appends from a script, then with `Ok`; records when each attempt started.
struct FakeSink {
    log: Log,
    script: Mutex<VecDeque<Result<(), SinkError>>>,
    always_retry: bool,
    attempts: Mutex<Vec<Instant>>,
}

impl RowSink for FakeSink {
    async fn append(&self, _table: Table, rows: Vec<Bytes>) -> Result<(), SinkError> {
        self.attempts.lock().unwrap().push(Instant::now());
        tokio::time::sleep(Duration::from_millis(5)).await;
        if self.always_retry {
            return Err(SinkError::Retry("down".into()));
        }
        if let Some(outcome) = self.script.lock().unwrap().pop_front() {
            outcome?;
        }
        let ids: Vec<i64> = rows
            .iter()
            .map(|r| Trade::decode(r.as_ref()).unwrap().trade_id)
            .collect();
        self.log.lock().unwrap().push(Ev::Appended(ids));
        Ok(())
    }
}

struct FakeDeadLetter {
    log: Log,
    fail: bool,
}

impl DeadLetter for FakeDeadLetter {
    async fn publish(&self, letter: Letter) -> Result<(), DeadLetterError> {
        if self.fail {
            return Err(DeadLetterError("topic down".into()));
        }
        self.log.lock().unwrap().push(Ev::DeadLettered(
            letter.attributes["original_message_id"].clone(),
            letter.attributes["reason"].clone(),
        ));
        Ok(())
    }
}

fn trade(id: i64) -> Trade {
    Trade {
        symbol: "BTCUSDT".into(),
        trade_id: id,
        price: "107407.88".into(),
        quantity: "0.001".into(),
        trade_time: 1_751_132_780_368_000 + id,
        event_time: 1_751_132_780_369_000 + id,
        receive_time: 1_751_132_780_371_000 + id,
        buyer_is_maker: id % 2 == 0,
        source: Source::Stream.as_str().into(),
    }
}

struct Harness {
    log: Log,
    tx: mpsc::UnboundedSender<Received<FakeAck>>,
    metrics: Arc<Metrics>,
    sink: Arc<FakeSink>,
    reconnects: Arc<AtomicUsize>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

struct Options {
    max_rows: usize,
    script: Vec<Result<(), SinkError>>,
    always_retry: bool,
    dead_letter_fails: bool,
    pull_silence: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_rows: 3,
            script: Vec::new(),
            always_retry: false,
            dead_letter_fails: false,
            pull_silence: Duration::ZERO,
        }
    }
}

fn start(o: Options) -> Harness {
    let log: Log = Arc::default();
    let (tx, rx) = mpsc::unbounded_channel();
    let metrics = Arc::new(Metrics::new());
    let settings = Settings {
        subscription: "subs".into(),
        limits: Limits {
            max_rows: o.max_rows,
            max_bytes: 1_000_000,
            max_age: Duration::from_secs(1),
        },
        dedup_window: 1000,
        append_timeout: Duration::from_secs(30),
        shutdown_deadline: Duration::from_secs(8),
        backoff: backoff::transient(),
        refused_backoff: backoff::refused(Duration::from_secs(60)),
        pull_silence: o.pull_silence,
    };
    let sink = Arc::new(FakeSink {
        log: log.clone(),
        script: Mutex::new(o.script.into()),
        always_retry: o.always_retry,
        attempts: Mutex::default(),
    });
    let dead = Arc::new(FakeDeadLetter {
        log: log.clone(),
        fail: o.dead_letter_fails,
    });
    let reconnects = Arc::new(AtomicUsize::new(0));
    let source = FakeSource {
        rx,
        reconnects: reconnects.clone(),
    };
    let pipeline =
        Pipeline::<Trades, _, _, _>::new(settings, source, sink.clone(), dead, metrics.clone());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(pipeline.run(shutdown.clone()));
    Harness {
        log,
        tx,
        metrics,
        sink,
        reconnects,
        shutdown,
        task,
    }
}

impl Harness {
    fn send_raw(&self, message_id: &str, data: Vec<u8>, attrs: &[(&str, &str)]) {
        self.tx
            .send(Received {
                data: Bytes::from(data),
                attributes: attrs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                message_id: message_id.to_owned(),
                ordering_key: "BTCUSDT".into(),
                ack: FakeAck {
                    id: message_id.to_owned(),
                    log: self.log.clone(),
                },
            })
            .unwrap();
    }

    fn send(&self, message_id: &str, t: &Trade) {
        self.send_raw(
            message_id,
            t.encode_to_vec(),
            &[("symbol", &t.symbol), ("source", &t.source)],
        );
    }

    async fn settle(&self) {
        // Paused time: sleeping lets every ready task run and auto-advances the clock.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    fn events(&self) -> Vec<Ev> {
        self.log.lock().unwrap().clone()
    }

    /// Asks for shutdown and waits for the run to end (it never ends on its own).
    async fn stop(self) -> (Vec<Ev>, Arc<Metrics>) {
        self.shutdown.cancel();
        self.task.await.unwrap();
        let events = self.log.lock().unwrap().clone();
        (events, self.metrics)
    }

    fn attempts(&self) -> Vec<Instant> {
        self.sink.attempts.lock().unwrap().clone()
    }
}

fn acked(events: &[Ev]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Ev::Acked(id) => Some(id.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_full_batch_is_appended_once_and_acked_only_after() {
    let h = start(Options::default());
    h.send("m1", &trade(1));
    h.send("m2", &trade(2));
    h.settle().await;
    assert!(
        h.events().is_empty(),
        "nothing appended or acked before the batch is full"
    );
    h.send("m3", &trade(3));
    h.settle().await;
    assert_eq!(
        h.events(),
        vec![
            Ev::Appended(vec![1, 2, 3]),
            Ev::Acked("m1".into()),
            Ev::Acked("m2".into()),
            Ev::Acked("m3".into()),
        ]
    );
    let (_, m) = h.stop().await;
    let s = m.snapshot(Table::Trades);
    assert_eq!((s.received, s.rows_appended, s.batches), (3, 3, 1));
}

#[tokio::test(start_paused = true)]
async fn a_half_full_batch_is_written_when_it_ages() {
    let h = start(Options::default());
    let t0 = Instant::now();
    h.send("m1", &trade(1));
    h.settle().await;
    assert!(h.events().is_empty());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(h.events()[0], Ev::Appended(vec![1]));
    assert!(t0.elapsed() >= Duration::from_secs(1));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_with_backoff_and_nothing_is_acked_early() {
    let h = start(Options {
        script: vec![
            Err(SinkError::Retry("unavailable".into())),
            Err(SinkError::Retry("unavailable".into())),
            Err(SinkError::Retry("unavailable".into())),
        ],
        ..Options::default()
    });
    let t0 = Instant::now();
    for i in 1..=3 {
        h.send(&format!("m{i}"), &trade(i));
    }
    h.settle().await;
    assert!(acked(&h.events()).is_empty(), "{:?}", h.events());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events = h.events();
    assert_eq!(events[0], Ev::Appended(vec![1, 2, 3]));
    assert_eq!(acked(&events).len(), 3);
    // Backoff 100 ms, 200 ms, 400 ms, each jittered to at least half.
    assert!(t0.elapsed() >= Duration::from_millis(350));
    let (_, m) = h.stop().await;
    assert_eq!(m.snapshot(Table::Trades).retries, 3);
}

#[tokio::test(start_paused = true)]
async fn rows_bigquery_refuses_are_dead_lettered_and_the_rest_retried() {
    let h = start(Options {
        script: vec![Err(SinkError::RowErrors(vec![(
            1,
            "NUMERIC overflow".into(),
        )]))],
        ..Options::default()
    });
    for i in 1..=3 {
        h.send(&format!("m{i}"), &trade(i));
    }
    h.settle().await;
    let (events, m) = h.stop().await;
    assert!(events.contains(&Ev::DeadLettered(
        "m2".into(),
        "rejected_by_bigquery".into()
    )));
    assert!(events.contains(&Ev::Appended(vec![1, 3])));
    let mut a = acked(&events);
    a.sort();
    assert_eq!(a, vec!["m1", "m2", "m3"]);
    assert_eq!(m.snapshot(Table::Trades).dead_lettered, 1);
}

#[tokio::test(start_paused = true)]
async fn poison_is_dead_lettered_with_its_reason_and_the_good_ones_land() {
    let h = start(Options::default());
    h.send("m1", &trade(1));
    h.send_raw("junk", b"\xff\xff\xff".to_vec(), &[]);
    let t = trade(2);
    h.send_raw("noattrs", t.encode_to_vec(), &[]);
    h.send("m2", &trade(2));
    h.send("m3", &trade(3));
    h.settle().await;
    let events = h.events();
    assert!(events.contains(&Ev::DeadLettered("junk".into(), "undecodable".into())));
    assert!(events.contains(&Ev::DeadLettered(
        "noattrs".into(),
        "missing_attribute".into()
    )));
    assert!(events.contains(&Ev::Appended(vec![1, 2, 3])));
    assert_eq!(acked(&events).len(), 5);
    let (_, m) = h.stop().await;
    assert_eq!(m.snapshot(Table::Trades).dead_lettered, 2);
}

#[tokio::test(start_paused = true)]
async fn poison_is_nacked_when_the_dead_letter_topic_fails() {
    let h = start(Options {
        dead_letter_fails: true,
        ..Options::default()
    });
    h.send_raw("junk", b"\xff".to_vec(), &[]);
    h.settle().await;
    assert_eq!(h.events(), vec![Ev::Nacked("junk".into())]);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn duplicates_make_one_row_and_every_copy_is_acked_after_it_landed() {
    let h = start(Options::default());
    h.send("m1", &trade(1));
    let mut overlap = trade(1);
    overlap.source = Source::Backfill.as_str().into();
    h.send("m1-backfill", &overlap); // same key, other message: waits for m1's row
    h.send("m2", &trade(2));
    h.send("m3", &trade(3));
    h.settle().await;
    let events = h.events();
    assert_eq!(events[0], Ev::Appended(vec![1, 2, 3]));
    assert_eq!(acked(&events).len(), 4);
    // A redelivery of a landed message is acked without a row.
    h.send("m2", &trade(2));
    h.settle().await;
    let (events, m) = h.stop().await;
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Ev::Appended(_)))
            .count(),
        1
    );
    assert_eq!(acked(&events).len(), 5);
    let s = m.snapshot(Table::Trades);
    assert_eq!((s.duplicates, s.redeliveries), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn shutdown_writes_the_half_full_batch_then_acks_it() {
    let h = start(Options::default());
    h.send("m1", &trade(1));
    h.send("m2", &trade(2));
    h.settle().await;
    let (events, _) = h.stop().await;
    assert_eq!(
        events,
        vec![
            Ev::Appended(vec![1, 2]),
            Ev::Acked("m1".into()),
            Ev::Acked("m2".into())
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_while_bigquery_is_down_nacks_everything_by_the_deadline() {
    let h = start(Options {
        always_retry: true,
        ..Options::default()
    });
    for i in 1..=4 {
        h.send(&format!("m{i}"), &trade(i));
    }
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(acked(&h.events()).is_empty());
    let t0 = Instant::now();
    let (events, _) = h.stop().await;
    assert!(t0.elapsed() <= Duration::from_secs(9), "{:?}", t0.elapsed());
    let nacked: HashSet<_> = events
        .iter()
        .filter_map(|e| match e {
            Ev::Nacked(id) => Some(id.as_str()),
            _ => None,
        })
        .collect();
    // m1..m3 were pulled and held; m4 was never pulled (the loop was busy retrying), so it is
    // Pub/Sub's to redeliver, not ours to settle.
    assert_eq!(nacked, HashSet::from(["m1", "m2", "m3"]));
    assert!(acked(&events).is_empty());
}

#[test]
fn backoff_doubles_and_caps() {
    let b = backoff::transient();
    assert_eq!(b.delay(1, 1.0), Duration::from_millis(100));
    assert_eq!(b.delay(3, 1.0), Duration::from_millis(400));
    // The lowest draw halves the delay, never less.
    assert_eq!(b.delay(3, 0.0), Duration::from_millis(200));
    assert_eq!(b.delay(40, 1.0), Duration::from_secs(10));
    let r = backoff::refused(Duration::from_secs(60));
    assert_eq!(r.delay(1, 1.0), Duration::from_secs(1));
    assert_eq!(r.delay(6, 1.0), Duration::from_secs(32));
    assert_eq!(r.delay(7, 1.0), Duration::from_secs(60));
    assert_eq!(r.delay(1000, 1.0), Duration::from_secs(60));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Whatever the duplicates and transient failures: every message is settled exactly once,
    /// every key lands, and no message is acked before an append holding its key landed.
    #[test]
    fn no_trade_lost_and_no_ack_before_its_row_landed(
        ids in proptest::collection::vec(0i64..30, 1..80),
        failures in proptest::collection::vec(any::<bool>(), 0..20),
        max_rows in 1usize..7,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let script = failures
                .iter()
                .map(|f| if *f { Err(SinkError::Retry("blip".into())) } else { Ok(()) })
                .collect();
            let h = start(Options { max_rows, script, ..Options::default() });
            let mut by_message = HashMap::new();
            for (n, id) in ids.iter().enumerate() {
                let message_id = format!("m{n}");
                by_message.insert(message_id.clone(), *id);
                h.send(&message_id, &trade(*id));
                if n % 5 == 0 {
                    h.settle().await;
                }
            }
            // Stop only once everything was settled: a shutdown would hand the rest back by its
            // deadline, which is another test. The failures are finite, so this ends (paused
            // time: the minutes of backoff cost nothing).
            for _ in 0..20_000 {
                if acked(&h.events()).len() >= ids.len() {
                    break;
                }
                h.settle().await;
            }
            let (events, _) = h.stop().await;
            let mut landed = HashSet::new();
            let mut settled = HashMap::new();
            for e in &events {
                match e {
                    Ev::Appended(keys) => landed.extend(keys.iter().copied()),
                    Ev::Acked(m) => {
                        assert!(landed.contains(&by_message[m]), "{m} acked before its row landed");
                        *settled.entry(m.clone()).or_insert(0) += 1;
                    }
                    Ev::Nacked(m) => panic!("{m} nacked with BigQuery up"),
                    Ev::DeadLettered(m, _) => panic!("{m} dead-lettered"),
                }
            }
            assert_eq!(settled.len(), ids.len());
            assert!(settled.values().all(|n| *n == 1));
            let all: HashSet<i64> = ids.iter().copied().collect();
            assert_eq!(landed, all);
        });
    }
}
