//! The ways a client can reach the proxy besides plain HTTP/1.1: TLS (HTTP/1.1
//! and HTTP/2 through ALPN), h2c with prior knowledge, and `CONNECT`. Each is
//! proxied to a real upstream and counted exactly like HTTP/1.1, checked
//! with a real client (curl) and a real scrape.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::{X509NameBuilder, X509};

/// A self-signed certificate for `cn`, written as PEM to `dir/{name}.crt`
/// and `dir/{name}.key`.
fn self_signed(dir: &Path, name: &str, cn: &str) -> (String, String) {
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut subject = X509NameBuilder::new().unwrap();
    subject.append_entry_by_text("CN", cn).unwrap();
    let subject = subject.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&subject).unwrap();
    b.set_issuer_name(&subject).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    let cert = b.build();
    let (c, k) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, cert.to_pem().unwrap()).unwrap();
    std::fs::write(&k, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    (
        c.to_string_lossy().into_owned(),
        k.to_string_lossy().into_owned(),
    )
}

/// curl once; returns (HTTP version curl used, status, verbose stderr).
fn curl(args: &[&str], url: &str, tenant: &str) -> (String, u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "-k", "-v", "-o", "/dev/null", "--max-time", "10"])
        .args(["-w", "%{http_version} %{http_code}"])
        .args(["-H", &format!("X-Tenant-Name: {tenant}")])
        .args(["-H", "X-Api-Key: k-secret-1234567890"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl (the test suite installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let (version, code) = stdout.split_once(' ').unwrap_or(("", "0"));
    (
        version.to_string(),
        code.trim().parse().unwrap_or(0),
        stderr,
    )
}

fn ok_upstream(m: &Metrics, tenant: &str) -> Option<f64> {
    m.responses(tenant, "200", "2xx", "upstream")
}

fn start_tls(up: &Upstream, cert: &str, key: &str) -> (Statuswatch, std::net::SocketAddr) {
    let (proxy, admin, tls) = (free_addr(), free_addr(), free_addr());
    let extra =
        format!("[tls]\nlisten = \"{tls}\"\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\n");
    let sw = Statuswatch::start_with(
        &config_toml(proxy, admin, up.addr, &extra),
        proxy,
        admin,
        &[],
    );
    (sw, tls)
}

#[test]
fn the_tls_listener_forwards_https_as_the_scheme() {
    let up = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path(), "proto", "statuswatch-test-proto");
    let (sw, tls) = start_tls(&up, &cert, &key);
    let seen = |version: &str, url: &str, extra: &[&str]| {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-k", "--max-time", "10", version]);
        for h in extra {
            cmd.args(["-H", h]);
        }
        let out = cmd.arg(url).output().expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let https = format!("https://{tls}/headers");
    for version in ["--http1.1", "--http2"] {
        let text = seen(version, &https, &[]);
        assert!(
            text.contains("x-forwarded-proto: https\n"),
            "{version}: {text}"
        );
    }
    // The plain listener says http; a front proxy's own value is kept.
    let plain = format!("http://{}/headers", sw.proxy);
    assert!(seen("--http1.1", &plain, &[]).contains("x-forwarded-proto: http\n"));
    let text = seen("--http1.1", &https, &["X-Forwarded-Proto: http"]);
    assert!(text.contains("x-forwarded-proto: http\n"), "{text}");
}

#[test]
fn tls_http1_and_h2_are_proxied_and_counted_like_plain_requests() {
    let up = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path(), "one", "statuswatch-test-one");
    let (sw, tls) = start_tls(&up, &cert, &key);
    let url = format!("https://{tls}/status/200");

    let (v, code, err) = curl(&["--http1.1"], &url, "tlsone");
    assert_eq!((v.as_str(), code), ("1.1", 200), "{err}");
    let (v, code, err) = curl(&["--http2"], &url, "tlstwo");
    assert_eq!((v.as_str(), code), ("2", 200), "ALPN should pick h2: {err}");
    assert!(err.contains("statuswatch-test-one"), "{err}");
    // The plain listener still serves HTTP/1.1 beside it.
    let (v, code, _) = curl(&[], &format!("http://{}/status/200", sw.proxy), "plain");
    assert_eq!((v.as_str(), code), ("1.1", 200));

    let m = sw.metrics();
    for tenant in ["tlsone", "tlstwo", "plain"] {
        assert_eq!(ok_upstream(&m, tenant), Some(1.0), "{tenant}: {}", m.text);
    }
    // An upstream error over h2 is the proxy's answer, counted as such.
    let (_, code, _) = curl(&["--http2"], &format!("https://{tls}/status/451"), "tlstwo");
    assert_eq!(code, 451);
    eventually(Duration::from_secs(5), "451 over h2 counted", || {
        sw.metrics().responses("tlstwo", "451", "4xx", "upstream") == Some(1.0)
    });
    assert!(!sw.stderr().contains("k-secret-1234567890"));
}

#[test]
fn a_renewed_certificate_applies_on_reload_without_restart() {
    let up = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path(), "live", "statuswatch-first");
    let (sw, tls) = start_tls(&up, &cert, &key);
    let url = format!("https://{tls}/status/200");
    let (_, code, err) = curl(&["--http1.1"], &url, "renew");
    assert_eq!(code, 200, "{err}");
    assert!(err.contains("statuswatch-first"), "{err}");

    // A key that does not match the certificate is refused; the old pair serves.
    let (_, other_key) = self_signed(dir.path(), "other", "statuswatch-other");
    std::fs::copy(&other_key, &key).unwrap();
    sw.signal(libc::SIGHUP);
    eventually(Duration::from_secs(10), "mismatched key rejected", || {
        sw.metrics_now()
            .get("statuswatch_config_reloads_total", &[("result", "failure")])
            .unwrap_or(0.0)
            >= 1.0
    });
    assert!(sw.stderr().contains("tls.key_file"), "{}", sw.stderr());
    let (_, code, err) = curl(&["--http1.1"], &url, "renew");
    assert_eq!(code, 200, "{err}");
    assert!(err.contains("statuswatch-first"), "{err}");

    // The renewed pair, written in place, applies at the next handshake.
    let (new_cert, new_key) = self_signed(dir.path(), "renewed", "statuswatch-second");
    std::fs::copy(&new_key, &key).unwrap();
    std::fs::copy(&new_cert, &cert).unwrap();
    eventually(
        Duration::from_secs(15),
        "renewed certificate served",
        || {
            curl(&["--http1.1"], &url, "renew")
                .2
                .contains("statuswatch-second")
        },
    );
    assert_eq!(curl(&["--http2"], &url, "renew").1, 200);
}

