//! Structure-aware mutations: bytes, JSON tokens, protobuf fields, the consumer's attributes
//! and the REST status and headers. Deterministic for a given [`Rng`].
//!
//! Each call applies one to four mutations ("havoc" stacking). JSON mutations work on a lenient
//! token scan ([`lex`]) so they also apply to broken JSON; protobuf mutations on a lenient field
//! scan ([`proto_fields`]) of the consumer's message data.

use prost::Message as _;
use trade_proto::{Gap, Trade};

use crate::Target;
use crate::rng::Rng;
use crate::targets::pubsub::{Attributes, consumer_input, split_consumer_input};

/// Numbers that sit on a boundary somewhere: i64/u64 limits, the contract's 2017 floor in ms
/// and µs, millisecond values that overflow µs, floats serde or the scanner may mis-read.
pub const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "00",
    "01",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999",
    "9223372036854775",
    "9223372036854776",
    "1483228799999",
    "1483228800000",
    "1483228799999999",
    "1483228800000000",
    "1751132780369",
    "1751132780369001",
    "4294967295",
    "4294967296",
    "2147483648",
    "1e400",
    "-1e400",
    "1e-400",
    "1E5",
    "1.5",
    "-1.5e-3",
    "0.0",
    "1e",
    "-",
    "1.",
    "259200",
    "259201",
    "123456789012345678901234567890",
];

/// String values: decimals on and off the grammar, symbols on and off both grammars, escapes.
pub const STRINGS: &[&str] = &[
    "",
    "0",
    "1",
    "00.10",
    "1e5",
    "1E5",
    ".5",
    "1.",
    "-1",
    "+1",
    " 1",
    "1 ",
    "1.2.3",
    "NaN",
    "0x1",
    "107407.88000000",
    "0.00024000",
    "0.0000000001",
    "0.000240000000",
    "123456789012345678901234567890",
    "12345678901234567890123456789.123456789",
    "BTCUSDT",
    "btcusdt",
    "BTC-USDT",
    "BTC_USDT",
    "BTC.USDT",
    "BTC USDT",
    "BTC/USDT",
    "ABCDEFGHIJKLMNOPQRST",
    "ABCDEFGHIJKLMNOPQRSTU",
    "trade",
    "serverShutdown",
    "aggTrade",
    "stream",
    "backfill",
    "batch",
    "\\u0000",
    "\\ud800",
    "\\u0042TCUSDT",
    "\\\"",
    "\\x",
    "\\",
    "é",
    "\u{1f600}",
    "\t",
];

/// Values of every JSON type, and malformed ones.
pub const VALUES: &[&str] = &[
    "null",
    "true",
    "false",
    "{}",
    "[]",
    "\"x\"",
    "0",
    "[1,{\"a\":[\"}\"]}]",
    "{\"e\":\"trade\"}",
    "nul",
    "tru",
    "\"",
    "[",
    "{",
    "]",
    "}",
    "",
];

/// Keys the targets read (frames, control replies, REST rows, error bodies).
pub const KEYS: &[&str] = &[
    "e",
    "E",
    "s",
    "t",
    "p",
    "q",
    "T",
    "m",
    "M",
    "b",
    "a",
    "stream",
    "data",
    "result",
    "id",
    "code",
    "msg",
    "price",
    "qty",
    "quoteQty",
    "time",
    "isBuyerMaker",
    "isBestMatch",
    "f",
    "l",
    "symbol",
    "symbols",
    "filters",
    "filterType",
    "quotePrecision",
    "quoteAssetPrecision",
    "firstId",
    "lastId",
    "count",
    "\\u0065",
];

/// HTTP statuses at the edges of each outcome.
pub const STATUSES: &[u16] = &[
    0, 1, 99, 100, 199, 200, 204, 299, 300, 301, 399, 400, 403, 404, 407, 408, 409, 417, 418, 419,
    428, 429, 430, 450, 451, 452, 499, 500, 503, 599, 600, 999, 1000, 65535,
];

/// Header lines for the REST target.
pub const HEADER_LINES: &[&str] = &[
    "retry-after: 17",
    "Retry-After: 0",
    "retry-after: 18446744073709551615",
    "retry-after: 9223372036854775807",
    "retry-after: 259201",
    "retry-after: -1",
    "retry-after:  7 ",
    "retry-after: 1e3",
    "retry-after: Wed, 21 Oct 2015 07:28:00 GMT",
    "retry-after:",
    "retry-after: \u{e9}",
    "x-mbx-used-weight-1m: 5999",
    "x-mbx-used-weight-1m: 4294967295",
    "x-mbx-used-weight-1m: 4294967296",
    "x-mbx-used-weight-1m: -5",
    "X-MBX-USED-WEIGHT-1M:  600 ",
    "content-type: application/json",
    "bad header: x",
    ": no name",
];

