//! An idle relay uses no CPU: no shard, sequencer or control loop spins while nothing
//! happens. Alone in its test binary, so the process's CPU time is the relay's.

mod support;

use std::time::Duration;

use support::TestRelay;
use tickrelay::Config;

#[tokio::test]
async fn an_idle_relay_with_clients_does_not_spin() {
    let relay = TestRelay::start(Config {
        shards: 2,
        ..Config::for_tests()
    })
    .await;
    // Clients on both shards, ticks delivered: every loop has run at least once.
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(relay.client("?symbols=IDLE").await);
    }
    relay.publish_many("IDLE", 100).await;
    for client in &mut clients {
        client
            .ticks_until(&std::collections::BTreeMap::from([(
                "IDLE".to_owned(),
                100,
            )]))
            .await;
    }
    // A measurement window, not synchronisation: CPU spent while nothing happens. A loop
    // that spins takes a whole core (on a box loaded 4x, still a quarter: 0.5 s of 2 s);
    // idle, the relay wakes only for timers (pings every 15 s).
    let before = process_cpu();
    tokio::time::sleep(WINDOW).await;
    let spent = process_cpu() - before;
    assert!(
        spent < WINDOW / 10,
        "the idle relay used {spent:?} of CPU in {WINDOW:?}: a loop is spinning"
    );
}

const WINDOW: Duration = Duration::from_secs(2);

/// User + system CPU time of this process (`/proc/self/stat` fields 14 and 15).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    let after_name = &stat[stat.rfind(')').expect("(comm)") + 1..];
    let fields: Vec<u64> = after_name
        .split_ascii_whitespace()
        .skip(11)
        .take(2)
        .map(|f| f.parse().expect("a number of clock ticks"))
        .collect();
    let ticks = fields.iter().sum::<u64>();
    Duration::from_nanos(ticks * 1_000_000_000 / rustix::param::clock_ticks_per_second())
}
