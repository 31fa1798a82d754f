//! `Sec-WebSocket-Extensions` (RFC 6455 §9.1) and the permessage-deflate negotiation
//! (RFC 7692 §5, §7.1): which offer the relay accepts, and what it answers.
//!
//! The header is parsed properly: several headers and several comma-separated extensions,
//! each `name *(";" param ["=" (token | quoted-string)])`. Offers are tried in the client's
//! order; an offer is declined (§7: unknown, malformed or repeated parameter, a value out of
//! range, or a configuration the relay cannot do) and the next one tried. A malformed header
//! or no acceptable offer means no compression: never a failed upgrade.
//!
//! The answer: `permessage-deflate`, `server_no_context_takeover` when offered,
//! `server_max_window_bits=N` when offered (N: the offer's value or the relay's own window,
//! whichever is smaller), and always `client_no_context_takeover` (§7.1.1.2: the server may
//! ask for it; the client must honour it), so the shard thread's one inflater serves every
//! client and none holds an inflate window. `client_max_window_bits` is never answered: the
//! inflater takes any window.

use hyper::header::{HeaderMap, HeaderValue, SEC_WEBSOCKET_EXTENSIONS};

use crate::config::WsDeflate;
use crate::encode::Encoding;
use crate::encode::deflate::{DeflateParams, MIN_WINDOW_BITS, WINDOW_BITS};
use crate::limits::{DeflateSlot, DeflateSlots};

/// A permessage-deflate agreement for one connection: the parameters and the client's place
/// under `--ws-deflate-max-clients` (released when the session ends).
#[derive(Debug)]
pub struct Deflate {
    /// What was agreed for the server's frames.
    pub params: DeflateParams,
    /// The client's place in the count of compressing clients.
    pub slot: DeflateSlot,
    /// The `server_max_window_bits` to answer (only when the offer named it).
    answered_bits: Option<u8>,
}

impl Deflate {
    /// The `Sec-WebSocket-Extensions` value of the `101` answer.
    pub fn response(&self) -> HeaderValue {
        let mut text = String::from("permessage-deflate");
        if self.params.no_context_takeover {
            text.push_str("; server_no_context_takeover");
        }
        text.push_str("; client_no_context_takeover");
        if let Some(bits) = self.answered_bits {
            text.push_str(&format!("; server_max_window_bits={bits}"));
        }
        HeaderValue::from_str(&text).expect("extension names and digits are visible ASCII")
    }
}

/// One permessage-deflate offer, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offer {
    /// `server_no_context_takeover`.
    pub server_no_context_takeover: bool,
    /// `client_no_context_takeover` (the relay asks for it anyway).
    pub client_no_context_takeover: bool,
    /// `server_max_window_bits=N`.
    pub server_max_window_bits: Option<u8>,
    /// `client_max_window_bits` (with its value, if any).
    pub client_max_window_bits: Option<Option<u8>>,
}

/// Decides permessage-deflate for an upgrade request: `None` when it is off, the encoding
/// is gzip (compressed already), the cap of compressing clients is reached, or no offer is
/// acceptable.
pub fn negotiate(
    headers: &HeaderMap,
    mode: WsDeflate,
    encoding: Encoding,
    slots: &DeflateSlots,
) -> Option<Deflate> {
    if mode == WsDeflate::Off || encoding == Encoding::Gzip {
        return None;
    }
    let (params, answered_bits) = accept(&offers(headers))?;
    let slot = slots.acquire()?;
    Some(Deflate {
        params,
        slot,
        answered_bits,
    })
}

/// The first offer the relay can take, as parameters and the `server_max_window_bits` to
/// answer (only when the offer named it).
pub fn accept(offers: &[Offer]) -> Option<(DeflateParams, Option<u8>)> {
    offers.iter().find_map(|offer| {
        let bits = match offer.server_max_window_bits {
            // zlib cannot compress with a 256-byte window: "the server doesn't support the
            // offered configuration" (§7), so this offer is declined.
            Some(bits) if bits < MIN_WINDOW_BITS => return None,
            Some(bits) => Some(bits.min(WINDOW_BITS)),
            None => None,
        };
        let params = DeflateParams {
            no_context_takeover: offer.server_no_context_takeover,
            window_bits: bits.unwrap_or(WINDOW_BITS),
        };
        Some((params, bits))
    })
}

/// Every well-formed permessage-deflate offer in the request, in order. Malformed offers
/// (and everything of a header that does not parse) are left out.
pub fn offers(headers: &HeaderMap) -> Vec<Offer> {
    let mut offers = Vec::new();
    for value in headers.get_all(SEC_WEBSOCKET_EXTENSIONS) {
        let Ok(text) = value.to_str() else {
            continue;
        };
        let Some(extensions) = parse_header(text) else {
            continue;
        };
        offers.extend(
            extensions
                .iter()
                .filter(|e| e.name.eq_ignore_ascii_case("permessage-deflate"))
                .filter_map(|e| offer(&e.params)),
        );
    }
    offers
}

