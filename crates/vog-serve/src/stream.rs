//! Response bodies written by blocking code (exports, files) and streamed to the client in
//! chunks: memory stays at a few chunks per response whatever its size, and a client that stops
//! reading ends the writer after [`SEND_TIMEOUT`] instead of holding a thread forever.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use axum::body::{Body, Bytes};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

/// Bytes handed to the connection at a time.
pub(crate) const CHUNK: usize = 64 * 1024;
/// Chunks waiting for the connection, per response.
const QUEUED: usize = 4;
/// How long the writer waits for a client to take the next chunk.
pub(crate) const SEND_TIMEOUT: Duration = Duration::from_secs(30);

type Item = Result<Bytes, std::io::Error>;

/// A [`Write`] whose bytes go to a streamed response body.
struct ChannelWriter {
    tx: mpsc::Sender<Item>,
    buf: Vec<u8>,
    rt: Handle,
}

impl ChannelWriter {
    fn send(&mut self, item: Item) -> std::io::Result<()> {
        let tx = self.tx.clone();
        let sent = self
            .rt
            .block_on(async move { tokio::time::timeout(SEND_TIMEOUT, tx.send(item)).await });
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the client went away",
            )),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading",
            )),
        }
    }

    fn send_buffer(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.send(Ok(chunk))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send_buffer()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send_buffer()
    }
}

/// A body filled by `write` on a blocking thread. Unless `write` and the last flush succeed, the
/// body ends with an error (the connection is cut, so a client never takes a truncated body for
/// a whole one), and the error is logged.
pub(crate) fn blocking_body<E: std::fmt::Display + Send + 'static>(
    what: &'static str,
    write: impl FnOnce(&mut dyn Write) -> Result<(), E> + Send + 'static,
) -> Body {
    let (tx, mut rx) = mpsc::channel::<Item>(QUEUED);
    let complete = Arc::new(AtomicBool::new(false));
    let done = complete.clone();
    let rt = Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
            rt,
        };
        match write(&mut w)
            .map_err(|e| e.to_string())
            .and_then(|()| w.flush().map_err(|e| e.to_string()))
        {
            Ok(()) => done.store(true, Ordering::Release),
            Err(e) => tracing::warn!("{what} stopped: {e}"),
        }
    });
    let mut ended = false;
    let chunks = futures_util::stream::poll_fn(move |cx| {
        if ended {
            return Poll::Ready(None);
        }
        match rx.poll_recv(cx) {
            Poll::Ready(None) => {
                ended = true;
                if complete.load(Ordering::Acquire) {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(std::io::Error::other(format!(
                        "{what} stopped before its end"
                    )))))
                }
            }
            other => other,
        }
    });
    Body::from_stream(chunks)
}
