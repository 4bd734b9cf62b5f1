//! The gRPC port below tonic: which connections get to speak gRPC at all.
//!
//! tonic's own accept loop holds a connection that never says anything
//! (no ClientHello, no HTTP/2 preface) for as long as the peer keeps it
//! open, accepts without limit, and retries a failing accept (out of
//! descriptors) in a busy loop. So the brain hands tonic connections it
//! has already vetted:
//!
//! - at most `max_connections` open at once ([`avap_serve::Slots`]): at
//!   the cap the brain stops accepting until one closes, and a failing
//!   accept is retried after a pause ([`avap_serve::accept`]);
//! - each must finish its TLS handshake (when the brain serves TLS) and
//!   send the 24-byte HTTP/2 client preface within the handshake timeout,
//!   else it is closed. Handshakes run side by side, so a slow one holds
//!   only its own slot.
//!
//! After that the connection is HTTP/2's: its keepalive pings (30 s, 10 s
//! to answer) close a peer that stops answering.
//!
//! TLS is rustls with ring, ALPN `h2`, and client certificates checked
//! against a CA when one is given ([`Tls::from_pem`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use avap_serve::Slots;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::ops::BrainMetrics;

/// What every HTTP/2 client sends first (RFC 9113, section 3.4).
pub const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The brain's TLS identity, ready to accept, and what it says about
/// itself.
#[derive(Clone)]
pub struct Tls {
    pub acceptor: TlsAcceptor,
    /// The certificate's subject alternative names, as `DNS:name` and
    /// `IP:address` (what hosts check `BRAIN_TLS_DOMAIN` or `BRAIN_HOST`
    /// against).
    pub names: Vec<String>,
    /// The certificate's `notAfter`, as the certificate writes it.
    pub not_after: String,
    /// Whether clients must present a certificate signed by the client CA.
    pub client_certificates: bool,
}

impl Tls {
    /// A TLS identity from a PEM certificate chain (the brain's first), its
    /// PEM private key, and optionally a PEM CA that client certificates
    /// must chain to.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8], client_ca_pem: Option<&[u8]>) -> Result<Tls, String> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("the certificate file is not PEM certificates: {e}"))?;
        let Some(leaf) = chain.first() else {
            return Err("the certificate file holds no certificate".into());
        };
        let (names, not_after) = certificate_names(leaf)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| format!("the key file holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = match client_ca_pem {
            None => builder.with_no_client_auth(),
            Some(pem) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| format!("the client CA file is not PEM certificates: {e}"))?;
                    roots.add(cert).map_err(|e| format!("the client CA certificate is not usable: {e}"))?;
                }
                if roots.is_empty() {
                    return Err("the client CA file holds no certificate".into());
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| format!("client certificate verifier: {e}"))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| format!("the certificate and key do not make a TLS identity: {e}"))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            names,
            not_after,
            client_certificates: client_ca_pem.is_some(),
        })
    }
}

/// The subject alternative names of a certificate (`DNS:...`, `IP:...`;
/// other kinds by their kind) and its `notAfter`.
pub fn certificate_names(der: &CertificateDer<'_>) -> Result<(Vec<String>, String), String> {
    use x509_cert::der::Decode as _;
    use x509_cert::ext::pkix::SubjectAltName;
    use x509_cert::ext::pkix::name::GeneralName;
    let cert = x509_cert::Certificate::from_der(der.as_ref()).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let tbs = &cert.tbs_certificate;
    let not_after = tbs.validity.not_after.to_string();
    let san = tbs.get::<SubjectAltName>().map_err(|e| format!("its subjectAltName does not parse: {e}"))?;
    let names = san
        .map(|(_, san)| san.0)
        .unwrap_or_default()
        .into_iter()
        .map(|name| match name {
            GeneralName::DnsName(dns) => format!("DNS:{}", dns.as_str()),
            GeneralName::IpAddress(ip) => match ip.as_bytes().len() {
                4 => {
                    let b: [u8; 4] = ip.as_bytes().try_into().unwrap_or_default();
                    format!("IP:{}", std::net::Ipv4Addr::from(b))
                }
                16 => {
                    let b: [u8; 16] = ip.as_bytes().try_into().unwrap_or_default();
                    format!("IP:{}", std::net::Ipv6Addr::from(b))
                }
                _ => "IP:(malformed)".into(),
            },
            GeneralName::Rfc822Name(m) => format!("email:{}", m.as_str()),
            GeneralName::UniformResourceIdentifier(u) => format!("URI:{}", u.as_str()),
            _ => "(other name)".into(),
        })
        .collect();
    Ok((names, not_after))
}