/// One extension of the header: its name and parameters (values unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// The extension token.
    pub name: String,
    /// `(name, value)` pairs in order.
    pub params: Vec<(String, Option<String>)>,
}

/// Parses a `Sec-WebSocket-Extensions` value (`1#extension`, RFC 6455 §9.1); `None` if it
/// does not follow the grammar.
pub fn parse_header(text: &str) -> Option<Vec<Extension>> {
    let mut lexer = Lexer {
        rest: text.as_bytes(),
    };
    let mut extensions = Vec::new();
    loop {
        lexer.skip_space();
        if lexer.rest.is_empty() {
            break;
        }
        if lexer.eat(b',') {
            // `#rule` allows empty list elements.
            continue;
        }
        let name = lexer.token()?;
        let mut params = Vec::new();
        loop {
            lexer.skip_space();
            if !lexer.eat(b';') {
                break;
            }
            lexer.skip_space();
            let key = lexer.token()?;
            lexer.skip_space();
            let value = if lexer.eat(b'=') {
                lexer.skip_space();
                Some(if lexer.rest.first() == Some(&b'"') {
                    lexer.quoted()?
                } else {
                    lexer.token()?
                })
            } else {
                None
            };
            params.push((key, value));
        }
        extensions.push(Extension { name, params });
        lexer.skip_space();
        if !lexer.rest.is_empty() && !lexer.eat(b',') {
            return None;
        }
    }
    Some(extensions)
}

/// Validates one permessage-deflate offer's parameters (§7): `None` declines it.
fn offer(params: &[(String, Option<String>)]) -> Option<Offer> {
    let mut offer = Offer::default();
    let mut seen = Vec::new();
    for (key, value) in params {
        let key = key.to_ascii_lowercase();
        if seen.contains(&key) {
            return None;
        }
        match (key.as_str(), value) {
            ("server_no_context_takeover", None) => offer.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => offer.client_no_context_takeover = true,
            ("server_max_window_bits", Some(value)) => {
                offer.server_max_window_bits = Some(window_bits(value)?);
            }
            ("client_max_window_bits", None) => offer.client_max_window_bits = Some(None),
            ("client_max_window_bits", Some(value)) => {
                offer.client_max_window_bits = Some(Some(window_bits(value)?));
            }
            _ => return None,
        }
        seen.push(key);
    }
    Some(offer)
}

/// `1*DIGIT` from 8 to 15, without a leading zero (§7.1.2.1).
fn window_bits(value: &str) -> Option<u8> {
    // Digits only: `u8::from_str` would also take a `+`. An empty or too long value fails
    // the parse or the range.
    if value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bits: u8 = value.parse().ok()?;
    (8..=15).contains(&bits).then_some(bits)
}

struct Lexer<'a> {
    rest: &'a [u8],
}

