//! The write timeout hyper does not have. A client that stops reading makes every write wait
//! forever, so its connection slot and its response body stay held (clients pipelining
//! requests they never read locked everyone out). Once a write has to wait, the client must
//! take at least [`MIN_PROGRESS_BYTES`] within the write timeout or the connection is closed.
//! A client reading a trickle (1 byte per second) is therefore cut off as surely as a silent
//! one. While other connections wait for a slot, a write that blocks gets only
//! [`PRESSURE_WRITE_TIMEOUT`]: a client that does not read yields its slot to one that is
//! waiting.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Bytes a blocked client must take within the write timeout to keep its connection.
pub(crate) const MIN_PROGRESS_BYTES: usize = 16 * 1024;

/// The write timeout while connections are waiting for a slot (if shorter).
pub(crate) const PRESSURE_WRITE_TIMEOUT: Duration = Duration::from_millis(250);

/// How many accepted connections are waiting for a slot; shared by every connection.
pub(crate) type Pressure = std::sync::Arc<std::sync::atomic::AtomicUsize>;

/// A connection's socket with the write timeout.
#[derive(Debug)]
pub(crate) struct WriteTimeout<T> {
    inner: T,
    write_timeout: Duration,
    pressure: Pressure,
    /// Armed when a write had to wait; fires unless the client took enough bytes since.
    stall: Option<(Pin<Box<Sleep>>, usize)>,
}

impl<T> WriteTimeout<T> {
    pub(crate) fn new(inner: T, write_timeout: Duration, pressure: Pressure) -> Self {
        Self {
            inner,
            write_timeout,
            pressure,
            stall: None,
        }
    }
}

impl<T: AsyncWrite + Unpin> WriteTimeout<T> {
    /// Counts progress after a write; on a blocked write, checks the stall timer.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match result {
            Poll::Ready(Ok(n)) => {
                if let Some((_, progress)) = &mut self.stall {
                    *progress += n;
                    if *progress >= MIN_PROGRESS_BYTES {
                        self.stall = None;
                    }
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let waiting = self.pressure.load(std::sync::atomic::Ordering::Relaxed) > 0;
                let timeout = if waiting {
                    self.write_timeout.min(PRESSURE_WRITE_TIMEOUT)
                } else {
                    self.write_timeout
                };
                let (sleep, _) = self.stall.get_or_insert_with(|| {
                    (
                        Box::pin(tokio::time::sleep_until(Instant::now() + timeout)),
                        0,
                    )
                });
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client did not read the response within the write timeout",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteTimeout<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.after_write(cx, result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.after_write(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    /// A writer under the write timeout, and the client's end of a 4 KiB pipe.
    fn pipe(pressure: &Pressure) -> (WriteTimeout<DuplexStream>, DuplexStream) {
        let (server, client) = tokio::io::duplex(4096);
        (WriteTimeout::new(server, TIMEOUT, pressure.clone()), client)
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_reads_is_cut_off_at_the_write_timeout() {
        let (mut writer, _client) = pipe(&Pressure::default());
        let started = Instant::now();
        let error = writer.write_all(&[0; 64 * 1024]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickling_reader_is_cut_off_as_surely_as_a_silent_one() {
        let (mut writer, mut client) = pipe(&Pressure::default());
        tokio::spawn(async move {
            let mut byte = [0; 1];
            while client.read(&mut byte).await.is_ok_and(|n| n > 0) {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let started = Instant::now();
        let error = writer.write_all(&[0; 64 * 1024]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() <= TIMEOUT + Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_taking_enough_bytes_per_timeout_keeps_its_connection() {
        let (mut writer, mut client) = pipe(&Pressure::default());
        let reader = tokio::spawn(async move {
            let mut chunk = vec![0; MIN_PROGRESS_BYTES];
            let mut total = 0;
            loop {
                tokio::time::sleep(TIMEOUT / 2).await;
                match client.read_exact(&mut chunk).await {
                    Ok(n) => total += n,
                    Err(_) => return total,
                }
            }
        });
        writer.write_all(&[0; 256 * 1024]).await.unwrap();
        writer.shutdown().await.unwrap();
        assert_eq!(reader.await.unwrap(), 256 * 1024);
    }

    #[tokio::test(start_paused = true)]
    async fn while_connections_wait_for_a_slot_a_blocked_write_yields_sooner() {
        let pressure = Pressure::default();
        pressure.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (mut writer, _client) = pipe(&pressure);
        let started = Instant::now();
        let error = writer.write_all(&[0; 64 * 1024]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), PRESSURE_WRITE_TIMEOUT);
    }
}
