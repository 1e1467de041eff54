//! `serve`'s HTTP settings: the socket, connections, timeouts, request and page limits, memory
//! budgets, access; and what the HTTP layer takes from them.

use std::net::SocketAddr;
use std::time::Duration;

use super::*;

/// Serving HTTP: the socket, connections, timeouts, request and page limits, memory budgets, access.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// Address to listen on: `host:port` (an IP or a name such as `localhost`), or `:port`
    /// for every interface.
    #[arg(long, env = "AGG_LISTEN", default_value = DEFAULT_LISTEN, value_parser = parse_listen)]
    pub listen: SocketAddr,

    /// Connections the kernel queues before the service accepts them (listen backlog; the
    /// kernel caps it at net.core.somaxconn).
    #[arg(long, env = "AGG_LISTEN_BACKLOG", default_value_t = DEFAULT_LISTEN_BACKLOG)]
    pub listen_backlog: u32,

    /// Connections served at once. As many again are accepted and wait up to the header
    /// timeout for a slot, then get 503 + Retry-After; past that they wait in the listen backlog.
    #[arg(long, env = "AGG_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Streams, long polls and consumer waits held at once [default: half of
    /// --max-connections]. Past it a new one gets 503 + Retry-After at once, so readers can
    /// never take the connection slots publishes and health checks need.
    #[arg(long, env = "AGG_MAX_READERS")]
    pub max_readers: Option<usize>,

    /// Seconds between `: keep-alive` comments on a quiet GET /events/stream.
    #[arg(long, env = "AGG_STREAM_KEEP_ALIVE_SECS", default_value_t = DEFAULT_STREAM_KEEP_ALIVE_SECS)]
    pub stream_keep_alive_secs: u64,

    /// Seconds a client has to send a request's headers (a slowloris client is cut off).
    #[arg(long, env = "AGG_HEADER_TIMEOUT_SECS", default_value_t = DEFAULT_HEADER_TIMEOUT_SECS)]
    pub header_timeout_secs: u64,

    /// Seconds a client has to send a whole request body (slower: 408).
    #[arg(long, env = "AGG_BODY_TIMEOUT_SECS", default_value_t = DEFAULT_BODY_TIMEOUT_SECS)]
    pub body_timeout_secs: u64,

    /// Seconds a response may wait for the client to read it: a client that takes less than
    /// 16 KiB of a blocked response in that time is disconnected and its slot freed.
    #[arg(long, env = "AGG_WRITE_TIMEOUT_SECS", default_value_t = DEFAULT_WRITE_TIMEOUT_SECS)]
    pub write_timeout_secs: u64,

    /// Least average rate of a request body after a 5 s grace, in bytes/s (slower: 408).
    #[arg(long, env = "AGG_MIN_UPLOAD_BYTES_PER_SEC", default_value_t = DEFAULT_MIN_UPLOAD_BYTES_PER_SEC)]
    pub min_upload_bytes_per_sec: u64,

    /// Largest accepted request body, in bytes (larger: 413).
    #[arg(long, env = "AGG_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,

    /// Most events in one publish request, max-batch (more: 413).
    #[arg(long, env = "AGG_MAX_EVENTS_PER_REQUEST", default_value_t = DEFAULT_MAX_EVENTS_PER_REQUEST)]
    pub max_events_per_request: usize,

    /// Byte bound of one GET /events page, in bytes of JSON (a page always holds at least one
    /// event; `Link: rel="next"` continues).
    #[arg(long, env = "AGG_MAX_PAGE_BYTES", default_value_t = DEFAULT_MAX_PAGE_BYTES)]
    pub max_page_bytes: usize,

    /// Memory for publishes in progress, in MiB: bodies as their bytes arrive, then their
    /// parsed events until committed (whether or not the client is still connected); past the
    /// budget publishes wait up to the enqueue timeout, then get 503. Bounds memory whatever
    /// the number of connections.
    #[arg(long, env = "AGG_MAX_INFLIGHT_BODY_MIB", default_value_t = DEFAULT_MAX_INFLIGHT_BODY_MIB)]
    pub max_inflight_body_mib: usize,

    /// Memory for GET /events pages being built or written, in MiB; past it, reads wait up to
    /// the enqueue timeout, then get 503.
    #[arg(long, env = "AGG_MAX_INFLIGHT_READ_MIB", default_value_t = DEFAULT_MAX_INFLIGHT_READ_MIB)]
    pub max_inflight_read_mib: usize,

    /// Memory all stream subscribers together may hold, in MiB: frames being read, built,
    /// queued or written. A subscriber waits for room (and is disconnected as slow after
    /// --write-timeout-secs), never allocates past it. Must hold two frames of the largest event.
    #[arg(long, env = "AGG_MAX_STREAM_MIB", default_value_t = DEFAULT_MAX_STREAM_MIB)]
    pub max_stream_mib: usize,

    /// A token with every scope: requests to POST /publish, GET /events, /topics and /stats
    /// must carry `Authorization: Bearer <token>`. Unset (and no --api-token-file) = no auth.
    #[arg(long, env = "AGG_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<Secret>,

    /// A file of accepted tokens in addition to --api-token, one per line: `<token>` (every
    /// scope) or `<token> <scope>[,<scope>]` with scopes `publish` and `read`; blank lines and
    /// `#` comments are ignored. Rotate by adding the new token, moving clients, removing the old.
    #[arg(long, env = "AGG_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,

    /// One `info` line per request (target `access`: method, route, status, latency, request
    /// id); `--access-log false` turns it off.
    #[arg(long, env = "AGG_ACCESS_LOG", default_value_t = true, action = clap::ArgAction::Set)]
    pub access_log: bool,
}

