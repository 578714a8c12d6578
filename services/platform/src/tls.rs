//! TLS at the edge and mutual TLS between services, with rustls (ring provider).
//!
//! A [`Tls`] is one identity — a certificate chain and its key, read from PEM files — and,
//! for mutual TLS, the certificate authority every peer's certificate must chain to:
//!
//! - **edge** ([`Tls::edge_acceptor`]): TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`, no client
//!   certificate (the gateway's users authenticate with JWTs);
//! - **mesh server** ([`Tls::mesh_acceptor`]): a client certificate from the CA is required
//!   (no certificate, an expired one or one from another CA ends the handshake), ALPN `h2`;
//! - **mesh client** ([`Tls::connector`]): presents the identity, trusts only the CA.
//!
//! The files are read again when they change (size or modification time, checked at each
//! handshake, a few `stat` calls): a renewed certificate is served to the next connection
//! without a restart. A change that does not load (a key that does not match, a file half
//! written) keeps the previous configuration, with a warning, until the files load.
//!
//! TLS exists only in the real world: madsim-tonic has no TLS and the simulation's network
//! is trusted, so there [`Tls::load`] refuses and every listener and channel is plain. This
//! module is the one place that switches (the services only pass an `Option<Arc<Tls>>`).

use std::path::PathBuf;

/// Where a [`Tls`] reads its files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The certificate authority peers' certificates must chain to (PEM), for mutual TLS;
    /// `None` for an edge-only identity.
    pub ca: Option<PathBuf>,
}

/// Why TLS files did not load.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("mutual TLS needs a certificate authority (the CA file is not set)")]
    NoCa,
    #[error("TLS is not available in the simulation")]
    Simulated,
}

#[cfg(not(madsim))]
pub use real::*;

#[cfg(madsim)]
pub use simulated::*;

#[cfg(madsim)]
mod simulated {
    use super::{TlsError, TlsFiles};

    /// TLS in the simulation: never built ([`Tls::load`] refuses), so every listener and
    /// channel there is plain.
    #[derive(Debug)]
    pub struct Tls {
        never: Never,
    }

    #[derive(Debug)]
    enum Never {}

    impl Tls {
        pub fn load(_files: TlsFiles) -> Result<Self, TlsError> {
            Err(TlsError::Simulated)
        }

        /// What a use of a [`Tls`] does here: nothing can, as none exists.
        pub fn unreachable(&self) -> ! {
            match self.never {}
        }
    }
}

#[cfg(not(madsim))]
mod real {
    use std::{
        path::Path,
        sync::{Arc, Mutex},
        time::SystemTime,
    };

    use rustls::{
        crypto::CryptoProvider,
        pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
        server::WebPkiClientVerifier,
        ClientConfig, RootCertStore, ServerConfig,
    };
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    use super::{TlsError, TlsFiles};

    /// What identifies the files' contents cheaply: each file's size and modification time.
    type Stamp = Vec<Option<(u64, SystemTime)>>;

    /// An identity (and, for mutual TLS, a CA) read from files and read again when they
    /// change; see the module documentation.
    #[derive(Debug)]
    pub struct Tls {
        files: TlsFiles,
        loaded: Mutex<(Stamp, Arc<Configs>)>,
    }

    #[derive(Debug)]
    struct Configs {
        edge: Arc<ServerConfig>,
        /// The edge over QUIC (HTTP/3): TLS 1.3 only, ALPN `h3`.
        #[cfg(feature = "http3")]
        quic: Arc<ServerConfig>,
        mesh: Option<Arc<ServerConfig>>,
        client: Option<Arc<ClientConfig>>,
    }

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn file_error(path: &Path, reason: impl std::fmt::Display) -> TlsError {
        TlsError::File {
            path: path.display().to_string(),
            reason: reason.to_string(),
        }
    }

    fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| file_error(path, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| file_error(path, e))?;
        if certs.is_empty() {
            return Err(file_error(path, "no certificate in the file"));
        }
        Ok(certs)
    }

    fn config_error(e: impl std::fmt::Display) -> TlsError {
        TlsError::Config(e.to_string())
    }

    impl Configs {
        fn load(files: &TlsFiles) -> Result<Configs, TlsError> {
            let chain = certs(&files.cert)?;
            let key =
                PrivateKeyDer::from_pem_file(&files.key).map_err(|e| file_error(&files.key, e))?;
            let edge = ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(config_error)?
                .with_no_client_auth()
                .with_single_cert(chain.clone(), key.clone_key())
                .map_err(config_error)?;
            let mut edge = edge;
            edge.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            #[cfg(feature = "http3")]
            let quic = {
                let mut quic = ServerConfig::builder_with_provider(provider())
                    .with_protocol_versions(&[&rustls::version::TLS13])
                    .map_err(config_error)?
                    .with_no_client_auth()
                    .with_single_cert(chain.clone(), key.clone_key())
                    .map_err(config_error)?;
                quic.alpn_protocols = vec![b"h3".to_vec()];
                Arc::new(quic)
            };
            let (mesh, client) = match &files.ca {
                None => (None, None),
                Some(ca) => {
                    let mut roots = RootCertStore::empty();
                    for c in certs(ca)? {
                        roots.add(c).map_err(|e| file_error(ca, e))?;
                    }
                    let roots = Arc::new(roots);
                    let verifier =
                        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                            .build()
                            .map_err(config_error)?;
                    let mut mesh = ServerConfig::builder_with_provider(provider())
                        .with_safe_default_protocol_versions()
                        .map_err(config_error)?
                        .with_client_cert_verifier(verifier)
                        .with_single_cert(chain.clone(), key.clone_key())
                        .map_err(config_error)?;
                    mesh.alpn_protocols = vec![b"h2".to_vec()];
                    let mut client = ClientConfig::builder_with_provider(provider())
                        .with_safe_default_protocol_versions()
                        .map_err(config_error)?
                        .with_root_certificates(roots)
                        .with_client_auth_cert(chain, key)
                        .map_err(config_error)?;
                    client.alpn_protocols = vec![b"h2".to_vec()];
                    (Some(Arc::new(mesh)), Some(Arc::new(client)))
                }
            };
            Ok(Configs {
                edge: Arc::new(edge),
                #[cfg(feature = "http3")]
                quic,
                mesh,
                client,
            })
        }
    }

    impl Tls {
        /// Reads `files`; an error names the file and what is wrong with it.
        pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
            let stamp = stamp(&files);
            let configs = Configs::load(&files)?;
            Ok(Tls {
                files,
                loaded: Mutex::new((stamp, Arc::new(configs))),
            })
        }

        /// The configurations of the files as they are now: read again if they changed since
        /// the last load, the previous ones kept if the new files do not load.
        fn current(&self) -> Arc<Configs> {
            let now = stamp(&self.files);
            // A panic while holding the lock left nothing half-updated (the pair is replaced
            // whole), so a poisoned lock is still good.
            let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
            if loaded.0 != now {
                match Configs::load(&self.files) {
                    Ok(c) => {
                        tracing::info!(cert = %self.files.cert.display(), "TLS files reloaded");
                        *loaded = (now, Arc::new(c));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "changed TLS files do not load; serving the previous ones");
                    }
                }
            }
            loaded.1.clone()
        }

        /// The acceptor of the public edge: TLS 1.2/1.3, ALPN `h2` and `http/1.1`.
        pub fn edge_acceptor(&self) -> TlsAcceptor {
            TlsAcceptor::from(self.current().edge.clone())
        }

        /// The edge's TLS configuration for QUIC (HTTP/3): TLS 1.3, ALPN `h3`; the same
        /// value until the files change.
        #[cfg(feature = "http3")]
        pub fn quic_config(&self) -> Arc<ServerConfig> {
            self.current().quic.clone()
        }

        /// The acceptor between services: a client certificate from the CA is required.
        pub fn mesh_acceptor(&self) -> Result<TlsAcceptor, TlsError> {
            self.current()
                .mesh
                .clone()
                .map(TlsAcceptor::from)
                .ok_or(TlsError::NoCa)
        }

        /// The connector to other services: presents this identity, trusts only the CA.
        pub fn connector(&self) -> Result<TlsConnector, TlsError> {
            self.current()
                .client
                .clone()
                .map(TlsConnector::from)
                .ok_or(TlsError::NoCa)
        }
    }

    fn stamp(files: &TlsFiles) -> Stamp {
        [Some(&files.cert), Some(&files.key), files.ca.as_ref()]
            .into_iter()
            .flatten()
            .map(|p| {
                std::fs::metadata(p)
                    .ok()
                    .and_then(|m| Some((m.len(), m.modified().ok()?)))
            })
            .collect()
    }
}
