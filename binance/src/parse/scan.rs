//! The single-pass JSON scanner under [`super::parse_frame`]: it finds the keys the pipeline
//! reads ([`EventFields`], [`TopLevel`]) and skips everything else without building a tree.
//! Values come back as raw tokens ([`Tok`]); turning them into trade fields, and validating
//! them, is the parent module's job.

use super::{MAX_NESTING, ParseError, invalid, quote, truncate};

/// The JSON type of a scanned value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A string with no escape sequence: `raw[1..len-1]` is its value.
    Str,
    /// A string with at least one backslash: needs unescaping.
    EscapedStr,
    Number,
    True,
    False,
    Null,
    Object,
    Array,
}

/// One scanned value: its kind and its raw JSON text (strings keep their quotes).
#[derive(Debug, Clone, Copy)]
pub(super) struct Tok<'a> {
    pub(super) kind: Kind,
    pub(super) raw: &'a str,
}

impl<'a> Tok<'a> {
    /// The value of a string without escapes; `None` for anything else. Binance never escapes
    /// inside symbols, decimals or event types, so an escaped one is rejected as malformed.
    pub(super) fn plain_str(self) -> Option<&'a str> {
        match self.kind {
            Kind::Str => Some(&self.raw[1..self.raw.len() - 1]),
            _ => None,
        }
    }

    /// The value of any string (unescaped, allocating), or the raw text for other kinds.
    pub(super) fn unescaped(self) -> String {
        match self.kind {
            Kind::Str => self.raw[1..self.raw.len() - 1].to_owned(),
            Kind::EscapedStr => {
                serde_json::from_str::<String>(self.raw).unwrap_or_else(|_| self.raw.to_owned())
            }
            _ => self.raw.to_owned(),
        }
    }

    pub(super) fn as_u64(self) -> Option<u64> {
        match self.kind {
            Kind::Number => self.raw.parse().ok(),
            _ => None,
        }
    }
}

/// The keys of an event object the pipeline reads.
#[derive(Default)]
pub(super) struct EventFields<'a> {
    pub(super) e: Option<Tok<'a>>,
    pub(super) big_e: Option<Tok<'a>>,
    pub(super) s: Option<Tok<'a>>,
    pub(super) t: Option<Tok<'a>>,
    pub(super) p: Option<Tok<'a>>,
    pub(super) q: Option<Tok<'a>>,
    pub(super) big_t: Option<Tok<'a>>,
    pub(super) m: Option<Tok<'a>>,
}

/// The keys of a top-level object: the event keys (raw frames) plus the envelope and control
/// keys.
#[derive(Default)]
pub(super) struct TopLevel<'a> {
    pub(super) event: EventFields<'a>,
    pub(super) stream: Option<Tok<'a>>,
    pub(super) data: Option<EventFields<'a>>,
    pub(super) result: Option<Tok<'a>>,
    pub(super) id: Option<Tok<'a>>,
    pub(super) code: Option<Tok<'a>>,
    pub(super) msg: Option<Tok<'a>>,
}

/// The reason given when the text stops in the middle of the object: a truncated frame.
const END_OF_FRAME: &str = "unexpected end of frame (truncated?)";

pub(super) struct Cursor<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Cursor {
            text,
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    fn err(&self, reason: &'static str) -> ParseError {
        ParseError::Syntax {
            offset: self.pos,
            reason,
            excerpt: quote(&truncate(self.text)),
        }
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(&b) = self.bytes.get(self.pos) {
            if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    #[inline]
    fn eat(&mut self, b: u8, reason: &'static str) -> Result<(), ParseError> {
        match self.peek() {
            Some(c) if c == b => {
                self.pos += 1;
                Ok(())
            }
            Some(_) => Err(self.err(reason)),
            None => Err(self.err(END_OF_FRAME)),
        }
    }

    /// The whole frame: one object and nothing after it but whitespace.
    pub(super) fn top_level(&mut self) -> Result<TopLevel<'a>, ParseError> {
        let mut top = TopLevel::default();
        self.ws();
        self.eat(b'{', "expected '{' at the start of the frame")?;
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
        } else {
            loop {
                self.ws();
                let key = self.string()?;
                self.ws();
                self.eat(b':', "expected ':' after an object key")?;
                self.ws();
                if key.raw == "\"data\"" && self.peek() == Some(b'{') {
                    top.data = Some(self.event_object()?);
                } else {
                    let v = self.value()?;
                    if !top.event.set(key.raw, v) {
                        match key.raw {
                            "\"stream\"" => top.stream = Some(v),
                            "\"result\"" => top.result = Some(v),
                            "\"id\"" => top.id = Some(v),
                            "\"code\"" => top.code = Some(v),
                            "\"msg\"" => top.msg = Some(v),
                            "\"data\"" => {
                                return Err(invalid("data", v.raw, "is not a JSON object"));
                            }
                            _ => {}
                        }
                    }
                }
                if self.next_member()? {
                    break;
                }
            }
        }
        self.ws();
        if self.pos != self.bytes.len() {
            return Err(self.err("unexpected text after the closing '}'"));
        }
        Ok(top)
    }

