//! One floor shard: its subscribers, the index of who takes which symbol, the fan-out of a
//! batch into their buffers, and the writes (one per subscriber per wake-up, or a drain task
//! once a socket is full).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::rc::Rc;

use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::batch::{Batch, ShardMsg};

/// One shard's subscribers and the index of who takes which symbol.
#[derive(Default)]
struct Shard {
    subs: Vec<Option<Sub>>,
    by_symbol: HashMap<Vec<u8>, Vec<usize>>,
    /// Subscribers given bytes since the last flush.
    dirty: Vec<usize>,
}

struct Sub {
    stream: Rc<TcpStream>,
    /// Bytes not yet written.
    out: Outbox,
    /// A drain task owns the writing until the socket takes `out`.
    waiting: bool,
}

pub(super) async fn run_shard(mut rx: mpsc::Receiver<ShardMsg>) {
    let shard = Rc::new(RefCell::new(Shard::default()));
    while let Some(first) = rx.recv().await {
        // One wake-up: everything queued now, then one write per subscriber.
        shard.borrow_mut().apply(first);
        for _ in 1..MAX_PER_WAKE {
            let Ok(msg) = rx.try_recv() else { break };
            shard.borrow_mut().apply(msg);
        }
        flush_dirty(&shard);
    }
}

/// One write for each subscriber given bytes since the last flush.
fn flush_dirty(shard: &Rc<RefCell<Shard>>) {
    let dirty = std::mem::take(&mut shard.borrow_mut().dirty);
    for &id in &dirty {
        flush(shard, id);
    }
    let mut st = shard.borrow_mut();
    if st.dirty.is_empty() {
        st.dirty = dirty;
        st.dirty.clear();
    }
}

impl Shard {
    fn apply(&mut self, msg: ShardMsg) {
        match msg {
            ShardMsg::Join {
                stream,
                symbols,
                greeting,
            } => {
                let Ok(stream) = TcpStream::from_std(stream) else {
                    return;
                };
                let id = self.subs.len();
                self.subs.push(Some(Sub {
                    stream: Rc::new(stream),
                    out: Outbox::new(greeting),
                    waiting: false,
                }));
                for s in symbols {
                    self.by_symbol.entry(s.into_bytes()).or_default().push(id);
                }
                self.dirty.push(id);
            }
            ShardMsg::Batch(batch) => self.fan_out(&batch),
        }
    }

    fn fan_out(&mut self, batch: &Batch) {
        for (name, frame) in &batch.index {
            let Some(ids) = self.by_symbol.get(&batch.names[name.clone()]) else {
                continue;
            };
            let frame = &batch.frames[frame.clone()];
            for &id in ids {
                let Some(sub) = self.subs[id].as_mut() else {
                    continue;
                };
                if sub.out.is_empty() {
                    self.dirty.push(id);
                }
                sub.out.push(frame);
                if sub.out.len() > MAX_BACKLOG {
                    drop_sub(&mut self.subs[id]);
                }
            }
        }
    }
}

/// Writes a subscriber's buffer, or leaves it to a drain task if the socket is full.
fn flush(shard: &Rc<RefCell<Shard>>, id: usize) {
    let mut st = shard.borrow_mut();
    let Some(sub) = st.subs[id].as_mut() else {
        return;
    };
    if sub.waiting || sub.out.is_empty() {
        return;
    }
    match sub.out.write_to(&sub.stream) {
        Ok(true) => {}
        Ok(false) => {
            sub.waiting = true;
            let stream = Rc::clone(&sub.stream);
            tokio::task::spawn_local(drain_backlog(Rc::clone(shard), id, stream));
        }
        Err(_) => drop_sub(&mut st.subs[id]),
    }
}

async fn drain_backlog(shard: Rc<RefCell<Shard>>, id: usize, stream: Rc<TcpStream>) {
    loop {
        if stream.writable().await.is_err() {
            drop_sub(&mut shard.borrow_mut().subs[id]);
            return;
        }
        let mut st = shard.borrow_mut();
        let Some(sub) = st.subs[id].as_mut() else {
            return;
        };
        match sub.out.write_to(&sub.stream) {
            Ok(true) => {
                sub.waiting = false;
                return;
            }
            Ok(false) => {}
            Err(_) => {
                drop_sub(&mut st.subs[id]);
                return;
            }
        }
    }
}

/// A subscriber's unwritten bytes: appended at the back, written from `sent` on, so a
/// partial write costs no move of the rest (it is compacted once half of it is written).
struct Outbox {
    bytes: Vec<u8>,
    sent: usize,
}

impl Outbox {
    fn new(bytes: Vec<u8>) -> Self {
        Self { bytes, sent: 0 }
    }

    fn is_empty(&self) -> bool {
        self.sent == self.bytes.len()
    }

    /// Unwritten bytes.
    fn len(&self) -> usize {
        self.bytes.len() - self.sent
    }

    fn push(&mut self, frame: &[u8]) {
        if self.is_empty() {
            self.bytes.clear();
            self.sent = 0;
        } else if self.sent > self.bytes.len() / 2 {
            self.bytes.drain(..self.sent);
            self.sent = 0;
        }
        self.bytes.extend_from_slice(frame);
    }

    /// Writes until empty (true) or the socket is full (false).
    fn write_to(&mut self, stream: &TcpStream) -> io::Result<bool> {
        while !self.is_empty() {
            match stream.try_write(&self.bytes[self.sent..]) {
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

/// Forgets a subscriber and shuts its socket (a drain task may still hold a handle to it).
fn drop_sub(slot: &mut Option<Sub>) {
    if let Some(sub) = slot.take() {
        let _ = socket2::SockRef::from(&*sub.stream).shutdown(std::net::Shutdown::Both);
    }
}

/// Messages a shard takes per wake-up before it writes (so writes never wait on a busy ingest).
const MAX_PER_WAKE: usize = 64;
/// A subscriber this far behind is dropped (the floor has no slow-consumer policy to speak of).
const MAX_BACKLOG: usize = 64 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn a_full_socket_is_drained_later_in_order() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio::task::LocalSet::new().block_on(&rt, async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut client = TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let (server_side, _) = listener.accept().await.unwrap();
            server_side.set_nodelay(true).unwrap();
            // Small buffers and ten times more bytes than they hold: the socket is full long
            // before the batch is out.
            socket2::SockRef::from(&server_side)
                .set_send_buffer_size(4096)
                .unwrap();
            socket2::SockRef::from(&client)
                .set_recv_buffer_size(64 * 1024)
                .unwrap();
            let shard = Rc::new(RefCell::new(Shard::default()));
            shard.borrow_mut().apply(ShardMsg::Join {
                stream: server_side.into_std().unwrap(),
                symbols: vec!["A".into()],
                greeting: b"hello".to_vec(),
            });
            let mut seqs = HashMap::new();
            let mut batch = Batch::default();
            for ts in 0..25_000 {
                let line = format!(r#"{{"symbol":"A","ts_ns":{ts}}}"#);
                batch.push(line.as_bytes(), &mut seqs).unwrap();
            }
            let expected = [b"hello".as_slice(), &batch.frames].concat();
            shard.borrow_mut().apply(ShardMsg::Batch(Arc::new(batch)));
            flush_dirty(&shard);
            assert!(
                shard.borrow().subs[0].as_ref().unwrap().waiting,
                "the socket took {} bytes at once",
                expected.len()
            );
            let mut got = vec![0; expected.len()];
            client.read_exact(&mut got).await.unwrap();
            assert!(got == expected, "bytes arrived out of order or changed");
            assert!(!shard.borrow().subs[0].as_ref().unwrap().waiting);
        });
    }
}
