//! TLS on `--listen` over real sockets, with a self-signed certificate minted here: a `wss://`
//! client gets its welcome, ticks and control answers; `https://` serves the HTTP routes;
//! a new certificate written over the old files is served to new connections without a
//! restart.

mod support;

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use support::{TestRelay, WAIT, WsClient, tick_line, wait_for};
use tickrelay::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::Connector;

/// A fresh self-signed certificate for 127.0.0.1 as (cert PEM, key PEM, cert DER).
fn mint() -> (String, String, CertificateDer<'static>) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("a self-signed certificate");
    let der = certified.cert.der().clone();
    (
        certified.cert.pem(),
        certified.signing_key.serialize_pem(),
        der,
    )
}

/// `text` in a file removed when the returned path drops.
fn write(name: &str, text: &str) -> tempfile::TempPath {
    let path = tempfile::Builder::new()
        .prefix("tickrelay-tls-")
        .suffix(&format!("-{name}"))
        .tempfile()
        .unwrap()
        .into_temp_path();
    std::fs::write(&path, text).unwrap();
    path
}

/// A client configuration trusting exactly `cert`.
fn trusting(cert: &CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

async fn https_get(
    relay: &TestRelay,
    cert: &CertificateDer<'static>,
    path: &str,
) -> Result<String, String> {
    let connector = tokio_rustls::TlsConnector::from(trusting(cert));
    let tcp = tokio::net::TcpStream::connect(relay.http)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n");
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    // A peer may end TLS without close_notify after `connection: close`; what came is the answer.
    let _ = tokio::time::timeout(WAIT, tls.read_to_end(&mut response)).await;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

#[tokio::test]
async fn wss_and_https_over_a_self_signed_certificate_and_reload_without_restart() {
    let (cert_pem, key_pem, cert) = mint();
    let cert_path = write("cert.pem", &cert_pem);
    let key_path = write("key.pem", &key_pem);
    // TestRelay::start waits for /ready over plain HTTP: start by hand, wait over https.
    let handle = tickrelay::Relay::start(Config {
        tls_cert: Some(cert_path.to_path_buf()),
        tls_key: Some(key_path.to_path_buf()),
        ..Config::for_tests()
    })
    .expect("relay starts with TLS");
    let relay = TestRelay {
        http: handle.http_addr,
        ingest: handle.ingest_addr,
        ingest_protobuf: handle.ingest_protobuf_addr,
        handle: Some(handle),
    };
    wait_for("ready over https", || async {
        https_get(&relay, &cert, "/ready")
            .await
            .is_ok_and(|r| r.starts_with("HTTP/1.1 200"))
    })
    .await;

    let url = format!(
        "wss://127.0.0.1:{}/ws?symbols=TLS-A&channels=news",
        relay.http.port()
    );
    let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        url.as_str(),
        None,
        false,
        Some(Connector::Rustls(trusting(&cert))),
    )
    .await
    .expect("wss upgrade over the self-signed certificate");
    let mut ws = WsClient { ws };
    assert_eq!(ws.next_json().await["type"], "welcome");
    // Enough ticks that the encrypted stream spans many records and writes.
    let lines: Vec<String> = (1..=2000)
        .map(|i| tick_line("TLS-A", 100.0 + i as f64, i))
        .collect();
    relay.ingest().await.send_lines(&lines).await;
    for seq in 1..=2000u64 {
        let tick = ws.next_json().await;
        assert_eq!(tick["seq"], seq, "{tick}");
    }
    ws.send_json(r#"{"op":"ping","id":5}"#).await;
    assert_eq!(ws.next_json().await["id"], 5);
    relay
        .ingest()
        .await
        .send_lines(&[r#"{"channel":"news","data":{"tls":true}}"#.to_owned()])
        .await;
    assert_eq!(ws.next_json().await["data"]["tls"], true);

    let health = https_get(&relay, &cert, "/health").await.unwrap();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    // Plain HTTP on a TLS port does not get through.
    let mut plain = tokio::net::TcpStream::connect(relay.http).await.unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, plain.read_to_end(&mut answer)).await;
    assert!(
        !answer.starts_with(b"HTTP/1.1 200"),
        "plain HTTP answered on the TLS port"
    );

    // A new certificate over the same files: new handshakes present it, no restart.
    let (new_cert_pem, new_key_pem, new_cert) = mint();
    std::fs::write(&key_path, new_key_pem).unwrap();
    std::fs::write(&cert_path, new_cert_pem).unwrap();
    wait_for("the new certificate is served", || async {
        https_get(&relay, &new_cert, "/health")
            .await
            .is_ok_and(|r| r.starts_with("HTTP/1.1 200"))
    })
    .await;
    assert!(
        https_get(&relay, &cert, "/health").await.is_err(),
        "the old certificate is retired"
    );
    // The session opened before the reload goes on.
    ws.send_json(r#"{"op":"ping","id":6}"#).await;
    assert_eq!(ws.next_json().await["id"], 6);
}