    /// A nested event object (`data`), cursor on its `{`.
    fn event_object(&mut self) -> Result<EventFields<'a>, ParseError> {
        let mut ev = EventFields::default();
        self.eat(b'{', "expected '{'")?;
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(ev);
        }
        loop {
            self.ws();
            let key = self.string()?;
            self.ws();
            self.eat(b':', "expected ':' after an object key")?;
            self.ws();
            let v = self.value()?;
            ev.set(key.raw, v);
            if self.next_member()? {
                return Ok(ev);
            }
        }
    }

    /// After a member: `,` (returns false, more to come) or `}` (returns true, done).
    #[inline]
    fn next_member(&mut self) -> Result<bool, ParseError> {
        self.ws();
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                Ok(false)
            }
            Some(b'}') => {
                self.pos += 1;
                Ok(true)
            }
            Some(_) => Err(self.err("expected ',' or '}' after an object member")),
            None => Err(self.err(END_OF_FRAME)),
        }
    }

    /// A string, cursor on its opening quote.
    #[inline]
    fn string(&mut self) -> Result<Tok<'a>, ParseError> {
        let start = self.pos;
        self.eat(b'"', "expected '\"' to start a string")?;
        // Fast path: no escape and no control character before the closing quote (every key and
        // value Binance sends in a trade frame).
        let rest = &self.bytes[self.pos..];
        if let Some(i) = rest
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
            && rest[i] == b'"'
        {
            self.pos += i + 1;
            return Ok(Tok {
                kind: Kind::Str,
                raw: &self.text[start..self.pos],
            });
        }
        let mut escaped = false;
        loop {
            match self.bytes.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    escaped = true;
                    self.pos += 2;
                }
                Some(&c) if c < 0x20 => return Err(self.err("control character inside a string")),
                Some(_) => self.pos += 1,
                None => {
                    self.pos = self.bytes.len();
                    return Err(self.err("unterminated string"));
                }
            }
        }
        Ok(Tok {
            kind: if escaped { Kind::EscapedStr } else { Kind::Str },
            raw: &self.text[start..self.pos],
        })
    }

    /// Any value, cursor on its first byte. Containers are skipped (string-aware, depth-counted).
    fn value(&mut self) -> Result<Tok<'a>, ParseError> {
        let start = self.pos;
        let kind = match self.peek() {
            Some(b'"') => return self.string(),
            Some(b'-' | b'0'..=b'9') => {
                self.pos += 1;
                while let Some(b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') = self.peek() {
                    self.pos += 1;
                }
                Kind::Number
            }
            Some(b't') => {
                self.literal("true")?;
                Kind::True
            }
            Some(b'f') => {
                self.literal("false")?;
                Kind::False
            }
            Some(b'n') => {
                self.literal("null")?;
                Kind::Null
            }
            Some(open @ (b'{' | b'[')) => {
                self.skip_container()?;
                if open == b'{' {
                    Kind::Object
                } else {
                    Kind::Array
                }
            }
            Some(_) => return Err(self.err("expected a JSON value")),
            None => return Err(self.err(END_OF_FRAME)),
        };
        Ok(Tok {
            kind,
            raw: &self.text[start..self.pos],
        })
    }

    fn literal(&mut self, word: &'static str) -> Result<(), ParseError> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.err("expected true, false or null"))
        }
    }

    /// Skips a balanced `{...}` or `[...]`. Checks nesting and string boundaries, not the full
    /// grammar inside: the contents of unknown fields are not ours to validate.
    fn skip_container(&mut self) -> Result<(), ParseError> {
        let mut stack = [0u8; MAX_NESTING];
        let mut depth = 0usize;
        loop {
            match self.peek() {
                Some(open @ (b'{' | b'[')) => {
                    if depth == MAX_NESTING {
                        return Err(self.err("nesting deeper than 64 levels"));
                    }
                    stack[depth] = if open == b'{' { b'}' } else { b']' };
                    depth += 1;
                    self.pos += 1;
                }
                Some(close @ (b'}' | b']')) => {
                    if depth == 0 || stack[depth - 1] != close {
                        return Err(self.err("mismatched bracket"));
                    }
                    depth -= 1;
                    self.pos += 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                Some(b'"') => {
                    self.string()?;
                }
                Some(_) => self.pos += 1,
                None => return Err(self.err("unterminated object or array")),
            }
        }
    }
}

impl<'a> EventFields<'a> {
    /// Records `v` when `key` (raw, with quotes) is an event key; false otherwise.
    #[inline]
    fn set(&mut self, key: &str, v: Tok<'a>) -> bool {
        let slot = match key.as_bytes() {
            [b'"', k, b'"'] => match k {
                b'e' => &mut self.e,
                b'E' => &mut self.big_e,
                b's' => &mut self.s,
                b't' => &mut self.t,
                b'p' => &mut self.p,
                b'q' => &mut self.q,
                b'T' => &mut self.big_t,
                b'm' => &mut self.m,
                _ => return false,
            },
            _ => return false,
        };
        *slot = Some(v);
        true
    }
}