/// Varint values for protobuf fields (as u64; negative int64 are 10-byte varints).
pub const VARINTS: &[u64] = &[
    0,
    1,
    127,
    128,
    2,
    255,
    i64::MAX as u64,
    i64::MIN as u64,
    u64::MAX,
    1 << 63,
    1 << 32,
    1_483_228_799_999_999,
    1_483_228_800_000_000,
    1_751_132_780_368_000,
];

/// A JSON token of [`lex`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tok {
    /// A string, quotes included (unterminated: to the end).
    Str,
    /// A number-like run.
    Num,
    /// A run of letters (`true`, `nul`, ...).
    Lit,
    /// `{` or `[`.
    Open,
    /// `}` or `]`.
    Close,
    /// `:`.
    Colon,
    /// `,`.
    Comma,
}

/// One token: its kind and byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The kind.
    pub tok: Tok,
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

/// A lenient JSON token scan: bytes that start no token are skipped.
pub fn lex(data: &[u8]) -> Vec<Span> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() {
        let start = i;
        let tok = match data[i] {
            b'"' => {
                i += 1;
                while i < data.len() && data[i] != b'"' {
                    i += if data[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(data.len());
                Tok::Str
            }
            b'-' | b'0'..=b'9' => {
                while i < data.len()
                    && matches!(data[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    i += 1;
                }
                Tok::Num
            }
            b'a'..=b'z' | b'A'..=b'Z' => {
                while i < data.len() && data[i].is_ascii_alphabetic() {
                    i += 1;
                }
                Tok::Lit
            }
            b'{' | b'[' => {
                i += 1;
                Tok::Open
            }
            b'}' | b']' => {
                i += 1;
                Tok::Close
            }
            b':' => {
                i += 1;
                Tok::Colon
            }
            b',' => {
                i += 1;
                Tok::Comma
            }
            _ => {
                i += 1;
                continue;
            }
        };
        out.push(Span { tok, start, end: i });
    }
    out
}

/// The index of the last token of the value starting at token `i` (its matching close for a
/// container, itself otherwise).
fn value_end(toks: &[Span], i: usize) -> usize {
    if toks[i].tok != Tok::Open {
        return i;
    }
    let mut depth = 0usize;
    for (j, t) in toks.iter().enumerate().skip(i) {
        match t.tok {
            Tok::Open => depth += 1,
            Tok::Close => {
                depth -= 1;
                if depth == 0 {
                    return j;
                }
            }
            _ => {}
        }
    }
    toks.len() - 1
}

fn is_key(toks: &[Span], i: usize) -> bool {
    toks[i].tok == Tok::Str && toks.get(i + 1).is_some_and(|t| t.tok == Tok::Colon)
}

fn is_value(toks: &[Span], i: usize) -> bool {
    matches!(toks[i].tok, Tok::Str | Tok::Num | Tok::Lit | Tok::Open) && !is_key(toks, i)
}

fn replace(data: &mut Vec<u8>, start: usize, end: usize, with: &[u8]) {
    data.splice(start..end, with.iter().copied());
}

/// A string of `n` copies of a byte.
fn huge(rng: &mut Rng) -> Vec<u8> {
    let n = *rng.pick(&[21usize, 30, 64, 65, 1000, 4096, 70_000]);
    vec![*rng.pick(b"A9a0.\\"); n]
}

fn pick_index(rng: &mut Rng, toks: &[Span], pred: impl Fn(usize) -> bool) -> Option<usize> {
    let candidates: Vec<usize> = (0..toks.len()).filter(|&i| pred(i)).collect();
    if candidates.is_empty() {
        None
    } else {
        Some(*rng.pick(&candidates))
    }
}

/// One JSON-aware mutation; false when the input has no token it applies to.
fn json_mutation(rng: &mut Rng, data: &mut Vec<u8>) -> bool {
    let toks = lex(data);
    if toks.is_empty() {
        return false;
    }
    match rng.below(10) {
        // A number becomes an extreme.
        0 | 1 => {
            let Some(i) = pick_index(rng, &toks, |i| toks[i].tok == Tok::Num) else {
                return false;
            };
            let with = rng.pick(NUMBERS).as_bytes().to_vec();
            replace(data, toks[i].start, toks[i].end, &with);
        }
        // A string value becomes another (or a huge one).
        2 | 3 => {
            let Some(i) = pick_index(rng, &toks, |i| toks[i].tok == Tok::Str && !is_key(&toks, i))
            else {
                return false;
            };
            let inner = if rng.one_in(5) {
                huge(rng)
            } else {
                rng.pick(STRINGS).as_bytes().to_vec()
            };
            let mut with = vec![b'"'];
            with.extend_from_slice(&inner);
            with.push(b'"');
            replace(data, toks[i].start, toks[i].end, &with);
        }
        // A value of the wrong type, or deeply nested.
        4 => {
            let Some(i) = pick_index(rng, &toks, |i| is_value(&toks, i)) else {
                return false;
            };
            let end = toks[value_end(&toks, i)].end;
            let with = if rng.one_in(3) {
                nested(rng)
            } else {
                rng.pick(VALUES).as_bytes().to_vec()
            };
            replace(data, toks[i].start, end, &with);
        }
        // A member twice (duplicate key), or gone.
        5 | 6 => {
            let Some(i) = pick_index(rng, &toks, |i| is_key(&toks, i) && i + 2 < toks.len()) else {
                return false;
            };
            let end_tok = value_end(&toks, i + 2);
            let (start, end) = (toks[i].start, toks[end_tok].end);
            if rng.one_in(2) {
                let mut member = vec![b','];
                member.extend_from_slice(&data[start..end]);
                data.splice(end..end, member);
            } else {
                let end = match toks.get(end_tok + 1) {
                    Some(t) if t.tok == Tok::Comma => t.end,
                    _ => end,
                };
                data.drain(start..end);
            }
        }
        // A key renamed to one the code reads.
        7 => {
            let Some(i) = pick_index(rng, &toks, |i| is_key(&toks, i)) else {
                return false;
            };
            let with = format!("\"{}\"", rng.pick(KEYS));
            replace(data, toks[i].start, toks[i].end, with.as_bytes());
        }
        // A new member at the start of an object.
        8 => {
            let Some(i) = pick_index(rng, &toks, |i| {
                toks[i].tok == Tok::Open && data[toks[i].start] == b'{'
            }) else {
                return false;
            };
            let value = if rng.one_in(2) {
                rng.pick(NUMBERS).to_string()
            } else {
                format!("\"{}\"", rng.pick(STRINGS))
            };
            let member = format!("\"{}\":{value},", rng.pick(KEYS));
            let at = toks[i].end;
            data.splice(at..at, member.into_bytes());
        }
        // Wrapped: as a combined frame, or in brackets.
        _ => {
            let (open, close): (&[u8], &[u8]) = if rng.one_in(2) {
                (br#"{"stream":"btcusdt@trade","data":"#, b"}")
            } else {
                (b"[", b"]")
            };
            data.splice(0..0, open.iter().copied());
            data.extend_from_slice(close);
        }
    }
    true
}

/// Nesting around, and past, the parser's 64 levels and serde_json's 128.
fn nested(rng: &mut Rng) -> Vec<u8> {
    let depth = *rng.pick(&[2usize, 63, 64, 65, 127, 128, 129, 1000, 20_000]);
    let (open, close): (&[u8], &[u8]) = match rng.below(3) {
        0 => (b"[", b"]"),
        1 => (br#"{"a":"#, b"}"),
        _ => (b"[{\"x\":", b"}]"),
    };
    let mut out = Vec::with_capacity(depth * (open.len() + close.len()) + 1);
    for _ in 0..depth {
        out.extend_from_slice(open);
    }
    out.push(b'1');
    // Sometimes left unclosed.
    if !rng.one_in(4) {
        for _ in 0..depth {
            out.extend_from_slice(close);
        }
    }
    out
}

/// Interesting single bytes: JSON structure, escapes, UTF-8 lead and continuation bytes.
const BYTES: &[u8] = b"\x00\x01\x7f\x80\xc3\xff\"\\{}[],:0-.eE \n\t";

/// One byte-level mutation (bit flips, inserts, deletes, copies, splices with `other`).
fn byte_mutation(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8], dictionary: &[&str]) {
    let len = data.len();
    match rng.below(9) {
        0 if len > 0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            data[i] = if rng.one_in(2) {
                *rng.pick(BYTES)
            } else {
                rng.byte()
            };
        }
        2 => {
            let i = rng.range(0, len);
            let n = rng.range(1, 8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
            data.splice(i..i, bytes);
        }
        3 if len > 0 => {
            let i = rng.below(len);
            let n = rng.range(1, 16.min(len - i));
            data.drain(i..i + n);
        }
        4 if len > 0 => {
            let i = rng.below(len);
            let n = rng.range(1, 32.min(len - i));
            let chunk = data[i..i + n].to_vec();
            let at = rng.range(0, len);
            data.splice(at..at, chunk);
        }
        5 if !other.is_empty() => {
            // Crossover: our prefix, the other's suffix.
            let cut = rng.range(0, len);
            let from = rng.below(other.len());
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
        }
        6 if len > 0 => data.truncate(rng.below(len)),
        7 if !dictionary.is_empty() => {
            let i = rng.range(0, len);
            let word = rng.pick(dictionary).as_bytes();
            data.splice(i..i, word.iter().copied());
        }
        _ => {
            let i = rng.range(0, len);
            data.insert(i, *rng.pick(BYTES));
        }
    }
}

/// One protobuf field of [`proto_fields`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// First byte of the key.
    pub start: usize,
    /// First byte of the value (for wire type 2: of the length prefix).
    pub value: usize,
    /// One past the last byte.
    pub end: usize,
    /// Field number.
    pub number: u64,
    /// Wire type.
    pub wire: u8,
}

fn read_varint(data: &[u8], mut i: usize) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for shift in (0..70).step_by(7) {
        let b = *data.get(i)?;
        i += 1;
        if shift < 64 {
            v |= u64::from(b & 0x7f) << shift;
        }
        if b & 0x80 == 0 {
            return Some((v, i));
        }
    }
    None
}

/// The protobuf varint encoding of `v`.
pub fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(10);
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

/// A lenient scan of protobuf fields, stopping at the first that does not parse.
pub fn proto_fields(data: &[u8]) -> Vec<Field> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() {
        let start = i;
        let Some((key, value)) = read_varint(data, i) else {
            break;
        };
        let wire = (key & 7) as u8;
        let end = match wire {
            0 => match read_varint(data, value) {
                Some((_, e)) => e,
                None => break,
            },
            1 => value + 8,
            2 => match read_varint(data, value) {
                Some((n, e)) => e.saturating_add(usize::try_from(n).unwrap_or(usize::MAX)),
                None => break,
            },
            5 => value + 4,
            _ => value,
        };
        if end > data.len() {
            break;
        }
        out.push(Field {
            start,
            value,
            end,
            number: key >> 3,
            wire,
        });
        i = end;
    }
    out
}

