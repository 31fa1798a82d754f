//! Rolling restarts behind a real HAProxy (Debian's `haproxy`, started here with the
//! configuration docs/SCALING.md shows): a sequencer and two edges of one NATS history, Rust
//! clients connected through HAProxy, ticks flowing; each edge is stopped (SIGTERM: it closes
//! its clients with 1001) and started again at its address, one after the other. Every
//! client reconnects through the balancer, resumes with its epoch, and gets every seq once,
//! in order, with no gap and no reset.

mod nats_common;
mod ops_common;
mod support;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nats_common::{NatsServer, free_port, scratch_dir};
use ops_common::{Spawned, http_get, spawn};
use tickrelay_client::{Backoff, Client, Item, Options};

const PER_SYMBOL: u64 = 3000;
const CLIENTS: usize = 12;

/// HAProxy in front of the edges: WebSocket through `mode http` (the upgraded connection is
/// a tunnel), `/ready` as the health check, and a refused connection retried on the other
/// edge (`option redispatch`), so a client arriving while an edge restarts is not refused.
fn haproxy_config(listen: u16, edges: &[u16]) -> String {
    let mut config = format!(
        "global\n    maxconn 4096\n\
         defaults\n    mode http\n    timeout connect 1s\n    timeout client 30s\n    \
         timeout server 30s\n    timeout tunnel 1h\n    retries 3\n    option redispatch\n\
         frontend relays\n    bind 127.0.0.1:{listen}\n    default_backend edges\n\
         backend edges\n    balance leastconn\n    option httpchk GET /ready\n    \
         http-check expect status 200\n    default-server inter 100ms fall 1 rise 2\n"
    );
    for (i, port) in edges.iter().enumerate() {
        config.push_str(&format!("    server edge{i} 127.0.0.1:{port} check\n"));
    }
    config
}

struct Haproxy(Child);

impl Haproxy {
    fn start(listen: u16, edges: &[u16]) -> Self {
        let dir = scratch_dir("haproxy");
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, haproxy_config(listen, edges)).expect("write haproxy.cfg");
        let check = Command::new("haproxy")
            .args(["-c", "-f"])
            .arg(&path)
            .output()
            .expect("haproxy is installed (apt-get install -y haproxy)");
        assert!(check.status.success(), "{check:?}");
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy");
        Self(child)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn edge(nats: &NatsServer, port: u16) -> Spawned {
    let listen = format!("127.0.0.1:{port}");
    spawn(
        &["--role", "edge", "--nats", &nats.url(), "--listen", &listen],
        &[],
    )
}

async fn wait_ready(edge: &Spawned) {
    support::wait_for("the edge to be ready", || async {
        http_get(edge.http, "GET", "/ready").0 == 200
    })
    .await;
}

/// Publishes H1 and H2, seqs 1..=PER_SYMBOL each, 50 lines every 20 ms.
fn publish_paced(sequencer: &Spawned) -> std::thread::JoinHandle<()> {
    let addr = sequencer.ingest;
    std::thread::spawn(move || {
        let mut ingest = std::net::TcpStream::connect(addr).expect("connect to ingest");
        let lines: Vec<String> = (1..=PER_SYMBOL)
            .flat_map(|i| {
                ["H1", "H2"].map(|s| {
                    format!("{{\"symbol\":\"{s}\",\"price\":{i},\"size\":1,\"ts_ns\":{i}}}\n")
                })
            })
            .collect();
        for chunk in lines.chunks(50) {
            ingest
                .write_all(chunk.concat().as_bytes())
                .expect("publish");
            // The publisher's own thread, pacing the feed; not a shard.
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

/// Follows H1 and H2 through the balancer until both reach PER_SYMBOL: the seqs seen per
/// symbol, the connections made, and anything that is not a tick or a connection.
async fn follow(url: String) -> ([Vec<u64>; 2], usize, Vec<String>) {
    let fast = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(500),
    };
    let options = Options::new().symbols(["H1", "H2"]).backoff(fast);
    let mut client = Client::connect(&url, options).await.expect("connects");
    let mut seqs = [Vec::new(), Vec::new()];
    let mut connects = 0;
    let mut other = Vec::new();
    while seqs.iter().any(|s| s.last() != Some(&PER_SYMBOL)) {
        let item = support::within("the next item through the balancer", client.next())
            .await
            .expect("the client goes on")
            .expect("no client error");
        match item {
            Item::Tick(tick) | Item::Snapshot(tick) => {
                let at = usize::from(tick.symbol == "H2");
                assert_eq!(
                    tick.price,
                    Some(tick.seq as f64),
                    "the tick published at its seq"
                );
                seqs[at].push(tick.seq);
            }
            Item::Connected(_) => connects += 1,
            Item::Disconnected(_) => {}
            other_item => other.push(format!("{other_item:?}")),
        }
    }
    client.close();
    (seqs, connects, other)
}

/// `seqs` as runs of consecutive values, `(first, last)`: what a failure shows.
fn runs(seqs: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &seq in seqs {
        match out.last_mut() {
            Some(run) if run.1 + 1 == seq => run.1 = seq,
            _ => out.push((seq, seq)),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_restarted_one_after_the_other_behind_haproxy_lose_no_tick() {
    let Some(nats) = NatsServer::start("rolling") else {
        return;
    };
    let url = nats.url();
    let sequencer = spawn(&nats_common::sequencer_args(&url, &[]), &[]);
    let ports = [free_port(), free_port()];
    let mut edges = [Some(edge(&nats, ports[0])), Some(edge(&nats, ports[1]))];
    for edge in edges.iter().flatten() {
        wait_ready(edge).await;
    }
    let front = free_port();
    let _haproxy = Haproxy::start(front, &ports);
    let url = format!("ws://127.0.0.1:{front}/ws");
    support::wait_for("haproxy to accept", || async {
        std::net::TcpStream::connect(("127.0.0.1", front)).is_ok()
    })
    .await;

    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(follow(url.clone())))
        .collect();
    // Every client is connected (to one edge or the other) before the feed starts.
    support::wait_for("every client on an edge", || async {
        let sessions: u64 = edges
            .iter()
            .flatten()
            .map(|e| {
                let (_, body) = http_get(e.http, "GET", "/stats");
                serde_json::from_str::<serde_json::Value>(&body).expect("stats")["sessions"]
                    .as_u64()
                    .unwrap_or(0)
            })
            .sum();
        sessions == CLIENTS as u64
    })
    .await;
    let publisher = publish_paced(&sequencer);

    // The rolling restart: stop one edge (its clients go to the other), start it again at
    // its address, wait until it is ready, then the next.
    for (i, slot) in edges.iter_mut().enumerate() {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stopped = slot.take().expect("running");
        assert_eq!(stopped.stop(), Some(0), "edge {i} stops cleanly");
        let restarted = edge(&nats, ports[i]);
        wait_ready(&restarted).await;
        *slot = Some(restarted);
    }
    publisher.join().expect("publisher");

    let mut reconnected = 0;
    for client in clients {
        let (seqs, connects, other) = client.await.expect("client task");
        for (symbol, seen) in ["H1", "H2"].iter().zip(&seqs) {
            assert!(
                *seen == (1..=PER_SYMBOL).collect::<Vec<_>>(),
                "{symbol}: every seq once, in order; got runs {:?}, other items {other:?}",
                runs(seen)
            );
        }
        assert!(other.is_empty(), "no gap, reset or error: {other:?}");
        reconnected += usize::from(connects > 1);
    }
    assert_eq!(
        reconnected, CLIENTS,
        "both edges restarted: every client moved at least once"
    );
}
