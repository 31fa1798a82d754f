//! Several messages per frame (`?batch=on`), as the relay will send them: frames built by a
//! scripted server in each encoding (json: lines of one text frame; protobuf: one
//! `ServerBatch` per binary frame; gzip: sync-flushed pieces inflating to lines). Every
//! message is delivered in order and checked as if it had come alone: a duplicate is
//! dropped, a skipped seq named, a bad message an item among the others.

mod support;

use support::script::{Encoder, ScriptServer, event, raw, tick, welcome};
use support::{WAIT, fast_backoff};
use tickrelay_client::{Client, Encoding, Item, Options};

#[tokio::test]
async fn batched_frames_deliver_every_message_in_order_with_the_same_checks() {
    for encoding in [Encoding::Json, Encoding::Protobuf, Encoding::Gzip] {
        let mut frames = Encoder::new(encoding, true);
        let garbage = raw(r#"{"type":"tick","symbol":"#, &[0xff, 0xff, 0xff]);
        let script = vec![
            // The welcome shares its frame with what follows it.
            frames.frame(&[welcome(1), tick("A", 1), tick("A", 2)]),
            frames.frame(&[
                tick("A", 3),
                tick("A", 3),
                garbage,
                tick("A", 5),
                event("news", 1, r#"{"n":1}"#),
            ]),
            frames.frame(&[tick("A", 6)]),
        ];
        let server = ScriptServer::start(vec![script]).await;
        let options = Options::new()
            .symbols(["A"])
            .channels(["news"])
            .encoding(encoding)
            .batch(true)
            .backoff(fast_backoff());
        let mut client = Client::connect(&server.url(), options)
            .await
            .expect("connects");
        let mut shape = Vec::new();
        while shape.last().map(String::as_str) != Some("tick 6") {
            let item = tokio::time::timeout(WAIT, client.next())
                .await
                .unwrap_or_else(|_| panic!("{encoding:?}: timed out after {shape:?}"))
                .expect("the stream goes on")
                .expect("no error");
            shape.push(match item {
                Item::Connected(_) => "connected".into(),
                Item::Tick(t) => format!("tick {}", t.seq),
                Item::Gap(g) => format!("gap {}..={} {:?}", g.from, g.to, g.reason),
                Item::Event(e) => format!("event {} {}", e.channel, e.data),
                Item::Undecodable(u) => format!("undecodable {:?}", u.key),
                other => format!("{other:?}"),
            });
        }
        assert_eq!(
            shape,
            [
                "connected",
                "tick 1",
                "tick 2",
                "tick 3",
                "undecodable None",
                "gap 4..=4 Skipped",
                "tick 5",
                r#"event news {"n":1}"#,
                "tick 6"
            ],
            "{encoding:?}"
        );
        let requests = server.requests();
        assert_eq!(requests.len(), 1, "{encoding:?}: one connection");
        assert!(requests[0].contains("&batch=on"), "{requests:?}");
    }
}
