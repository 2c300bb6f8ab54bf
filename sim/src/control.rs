//! WebSocket control messages (`SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`,
//! `GET_PROPERTY`): parsing, state change and the reply text. Pure: no socket, no clock.
//!
//! Replies follow Binance's spot stream docs ("Live Subscribing/Unsubscribing to streams"):
//! success `{"result":null,"id":1}`, lists `{"result":["btcusdt@trade"],"id":3}`, errors
//! `{"code":0,"msg":"Unknown property","id":..}`, `{"code":1,"msg":"Invalid value type: expected
//! Boolean","id":..}`, `{"code":2,"msg":"Invalid request: ..."}`, `{"code":3,"msg":"Invalid JSON:
//! ..."}`. Binance's own texts are serde_json messages (e.g. "unknown variant `X`, expected one
//! of ... at line 1 column 28"), which we reproduce by parsing with serde_json the same way.

use serde::Deserialize;
use serde_json::{Value, json};

/// Subscription state of one connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubState {
    /// Streams in subscription order (no duplicates).
    pub streams: Vec<String>,
    /// Combined payloads (`{"stream":..,"data":..}`): true on `/stream`, false on `/ws`.
    pub combined: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum Method {
    Subscribe,
    Unsubscribe,
    ListSubscriptions,
    SetProperty,
    GetProperty,
}

#[derive(Debug, Deserialize)]
struct Request {
    method: Method,
    #[serde(default)]
    params: Option<Value>,
}

/// What a control message did (the reply is always sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Nothing changed (query or error).
    None,
    /// The subscription list changed.
    StreamsChanged,
    /// The `combined` property changed.
    CombinedChanged,
}

fn error(code: i64, msg: impl Into<String>, id: Option<&Value>) -> String {
    let mut v = json!({"code": code, "msg": msg.into()});
    if let Some(id) = id {
        v["id"] = id.clone();
    }
    v.to_string()
}

fn invalid(msg: impl std::fmt::Display) -> String {
    error(2, format!("Invalid request: {msg}"), None)
}

/// A request id: an unsigned integer, an alphanumeric string of at most 36 characters, or null
/// (Binance spot stream docs).
fn valid_id(id: &Value) -> bool {
    match id {
        Value::Null => true,
        Value::Number(n) => n.is_u64(),
        Value::String(s) => {
            s.len() <= 36 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        }
        _ => false,
    }
}

fn stream_list(params: Option<&Value>) -> Result<Vec<String>, String> {
    let Some(Value::Array(items)) = params else {
        return Err(invalid("params must be an array of stream names"));
    };
    items
        .iter()
        .map(|v| match v {
            Value::String(s) if !s.is_empty() => Ok(s.clone()),
            other => Err(invalid(format!(
                "stream name must be a string, got {other}"
            ))),
        })
        .collect()
}

/// Handle one text control message: update `state` and return the reply and its effect.
pub fn handle(text: &str, state: &mut SubState, max_streams: usize) -> (String, Effect) {
    let raw: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return (error(3, format!("Invalid JSON: {e}"), None), Effect::None),
    };
    let req: Request = match serde_json::from_str(text) {
        Ok(r) => r,
        Err(e) => return (invalid(e), Effect::None),
    };
    // `Option<Value>` reads `null` as `None`: look at the raw object to tell null from absent.
    let id = match raw.get("id") {
        Some(id) if valid_id(id) => id.clone(),
        _ => {
            return (
                invalid("request ID must be an unsigned integer"),
                Effect::None,
            );
        }
    };
    let ok = |result: Value| json!({"result": result, "id": id}).to_string();
    match req.method {
        Method::Subscribe => {
            let list = match stream_list(req.params.as_ref()) {
                Ok(l) => l,
                Err(e) => return (e, Effect::None),
            };
            let mut next = state.streams.clone();
            for s in list {
                if !next.contains(&s) {
                    next.push(s);
                }
            }
            if next.len() > max_streams {
                return (
                    invalid(format!(
                        "too many streams: at most {max_streams} per connection"
                    )),
                    Effect::None,
                );
            }
            let changed = next != state.streams;
            state.streams = next;
            (
                ok(Value::Null),
                if changed {
                    Effect::StreamsChanged
                } else {
                    Effect::None
                },
            )
        }
        Method::Unsubscribe => {
            let list = match stream_list(req.params.as_ref()) {
                Ok(l) => l,
                Err(e) => return (e, Effect::None),
            };
            let before = state.streams.len();
            state.streams.retain(|s| !list.contains(s));
            let effect = if state.streams.len() != before {
                Effect::StreamsChanged
            } else {
                Effect::None
            };
            (ok(Value::Null), effect)
        }
        Method::ListSubscriptions => (ok(json!(state.streams)), Effect::None),
        Method::SetProperty | Method::GetProperty => {
            let is_set = matches!(req.method, Method::SetProperty);
            let params = match req.params {
                Some(Value::Array(p)) => p,
                _ => return (invalid("property name must be a string"), Effect::None),
            };
            let max = if is_set { 2 } else { 1 };
            if params.len() > max {
                return (invalid("too many parameters"), Effect::None);
            }
            let name = match params.first() {
                Some(Value::String(s)) => s.as_str(),
                _ => return (invalid("property name must be a string"), Effect::None),
            };
            if name != "combined" {
                return (error(0, "Unknown property", Some(&id)), Effect::None);
            }
            if !is_set {
                return (ok(Value::Bool(state.combined)), Effect::None);
            }
            match params.get(1) {
                Some(Value::Bool(b)) => {
                    let changed = state.combined != *b;
                    state.combined = *b;
                    (
                        ok(Value::Null),
                        if changed {
                            Effect::CombinedChanged
                        } else {
                            Effect::None
                        },
                    )
                }
                _ => (
                    error(1, "Invalid value type: expected Boolean", Some(&id)),
                    Effect::None,
                ),
            }
        }
    }
}