/// One protobuf-aware mutation of `payload`; false when it has no field it applies to.
fn proto_mutation(rng: &mut Rng, payload: &mut Vec<u8>) -> bool {
    let fields = proto_fields(payload);
    let pick_field = |rng: &mut Rng, wire: Option<u8>| -> Option<Field> {
        let c: Vec<&Field> = fields
            .iter()
            .filter(|f| wire.is_none_or(|w| f.wire == w))
            .collect();
        (!c.is_empty()).then(|| **rng.pick(&c))
    };
    match rng.below(11) {
        // A varint extreme (or an over-long varint).
        0 | 1 => {
            let Some(f) = pick_field(rng, Some(0)) else {
                return false;
            };
            let with = if rng.one_in(6) {
                let mut v = vec![0xff; rng.range(10, 12)];
                v.push(0x01);
                v
            } else {
                varint(*rng.pick(VARINTS))
            };
            replace(payload, f.value, f.end, &with);
        }
        // Another wire type for the same number.
        2 => {
            let Some(f) = pick_field(rng, None) else {
                return false;
            };
            let key = varint((f.number << 3) | rng.below(8) as u64);
            replace(payload, f.start, f.value, &key);
        }
        // Another field number (0, unknown, the 2^29-1 maximum, beyond).
        3 => {
            let Some(f) = pick_field(rng, None) else {
                return false;
            };
            let n = *rng.pick(&[0u64, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 16, 63, 64, 1000]);
            let n = if rng.one_in(4) {
                *rng.pick(&[(1u64 << 29) - 1, 1 << 29, 1 << 32, 1 << 60])
            } else {
                n
            };
            let key = varint((n << 3) | u64::from(f.wire));
            replace(payload, f.start, f.value, &key);
        }
        // Cut inside a field.
        4 => {
            let Some(f) = pick_field(rng, None) else {
                return false;
            };
            payload.truncate(rng.range(f.start, f.end.saturating_sub(1).max(f.start)));
        }
        // An unknown field of some wire type (groups included).
        5 => {
            let n = *rng.pick(&[10u64, 11, 20, 63, 64, 100, (1 << 29) - 1]);
            let mut field = Vec::new();
            match rng.below(6) {
                0 => {
                    field.extend(varint(n << 3));
                    field.extend(varint(*rng.pick(VARINTS)));
                }
                1 => {
                    field.extend(varint((n << 3) | 1));
                    field.extend([0u8; 8]);
                }
                2 => {
                    field.extend(varint((n << 3) | 2));
                    field.extend(varint(1));
                    field.push(b'x');
                }
                3 => {
                    field.extend(varint((n << 3) | 5));
                    field.extend([0u8; 4]);
                }
                4 => {
                    field.extend(varint((n << 3) | 3));
                    field.extend(varint((n << 3) | 4));
                }
                _ => field.extend(varint((n << 3) | 4)),
            }
            let at = fields
                .get(rng.range(0, fields.len()))
                .map_or(payload.len(), |f| f.start);
            payload.splice(at..at, field);
        }
        // A field twice, dropped, or moved to the end.
        6 => {
            let Some(f) = pick_field(rng, None) else {
                return false;
            };
            let bytes = payload[f.start..f.end].to_vec();
            match rng.below(3) {
                0 => {
                    let at = rng.range(0, payload.len());
                    let at = fields
                        .iter()
                        .map(|g| g.end)
                        .find(|&e| e >= at)
                        .unwrap_or(payload.len());
                    payload.splice(at..at, bytes);
                }
                1 => {
                    payload.drain(f.start..f.end);
                }
                _ => {
                    payload.drain(f.start..f.end);
                    payload.extend(bytes);
                }
            }
        }
        // A length prefix that lies.
        7 => {
            let Some(f) = pick_field(rng, Some(2)) else {
                return false;
            };
            let Some((n, content)) = read_varint(payload, f.value) else {
                return false;
            };
            let lie = *rng.pick(&[
                n.wrapping_add(1),
                n.wrapping_sub(1),
                0,
                1 << 31,
                1 << 40,
                i64::MAX as u64,
                u64::MAX,
            ]);
            replace(payload, f.value, content, &varint(lie));
        }
        // A string's content replaced (decimals, symbols, invalid UTF-8, huge).
        8 | 9 => {
            let Some(f) = pick_field(rng, Some(2)) else {
                return false;
            };
            let content: Vec<u8> = match rng.below(6) {
                0 => huge(rng),
                1 => vec![0xff, 0xfe],
                2 => vec![0xc3, 0x28],
                _ => rng.pick(STRINGS).as_bytes().to_vec(),
            };
            let mut with = varint(content.len() as u64);
            with.extend(content);
            replace(payload, f.value, f.end, &with);
        }
        // Appended garbage.
        _ => {
            let n = rng.range(1, 4);
            payload.extend((0..n).map(|_| rng.byte()));
        }
    }
    true
}

