//! The hub's decisions, with fake connections and fake queues under paused time: nothing here
//! opens a socket, so every wait is virtual and each test runs in milliseconds.

use std::sync::atomic::Ordering;

use clap::Parser as _;
use tokio::task::JoinHandle;

use super::*;
use crate::config::Cli;
use crate::resume::StartRule;

/// Longest virtual wait for something the hub should do: far beyond every timer in play, so a
/// miss is a wrong decision, not a slow machine.
const PATIENCE: Duration = Duration::from_secs(120);

/// A connection the fake connector "opened": the test speaks for it.
struct FakeConn {
    conn: ConnId,
    events: mpsc::Sender<ConnEvent>,
    cancel: CancellationToken,
}

impl FakeConn {
    async fn send(&self, ev: ConnEvent) {
        self.events.send(ev).await.expect("the hub reads events");
    }

    async fn opened(&self) {
        self.send(ConnEvent::Opened { conn: self.conn }).await;
    }

    async fn trade(&self, id: i64) {
        self.send(ConnEvent::Trade {
            conn: self.conn,
            sym: 0,
            trade: trade(id),
        })
        .await;
    }
}

/// Hands each opened connection to the test instead of dialling.
struct FakeConnector(mpsc::UnboundedSender<FakeConn>);

impl Connector for FakeConnector {
    fn open(&mut self, conn: ConnId, events: mpsc::Sender<ConnEvent>, cancel: CancellationToken) {
        let _ = self.0.send(FakeConn {
            conn,
            events,
            cancel,
        });
    }
}

fn trade(id: i64) -> Trade {
    Trade {
        trade_id: id,
        trade_time: 1_700_000_000_000_000 + id,
        ..Trade::default()
    }
}

/// One symbol, no state file, and watchdog thresholds out of the way unless a test sets them.
fn settings() -> Settings {
    let cli = Cli::try_parse_from([
        "producer",
        "--project",
        "p",
        "--symbols",
        "BTCUSDT",
        "--state-file=",
    ])
    .expect("arguments parse");
    let mut s = Settings::from_args(&cli.run).expect("settings are valid");
    s.supervisor.watchdog.silence = Duration::from_secs(3600);
    s.supervisor.watchdog.socket_timeout = Duration::from_secs(3600);
    s
}

struct Harness {
    opens: mpsc::UnboundedReceiver<FakeConn>,
    trades: mpsc::Receiver<Outgoing>,
    gaps: mpsc::Receiver<Outgoing>,
    backfill_req: mpsc::UnboundedReceiver<BackfillRequest>,
    backfill_res: mpsc::Sender<BackfillResult>,
    health: Arc<Health>,
    ledger: Arc<Mutex<Ledger>>,
    stop: CancellationToken,
    hub: JoinHandle<anyhow::Result<Vec<Outgoing>>>,
}

impl Harness {
    fn start(settings: Settings, starts: Vec<StartPoint>) -> Self {
        let settings = Arc::new(settings);
        let (open_tx, opens) = mpsc::unbounded_channel();
        let (trades_tx, trades) = mpsc::channel(1024);
        let (gaps_tx, gaps) = mpsc::channel(1024);
        let (req_tx, backfill_req) = mpsc::unbounded_channel();
        let (backfill_res, res_rx) = mpsc::channel(64);
        let health = Arc::new(Health::default());
        let ledger = Arc::new(Mutex::new(Ledger::new(settings.symbols.len())));
        let stop = CancellationToken::new();
        let hub = Hub::new(HubParts {
            metrics: Arc::new(Metrics::new(&settings.symbols)),
            settings,
            health: health.clone(),
            connector: FakeConnector(open_tx),
            trades: trades_tx,
            gaps: gaps_tx,
            backfill: req_tx,
            ledger: ledger.clone(),
            stop: stop.clone(),
        });
        let hub = tokio::spawn(async move { hub.with_starts(&starts).await.run(res_rx).await });
        Self {
            opens,
            trades,
            gaps,
            backfill_req,
            backfill_res,
            health,
            ledger,
            stop,
            hub,
        }
    }

    /// A hub on `settings` whose first connection is open.
    async fn connected(settings: Settings) -> (Self, FakeConn) {
        let mut h = Self::start(settings, Vec::new());
        let c1 = h.next_open().await;
        c1.opened().await;
        (h, c1)
    }

    /// The backfill task's answer for `range` of symbol 0.
    async fn answer(&self, range: IdRange, outcome: Outcome) {
        self.backfill_res
            .send(BackfillResult {
                sym: 0,
                range,
                outcome,
            })
            .await
            .expect("the hub reads backfill results");
    }

    async fn next_open(&mut self) -> FakeConn {
        within(self.opens.recv()).await.expect("the hub is running")
    }

