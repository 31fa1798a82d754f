//! The harness end to end against a tiny in-process stand-in for the relay.
//!
//! The stand-in speaks the contract the harness relies on (WebSocket upgrade, a welcome, ticks
//! with a per-symbol seq in json / protobuf / gzip, NDJSON ingest, and with `batch=on` two
//! messages per frame: NDJSON text, a `ServerBatch`, gzip inflating to NDJSON) and nothing
//! more, so these tests pin the harness's own behaviour: counts add up, a clean run exits 0, a
//! missing tick is caught and `--assert-clean` exits 1.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;

use flate2::{Compress, Compression, FlushCompress};
use loadtest::client::accept_key;
use loadtest::proto;
use loadtest::report::RunReport;
use prost::Message as _;
use tempfile::TempDir;

#[test]
fn clean_run_counts_every_delivery_in_every_encoding() {
    let relay = FakeRelay::start(None);
    let dir = tempdir();
    let out = dir.path().join("report.json");
    let run = harness(&relay, &out, "20s", &["--assert-clean"]);
    assert!(run.status.success(), "{}", describe(&run));
    let report = RunReport::read_json(&out).unwrap();
    assert!(report.clean, "{:?}", report.problems);
    assert_eq!(report.connect.welcomed, 12);
    let phase = &report.phases[0];
    assert_eq!(phase.published, 400);
    // 12 clients × 2 of 4 symbols: each tick reaches 6 clients.
    assert_eq!(phase.fast.expected, 400 * 6);
    assert_eq!(phase.fast.received, phase.fast.expected);
    assert_eq!(phase.fast.latency_us.count, phase.fast.received);
    assert_eq!(phase.fast.decode_errors, 0);
    assert_eq!(report.connect.by_encoding.len(), 3);
}

#[test]
fn batched_frames_count_every_message_in_every_encoding() {
    let relay = FakeRelay::start(None);
    let dir = tempdir();
    let out = dir.path().join("report.json");
    let run = harness(&relay, &out, "20s", &["--batch", "on", "--assert-clean"]);
    assert!(run.status.success(), "{}", describe(&run));
    let report = RunReport::read_json(&out).unwrap();
    assert!(report.clean, "{:?}", report.problems);
    assert_eq!(
        report.connect.welcomed, 12,
        "welcomes read from batched frames"
    );
    let f = &report.phases[0].fast;
    assert_eq!(f.expected, 400 * 6);
    assert_eq!(f.received, f.expected);
    assert!(f.seq.is_clean(), "{:?}", f.seq);
    assert_eq!(f.latency_us.count, f.received, "every message timed");
    // The stand-in puts two ticks in every frame it sends a batching client, and nothing else
    // reaches the clients while publishing.
    assert_eq!(f.messages, f.received);
    assert_eq!(f.frames * 2, f.received);
}

#[test]
fn a_dropped_tick_is_a_gap_and_fails_assert_clean() {
    let relay = FakeRelay::start(Some(("SYM001".into(), 10)));
    let dir = tempdir();
    let out = dir.path().join("report.json");
    // The missing ticks never come: the drain ends after this much silence.
    let run = harness(&relay, &out, "5s", &["--assert-clean"]);
    assert_eq!(run.status.code(), Some(1), "{}", describe(&run));
    let report = RunReport::read_json(&out).unwrap();
    let f = &report.phases[0].fast;
    // SYM001 has 6 subscribers; each misses seq 10.
    assert_eq!(f.seq.gaps, 6);
    assert_eq!(f.seq.missing, 6);
    assert_eq!(f.lost, 6);
    assert!(!report.clean);
}

/// A small steady run against `relay`; the drain waits for the last expected tick, or ends
/// after `drain_idle` with nothing arriving.
fn harness(
    relay: &FakeRelay,
    out: &std::path::Path,
    drain_idle: &str,
    extra: &[&str],
) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["steady", "--relay", &relay.ws.to_string()])
        .args(["--ingest", &relay.ingest.to_string()])
        .args([
            "--clients",
            "12",
            "--symbols",
            "4",
            "--symbols-per-client",
            "2",
        ])
        .args(["--mix", "json=1,protobuf=1,gzip=1"])
        .args(["--rate", "400", "--duration", "1s", "--settle", "100ms"])
        // Generous bounds, left as soon as their condition holds: no verdict on speed.
        .args(["--handshake-timeout", "60s", "--drain-timeout", "60s"])
        .args([
            "--drain-idle",
            drain_idle,
            "--max-time",
            "300s",
            "--no-progress",
        ])
        .arg("--report-json")
        .arg(out)
        .args(extra)
        .output()
        .expect("the harness binary runs")
}

fn describe(run: &std::process::Output) -> String {
    format!(
        "harness exited {}\nstdout:\n{}\nstderr:\n{}",
        run.status,
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    )
}

/// A directory for one test's report, removed when the test ends.
fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("loadtest-fake-")
        .tempdir()
        .expect("a temp dir")
}

/// A subscriber: its symbols, encoding, socket, (gzip) its deflate stream, and (`batch=on`)
/// the messages held for its next frame.
struct Sub {
    symbols: Vec<String>,
    encoding: String,
    stream: TcpStream,
    deflate: Option<Compress>,
    batch: Option<Vec<Vec<u8>>>,
}

struct FakeRelay {
    ws: SocketAddr,
    ingest: SocketAddr,
}