/// Parse `btcusdt@trade` into the upper-case symbol, if it is a trade stream.
pub fn trade_stream_symbol(stream: &str) -> Option<String> {
    let sym = stream.strip_suffix("@trade")?;
    if sym.is_empty()
        || !sym
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return None;
    }
    Some(sym.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn run(text: &str, st: &mut SubState) -> Value {
        serde_json::from_str(&handle(text, st, 1024).0).unwrap()
    }

    #[test]
    fn subscribe_list_unsubscribe() {
        let mut st = SubState::default();
        let r = run(
            r#"{"method":"SUBSCRIBE","params":["btcusdt@trade","aaveusdt@trade"],"id":1}"#,
            &mut st,
        );
        assert_eq!(r, json!({"result": null, "id": 1}));
        let r = run(r#"{"method":"LIST_SUBSCRIPTIONS","id":3}"#, &mut st);
        assert_eq!(
            r,
            json!({"result": ["btcusdt@trade", "aaveusdt@trade"], "id": 3})
        );
        let r = run(
            r#"{"method":"UNSUBSCRIBE","params":["btcusdt@trade"],"id":312}"#,
            &mut st,
        );
        assert_eq!(r, json!({"result": null, "id": 312}));
        assert_eq!(st.streams, vec!["aaveusdt@trade".to_string()]);
    }

    #[test]
    fn properties() {
        let mut st = SubState::default();
        assert_eq!(
            run(
                r#"{"method":"SET_PROPERTY","params":["combined",true],"id":5}"#,
                &mut st
            ),
            json!({"result": null, "id": 5})
        );
        assert!(st.combined);
        assert_eq!(
            run(
                r#"{"method":"GET_PROPERTY","params":["combined"],"id":2}"#,
                &mut st
            ),
            json!({"result": true, "id": 2})
        );
    }

    #[rstest]
    #[case(
        r#"{"method":"SUBSCRIBE","params":["x@trade"],"id":1"#,
        3,
        "Invalid JSON: "
    )]
    #[case(r#"not json"#, 3, "Invalid JSON: expected ident at line 1 column 2")]
    #[case(
        r#"{"method":"SUBSCRIB","params":[],"id":1}"#,
        2,
        "Invalid request: unknown variant `SUBSCRIB`, expected one of `SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY` at line 1 column 20"
    )]
    #[case(
        r#"{"params":[],"id":1}"#,
        2,
        "Invalid request: missing field `method`"
    )]
    #[case(
        r#"{"method":"SUBSCRIBE","params":["a@trade"],"id":-1}"#,
        2,
        "Invalid request: request ID must be an unsigned integer"
    )]
    #[case(
        r#"{"method":"SUBSCRIBE","params":["a@trade"]}"#,
        2,
        "Invalid request: request ID must be an unsigned integer"
    )]
    #[case(
        r#"{"method":"SET_PROPERTY","params":["combined",true,1],"id":1}"#,
        2,
        "Invalid request: too many parameters"
    )]
    #[case(
        r#"{"method":"SET_PROPERTY","params":[1,true],"id":1}"#,
        2,
        "Invalid request: property name must be a string"
    )]
    #[case(
        r#"{"method":"SET_PROPERTY","params":["colour",true],"id":7}"#,
        0,
        "Unknown property"
    )]
    #[case(
        r#"{"method":"SET_PROPERTY","params":["combined","yes"],"id":7}"#,
        1,
        "Invalid value type: expected Boolean"
    )]
    fn errors(#[case] text: &str, #[case] code: i64, #[case] msg_prefix: &str) {
        let mut st = SubState::default();
        let r = run(text, &mut st);
        assert_eq!(r["code"], json!(code), "{r}");
        let msg = r["msg"].as_str().unwrap();
        assert!(msg.starts_with(msg_prefix), "{msg:?} vs {msg_prefix:?}");
        assert!(st.streams.is_empty());
    }

    #[test]
    fn string_and_null_ids_are_accepted() {
        let mut st = SubState::default();
        assert_eq!(
            run(r#"{"method":"LIST_SUBSCRIPTIONS","id":"abc-1"}"#, &mut st),
            json!({"result": [], "id": "abc-1"})
        );
        assert_eq!(
            run(r#"{"method":"LIST_SUBSCRIPTIONS","id":null}"#, &mut st),
            json!({"result": [], "id": null})
        );
    }

    #[test]
    fn stream_limit_is_enforced() {
        let mut st = SubState::default();
        let (r, _) = handle(
            r#"{"method":"SUBSCRIBE","params":["a@trade","b@trade","c@trade"],"id":1}"#,
            &mut st,
            2,
        );
        assert!(r.contains("too many streams"), "{r}");
        assert!(st.streams.is_empty());
    }

    #[rstest]
    #[case("btcusdt@trade", Some("BTCUSDT"))]
    #[case("BTCUSDT@trade", None)]
    #[case("btcusdt@aggTrade", None)]
    #[case("@trade", None)]
    fn trade_streams(#[case] s: &str, #[case] want: Option<&str>) {
        assert_eq!(trade_stream_symbol(s).as_deref(), want);
    }
}