/// A value-level mutation of a decodable `Trade` or `Gap`, re-encoded canonically.
fn struct_mutation(rng: &mut Rng, payload: &mut Vec<u8>) -> bool {
    fn int(rng: &mut Rng) -> i64 {
        *rng.pick(&[
            0,
            -1,
            1,
            i64::MIN,
            i64::MAX,
            1_483_228_799_999_999,
            1_483_228_800_000_000,
            1_751_132_780_368_000,
            1_751_132_780_368,
        ])
    }
    fn text(rng: &mut Rng) -> String {
        if rng.one_in(6) {
            String::from_utf8(huge(rng))
                .unwrap_or_default()
                .replace('\\', "1")
        } else {
            (*rng.pick(STRINGS)).to_owned()
        }
    }
    if let Ok(mut t) = Trade::decode(payload.as_slice()) {
        match rng.below(9) {
            0 => t.symbol = text(rng),
            1 => t.trade_id = int(rng),
            2 => t.price = text(rng),
            3 => t.quantity = text(rng),
            4 => t.trade_time = int(rng),
            5 => t.event_time = int(rng),
            6 => t.receive_time = int(rng),
            7 => t.buyer_is_maker = !t.buyer_is_maker,
            _ => t.source = text(rng),
        }
        *payload = t.encode_to_vec();
        return true;
    }
    if let Ok(mut g) = Gap::decode(payload.as_slice()) {
        match rng.below(6) {
            0 => g.symbol = text(rng),
            1 => g.from_id = int(rng),
            2 => g.to_id = int(rng),
            3 => g.reason = text(rng),
            4 => g.detected_time = int(rng),
            _ => g.reporter = text(rng),
        }
        *payload = g.encode_to_vec();
        return true;
    }
    false
}

