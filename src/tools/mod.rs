//! The client tools of the one binary, beside `serve`: `backup` works on a data dir; the
//! others talk to a running service over HTTP through [`client`], and are built only with the
//! default `tools` feature (`cargo build --no-default-features` is the server alone, without
//! `reqwest` or `indicatif`).

pub mod backup;
#[cfg(feature = "tools")]
mod client;
#[cfg(feature = "tools")]
pub mod consume;
#[cfg(feature = "tools")]
pub mod import;
#[cfg(feature = "tools")]
pub mod publish;
