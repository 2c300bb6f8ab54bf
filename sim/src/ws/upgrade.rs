//! The upgrade: geo-block, connection-attempt limit and stream checks, then the hand-off to a
//! [`Connection`] task.

use super::*;

/// The request, decoded.
pub(crate) struct WsRequest {
    pub streams: Vec<String>,
    pub combined: bool,
    pub unit: TimeUnit,
    pub path: String,
}

fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json;charset=UTF-8"),
        )],
        body,
    )
        .into_response()
}

/// Check faults and limits, then upgrade.
pub(crate) fn upgrade(
    shared: Arc<Shared>,
    remote: SocketAddr,
    req: WsRequest,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    if shared
        .faults
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .geo_block
    {
        return json_response(
            StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
            GEO_BLOCK_BODY.into(),
        );
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    if let Err(retry) = shared
        .attempts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .attempt(remote.ip(), Instant::now())
    {
        let mut r = json_response(
            StatusCode::TOO_MANY_REQUESTS,
            r#"{"code":-1003,"msg":"Too many connection attempts; limit is 300 per 5 minutes per IP."}"#
                .into(),
        );
        if let Ok(v) = HeaderValue::from_str(&retry.as_secs().max(1).to_string()) {
            r.headers_mut().insert("retry-after", v);
        }
        return r;
    }
    let mut streams: Vec<String> = Vec::new();
    for s in req.streams {
        if !s.is_empty() && !streams.contains(&s) {
            streams.push(s);
        }
    }
    if streams.len() > shared.config.max_streams {
        return json_response(
            StatusCode::BAD_REQUEST,
            format!(
                r#"{{"code":-1121,"msg":"Too many streams: at most {} per connection."}}"#,
                shared.config.max_streams
            ),
        );
    }
    let id = shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
    let entry = Arc::new(ConnEntry {
        id,
        ctl: std::sync::Mutex::new(ConnCtl::default()),
        notify: tokio::sync::Notify::new(),
        drop_token: shared.shutdown.child_token(),
        truth: std::sync::Mutex::new(ConnectionTruth {
            id,
            remote: remote.to_string(),
            path: req.path.clone(),
            opened_at_ms: shared.now_ms(),
            closed_at_ms: None,
            close_reason: None,
            streams: streams.clone(),
            symbols: Default::default(),
        }),
    });
    shared
        .conns
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, entry.clone());
    // Subscribe to the broadcast before the upgrade completes so nothing emitted after the
    // initial cursors are read can be missed.
    let rx = shared.trades_tx.subscribe();
    let tracker = shared.tracker.clone();
    let combined = req.combined;
    let unit = req.unit;
    let mut resp = ws.on_upgrade(move |socket| {
        let fut = Connection::new(shared, entry, rx, streams, combined, unit).run(socket);
        async move {
            tracker.track_future(fut).await;
        }
    });
    if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
        resp.headers_mut().insert(CONNECTION_ID_HEADER, v);
    }
    tracing::debug!(connection = id, %remote, path = %req.path, "websocket connected");
    resp
}
