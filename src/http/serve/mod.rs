//! Serving connections. `axum::serve` sets no timer, so hyper's header-read timeout never
//! applies and a client that trickles its headers (slowloris) would hold a connection forever;
//! nor does it bound open connections or time out a client that never reads. This loop does
//! all three, and shuts down gracefully: stop accepting, let in-flight requests finish, close
//! idle keep-alive connections.
//!
//! Connections past `max_connections` are still accepted, up to as many again: each waits
//! (FIFO) up to the header timeout for a slot, and if none frees, gets `503` + `Retry-After`
//! and is closed. So every connection the kernel queued gets an HTTP answer instead of a
//! reset or an endless wait; past both bounds, connections wait in the listen backlog.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;
use error_body::ErrorBodies;
use write_timeout::{Pressure, WriteTimeout};

mod error_body;
mod unread_body;
mod write_timeout;

/// Largest read buffer of one connection. hyper's default (~400 KB) let every connection
/// buffer most of a large body before its handler ran; bodies are read in chunks anyway.
/// It also bounds how many pipelined requests a connection can have buffered.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Requests served on one connection before it is closed (`Connection: close` on the last
/// reply), as nginx's `keepalive_requests`. Bounds how long a client pipelining requests it
/// never reads can hold a slot even while the kernel still takes its replies; clients with a
/// connection pool just open a new one.
pub const MAX_REQUESTS_PER_CONNECTION: usize = 1000;

/// Connection-level limits.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Connections served at once; as many again wait for a slot (then 503).
    pub max_connections: usize,
    /// Time a client has to send a request's headers, on a new or a kept-alive connection;
    /// also how long a connection past the cap waits for a slot.
    pub header_read_timeout: Duration,
    /// Time a blocked response write may wait for the client to read (see `write_timeout`).
    pub write_timeout: Duration,
}

/// Binds `address` with a listen backlog of `backlog` connections (tokio's `bind` fixes it at
/// 1024; past the backlog the kernel drops or resets new connections).
pub fn bind(address: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(backlog)
}

/// Serves `router` on `listener` until `shutdown` completes, then drains connections.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()>,
) {
    let max = limits.max_connections.max(1);
    // One permit per served connection, held by the connection's task.
    let connections = Arc::new(Semaphore::new(max));
    // One permit per accepted connection that waits for a slot or is being told 503.
    let waiting = Arc::new(Semaphore::new(max));
    let graceful = GracefulShutdown::new();
    // Connections waiting for a slot; while any wait, blocked writes time out sooner.
    let pressure = Pressure::default();
    let service = TowerToHyperService::new(router);
    tokio::pin!(shutdown);
    loop {
        let waiting_permit = tokio::select! {
            permit = waiting.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let connections = connections.clone();
        let service = service.clone();
        let pressure = pressure.clone();
        // Taken before the wait for a slot, so shutdown also waits for waiting connections.
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let slot = match connections.clone().try_acquire_owned() {
                Ok(slot) => Some(slot),
                Err(_) => {
                    pressure.fetch_add(1, Ordering::Relaxed);
                    let slot = tokio::time::timeout(
                        limits.header_read_timeout,
                        connections.acquire_owned(),
                    )
                    .await;
                    pressure.fetch_sub(1, Ordering::Relaxed);
                    slot.ok()
                        .map(|slot| slot.expect("the semaphore is never closed"))
                }
            };
            match slot {
                Some(slot) => {
                    drop(waiting_permit);
                    serve_connection(stream, service, limits, pressure, watcher, slot).await;
                }
                None => {
                    answer_busy(stream, limits, pressure).await;
                    drop(waiting_permit);
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The socket as hyper sees it: hyper's empty error replies get JSON bodies, and every write
/// (those bodies too) is under the write timeout.
fn guarded(
    stream: TcpStream,
    limits: ServeLimits,
    pressure: Pressure,
) -> TokioIo<ErrorBodies<WriteTimeout<TcpStream>>> {
    TokioIo::new(ErrorBodies::new(WriteTimeout::new(
        stream,
        limits.write_timeout,
        pressure,
    )))
}

fn connection_builder(limits: ServeLimits) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(READ_BUFFER_BYTES);
    builder
}

async fn serve_connection(
    stream: TcpStream,
    service: TowerToHyperService<Router>,
    limits: ServeLimits,
    pressure: Pressure,
    watcher: Watcher,
    slot: OwnedSemaphorePermit,
) {
    let io = guarded(stream, limits, pressure);
    let served = AtomicUsize::new(0);
    let counted = hyper::service::service_fn(move |request| {
        let last = served.fetch_add(1, Ordering::Relaxed) + 1 >= MAX_REQUESTS_PER_CONNECTION;
        let (request, body) = unread_body::track(request);
        let reply = hyper::service::Service::call(&service, request);
        async move {
            let mut response = reply.await?;
            unread_body::close_if_unread(&mut response, &body);
            if last {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let connection = connection_builder(limits).serve_connection(io, counted);
    let connection = watcher.watch(connection);
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
    drop(slot);
}

/// Answers every request of a connection that found no free slot with 503 + `Retry-After`,
/// then closes it.
async fn answer_busy(stream: TcpStream, limits: ServeLimits, pressure: Pressure) {
    let io = guarded(stream, limits, pressure);
    let busy = hyper::service::service_fn(|_request| async {
        Ok::<_, std::convert::Infallible>(
            ApiError::TooManyConnections.into_response().map(Body::new),
        )
    });
    let mut builder = connection_builder(limits);
    builder.keep_alive(false);
    if let Err(e) = builder.serve_connection(io, busy).await {
        tracing::debug!(error = %e, "busy connection ended with an error");
    }
}
