//! The client-facing TLS listener's certificate: read and checked when a
//! config is built, then handed to each handshake from the live state, so a
//! reload (or a renewed certificate on disk) applies to the next handshake
//! without a restart or a dropped connection.
//!
//! pingora's `TlsSettings::intermediate` reads the files once at start-up;
//! its `TlsAccept::certificate_callback` hook is the supported way to choose
//! the certificate per handshake instead, which is what [`Acceptor`] does.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use pingora::tls::ext;
use pingora::tls::pkey::{PKey, Private};
use pingora::tls::x509::X509;

use crate::config::{read_small_file, ConfigError, TlsConfig};

/// A certificate chain (leaf first) and its private key.
pub struct CertKey {
    chain: Vec<X509>,
    key: PKey<Private>,
}

impl std::fmt::Debug for CertKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("CertKey")
            .field("subject", &self.chain.first().map(|c| c.subject_name()))
            .finish_non_exhaustive()
    }
}

impl CertKey {
    /// Read and check `tls.cert_file` and `tls.key_file`: PEM, at least one
    /// certificate, and a key that matches the leaf. `None` when neither is
    /// set. Loaded whenever they are set, not only with `tls.listen`: the
    /// listener only goes away at a restart, so a reload that clears
    /// `tls.listen` must leave it a certificate to serve. Errors name the key.
    pub(crate) fn load(cfg: &TlsConfig) -> Result<Option<CertKey>, ConfigError> {
        let (cert, key) = (cfg.cert_file.trim(), cfg.key_file.trim());
        if cert.is_empty() && key.is_empty() {
            return Ok(None);
        }
        for (k, v) in [("tls.cert_file", cert), ("tls.key_file", key)] {
            if v.is_empty() {
                return Err(ConfigError::invalid(
                    k,
                    "must be set with the other of tls.cert_file and tls.key_file",
                ));
            }
        }
        let read = |key: &str, path: &str| {
            read_small_file(std::path::Path::new(path.trim()))
                .map_err(|reason| ConfigError::invalid(key, format!("{path}: {reason}")))
        };
        let cert_pem = read("tls.cert_file", &cfg.cert_file)?;
        let key_pem = read("tls.key_file", &cfg.key_file)?;
        let chain = X509::stack_from_pem(cert_pem.as_bytes())
            .ok()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                ConfigError::invalid(
                    "tls.cert_file",
                    format!("{}: no PEM certificate in it", cfg.cert_file),
                )
            })?;
        let key = PKey::private_key_from_pem(key_pem.as_bytes()).map_err(|_| {
            ConfigError::invalid(
                "tls.key_file",
                format!("{}: no PEM private key in it", cfg.key_file),
            )
        })?;
        let matches = chain[0]
            .public_key()
            .is_ok_and(|public| public.public_eq(&key));
        if !matches {
            return Err(ConfigError::invalid(
                "tls.key_file",
                format!(
                    "{} is not the key of the certificate in {}",
                    cfg.key_file, cfg.cert_file
                ),
            ));
        }
        Ok(Some(CertKey { chain, key }))
    }

    fn apply(&self, ssl: &mut TlsRef) -> Result<(), pingora::tls::error::ErrorStack> {
        ext::ssl_use_certificate(ssl, &self.chain[0])?;
        ext::ssl_use_private_key(ssl, &self.key)?;
        for cert in &self.chain[1..] {
            ext::ssl_add_chain_cert(ssl, cert)?;
        }
        Ok(())
    }
}

/// Chooses the certificate at each handshake from `current` (the live
/// config's). A handshake with no certificate fails, which clients see as a
/// TLS error: that only happens if the listener exists without one, which
/// validation prevents.
pub(crate) struct Acceptor<F> {
    current: F,
}

impl<F> Acceptor<F>
where
    F: Fn() -> Option<Arc<CertKey>> + Send + Sync + 'static,
{
    pub(crate) fn new(current: F) -> Acceptor<F> {
        Acceptor { current }
    }
}

#[async_trait]
impl<F> TlsAccept for Acceptor<F>
where
    F: Fn() -> Option<Arc<CertKey>> + Send + Sync + 'static,
{
    async fn certificate_callback(&self, ssl: &mut TlsRef) {
        let Some(cert) = (self.current)() else {
            tracing::warn!("TLS handshake with no certificate configured");
            return;
        };
        if let Err(e) = cert.apply(ssl) {
            tracing::warn!(error = %e, "could not use the configured certificate");
        }
    }
}