    /// The next trade queued for the publisher: its id and source.
    async fn next_trade(&mut self) -> (i64, Source) {
        let out = within(self.trades.recv())
            .await
            .expect("the trade queue is open");
        match out.kind {
            Kind::Trade { id, source, .. } => (id, source),
            other => panic!("not a trade: {other:?}"),
        }
    }

    /// The next gap record queued: its ids and reason.
    async fn next_gap(&mut self) -> (IdRange, String) {
        let out = within(self.gaps.recv())
            .await
            .expect("the gap queue is open");
        let Kind::Gap { from, to, .. } = out.kind else {
            panic!("not a gap: {:?}", out.kind);
        };
        let reason = out
            .attributes
            .iter()
            .find(|(k, _)| *k == "reason")
            .map(|(_, v)| v.clone())
            .expect("a gap record carries its reason");
        (IdRange::new(from, to), reason)
    }

    async fn next_backfill(&mut self) -> BackfillRequest {
        within(self.backfill_req.recv())
            .await
            .expect("the backfill queue is open")
    }

    /// Stops the hub (the connections stand for tasks that end when cancelled) and returns what
    /// it could not queue.
    async fn stop(self, conns: Vec<FakeConn>) -> anyhow::Result<Vec<Outgoing>> {
        self.stop.cancel();
        drop(conns);
        within(self.hub).await.expect("the hub did not panic")
    }
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(PATIENCE, f)
        .await
        .expect("the hub did not act in time")
}

/// Whether `f` completes within `d` (virtual time).
async fn happens_within<F: std::future::Future>(d: Duration, f: F) -> bool {
    tokio::time::timeout(d, f).await.is_ok()
}

