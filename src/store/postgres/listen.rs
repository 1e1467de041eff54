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

/// Runs until dropped.
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
                (0..partitions).for_each(|p| on_commit(p, None));
            }
            message = messages.next() => match message {
                Some(Ok(AsyncMessage::Notification(note))) => {
                    if let Some((p, topics)) = parse_payload(note.payload()).filter(|(p, _)| *p < partitions) {
                        on_commit(p, topics);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    }
}

/// A payload of `writer::notify_payload`: the partition, and the topics when they were sent.
fn parse_payload(payload: &str) -> Option<(usize, Option<Vec<String>>)> {
    let (partition, topics) = match payload.split_once(' ') {
        None => (payload, None),
        Some((partition, topics)) => (partition, Some(topics)),
    };
    let partition = partition.parse().ok()?;
    let topics = topics.and_then(|list| list.split(',').map(unhex).collect::<Option<Vec<_>>>());
    Some((partition, topics))
}

fn unhex(hex: &str) -> Option<String> {
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::postgres::writer::notify_payload;

    #[test]
    fn a_payload_names_its_topics_when_they_fit() {
        let payload = notify_payload(3, &[b"orders", "z\u{0}\u{e9}".as_bytes()]);
        assert_eq!(
            parse_payload(&payload),
            Some((
                3,
                Some(vec!["orders".to_string(), "z\u{0}\u{e9}".to_string()])
            ))
        );
        let many: Vec<Vec<u8>> = (0..100)
            .map(|i| format!("{i:0>255}").into_bytes())
            .collect();
        let many: Vec<&[u8]> = many.iter().map(Vec::as_slice).collect();
        assert_eq!(
            notify_payload(1, &many),
            "1",
            "too many for one NOTIFY: every reader wakes"
        );
        assert_eq!(parse_payload("1"), Some((1, None)));
        assert_eq!(parse_payload("x"), None);
    }
}
