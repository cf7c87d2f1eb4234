//! TLS on the PostgreSQL and Flight SQL ports: the rustls acceptors built from the
//! `tls_cert` and `tls_key` PEM files, with the aws-lc-rs crypto provider chosen explicitly.

use std::path::Path;
use std::sync::Arc;

use pgwire::tokio::TlsAcceptor;
use pgwire::tokio::tokio_rustls::rustls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Result, WeirError};

/// An acceptor for the certificate chain in `cert` and the private key in `key` (PEM:
/// PKCS#8, PKCS#1 or SEC1). Offers the ALPN name `postgresql`, which PostgreSQL 17's
/// direct TLS negotiation (`sslnegotiation=direct`) requires.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    let mut config = server_config(cert, key)?;
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The acceptor of the Flight SQL port: the same certificate, ALPN `h2` (gRPC).
pub fn flight_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    let mut config = server_config(cert, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig> {
    let read = |path: &Path, what: &str| {
        std::fs::read(path)
            .map_err(|e| WeirError::Config(format!("cannot read {what} {}: {e}", path.display())))
    };
    let cert_pem = read(cert, "tls_cert")?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            WeirError::Config(format!(
                "tls_cert {}: not PEM certificates: {e}",
                cert.display()
            ))
        })?;
    if chain.is_empty() {
        return Err(WeirError::Config(format!(
            "tls_cert {}: no certificate in the file",
            cert.display()
        )));
    }
    let key_pem = read(key, "tls_key")?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        WeirError::Config(format!(
            "tls_key {}: no PEM private key: {e}",
            key.display()
        ))
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| WeirError::Config(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            WeirError::Config(format!(
                "tls_cert {} and tls_key {} do not make a usable pair: {e}",
                cert.display(),
                key.display()
            ))
        })
}
