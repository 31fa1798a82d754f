//! Invariants shared by the targets: what every decoded value must satisfy.
//!
//! `Tick::try_from` is the relay's only validation point ("parse at the edge, then trust the
//! type"), so whatever a decoder hands out must already meet the tick contract of src/tick.rs.

use tickrelay::event::{Channel, Event};
use tickrelay::tick::{MAX_VENUE_LEN, Symbol, Tick, TickKind};

/// Panics (a fuzzer finding) if `tick` breaks the tick contract.
pub fn valid_tick(tick: &Tick) {
    assert!(
        Symbol::parse(tick.symbol.as_str()).is_ok(),
        "decoded symbol {:?} does not re-parse",
        tick.symbol
    );
    for (field, value) in [
        ("price", tick.price),
        ("size", tick.size),
        ("bid", tick.bid),
        ("ask", tick.ask),
        ("bid_size", tick.bid_size),
        ("ask_size", tick.ask_size),
    ] {
        assert!(value.is_none_or(f64::is_finite), "{field} is {value:?}");
    }
    match tick.kind {
        TickKind::Trade => assert!(tick.price.is_some(), "a trade without a price"),
        TickKind::Quote => assert!(
            tick.bid.is_some() || tick.ask.is_some(),
            "a quote without a side"
        ),
    }
    if let Some(venue) = &tick.venue {
        assert!(
            venue.len() <= MAX_VENUE_LEN,
            "venue of {} bytes",
            venue.len()
        );
    }
    assert_eq!(tick.seq.0, 0, "decoders never assign seq");
}

/// Panics if `event` breaks the event contract: a valid channel, `data` one JSON value of at
/// most `max_data` bytes, no seq assigned.
#[allow(dead_code)] // not every target decodes events
pub fn valid_event(event: &Event, max_data: usize) {
    assert!(
        Channel::parse(event.channel.as_str()).is_ok(),
        "decoded channel {:?} does not re-parse",
        event.channel
    );
    assert!(
        !event.channel.is_reserved(),
        "an event of {:?}, a channel only the relay writes",
        event.channel
    );
    assert!(
        event.data.len() <= max_data,
        "data of {} bytes",
        event.data.len()
    );
    assert!(
        serde_json::from_slice::<serde_json::Value>(&event.data).is_ok(),
        "data is not one JSON value"
    );
    assert_eq!(event.seq.0, 0, "decoders never assign seq");
}