#[tokio::test(start_paused = true)]
async fn a_closed_connection_is_replaced_and_readiness_follows() {
    let mut h = Harness::start(settings(), Vec::new());
    let c1 = h.next_open().await;
    assert_eq!(c1.conn, 1);
    c1.opened().await;
    c1.trade(100).await;
    assert_eq!(h.next_trade().await, (100, Source::Stream));
    assert!(h.health.connected.load(Ordering::Relaxed));

    c1.send(ConnEvent::Closed {
        conn: 1,
        reason: "reset by peer".into(),
    })
    .await;
    let c2 = h.next_open().await;
    assert_eq!(c2.conn, 2, "a replacement is opened");
    assert!(!h.health.connected.load(Ordering::Relaxed));
    c2.opened().await;
    // The replacement's duplicate is dropped, its new trade published.
    c2.trade(100).await;
    c2.trade(101).await;
    assert_eq!(h.next_trade().await, (101, Source::Stream));
    assert!(h.health.connected.load(Ordering::Relaxed));
    assert!(h.stop(vec![c1, c2]).await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn rotation_opens_a_successor_at_the_age_limit_and_closes_the_old_one_once_caught_up() {
    let mut s = settings();
    s.supervisor.rotate_after = Duration::from_secs(10);
    let (mut h, c1) = Harness::connected(s).await;
    c1.trade(100).await;
    assert_eq!(h.next_trade().await, (100, Source::Stream));

    assert!(
        !happens_within(Duration::from_secs(9), h.opens.recv()).await,
        "no rotation before rotate_after"
    );
    let c2 = h.next_open().await;
    assert_eq!(c2.conn, 2);
    c2.opened().await;
    // Make before break: the old one stays while the successor is behind it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!c1.cancel.is_cancelled());
    c2.trade(101).await;
    assert_eq!(h.next_trade().await, (101, Source::Stream));
    assert!(
        happens_within(Duration::from_secs(1), c1.cancel.cancelled()).await,
        "the old connection is closed once the successor caught up"
    );
    assert!(!c2.cancel.is_cancelled());
    h.stop(vec![c1, c2]).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn server_shutdown_opens_a_successor_without_waiting_for_the_close() {
    let (mut h, c1) = Harness::connected(settings()).await;
    c1.send(ConnEvent::ServerShutdown { conn: 1 }).await;
    let c2 = h.next_open().await;
    assert_eq!(c2.conn, 2);
    assert!(!c1.cancel.is_cancelled());
    h.stop(vec![c1, c2]).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_hole_is_backfilled_after_the_grace_and_what_rest_lacks_becomes_a_gap() {
    let (mut h, c1) = Harness::connected(settings()).await;
    c1.trade(100).await;
    c1.trade(105).await;
    assert_eq!(h.next_trade().await, (100, Source::Stream));
    assert_eq!(h.next_trade().await, (105, Source::Stream));

    // gap_grace is 2 s by default: reordered frames get that long to fill the hole.
    assert!(!happens_within(Duration::from_millis(1500), h.backfill_req.recv()).await);
    let req = h.next_backfill().await;
    assert_eq!((req.sym, req.range), (0, IdRange::new(101, 104)));

    h.answer(
        req.range,
        Outcome::Fetched(vec![trade(101), trade(102), trade(104), trade(105)]),
    )
    .await;
    assert_eq!(h.next_trade().await, (101, Source::Backfill));
    assert_eq!(h.next_trade().await, (102, Source::Backfill));
    assert_eq!(h.next_trade().await, (104, Source::Backfill));
    assert_eq!(
        h.next_gap().await,
        (IdRange::new(103, 103), "ids_unavailable".to_owned())
    );
    // 105 came on the stream: the page's copy was dropped, nothing else was queued.
    assert!(h.trades.try_recv().is_err());
    h.stop(vec![c1]).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_passing_backfill_failure_is_asked_again_after_the_retry_wait() {
    let (mut h, c1) = Harness::connected(settings()).await;
    c1.trade(100).await;
    c1.trade(103).await;
    let req = h.next_backfill().await;
    h.answer(
        req.range,
        Outcome::Failed {
            reason: "rest_unavailable",
            detail: "502".into(),
            retry_after: Some(Duration::from_secs(1)),
        },
    )
    .await;
    // The wait is the larger of the server's and --backfill-retry (30 s by default).
    assert!(!happens_within(Duration::from_secs(29), h.backfill_req.recv()).await);
    let again = h.next_backfill().await;
    assert_eq!((again.sym, again.range), (0, IdRange::new(101, 102)));
    assert!(
        h.gaps.try_recv().is_err(),
        "no gap record for a passing trouble"
    );
    h.stop(vec![c1]).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_implausible_id_is_quarantined_not_published() {
    let (mut h, c1) = Harness::connected(settings()).await;
    c1.trade(100).await;
    c1.trade(100 + 1_000_000_000_000).await;
    c1.trade(101).await;
    assert_eq!(h.next_trade().await, (100, Source::Stream));
    assert_eq!(h.next_trade().await, (101, Source::Stream));
    // Nor did it open a gap to backfill.
    assert!(!happens_within(Duration::from_secs(10), h.backfill_req.recv()).await);
    h.stop(vec![c1]).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_fatal_connection_error_ends_the_run_with_it() {
    let mut h = Harness::start(settings(), Vec::new());
    let c1 = h.next_open().await;
    c1.send(ConnEvent::Fatal {
        conn: 1,
        error: "HTTP 451".into(),
    })
    .await;
    let err = within(h.hub).await.unwrap().unwrap_err();
    assert!(err.to_string().contains("HTTP 451"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_resume_point_too_old_becomes_a_gap_record_and_holds_the_ledger_below_it() {
    let starts = vec![StartPoint {
        after: Some(1_000),
        given_up: Some(IdRange::new(500, 999)),
        rule: StartRule::ResumeTruncated,
    }];
    let mut h = Harness::start(settings(), starts);
    assert_eq!(
        h.next_gap().await,
        (
            IdRange::new(500, 999),
            resume::REASON_RESUME_TOO_OLD.to_owned()
        )
    );
    assert_eq!(h.ledger.lock().unwrap().through(0), Some(499));
    let c1 = h.next_open().await;
    c1.opened().await;
    c1.trade(1_000).await;
    c1.trade(1_001).await;
    assert_eq!(h.next_trade().await, (1_001, Source::Stream));
    h.stop(vec![c1]).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn shutdown_handles_frames_already_read_and_reports_unfilled_gaps() {
    let (mut h, c1) = Harness::connected(settings()).await;
    c1.trade(100).await;
    assert_eq!(h.next_trade().await, (100, Source::Stream));
    // Read before the stop, handled after it (the stop wins the hub's select).
    c1.trade(105).await;
    h.stop.cancel();
    within(c1.cancel.cancelled()).await;
    assert_eq!(h.next_trade().await, (105, Source::Stream));
    drop(c1);
    // A last backfill of the open gap, grace or not; REST does not answer in time.
    let req = h.next_backfill().await;
    assert_eq!(req.range, IdRange::new(101, 104));
    assert_eq!(
        h.next_gap().await,
        (IdRange::new(101, 104), "producer_shutdown".to_owned())
    );
    assert!(within(h.hub).await.unwrap().unwrap().is_empty());
    assert!(h.trades.recv().await.is_none(), "the trade queue is closed");
    assert!(h.gaps.recv().await.is_none(), "the gap queue is closed");
}

#[tokio::test(start_paused = true)]
async fn with_a_state_file_shutdown_leaves_open_gaps_to_the_next_run() {
    let mut s = settings();
    s.state_file = Some("/nonexistent/state.json".into());
    let (mut h, c1) = Harness::connected(s).await;
    c1.trade(100).await;
    c1.trade(105).await;
    assert_eq!(h.next_trade().await, (100, Source::Stream));
    assert_eq!(h.next_trade().await, (105, Source::Stream));
    h.stop.cancel();
    drop(c1);
    let req = h.next_backfill().await;
    assert_eq!(req.range, IdRange::new(101, 104));
    assert!(within(h.hub).await.unwrap().unwrap().is_empty());
    assert!(
        h.gaps.recv().await.is_none(),
        "no gap record: the resume point stays below"
    );
}