fn consumer_mutation(rng: &mut Rng, input: &mut Vec<u8>) {
    let (gap, attributes, data) = split_consumer_input(input);
    let mut payload = data.to_vec();
    let (mut gap, mut attributes) = (gap, attributes);
    match rng.below(16) {
        0 => gap = !gap,
        1 | 2 => {
            attributes = match rng.below(4) {
                0 => Attributes::AsProducer,
                1 => Attributes::Absent,
                2 => Attributes::SymbolOnly,
                _ => {
                    let symbol = Trade::decode(payload.as_slice())
                        .map(|t| t.symbol)
                        .unwrap_or_default();
                    let symbol = if rng.one_in(2) {
                        symbol
                    } else {
                        (*rng.pick(STRINGS)).to_owned()
                    };
                    let source =
                        (*rng.pick(&["stream", "backfill", "batch", "", "STREAM"])).to_owned();
                    Attributes::Explicit(symbol, source)
                }
            }
        }
        3..=8 => {
            if !struct_mutation(rng, &mut payload) {
                proto_mutation(rng, &mut payload);
            }
        }
        9 => byte_mutation(rng, &mut payload, &[], &[]),
        _ => {
            if !proto_mutation(rng, &mut payload) {
                byte_mutation(rng, &mut payload, &[], &[]);
            }
        }
    }
    *input = consumer_input(gap, &attributes, &payload);
}

