//! Every history has an epoch: `welcome` names it, a resume names the one its seqs belong
//! to, and a resume into another history gets `reset` + snapshot, never ticks that look
//! like a continuation of the old seqs (the bug: after a restart, `?resume=XR:5` was sent
//! seqs 6, 7, 8 of the new history as if nothing had happened). A resume without an epoch
//! is treated as one of another history.

mod support;

use std::collections::BTreeMap;

use support::{TestRelay, WsClient};
use tickrelay::Config;

/// A relay with `count` ticks of XR published, and its epoch.
async fn relay_with_history(count: u64) -> (TestRelay, u64) {
    let relay = TestRelay::start(Config::for_tests()).await;
    let mut watcher = relay.client("?symbols=XR").await;
    relay.publish_many("XR", count).await;
    watcher
        .ticks_until(&BTreeMap::from([("XR".to_string(), count)]))
        .await;
    let mut probe = WsClient::connect(&relay.url("")).await;
    let welcome = probe.next_json().await;
    let epoch = welcome["epoch"]
        .as_u64()
        .expect("welcome carries the epoch");
    assert!(
        epoch > 0 && epoch < 1 << 53,
        "exact in JSON everywhere: {welcome}"
    );
    (relay, epoch)
}

#[tokio::test]
async fn two_relays_serve_two_histories_with_different_epochs() {
    let (_a, epoch_a) = relay_with_history(3).await;
    let (_b, epoch_b) = relay_with_history(3).await;
    assert_ne!(epoch_a, epoch_b);
}

#[tokio::test]
async fn a_resume_into_another_history_gets_reset_and_snapshot_never_ticks() {
    let (_old, old_epoch) = relay_with_history(5).await;
    let (relay, epoch) = relay_with_history(10).await;

    let mut client =
        WsClient::connect(&relay.url(&format!("?resume=XR:5&epoch={old_epoch}"))).await;
    let welcome = client.next_json().await;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["epoch"], epoch);
    let reset = client.next_json().await;
    assert_eq!(reset["type"], "reset", "{reset}");
    assert_eq!(reset["symbol"], "XR");
    assert_eq!(reset["epoch"], epoch);
    let snapshot = client.next_json().await;
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    assert_eq!(
        snapshot["seq"], 10,
        "the new history's last value: {snapshot}"
    );
    // Live ticks continue from the new history, never seqs 6..=10 replayed as if continuous.
    relay.publish_many("XR", 1).await;
    let next = client.next_json().await;
    assert_eq!(
        (next["type"].as_str(), next["seq"].as_u64()),
        (Some("tick"), Some(11)),
        "{next}"
    );
}

/// The bug this rule fixes: after a restart, `?resume=XR:5` without an epoch was sent seqs
/// 6, 7, 8 of the new history as if they continued the old one.
#[tokio::test]
async fn a_resume_without_an_epoch_gets_reset_and_snapshot_never_ticks() {
    let (relay, epoch) = relay_with_history(10).await;
    let mut client = WsClient::connect(&relay.url("?resume=XR:5")).await;
    assert_eq!(client.next_json().await["type"], "welcome");
    let reset = client.next_json().await;
    assert_eq!(
        (reset["type"].as_str(), reset["symbol"].as_str()),
        (Some("reset"), Some("XR")),
        "{reset}"
    );
    assert_eq!(reset["epoch"], epoch, "the epoch to resume with next time");
    let snapshot = client.next_json().await;
    assert_eq!(
        (snapshot["type"].as_str(), snapshot["seq"].as_u64()),
        (Some("snapshot"), Some(10)),
        "{snapshot}"
    );
    let mut op = relay.client("").await;
    op.send_json(r#"{"op":"resume","from":{"XR":5}}"#).await;
    assert_eq!(op.next_json().await["type"], "resumed");
    assert_eq!(
        op.next_json().await["type"],
        "reset",
        "the op's rule is the same"
    );
    assert_eq!(op.next_json().await["seq"], 10);
    relay.publish_many("XR", 1).await;
    for mut client in [client, op] {
        let next = client.next_json().await;
        assert_eq!(
            (next["type"].as_str(), next["seq"].as_u64()),
            (Some("tick"), Some(11)),
            "live from the snapshot on: {next}"
        );
    }
}

/// Seq 0 is no position in any history (nothing received yet): what the relay holds is all
/// after it, whatever the history, so it is replayed without an epoch.
#[tokio::test]
async fn a_resume_from_zero_without_an_epoch_replays_what_the_relay_holds() {
    let (relay, _) = relay_with_history(3).await;
    let mut client = WsClient::connect(&relay.url("?resume=XR:0")).await;
    assert_eq!(client.next_json().await["type"], "welcome");
    for seq in 1..=3 {
        let tick = client.next_json().await;
        assert_eq!(
            (tick["type"].as_str(), tick["seq"].as_u64()),
            (Some("tick"), Some(seq)),
            "{tick}"
        );
    }
}

#[tokio::test]
async fn a_resume_in_the_same_history_replays_exactly_the_missed_ticks() {
    let (relay, epoch) = relay_with_history(10).await;
    let mut client = WsClient::connect(&relay.url(&format!("?resume=XR:5&epoch={epoch}"))).await;
    assert_eq!(client.next_json().await["type"], "welcome");
    for seq in 6..=10 {
        let tick = client.next_json().await;
        assert_eq!(
            (tick["type"].as_str(), tick["seq"].as_u64()),
            (Some("tick"), Some(seq)),
            "{tick}"
        );
    }
}

#[tokio::test]
async fn the_resume_op_checks_the_epoch_too() {
    let (relay, epoch) = relay_with_history(4).await;
    let mut wrong = relay.client("").await;
    wrong
        .send_json(&format!(
            r#"{{"op":"resume","from":{{"XR":2}},"epoch":{}}}"#,
            epoch + 1
        ))
        .await;
    assert_eq!(wrong.next_json().await["type"], "resumed");
    let reset = wrong.next_json().await;
    assert_eq!(
        (reset["type"].as_str(), reset["epoch"].as_u64()),
        (Some("reset"), Some(epoch)),
        "{reset}"
    );
    assert_eq!(wrong.next_json().await["seq"], 4, "then the snapshot");

    let mut right = relay.client("").await;
    right
        .send_json(&format!(
            r#"{{"op":"resume","from":{{"XR":2}},"epoch":{epoch}}}"#
        ))
        .await;
    assert_eq!(right.next_json().await["type"], "resumed");
    for seq in 3..=4 {
        assert_eq!(right.next_json().await["seq"], seq);
    }
}

#[tokio::test]
async fn a_malformed_epoch_is_refused_before_the_upgrade() {
    let relay = TestRelay::start(Config::for_tests()).await;
    for bad in ["0", "x", "-1"] {
        let url = relay.url(&format!("?resume=XR:1&epoch={bad}"));
        let refused = tokio::time::timeout(support::WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("an answer in time");
        let Err(tokio_tungstenite::tungstenite::Error::Http(response)) = refused else {
            panic!("epoch={bad}: expected an HTTP refusal, got {refused:?}");
        };
        assert_eq!(response.status(), 400, "epoch={bad}");
        let body =
            String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).to_string();
        assert!(
            body.contains("\"code\":\"bad_request\"") && body.contains("epoch"),
            "{body}"
        );
    }
}
