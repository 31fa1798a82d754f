//! The application's side: [`Publisher`] checks the config, starts the task, queues lines
//! and reads the counters the task keeps.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::config::{MAX_FIRST_PSEQ, PublisherConfig, PublisherError, validate_id};
use super::connection::run;
use super::state::{Shared, State};

/// A handle on a publishing task (see the module doc). Dropping it stops the task.
#[derive(Debug)]
pub struct Publisher {
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl Publisher {
    /// Checks `config` and starts the background task. The task connects on its own: no
    /// relay needs to be reachable yet. Must be called within a tokio runtime.
    pub async fn start(config: PublisherConfig) -> Result<Self, PublisherError> {
        validate_id(&config.id).map_err(|reason| PublisherError::InvalidId {
            id: config.id.clone(),
            reason,
        })?;
        if config.addrs.is_empty() {
            return Err(PublisherError::NoAddresses);
        }
        if !(1..=MAX_FIRST_PSEQ).contains(&config.first_pseq) {
            return Err(PublisherError::FirstPseqOutOfRange {
                pseq: config.first_pseq,
            });
        }
        if config.max_unacked == 0 {
            return Err(PublisherError::ZeroMaxUnacked);
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(config.first_pseq)),
            queued: Notify::new(),
            settled: Notify::new(),
            max_unacked: config.max_unacked,
            first_pseq: config.first_pseq,
        });
        let task = tokio::spawn(run(Arc::clone(&shared), config));
        Ok(Self {
            shared,
            task: Some(task),
        })
    }

    /// Queues `line` (without its trailing newline) and returns its pseq. Waits while
    /// [`PublisherConfig::max_unacked`] lines are unacked. Returning means queued, not
    /// stored: [`flush`](Self::flush) waits for the acks.
    pub async fn send(&self, line: String) -> Result<u64, PublisherError> {
        if let Some(at) = line.bytes().position(|b| b == b'\n') {
            return Err(PublisherError::NewlineInLine { at });
        }
        loop {
            let settled = self.shared.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            {
                let mut state = self.shared.lock();
                if let Some(fatal) = &state.fatal {
                    return Err(fatal.clone());
                }
                if state.unacked.len() < self.shared.max_unacked {
                    let pseq = state.next_pseq;
                    state.next_pseq = pseq
                        .checked_add(1)
                        .ok_or(PublisherError::PseqExhausted { last: state.sent })?;
                    state.sent = pseq;
                    state.unacked.push(pseq, line);
                    drop(state);
                    self.shared.queued.notify_one();
                    return Ok(pseq);
                }
            }
            settled.await;
        }
    }

    /// The highest pseq the relay acked (0 before any ack).
    pub fn acked(&self) -> u64 {
        self.shared.lock().acked
    }

    /// The highest pseq handed out by [`send`](Self::send) (0 before any).
    pub fn sent(&self) -> u64 {
        self.shared.lock().sent
    }

    /// How many times the task connected after its first connection.
    pub fn reconnects(&self) -> u64 {
        self.shared.lock().reconnects
    }

    /// The lines the relay reported as duplicates (already stored, not stored again): the
    /// sum over connections of each connection's latest `duplicates`.
    pub fn duplicates(&self) -> u64 {
        let state = self.shared.lock();
        state.duplicates_done + state.duplicates_now
    }

    /// The lines the relay refused: `(pseq, code)`, by pseq, each pseq once.
    pub fn errors(&self) -> Vec<(u64, String)> {
        let state = self.shared.lock();
        state
            .errors
            .iter()
            .map(|(&pseq, code)| (pseq, code.clone()))
            .collect()
    }

    /// Answer lines skipped because they did not parse (or made no sense, like an error on a
    /// line never sent).
    pub fn garbled_answers(&self) -> u64 {
        self.shared.lock().garbled
    }

    /// Waits until every line sent is acked ([`acked`](Self::acked) `==`
    /// [`sent`](Self::sent)), at most `timeout`.
    pub async fn flush(&self, timeout: Duration) -> Result<(), PublisherError> {
        let wait = async {
            loop {
                let settled = self.shared.settled.notified();
                tokio::pin!(settled);
                settled.as_mut().enable();
                {
                    let state = self.shared.lock();
                    if let Some(fatal) = &state.fatal {
                        return Err(fatal.clone());
                    }
                    if state.unacked.is_empty() {
                        return Ok(());
                    }
                }
                settled.await;
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(done) => done,
            Err(_) => {
                let state = self.shared.lock();
                Err(PublisherError::FlushTimeout {
                    timeout,
                    acked: state.acked,
                    sent: state.sent,
                })
            }
        }
    }

    /// Stops the task and closes the connection. Lines not yet acked are dropped: call
    /// [`flush`](Self::flush) first.
    pub async fn close(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            // The task ends as cancelled (or already ended); either way it is gone.
            let _ = task.await;
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publisher::connection::tests::next_line;

    use std::net::SocketAddr;

    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    use crate::publisher::IdError;

    #[tokio::test]
    async fn start_checks_the_config() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let config = |f: fn(&mut PublisherConfig)| {
            let mut c = PublisherConfig {
                addrs: vec![addr],
                id: "p".into(),
                ..PublisherConfig::default()
            };
            f(&mut c);
            c
        };
        let err = |c| async move { Publisher::start(c).await.err() };
        assert_eq!(
            err(config(|c| c.id = "a b".into())).await,
            Some(PublisherError::InvalidId {
                id: "a b".into(),
                reason: IdError::BadChar { ch: ' ', at: 1 }
            })
        );
        assert_eq!(
            err(config(|c| c.addrs.clear())).await,
            Some(PublisherError::NoAddresses)
        );
        assert_eq!(
            err(config(|c| c.first_pseq = 0)).await,
            Some(PublisherError::FirstPseqOutOfRange { pseq: 0 })
        );
        assert_eq!(
            err(config(|c| c.first_pseq = MAX_FIRST_PSEQ + 1)).await,
            Some(PublisherError::FirstPseqOutOfRange {
                pseq: MAX_FIRST_PSEQ + 1
            })
        );
        assert_eq!(
            err(config(|c| c.max_unacked = 0)).await,
            Some(PublisherError::ZeroMaxUnacked)
        );
        // Nothing listens: start still succeeds, and a line with a newline is refused.
        let publisher = Publisher::start(config(|_| {})).await.unwrap();
        assert_eq!(
            publisher.send("a\nb".into()).await,
            Err(PublisherError::NewlineInLine { at: 1 })
        );
        assert_eq!(publisher.send("x".into()).await, Ok(1));
        assert_eq!((publisher.sent(), publisher.acked()), (1, 0));
        assert!(matches!(
            publisher.flush(Duration::from_millis(20)).await,
            Err(PublisherError::FlushTimeout {
                acked: 0,
                sent: 1,
                ..
            })
        ));
        publisher.close().await;
    }

    #[tokio::test]
    async fn send_waits_for_room_and_a_refused_hello_stops_the_publisher() {
        let relay = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let publisher = Arc::new(
            Publisher::start(PublisherConfig {
                addrs: vec![relay.local_addr().unwrap()],
                id: "bp".into(),
                max_unacked: 2,
                ..PublisherConfig::default()
            })
            .await
            .unwrap(),
        );
        let (socket, _) = relay.accept().await.unwrap();
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        assert_eq!(
            next_line(&mut lines).await,
            r#"{"type":"hello","publisher":"bp","pseq":1}"#
        );
        publisher.send("a".into()).await.unwrap();
        publisher.send("b".into()).await.unwrap();
        let third = tokio::spawn({
            let publisher = Arc::clone(&publisher);
            async move { publisher.send("c".into()).await }
        });
        assert_eq!(next_line(&mut lines).await, "a");
        assert_eq!(next_line(&mut lines).await, "b");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!third.is_finished(), "the third send waits for room");
        write
            .write_all(b"{\"type\":\"ack\",\"pseq\":1,\"duplicates\":0}\n")
            .await
            .unwrap();
        assert_eq!(third.await.unwrap(), Ok(3));
        assert_eq!(next_line(&mut lines).await, "c");

        // An error on line 1 is a refused hello: the publisher stops for good.
        write
            .write_all(
                b"{\"type\":\"error\",\"line\":1,\"code\":\"bad_hello\",\"message\":\"no\"}\n",
            )
            .await
            .unwrap();
        let refused = PublisherError::HelloRefused {
            code: "bad_hello".into(),
            message: "no".into(),
        };
        assert_eq!(
            publisher.flush(Duration::from_secs(5)).await,
            Err(refused.clone())
        );
        assert_eq!(publisher.send("d".into()).await, Err(refused));
        assert_eq!(publisher.reconnects(), 0);
    }
}
