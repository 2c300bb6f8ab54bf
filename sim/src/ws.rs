//! WebSocket streams: the upgrade checks and the per-connection task.
//!
//! Paths (as on `stream.binance.com`): `/ws` (no stream yet; subscribe with control messages),
//! `/ws/<stream>[/<stream>...]` (raw payloads), `/stream?streams=a@trade/b@trade` (combined
//! payloads). `timeUnit=MICROSECOND` switches `E` and `T` to µs.
//!
//! The connection task is one `select!` loop over: the trade broadcast, incoming frames, the
//! keep-alive deadline, the age limit, fault controls (drop, stall, `serverShutdown`) and the
//! simulator's shutdown. Every trade it should have sent and did not is recorded with its reason
//! in the connection's ground truth (see [`crate::truth`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, sleep_until};

use crate::control::{self, Effect, SubState};
use crate::faults::{FrameAction, corrupt, decide};
use crate::frames::{TimeUnit, push_trade_frame, server_shutdown_frame};
use crate::limits::{KeepAlive, KeepAliveAction, MessageRate};
use crate::rng::{KeyedRng, Stream};
use crate::state::{ConnCtl, ConnEntry, Shared, TradeBatch};
use crate::truth::{ConnSymbolTruth, ConnectionTruth, MissReason};

// The upgrade checks (faults, limits, the request) apart from the connection task below.
mod upgrade;
pub(crate) use upgrade::{WsRequest, upgrade};

/// Response header carrying the connection id (to look it up in the ground truth).
pub const CONNECTION_ID_HEADER: &str = "x-sim-connection-id";

/// Binance's body for HTTP 451 (restricted location), as quoted in BINANCE.md.
pub const GEO_BLOCK_BODY: &str = r#"{"code":0,"msg":"Service unavailable from a restricted location according to 'b. Eligibility' in https://www.binance.com/en/terms. Please contact customer service if you believe you received this message in error."}"#;

/// One subscribed symbol.
#[derive(Debug, Clone)]
struct Sub {
    stream: String,
    next: u64,
}

/// How the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Injected drop: close abruptly.
    Dropped,
    /// After `serverShutdown` and its grace period.
    ServerShutdown,
    /// The simulator is stopping.
    SimStopping,
    /// Connection age limit.
    MaxAge,
    /// No pong in time.
    PongTimeout,
    /// More than the allowed incoming messages per second.
    RateLimit,
    /// The client closed or the socket failed.
    ClientGone,
}

impl End {
    fn reason(self) -> &'static str {
        match self {
            Self::Dropped => "dropped (injected fault)",
            Self::ServerShutdown => "server shutdown (injected fault)",
            Self::SimStopping => "simulator stopping",
            Self::MaxAge => "maximum connection age",
            Self::PongTimeout => "pong timeout",
            Self::RateLimit => "too many incoming messages",
            Self::ClientGone => "client closed",
        }
    }

    fn miss_reason(self) -> MissReason {
        match self {
            Self::Dropped => MissReason::Dropped,
            Self::ServerShutdown => MissReason::Shutdown,
            _ => MissReason::Closed,
        }
    }

    /// Close frame to send (`None`: cut the TCP connection without one).
    fn close_frame(self) -> Option<CloseFrame> {
        let (code, reason) = match self {
            Self::Dropped | Self::ClientGone => return None,
            Self::ServerShutdown | Self::SimStopping => (1001, "Server shutdown"),
            Self::MaxAge => (1000, "Connection lifetime exceeded"),
            Self::PongTimeout => (1011, "Pong timeout"),
            Self::RateLimit => (1008, "Too many requests"),
        };
        Some(CloseFrame {
            code,
            reason: reason.into(),
        })
    }
}

/// One step of the loop.
enum Step {
    Continue,
    End(End),
}

struct Connection {
    shared: Arc<Shared>,
    entry: Arc<ConnEntry>,
    rx: tokio::sync::broadcast::Receiver<Arc<TradeBatch>>,
    state: SubState,
    subs: Vec<Option<Sub>>,
    unit: TimeUnit,
    rng: KeyedRng,
    held: Option<(usize, u64, String)>,
    buf: Vec<u8>,
}