fn rest_mutation(rng: &mut Rng, input: &mut Vec<u8>) {
    while input.len() < 2 {
        input.push(0);
    }
    match rng.below(3) {
        0 => {
            let status = if rng.one_in(8) {
                rng.next_u64() as u16
            } else {
                *rng.pick(STATUSES)
            };
            input[..2].copy_from_slice(&status.to_be_bytes());
        }
        _ => {
            let mut line = rng.pick(HEADER_LINES).as_bytes().to_vec();
            line.push(b'\n');
            // After the status: a header first, or replacing a leading "\n" (no headers).
            if input.get(2) == Some(&b'\n') {
                line.push(b'\n');
                input.splice(2..3, line);
            } else {
                input.splice(2..2, line);
            }
        }
    }
}

/// A mutated copy of `input` for `target`: one to four mutations, then cut to `max_len`.
/// `other` is another input of the pool, for crossovers.
pub fn mutate(
    target: Target,
    rng: &mut Rng,
    input: &[u8],
    other: &[u8],
    max_len: usize,
) -> Vec<u8> {
    let mut data = input.to_vec();
    let rounds = 1 + rng.below(4).min(rng.below(4));
    for _ in 0..rounds {
        match target {
            Target::Frame | Target::RestRows => {
                if rng.below(5) < 3 && json_mutation(rng, &mut data) {
                    continue;
                }
                byte_mutation(rng, &mut data, other, KEYS);
            }
            Target::Rest => match rng.below(5) {
                0 => rest_mutation(rng, &mut data),
                1 | 2 => {
                    if !json_mutation(rng, &mut data) {
                        byte_mutation(rng, &mut data, other, HEADER_LINES);
                    }
                }
                _ => byte_mutation(rng, &mut data, other, HEADER_LINES),
            },
            Target::Consumer => {
                if rng.below(8) < 7 {
                    consumer_mutation(rng, &mut data);
                } else {
                    byte_mutation(rng, &mut data, other, &[]);
                }
            }
        }
    }
    data.truncate(max_len);
    data
}

/// A libFuzzer custom mutator (`fuzz_mutator!`) for `target`: half the time [`mutate`], half
/// the time libFuzzer's own mutations (`fallback`, i.e. `libfuzzer_sys::fuzzer_mutate`), so a
/// coverage-guided run gets the structure-aware mutations too. Returns the new size.
pub fn libfuzzer_mutate(
    target: Target,
    data: &mut [u8],
    size: usize,
    max_size: usize,
    seed: u32,
    fallback: impl FnOnce(&mut [u8], usize, usize) -> usize,
) -> usize {
    let mut rng = Rng::new(u64::from(seed));
    if rng.one_in(2) {
        return fallback(data, size, max_size);
    }
    let out = mutate(
        target,
        &mut rng,
        &data[..size],
        &[],
        max_size.min(data.len()),
    );
    data[..out.len()].copy_from_slice(&out);
    out.len()
}
