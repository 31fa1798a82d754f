//! [`Client`]: the application's handle on a stream of [`Item`]s.
//!
//! The handle reads the [`SharedQueue`] that its connection [`Task`] fills, and sends the
//! task subscription changes. Dropping it stops the task.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;
use tokio::sync::mpsc;

use crate::error::{ConnectError, Error};
use crate::item::{Item, Key};
use crate::options::Options;
use crate::queue::SharedQueue;
use crate::task::{Command, Task};
use crate::tls;

/// A tickrelay client: a stream of [`Item`]s that survives disconnects and relay restarts.
///
/// Read it with [`Client::next`] (or as a [`futures_util::Stream`]). Dropping it closes the
/// connection and stops its task.
#[derive(Debug)]
pub struct Client {
    queue: Arc<SharedQueue>,
    commands: mpsc::UnboundedSender<Command>,
    task: tokio::task::JoinHandle<()>,
}

impl Client {
    /// Connects to `url` (e.g. `ws://127.0.0.1:8080/ws`, or `wss://` for a relay with TLS)
    /// and returns once the relay has welcomed the first connection. Later connections are
    /// retried automatically.
    pub async fn connect(url: &str, options: Options) -> Result<Self, ConnectError> {
        let tls = if url.starts_with("wss://") {
            Some(tls::connector(&options.ca_files)?)
        } else if url.starts_with("ws://") {
            None
        } else {
            return Err(ConnectError::InvalidRequest(format!(
                "`{url}` is not a ws:// or wss:// URL"
            )));
        };
        let queue = Arc::new(SharedQueue::new(options.buffer, options.slow_consumer));
        let (commands, receiver) = mpsc::unbounded_channel();
        let mut task = Task::new(url, options, queue.clone(), receiver, tls);
        let connection = task.open().await?;
        let task = tokio::spawn(task.run(connection));
        Ok(Self {
            queue,
            commands,
            task,
        })
    }

    /// The next item; `None` once the stream has ended (after an [`Error`]).
    pub async fn next(&mut self) -> Option<Result<Item, Error>> {
        std::future::poll_fn(|cx| self.poll_item(cx)).await
    }

    /// Subscribes to more symbols (`SYMBOL@TIER` for a rate tier; one on another tier of
    /// the same symbol replaces it, as the relay does). A symbol this client has seen before
    /// resumes from its last seq, so unsubscribing and subscribing again loses nothing
    /// silently.
    pub fn subscribe<S: Into<String>>(
        &self,
        symbols: impl IntoIterator<Item = S>,
    ) -> Result<(), Error> {
        let symbols = symbols.into_iter().map(Into::into).collect();
        self.commands
            .send(Command::Subscribe(symbols))
            .map_err(|_| Error::ClientClosed)
    }

    /// Unsubscribes from symbols. Ticks already on their way are still delivered.
    pub fn unsubscribe<S: Into<String>>(
        &self,
        symbols: impl IntoIterator<Item = S>,
    ) -> Result<(), Error> {
        let symbols = symbols.into_iter().map(Into::into).collect();
        self.commands
            .send(Command::Unsubscribe(symbols))
            .map_err(|_| Error::ClientClosed)
    }

    /// The last seq the application has read, per symbol stream (`BTC-USD`, and a tier as
    /// `BTC-USD@1s`): pass it to [`Options::resume_from`] to continue in a new client.
    pub fn positions(&self) -> BTreeMap<String, u64> {
        self.queue
            .lock()
            .popped()
            .iter()
            .filter(|(stream, _)| matches!(stream.key, Key::Symbol(_)))
            .map(|(stream, seq)| (stream.name(), *seq))
            .collect()
    }

    /// How far behind the application is: the items (and a pending error) that
    /// [`Client::next`] would return without waiting.
    pub fn backlog(&self) -> usize {
        self.queue.lock().backlog()
    }

    /// Closes the connection and stops the task.
    pub fn close(self) {
        drop(self);
    }

    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Item, Error>>> {
        let mut queue = self.queue.lock();
        if let Some(item) = queue.pop() {
            drop(queue);
            self.queue.space.notify_one();
            return Poll::Ready(Some(item));
        }
        if queue.finished() || self.task.is_finished() {
            return Poll::Ready(None);
        }
        queue.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Stream for Client {
    type Item = Result<Item, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_item(cx)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}