impl Connection {
    fn new(
        shared: Arc<Shared>,
        entry: Arc<ConnEntry>,
        rx: tokio::sync::broadcast::Receiver<Arc<TradeBatch>>,
        streams: Vec<String>,
        combined: bool,
        unit: TimeUnit,
    ) -> Self {
        let n = shared.tape.len();
        let rng = KeyedRng::new(shared.config.seed, 0, Stream::Faults, entry.id as i64);
        let mut c = Self {
            shared,
            entry,
            rx,
            state: SubState { streams, combined },
            subs: vec![None; n],
            unit,
            rng,
            held: None,
            buf: Vec::with_capacity(256),
        };
        c.resync();
        c
    }

    /// Align `subs` with the subscribed stream names, recording expectations.
    fn resync(&mut self) {
        let mut truth = self.entry.truth.lock().unwrap_or_else(|e| e.into_inner());
        truth.streams = self.state.streams.clone();
        for (i, s) in self.shared.tape.symbols().iter().enumerate() {
            let stream = format!("{}@trade", s.spec.symbol.to_ascii_lowercase());
            let wanted = self.state.streams.iter().any(|x| x == &stream);
            match (&self.subs[i], wanted) {
                (None, true) => {
                    let next = self.shared.cursors[i].load(Ordering::Acquire);
                    self.subs[i] = Some(Sub { stream, next });
                    let t = truth.symbols.entry(s.spec.symbol.clone()).or_default();
                    t.next_expected_id = Some(next);
                    t.first_expected_id.get_or_insert(next);
                }
                (Some(_), false) => {
                    self.subs[i] = None;
                    if let Some(t) = truth.symbols.get_mut(&s.spec.symbol) {
                        t.next_expected_id = None;
                    }
                }
                _ => {}
            }
        }
    }

