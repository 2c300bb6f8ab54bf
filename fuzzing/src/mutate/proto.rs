//! Protobuf mutations: a lenient field scan of the consumer's message data, field-level edits,
//! and value-level edits of a decodable `Trade` or `Gap` re-encoded canonically.

use prost::Message as _;
use trade_proto::{Gap, Trade};

use super::dict::{STRINGS, VARINTS};
use super::{huge, replace};
use crate::rng::Rng;

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
pub(super) fn proto_mutation(rng: &mut Rng, payload: &mut Vec<u8>) -> bool {
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
pub(super) fn struct_mutation(rng: &mut Rng, payload: &mut Vec<u8>) -> bool {
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