/// `--listen`: `ip:port`, `name:port` (resolved now; the first address wins) or `:port`.
pub fn parse_listen(value: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    const EXPECTED: &str = "expected host:port, e.g. 0.0.0.0:8080, localhost:8080 or :8080";
    let value = value.trim();
    if let Some(port) = value.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("bad port {port:?}; {EXPECTED}"))?;
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    if let Ok(address) = value.parse() {
        return Ok(address);
    }
    let Some((_, port)) = value.rsplit_once(':') else {
        return Err(format!("no port in {value:?}; {EXPECTED}"));
    };
    port.parse::<u16>()
        .map_err(|_| format!("bad port {port:?}; {EXPECTED}"))?;
    value
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {value:?}: {e}; {EXPECTED}"))?
        .next()
        .ok_or_else(|| format!("{value:?} resolves to no address; {EXPECTED}"))
}

impl HttpArgs {
    pub fn validate(&self) -> Result<(), ConfigError> {
        nonzero(&[
            ("max-body-bytes", self.max_body_bytes),
            ("max-events-per-request", self.max_events_per_request),
            ("max-page-bytes", self.max_page_bytes),
            ("max-inflight-read-mib", self.max_inflight_read_mib),
        ])?;
        let one_read = crate::read::follow::read_reservation(self.max_body_bytes);
        if self.max_stream_mib.saturating_mul(1024 * 1024) < one_read {
            return Err(ConfigError::StreamBudgetTooSmall {
                budget_mib: self.max_stream_mib,
                needed_mib: one_read.div_ceil(1024 * 1024),
            });
        }
        let per_byte = 1 + crate::http::PARSE_BYTES_PER_BODY_BYTE;
        if self.max_inflight_body_mib.saturating_mul(1024 * 1024) < self.max_body_bytes * per_byte {
            return Err(ConfigError::BodyBudgetTooSmall {
                budget_mib: self.max_inflight_body_mib,
                body: self.max_body_bytes,
            });
        }
        Ok(())
    }

    /// Every accepted token: --api-token (every scope) plus the lines of --api-token-file.
    pub fn api_tokens(&self) -> Result<Vec<ApiToken>, ConfigError> {
        // An empty --api-token (e.g. `AGG_API_TOKEN=` from a compose file) means "unset".
        let mut tokens: Vec<ApiToken> = self
            .api_token
            .iter()
            .filter(|t| !t.is_empty())
            .cloned()
            .map(ApiToken::all_scopes)
            .collect();
        if let Some(path) = &self.api_token_file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::TokenFile {
                path: path.clone(),
                source,
            })?;
            let from_file = text
                .lines()
                .enumerate()
                .map(|(n, l)| (n + 1, l.trim()))
                .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
                .map(|(line, l)| {
                    ApiToken::parse_line(l)
                        .map(|token| (line, token))
                        .map_err(|reason| ConfigError::BadTokenLine {
                            path: path.clone(),
                            line,
                            reason,
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            // A repeated token would let its last line silently decide its scopes.
            for (i, (line, token)) in from_file.iter().enumerate() {
                if let Some((first, _)) = from_file[..i]
                    .iter()
                    .find(|(_, t)| t.secret == token.secret)
                {
                    return Err(ConfigError::BadTokenLine {
                        path: path.clone(),
                        line: *line,
                        reason: format!(
                            "the same token as line {first}; give each token one line with all its scopes"
                        ),
                    });
                }
            }
            let from_file: Vec<ApiToken> = from_file.into_iter().map(|(_, t)| t).collect();
            if from_file.is_empty() {
                return Err(ConfigError::EmptyTokenFile(path.clone()));
            }
            tokens.extend(from_file);
        }
        Ok(tokens)
    }

    pub fn serve_limits(&self) -> crate::http::serve::ServeLimits {
        crate::http::serve::ServeLimits {
            max_connections: self.max_connections,
            header_read_timeout: Duration::from_secs(self.header_timeout_secs.max(1)),
            write_timeout: Duration::from_secs(self.write_timeout_secs.max(1)),
        }
    }

    /// The HTTP layer's memory budgets.
    pub fn budgets(&self) -> Budgets {
        Budgets {
            inflight_body_bytes: self.max_inflight_body_mib.saturating_mul(1024 * 1024),
            inflight_read_bytes: self.max_inflight_read_mib.saturating_mul(1024 * 1024),
            stream_bytes: self.max_stream_mib.saturating_mul(1024 * 1024),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_takes_addresses_names_and_a_bare_port() {
        assert_eq!(
            parse_listen("127.0.0.1:9000"),
            Ok("127.0.0.1:9000".parse().unwrap())
        );
        assert_eq!(parse_listen(":8080"), Ok("0.0.0.0:8080".parse().unwrap()));
        assert_eq!(
            parse_listen("[::1]:8080"),
            Ok("[::1]:8080".parse().unwrap())
        );
        let local = parse_listen("localhost:8080").unwrap();
        assert!(local.ip().is_loopback() && local.port() == 8080, "{local}");
        for bad in ["8080", "localhost", ":http", "host:99999"] {
            let error = parse_listen(bad).unwrap_err();
            assert!(error.contains("expected host:port"), "{bad}: {error}");
        }
    }
}