    async fn run(mut self, socket: WebSocket) {
        let (mut sink, mut stream) = socket.split();
        let shared = self.shared.clone();
        let cfg = &shared.config;
        let opened = Instant::now();
        let age_deadline = opened + cfg.max_connection_age;
        let mut keepalive = KeepAlive::new(cfg.ping_interval, cfg.pong_timeout, opened);
        let mut rate = MessageRate::new(cfg.max_incoming_per_sec);
        let far = opened + Duration::from_secs(100 * 365 * 86_400);
        let end = loop {
            let (shutdown_at, pending, inject) = {
                let mut ctl = self.entry.ctl.lock().unwrap_or_else(|e| e.into_inner());
                (
                    ctl.shutdown_at,
                    ctl.shutdown_pending,
                    std::mem::take(&mut ctl.inject),
                )
            };
            if !inject.is_empty() && self.send_injected(&inject, &mut sink).await.is_err() {
                break End::ClientGone;
            }
            if pending {
                self.entry
                    .ctl
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .shutdown_pending = false;
                let frame = server_shutdown_frame(
                    self.shared.clock.now_us(),
                    self.unit,
                    self.state.combined,
                );
                if sink.send(Message::Text(frame.into())).await.is_err() {
                    break End::ClientGone;
                }
            }
            let step = tokio::select! {
                biased;
                _ = self.entry.drop_token.cancelled() => {
                    if self.shared.shutdown.is_cancelled() {
                        Step::End(End::SimStopping)
                    } else {
                        Step::End(End::Dropped)
                    }
                }
                _ = sleep_until(shutdown_at.unwrap_or(far)) => Step::End(End::ServerShutdown),
                _ = sleep_until(age_deadline) => Step::End(End::MaxAge),
                _ = sleep_until(keepalive.next_deadline()) => {
                    let now = Instant::now();
                    let pings = {
                        let ctl = self.entry.ctl.lock().unwrap_or_else(|e| e.into_inner());
                        !ctl.stalled(now) || ctl.stall_pings
                    };
                    match keepalive.poll(now, pings) {
                        KeepAliveAction::Idle => Step::Continue,
                        KeepAliveAction::TimedOut => Step::End(End::PongTimeout),
                        KeepAliveAction::SendPing(p) => {
                            if sink.send(Message::Ping(p.into())).await.is_err() {
                                Step::End(End::ClientGone)
                            } else {
                                Step::Continue
                            }
                        }
                    }
                }
                _ = self.entry.notify.notified() => Step::Continue,
                msg = stream.next() => self.on_incoming(msg, &mut sink, &mut keepalive, &mut rate).await,
                batch = self.rx.recv() => match batch {
                    Ok(b) => self.on_batch(&b, &mut sink).await,
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(connection = self.entry.id, batches = n, "connection lagged");
                        Step::Continue
                    }
                    Err(RecvError::Closed) => Step::End(End::SimStopping),
                },
            };
            if let Step::End(e) = step {
                break e;
            }
        };
        self.finish(end, &mut sink, stream).await;
    }

    /// Off-tape trade frames (fault injection): a copy of nothing on the tape, with the id
    /// asked for, to connections subscribed to the symbol. Not recorded as delivered.
    async fn send_injected(
        &mut self,
        inject: &[(usize, u64)],
        sink: &mut SplitSink<WebSocket, Message>,
    ) -> Result<(), axum::Error> {
        for &(sym, id) in inject {
            let Some(sub) = self.subs[sym].clone() else {
                continue;
            };
            let symbol = self.shared.tape.symbols()[sym].spec.symbol.clone();
            let now = self.shared.clock.now_us();
            let fake = crate::trade::Trade {
                id,
                agg_id: 0,
                price: 100_000_000,
                qty: 100_000_000,
                time_us: now,
                is_buyer_maker: false,
            };
            self.buf.clear();
            push_trade_frame(
                &mut self.buf,
                &fake,
                &symbol,
                &sub.stream,
                now,
                self.unit,
                self.state.combined,
            );
            let frame = String::from_utf8_lossy(&self.buf).into_owned();
            tracing::info!(connection = self.entry.id, %symbol, id, "injected an off-tape trade frame");
            sink.send(Message::Text(frame.into())).await?;
        }
        Ok(())
    }

    async fn on_incoming(
        &mut self,
        msg: Option<Result<Message, axum::Error>>,
        sink: &mut SplitSink<WebSocket, Message>,
        keepalive: &mut KeepAlive,
        rate: &mut MessageRate,
    ) -> Step {
        let msg = match msg {
            Some(Ok(m)) => m,
            _ => return Step::End(End::ClientGone),
        };
        if matches!(msg, Message::Close(_)) {
            return Step::End(End::ClientGone);
        }
        if !rate.on_message(Instant::now()) {
            return Step::End(End::RateLimit);
        }
        match msg {
            Message::Text(text) => {
                let (reply, effect) = control::handle(
                    text.as_str(),
                    &mut self.state,
                    self.shared.config.max_streams,
                );
                if effect == Effect::StreamsChanged {
                    self.resync();
                }
                if sink.send(Message::Text(reply.into())).await.is_err() {
                    return Step::End(End::ClientGone);
                }
            }
            Message::Pong(p) => {
                keepalive.on_pong(&p);
            }
            // Pings are answered by the WebSocket layer; binary frames are ignored.
            _ => {}
        }
        Step::Continue
    }

    async fn on_batch(
        &mut self,
        batch: &TradeBatch,
        sink: &mut SplitSink<WebSocket, Message>,
    ) -> Step {
        let Some(sub) = self.subs[batch.sym].clone() else {
            return Step::Continue;
        };
        let trades: Vec<_> = batch.trades.iter().filter(|t| t.id >= sub.next).collect();
        let (Some(first), Some(last)) = (trades.first(), trades.last()) else {
            return Step::Continue;
        };
        let symbol = self.shared.tape.symbols()[batch.sym].spec.symbol.clone();
        let now = Instant::now();
        let stalled = self
            .entry
            .ctl
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stalled(now);
        let faults = self
            .shared
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut rec = ConnSymbolTruth::default();
        if first.id > sub.next {
            rec.miss(sub.next, first.id - 1, MissReason::Lagged);
        }
        let mut failed = false;
        if stalled {
            rec.miss(first.id, last.id, MissReason::Stall);
        } else {
            let event_us = self.shared.clock.now_us();
            for t in &trades {
                self.buf.clear();
                push_trade_frame(
                    &mut self.buf,
                    t,
                    &symbol,
                    &sub.stream,
                    event_us.max(t.time_us),
                    self.unit,
                    self.state.combined,
                );
                let frame = String::from_utf8_lossy(&self.buf).into_owned();
                let mut action = decide(&mut self.rng, &faults);
                if action == FrameAction::Reorder && self.held.is_some() {
                    action = FrameAction::Deliver;
                }
                let mut out: Vec<String> = Vec::with_capacity(3);
                match action {
                    FrameAction::Deliver => {
                        out.push(frame);
                        rec.delivered += 1;
                        rec.last_delivered_id = Some(t.id);
                    }
                    FrameAction::Duplicate => {
                        out.push(frame.clone());
                        out.push(frame);
                        rec.delivered += 1;
                        rec.duplicated += 1;
                        rec.last_delivered_id = Some(t.id);
                    }
                    FrameAction::Malformed => {
                        out.push(corrupt(&frame));
                        rec.miss(t.id, t.id, MissReason::Malformed);
                    }
                    FrameAction::Reorder => {
                        self.held = Some((batch.sym, t.id, frame));
                    }
                }
                if action != FrameAction::Reorder
                    && let Some((hsym, hid, hframe)) = self.held.take()
                {
                    out.push(hframe);
                    self.record_held_delivered(hsym, hid);
                }
                for f in out {
                    if sink.feed(Message::Text(f.into())).await.is_err() {
                        failed = true;
                        break;
                    }
                }
                if failed {
                    break;
                }
            }
            if !failed && sink.flush().await.is_err() {
                failed = true;
            }
        }
        if let Some(s) = self.subs[batch.sym].as_mut() {
            s.next = last.id + 1;
        }
        self.merge_truth(&symbol, rec, last.id + 1);
        if failed {
            Step::End(End::ClientGone)
        } else {
            Step::Continue
        }
    }

    fn record_held_delivered(&self, sym: usize, id: u64) {
        let symbol = &self.shared.tape.symbols()[sym].spec.symbol;
        let mut truth = self.entry.truth.lock().unwrap_or_else(|e| e.into_inner());
        let t = truth.symbols.entry(symbol.clone()).or_default();
        t.delivered += 1;
        t.reordered += 1;
        t.last_delivered_id = Some(t.last_delivered_id.map_or(id, |l| l.max(id)));
    }

    fn merge_truth(&self, symbol: &str, rec: ConnSymbolTruth, next: u64) {
        let mut truth = self.entry.truth.lock().unwrap_or_else(|e| e.into_inner());
        let t = truth.symbols.entry(symbol.to_string()).or_default();
        t.delivered += rec.delivered;
        t.duplicated += rec.duplicated;
        if rec.last_delivered_id.is_some() {
            t.last_delivered_id = rec.last_delivered_id.max(t.last_delivered_id);
        }
        for (a, b) in rec.missed.ranges() {
            t.missed.insert_range(a, b);
        }
        for (r, n) in rec.missed_by_reason {
            *t.missed_by_reason.entry(r).or_default() += n;
        }
        if t.next_expected_id.is_some() {
            t.next_expected_id = Some(next);
        }
    }

    async fn finish(
        mut self,
        end: End,
        sink: &mut SplitSink<WebSocket, Message>,
        stream: SplitStream<WebSocket>,
    ) {
        if let Some(frame) = end.close_frame() {
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                sink.send(Message::Close(Some(frame))),
            )
            .await;
        }
        let reason = end.miss_reason();
        let held = self.held.take();
        let mut truth = self.entry.truth.lock().unwrap_or_else(|e| e.into_inner());
        for (i, sub) in self.subs.iter().enumerate() {
            let Some(sub) = sub else { continue };
            let symbol = &self.shared.tape.symbols()[i].spec.symbol;
            let t = truth.symbols.entry(symbol.clone()).or_default();
            let cursor = self.shared.cursors[i].load(Ordering::Acquire);
            if cursor > sub.next {
                t.miss(sub.next, cursor - 1, reason);
            }
            t.next_expected_id = None;
        }
        if let Some((sym, id, _)) = held {
            let symbol = &self.shared.tape.symbols()[sym].spec.symbol;
            truth
                .symbols
                .entry(symbol.clone())
                .or_default()
                .miss(id, id, reason);
        }
        truth.closed_at_ms = Some(self.shared.now_ms());
        truth.close_reason = Some(end.reason().to_string());
        tracing::debug!(
            connection = self.entry.id,
            reason = end.reason(),
            "websocket closed"
        );
        drop(truth);
        drop(stream);
    }
}
