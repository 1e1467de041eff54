//! Hearing other replicas' commits: one connection of its own per process `LISTEN`s on the
//! channel every commit with new events `NOTIFY`s (with its partition), and tells the caller,
//! which wakes that partition's stream subscribers and long polls. Reconnects after a failure,
//! and wakes every partition once listening again (commits may have been missed meanwhile).

use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::{AsyncMessage, Client, Connection, NoTls};

use super::PgLocation;
use crate::store::CommitListener;

/// The channel commits notify on (also named in `writer.rs`'s statement).
const CHANNEL: &str = "uts_aggregator_commits";
const RETRY: Duration = Duration::from_secs(1);

/// Runs until aborted.
pub(super) async fn commits(location: PgLocation, partitions: usize, on_commit: CommitListener) {
    loop {
        let result = match location.tls.connector() {
            Ok(Some(tls)) => match location.config.connect(tls).await {
                Ok((client, connection)) => serve(client, connection, partitions, &on_commit).await,
                Err(e) => Err(e),
            },
            Ok(None) => match location.config.connect(NoTls).await {
                Ok((client, connection)) => serve(client, connection, partitions, &on_commit).await,
                Err(e) => Err(e),
            },
            Err(reason) => {
                tracing::warn!(%reason, "commit listener cannot set up TLS");
                Ok(())
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, store = %location, "commit listener lost its connection; reconnecting");
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Listens on one connection until it fails.
async fn serve<S, T>(
    client: Client,
    mut connection: Connection<S, T>,
    partitions: usize,
    on_commit: &CommitListener,
) -> Result<(), tokio_postgres::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    // The connection delivers replies and notifications only while it is polled.
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    let statement = format!("LISTEN {CHANNEL}");
    let listen = client.batch_execute(&statement);
    tokio::pin!(listen);
    let mut listening = false;
    loop {
        tokio::select! {
            result = &mut listen, if !listening => {
                result?;
                listening = true;
                (0..partitions).for_each(|p| on_commit(p));
            }
            message = messages.next() => match message {
                Some(Ok(AsyncMessage::Notification(note))) => {
                    if let Some(p) = note.payload().parse::<usize>().ok().filter(|p| *p < partitions) {
                        on_commit(p);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    }
}