#[test]
fn h2c_prior_knowledge_is_served_when_enabled_and_http1_still_works() {
    let up = Upstream::start();
    let sw = Statuswatch::start_env(up.addr, &[("STATUSWATCH__PROXY__H2C", "true")]);
    let url = format!("http://{}/status/200", sw.proxy);
    let (v, code, err) = curl(&["--http2-prior-knowledge"], &url, "htwoc");
    assert_eq!((v.as_str(), code), ("2", 200), "{err}");
    let (v, code, _) = curl(&["--http1.1"], &url, "hone");
    assert_eq!((v.as_str(), code), ("1.1", 200));
    let m = sw.metrics();
    assert_eq!(ok_upstream(&m, "htwoc"), Some(1.0), "{}", m.text);
    assert_eq!(ok_upstream(&m, "hone"), Some(1.0), "{}", m.text);
}

#[test]
fn h2c_is_off_by_default() {
    let up = Upstream::start();
    let sw = Statuswatch::start(up.addr, "");
    let (v, code, _) = curl(
        &["--http2-prior-knowledge"],
        &format!("http://{}/status/200", sw.proxy),
        "nohtwo",
    );
    assert_ne!((v.as_str(), code), ("2", 200));
    assert_eq!(ok_upstream(&sw.metrics(), "nohtwo"), None);
}

#[test]
fn connect_is_refused_405_and_counted_with_its_tenant() {
    let up = Upstream::start();
    let sw = Statuswatch::start(up.addr, "");
    let out = raw(
        sw.proxy,
        b"CONNECT api.example:443 HTTP/1.1\r\nHost: api.example:443\r\nX-Tenant-Name: tunneler\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(2),
    );
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 405"), "{text}");
    // What followed the CONNECT is not served: the connection closes.
    assert_eq!(text.matches("HTTP/1.1").count(), 1, "{text}");
    let m = sw.metrics();
    assert_eq!(
        m.responses("tunneler", "undocumented", "4xx", "proxy"),
        Some(1.0),
        "{}",
        m.text
    );
    assert_eq!(
        m.get(
            "statuswatch_undocumented_responses_total",
            &[("code", "405")]
        ),
        Some(1.0)
    );
    assert_eq!(up.connections.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[test]
fn check_names_the_tls_key_that_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = self_signed(dir.path(), "a", "a");
    let (_, other_key) = self_signed(dir.path(), "b", "b");
    let cases = [
        (
            format!(
                "listen = \"127.0.0.1:1\"\ncert_file = \"{cert}\"\nkey_file = \"{other_key}\"\n"
            ),
            "tls.key_file",
        ),
        (
            format!(
                "listen = \"127.0.0.1:1\"\ncert_file = \"{}\"\nkey_file = \"{other_key}\"\n",
                dir.path().join("missing.crt").display()
            ),
            "tls.cert_file",
        ),
        ("listen = \"127.0.0.1:1\"\n".to_string(), "tls.cert_file"),
        ("listen = \"nowhere\"\n".to_string(), "tls.listen"),
    ];
    for (tls, key) in cases {
        let path = dir.path().join("c.toml");
        std::fs::write(&path, format!("[tls]\n{tls}")).unwrap();
        let out = Command::new(bin())
            .arg("--config")
            .arg(&path)
            .arg("check")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{tls}");
        assert!(err.contains(key), "{tls}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn a_reload_that_clears_tls_listen_keeps_the_listener_serving_until_restart() {
    let up = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path(), "keep", "statuswatch-keep");
    let (sw, tls) = start_tls(&up, &cert, &key);
    let url = format!("https://{tls}/status/200");
    assert_eq!(curl(&["--http1.1"], &url, "keep").1, 200);
    // Same files, listener turned off: that only takes effect at a restart.
    let extra = format!("[tls]\nlisten = \"\"\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\n");
    std::fs::write(
        &sw.config_path,
        config_toml(sw.proxy, sw.admin, up.addr, &extra),
    )
    .unwrap();
    sw.signal(libc::SIGHUP);
    eventually(Duration::from_secs(10), "reload applied", || {
        sw.metrics_now()
            .get("statuswatch_config_reloads_total", &[("result", "success")])
            .unwrap_or(0.0)
            >= 1.0
    });
    assert!(sw.stderr().contains("tls.listen"), "{}", sw.stderr());
    let (_, code, err) = curl(&["--http1.1"], &url, "keep");
    assert_eq!(code, 200, "{err}");
}
