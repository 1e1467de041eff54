//! TLS to PostgreSQL: a local server presenting a throwaway certificate (signed by a throwaway
//! CA, issued for 127.0.0.1); the URL's `sslmode` decides whether the connection is encrypted
//! and whether the certificate is checked.

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serde_json::Value;
use uts_aggregator::store::{self, Durability, Location, OpenOptions};

use crate::support::app::{TestApp, event};
use crate::support::pg::{self, PgServer};

/// A CA, and a server certificate it signed for `127.0.0.1`; PEM texts.
struct Certificates {
    ca: String,
    server_cert: String,
    server_key: String,
}

fn certificates() -> Certificates {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    Certificates {
        ca: ca.pem(),
        server_cert: server_cert.pem(),
        server_key: server_key.serialize_pem(),
    }
}

fn tls_server(test: &str, certs: &Certificates) -> Option<PgServer> {
    let mut server = pg::private(test)?;
    server
        .enable_tls(&certs.server_cert, &certs.server_key)
        .expect("restart the server with TLS");
    Some(server)
}

async fn open(url: &str, dir: &Path) -> Result<(), String> {
    let options = OpenOptions {
        location: url.parse().map_err(|e: String| e)?,
        data_dir: dir.to_path_buf(),
        partitions: Some(2),
        default_partitions: 2,
        durability: Durability::Process,
        page_cache_kib_total: 1024,
        pool_size: 4,
        retention: None,
    };
    store::open(&options)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Whether every connection of the service to `database` is encrypted (`pg_stat_ssl`).
fn service_connections_use_tls(server: &PgServer, database: &str) -> Vec<String> {
    let sql = "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
               WHERE a.application_name = 'uts-aggregator'";
    server
        .psql(database, sql)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

#[tokio::test]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: apt-get install postgresql (always runs under CI=true; after installing it, touch build.rs)"
)]
async fn verify_full_with_the_servers_ca_connects_encrypted_and_serves() {
    let certs = certificates();
    let Some(server) = tls_server("pg_tls::verify_full", &certs) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &certs.ca).unwrap();
    let url = server.create_database();
    let database = url.rsplit('/').next().unwrap().to_string();
    let tls_url = format!("{url}?sslmode=verify-full&sslrootcert={}", ca.display());
    let location: Location = tls_url.parse().unwrap();
    let app = TestApp::builder().store(location).spawn().await;
    let (unique, _) = app.publish_ok(&Value::Array(vec![event("t", "a")])).await;
    assert_eq!(unique, 1);
    let seen = service_connections_use_tls(&server, &database);
    assert!(!seen.is_empty(), "the service holds connections");
    assert!(
        seen.iter().all(|ssl| ssl == "t"),
        "every connection encrypted: {seen:?}"
    );
}

#[tokio::test]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: apt-get install postgresql (always runs under CI=true; after installing it, touch build.rs)"
)]
async fn a_certificate_from_another_ca_is_refused_unless_the_mode_does_not_verify() {
    let certs = certificates();
    let Some(server) = tls_server("pg_tls::other_ca", &certs) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let other_ca = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, certificates().ca).unwrap();
    let url = server.create_database();
    for mode in ["verify-full", "verify-ca"] {
        let with_other = format!("{url}?sslmode={mode}&sslrootcert={}", other_ca.display());
        let error = open(&with_other, dir.path()).await.expect_err("refused");
        assert!(
            error.to_lowercase().contains("certificate"),
            "{mode}: {error}"
        );
    }
    // `require` encrypts without checking the certificate, as libpq's does.
    open(&format!("{url}?sslmode=require"), dir.path())
        .await
        .expect("require connects");
}

#[tokio::test]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: apt-get install postgresql (always runs under CI=true; after installing it, touch build.rs)"
)]
async fn verify_ca_accepts_a_certificate_issued_for_another_name_and_verify_full_does_not() {
    let certs = certificates();
    let Some(server) = tls_server("pg_tls::names", &certs) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &certs.ca).unwrap();
    // The certificate names 127.0.0.1; `localhost` reaches the same server under another name.
    let url = server.create_database().replace("127.0.0.1", "localhost");
    let root = format!("sslrootcert={}", ca.display());
    open(&format!("{url}?sslmode=verify-ca&{root}"), dir.path())
        .await
        .expect("verify-ca ignores the name");
    let error = open(&format!("{url}?sslmode=verify-full&{root}"), dir.path())
        .await
        .expect_err("verify-full checks the name");
    assert!(error.to_lowercase().contains("certificate"), "{error}");
}