impl FakeRelay {
    /// Starts the stand-in; `drop` names one (symbol, seq) it will never send.
    fn start(drop: Option<(String, u64)>) -> Self {
        let ws = TcpListener::bind("127.0.0.1:0").unwrap();
        let ingest = TcpListener::bind("127.0.0.1:0").unwrap();
        let addrs = Self {
            ws: ws.local_addr().unwrap(),
            ingest: ingest.local_addr().unwrap(),
        };
        let subs: Arc<Mutex<Vec<Sub>>> = Arc::default();
        let accepted = Arc::clone(&subs);
        thread::spawn(move || {
            for stream in ws.incoming().flatten() {
                let subs = Arc::clone(&accepted);
                thread::spawn(move || upgrade(stream, &subs));
            }
        });
        thread::spawn(move || {
            for stream in ingest.incoming().flatten() {
                let subs = Arc::clone(&subs);
                let drop = drop.clone();
                thread::spawn(move || fan_out(stream, &subs, drop));
            }
        });
        addrs
    }
}

fn upgrade(mut stream: TcpStream, subs: &Mutex<Vec<Sub>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let Some(key) = header(&head, "sec-websocket-key") else {
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}");
        return;
    };
    let path = head.split_whitespace().nth(1).unwrap_or_default();
    let query: HashMap<&str, &str> = path
        .split_once('?')
        .map(|(_, q)| q.split('&').filter_map(|kv| kv.split_once('=')).collect())
        .unwrap_or_default();
    let symbols: Vec<String> = query["symbols"].split(',').map(String::from).collect();
    let encoding = query["encoding"].to_owned();
    let batch = query.get("batch") == Some(&"on");
    write!(
        stream,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(&key)
    )
    .unwrap();
    let mut sub = Sub {
        deflate: (encoding == "gzip").then(|| Compress::new_gzip(Compression::fast(), 15)),
        symbols,
        encoding,
        stream,
        batch: batch.then(Vec::new),
    };
    let welcome = match sub.encoding.as_str() {
        "protobuf" => proto::ServerMessage {
            msg: Some(proto::server_message::Msg::Welcome(
                proto::Welcome::default(),
            )),
        }
        .encode_to_vec(),
        _ => br#"{"type":"welcome","session":1}"#.to_vec(),
    };
    if sub.batch.is_some() {
        flush(&mut sub, vec![welcome]);
    } else {
        send(&mut sub, &welcome);
    }
    subs.lock().unwrap().push(sub);
}

fn fan_out(stream: TcpStream, subs: &Mutex<Vec<Sub>>, drop: Option<(String, u64)>) {
    let mut seqs: HashMap<String, u64> = HashMap::new();
    for (n, line) in BufReader::new(stream).lines().enumerate() {
        let Ok(line) = line else { return };
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let symbol = v["symbol"].as_str().unwrap().to_owned();
        let ts_ns = v["ts_ns"].as_u64().unwrap();
        let seq = seqs.entry(symbol.clone()).or_default();
        *seq += 1;
        if drop.as_ref() == Some(&(symbol.clone(), *seq)) {
            continue;
        }
        let json = format!(
            r#"{{"type":"tick","symbol":"{symbol}","seq":{seq},"kind":"trade","ts_ns":{ts_ns},"recv_ns":{ts_ns},"price":1.5}}"#
        );
        let pb = proto::ServerMessage {
            msg: Some(proto::server_message::Msg::Tick(proto::Tick {
                symbol: symbol.clone(),
                kind: proto::TickKind::Trade.into(),
                price: Some(1.5),
                ts_ns,
                seq: *seq,
                recv_ns: ts_ns,
                ..Default::default()
            })),
        }
        .encode_to_vec();
        for sub in subs.lock().unwrap().iter_mut() {
            if sub.symbols.contains(&symbol) {
                let payload = if sub.encoding == "protobuf" {
                    pb.clone()
                } else {
                    json.clone().into_bytes()
                };
                match &mut sub.batch {
                    Some(held) => held.push(payload),
                    None => send(sub, &payload),
                }
            }
        }
        // Batching clients get a frame every two ingest lines: the publisher goes round the
        // symbols in order and each client takes two neighbours, so every frame holds two
        // ticks (the runs publish an even count: none is left held).
        if n % 2 == 1 {
            for sub in subs.lock().unwrap().iter_mut() {
                if let Some(held) = sub.batch.as_mut().map(std::mem::take)
                    && !held.is_empty()
                {
                    flush(sub, held);
                }
            }
        }
    }
}

/// One frame holding `messages`: a `ServerBatch` for protobuf, NDJSON otherwise (deflated for
/// gzip by `send`).
fn flush(sub: &mut Sub, messages: Vec<Vec<u8>>) {
    let payload = if sub.encoding == "protobuf" {
        proto::ServerBatch {
            messages: messages
                .iter()
                .map(|m| proto::ServerMessage::decode(&m[..]).unwrap())
                .collect(),
        }
        .encode_to_vec()
    } else {
        messages.join(&b'\n')
    };
    send(sub, &payload);
}

/// One unmasked server frame: text for json, binary otherwise (gzip: sync-flushed deflate).
fn send(sub: &mut Sub, payload: &[u8]) {
    let (opcode, body) = match (&mut sub.deflate, sub.encoding.as_str()) {
        (Some(deflate), _) => {
            let mut out = Vec::with_capacity(payload.len() + 64);
            deflate
                .compress_vec(payload, &mut out, FlushCompress::Sync)
                .unwrap();
            (0x2, out)
        }
        (None, "json") => (0x1, payload.to_vec()),
        (None, _) => (0x2, payload.to_vec()),
    };
    let mut frame = vec![0x80 | opcode];
    match body.len() {
        n @ 0..=125 => frame.push(n as u8),
        n => {
            frame.push(126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    frame.extend_from_slice(&body);
    let _ = sub.stream.write_all(&frame);
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}
