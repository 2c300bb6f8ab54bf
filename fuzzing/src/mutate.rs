//! Structure-aware mutations: bytes, JSON tokens, protobuf fields, the consumer's attributes
//! and the REST status and headers. Deterministic for a given [`Rng`].
//!
//! Each call applies one to four mutations ("havoc" stacking). JSON mutations work on a lenient
//! token scan ([`lex`]) so they also apply to broken JSON; protobuf mutations on a lenient field
//! scan ([`proto_fields`]) of the consumer's message data.

use prost::Message as _;
use trade_proto::Trade;

mod dict;
mod proto;

pub use dict::*;
pub use proto::{Field, proto_fields, varint};
use proto::{proto_mutation, struct_mutation};

use crate::Target;
use crate::rng::Rng;
use crate::targets::pubsub::{Attributes, consumer_input, split_consumer_input};

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
                    let source = (*rng
                        .pick(&["stream", "backfill", "batch", "archive", "", "STREAM"]))
                    .to_owned();
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