/// A connection that passed its handshake: the preface already read is
/// handed back to HTTP/2 first. Holds its slot until dropped.
pub struct GrpcConn {
    preface: [u8; 24],
    sent: usize,
    io: Io,
    info: TcpConnectInfo,
    _slot: OwnedSemaphorePermit,
    _open: Open,
}

enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// Counts an open connection while it lives.
struct Open(prometheus_client::metrics::gauge::Gauge);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Connected for GrpcConn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for GrpcConn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.sent < this.preface.len() {
            let n = buf.remaining().min(this.preface.len() - this.sent);
            buf.put_slice(&this.preface[this.sent..this.sent + n]);
            this.sent += n;
            return Poll::Ready(Ok(()));
        }
        match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for GrpcConn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, data),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, data),
        }
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Why a connection was closed before it reached gRPC (the metric label).
#[derive(Debug, Clone, Copy)]
pub enum Refused {
    /// No TLS handshake and preface within the timeout.
    Timeout,
    /// The TLS handshake failed (no shared version or cipher, a client
    /// certificate missing or not signed by the client CA, not TLS at all).
    Tls,
    /// The first 24 bytes were not the HTTP/2 preface.
    NotHttp2,
}

impl Refused {
    pub fn label(self) -> &'static str {
        match self {
            Refused::Timeout => "handshake_timeout",
            Refused::Tls => "tls",
            Refused::NotHttp2 => "not_http2",
        }
    }
}

/// The connections of `listener` that passed their handshake, for
/// `serve_with_incoming_shutdown`. Accepting stops (and the port closes)
/// once `stopping` turns true.
pub fn incoming(
    listener: TcpListener,
    slots: Slots,
    deadline: Duration,
    tls: Option<TlsAcceptor>,
    metrics: Arc<BrainMetrics>,
    mut stopping: watch::Receiver<bool>,
) -> ReceiverStream<io::Result<GrpcConn>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = avap_serve::accept(&listener, &slots) => accepted,
                _ = stopping.wait_for(|s| *s) => break,
            };
            let (tx, tls, metrics) = (tx.clone(), tls.clone(), metrics.clone());
            tokio::spawn(async move {
                let peer = accepted.peer;
                let _ = accepted.stream.set_nodelay(true);
                let info = TcpConnectInfo { local_addr: accepted.stream.local_addr().ok(), remote_addr: Some(peer) };
                match tokio::time::timeout(deadline, handshake(accepted.stream, tls)).await {
                    Ok(Ok((io, preface))) => {
                        metrics.connections.inc();
                        let conn = GrpcConn {
                            preface,
                            sent: 0,
                            io,
                            info,
                            _slot: accepted.slot,
                            _open: Open(metrics.connections.clone()),
                        };
                        let _ = tx.send(Ok(conn)).await;
                    }
                    Ok(Err((why, e))) => {
                        metrics.refused_connection(why.label());
                        tracing::debug!(%peer, reason = why.label(), error = %e, "connection closed before gRPC");
                    }
                    Err(_) => {
                        metrics.refused_connection(Refused::Timeout.label());
                        tracing::debug!(%peer, ?deadline, "connection closed: no TLS handshake and HTTP/2 preface in time");
                    }
                }
            });
        }
        drop(listener);
    });
    ReceiverStream::new(rx)
}

async fn handshake(stream: TcpStream, tls: Option<TlsAcceptor>) -> Result<(Io, [u8; 24]), (Refused, io::Error)> {
    let mut io = match tls {
        None => Io::Plain(stream),
        Some(acceptor) => Io::Tls(Box::new(acceptor.accept(stream).await.map_err(|e| (Refused::Tls, e))?)),
    };
    let mut preface = [0u8; 24];
    let read = match &mut io {
        Io::Plain(s) => s.read_exact(&mut preface).await,
        Io::Tls(s) => s.read_exact(&mut preface).await,
    };
    read.map_err(|e| (Refused::NotHttp2, e))?;
    if &preface != H2_PREFACE {
        return Err((Refused::NotHttp2, io::Error::new(io::ErrorKind::InvalidData, "not the HTTP/2 preface")));
    }
    Ok((io, preface))
}