impl Lexer<'_> {
    fn skip_space(&mut self) {
        while let [b' ' | b'\t', rest @ ..] = self.rest {
            self.rest = rest;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        match self.rest.split_first() {
            Some((first, rest)) if *first == byte => {
                self.rest = rest;
                true
            }
            _ => false,
        }
    }

    /// RFC 7230 §3.2.6 `token`: one or more `tchar`.
    fn token(&mut self) -> Option<String> {
        let len = self.rest.iter().take_while(|b| is_tchar(**b)).count();
        if len == 0 {
            return None;
        }
        let (token, rest) = self.rest.split_at(len);
        self.rest = rest;
        Some(String::from_utf8_lossy(token).into_owned())
    }

    /// A `quoted-string`, unquoted (backslash escapes the next byte).
    fn quoted(&mut self) -> Option<String> {
        if !self.eat(b'"') {
            return None;
        }
        let mut value = Vec::new();
        loop {
            match self.rest.split_first() {
                None => return None,
                Some((b'"', rest)) => {
                    self.rest = rest;
                    break;
                }
                Some((b'\\', rest)) => {
                    let (escaped, rest) = rest.split_first()?;
                    value.push(*escaped);
                    self.rest = rest;
                }
                Some((byte, rest)) => {
                    value.push(*byte);
                    self.rest = rest;
                }
            }
        }
        // RFC 6455 §9.1: a quoted value must itself be a token once unquoted.
        let value = String::from_utf8(value).ok()?;
        (!value.is_empty() && value.bytes().all(is_tchar)).then_some(value)
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offers_of(values: &[&str]) -> Vec<Offer> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                SEC_WEBSOCKET_EXTENSIONS,
                HeaderValue::from_str(value).unwrap(),
            );
        }
        offers(&headers)
    }

    fn answer(values: &[&str]) -> Option<String> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                SEC_WEBSOCKET_EXTENSIONS,
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let slots = DeflateSlots::new(10);
        negotiate(&headers, WsDeflate::On, Encoding::Json, &slots)
            .map(|d| d.response().to_str().unwrap().to_owned())
    }

    #[test]
    fn the_browser_offer_is_accepted_with_client_no_context_takeover() {
        assert_eq!(
            answer(&["permessage-deflate; client_max_window_bits"]).as_deref(),
            Some("permessage-deflate; client_no_context_takeover")
        );
        let offers = offers_of(&["permessage-deflate; client_max_window_bits"]);
        assert_eq!(offers[0].client_max_window_bits, Some(None));
        // A window the client names for its own frames is read (and needs no answer).
        let offers = offers_of(&["permessage-deflate; client_max_window_bits=10"]);
        assert_eq!(offers[0].client_max_window_bits, Some(Some(10)));
        assert_eq!(
            answer(&["permessage-deflate; client_max_window_bits=10"]).as_deref(),
            Some("permessage-deflate; client_no_context_takeover")
        );
        // A client that offers to reset its own context is taken at its word.
        let offer = "permessage-deflate; client_no_context_takeover";
        assert_eq!(answer(&[offer]).as_deref(), Some(offer));
        assert!(offers_of(&[offer])[0].client_no_context_takeover);
    }

    #[test]
    fn server_parameters_are_honoured_and_answered() {
        assert_eq!(
            answer(&["permessage-deflate; server_no_context_takeover; server_max_window_bits=9"])
                .as_deref(),
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9"
            )
        );
        // Never more than the relay's own window, never more than offered.
        assert_eq!(
            answer(&["permessage-deflate; server_max_window_bits=\"15\""]).as_deref(),
            Some("permessage-deflate; client_no_context_takeover; server_max_window_bits=12")
        );
        let (params, _) = accept(&offers_of(&[
            "permessage-deflate; server_max_window_bits=10",
        ]))
        .unwrap();
        assert_eq!(params.window_bits, 10);
    }

    #[test]
    fn malformed_or_unsupported_offers_are_declined_and_the_next_one_taken() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_max_window_bits=10; server_max_window_bits=11",
            "permessage-deflate; colour=red",
            "permessage-deflate; server_max_window_bits=8",
        ] {
            assert_eq!(answer(&[bad]), None, "{bad}");
            let then_good = answer(&[&format!("{bad}, permessage-deflate")]);
            assert_eq!(
                then_good.as_deref(),
                Some("permessage-deflate; client_no_context_takeover"),
                "{bad}"
            );
        }
        // A header that does not parse at all: no compression, and no panic.
        for broken in [
            "permessage-deflate; server_max_window_bits=\"9 1\"",
            "permessage-deflate; server_max_window_bits=\"\"",
            "permessage-deflate; server_max_window_bits=\"9",
            "permessage-deflate;",
            "permessage-deflate server_no_context_takeover",
            "=",
            ";;",
        ] {
            assert_eq!(answer(&[broken]), None, "{broken}");
        }
    }

    #[test]
    fn window_bits_are_8_to_15_in_plain_digits() {
        for (value, bits) in [("8", Some(8)), ("15", Some(15)), ("12", Some(12))] {
            assert_eq!(window_bits(value), bits, "{value}");
        }
        for bad in ["", "7", "16", "08", "0", "+9", "9 ", "1a", "999", "0015"] {
            assert_eq!(window_bits(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn several_headers_and_other_extensions() {
        let got = offers_of(&[
            "x-webkit-deflate-frame, foo; bar=\"a,b\"",
            "permessage-deflate; server_no_context_takeover, permessage-deflate",
        ]);
        assert_eq!(got.len(), 2);
        assert!(got[0].server_no_context_takeover);
        assert!(!got[1].server_no_context_takeover);
        assert_eq!(
            parse_header("a; b=\"c\\d\", e").unwrap(),
            vec![
                Extension {
                    name: "a".into(),
                    params: vec![("b".into(), Some("cd".into()))],
                },
                Extension {
                    name: "e".into(),
                    params: vec![],
                },
            ]
        );
    }

    #[test]
    fn off_gzip_and_the_cap_negotiate_nothing() {
        let mut headers = HeaderMap::new();
        headers.insert(
            SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_static("permessage-deflate"),
        );
        let slots = DeflateSlots::new(1);
        assert!(negotiate(&headers, WsDeflate::Off, Encoding::Json, &slots).is_none());
        assert!(negotiate(&headers, WsDeflate::On, Encoding::Gzip, &slots).is_none());
        let first = negotiate(&headers, WsDeflate::On, Encoding::Protobuf, &slots);
        assert!(first.is_some());
        assert!(negotiate(&headers, WsDeflate::On, Encoding::Json, &slots).is_none());
        assert_eq!(slots.held(), 1);
        drop(first);
        assert_eq!(slots.held(), 0);
        assert!(negotiate(&headers, WsDeflate::On, Encoding::Json, &slots).is_some());
    }
}
