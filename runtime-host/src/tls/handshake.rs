//! [`TlsTerminator`]: the certificates now served (swapped whole when their
//! files change) and the handshake of each connection on `--tls-listen`.
//!
//! The client's hello is read before rustls takes the connection, so that
//! the certificate is chosen by the host's rules (`choice.rs`) and a name
//! no certificate covers is refused with the alert RFC 6066 gives for it,
//! `unrecognized_name`, not whatever rustls says when it has no certificate.
//! A handshake has the listener's deadlines: its first byte within
//! `first_byte_timeout` of the accept, the whole of it within
//! `header_timeout`.

use std::io::{Read, Write};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::choice::CertificateSet;
use crate::http::Deadlines;
use crate::metrics::{Closed, Handshake, Metrics};

/// A fatal TLS alert record (TLS 1.2 and 1.3 alike): `unrecognized_name`
/// (RFC 6066 §3), for a name that no certificate covers.
const UNRECOGNIZED_NAME_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112];

/// What a handshake agreed on, for the connection's requests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Session {
    /// The name the client sent (SNI), lowercased, if it sent one.
    pub sni: Option<Box<str>>,
}

/// The TLS side of the listener: the live certificates and the handshake.
#[derive(Debug)]
pub struct TlsTerminator {
    certificates: ArcSwap<CertificateSet>,
}

impl TlsTerminator {
    pub fn new(certificates: CertificateSet) -> TlsTerminator {
        TlsTerminator { certificates: ArcSwap::from_pointee(certificates) }
    }

    /// Serves `certificates` from the next handshake on; connections
    /// already open keep theirs.
    pub fn swap(&self, certificates: CertificateSet) {
        self.certificates.store(Arc::new(certificates));
    }

    /// The certificates served now.
    pub fn certificates(&self) -> Arc<CertificateSet> {
        self.certificates.load_full()
    }

    /// The handshake of a connection accepted at `accepted` (a tokio
    /// instant), counted in `metrics`; `None` when it failed (the client
    /// has been sent an alert where one is due).
    pub async fn accept(
        &self,
        tcp: TcpStream,
        accepted: tokio::time::Instant,
        deadlines: &Deadlines,
        metrics: &Metrics,
    ) -> Option<(TlsStream<TcpStream>, Session)> {
        let first_byte = accepted + deadlines.first_byte;
        let done_by = accepted + deadlines.header.max(deadlines.first_byte);
        // (A peek, not `readable()`: that may say ready with nothing to read.)
        match tokio::time::timeout_at(first_byte, tcp.peek(&mut [0u8; 1])).await {
            Err(_) => {
                metrics.closed(Closed::FirstByte);
                return None;
            }
            // Gone before a byte: no handshake to count.
            Ok(Ok(0) | Err(_)) => return None,
            Ok(Ok(_)) => {}
        }
        let handshake = async {
            let hello = read_hello(&tcp).await.ok()?;
            let sni = hello.client_hello().server_name().map(|name| name.to_ascii_lowercase().into_boxed_str());
            let config = match self.certificates.load().choose(sni.as_deref()) {
                Some(certificate) => certificate.config.clone(),
                None => {
                    // Best effort: the socket's buffer is empty, and the client is refused either way.
                    let _ = tcp.try_write(&UNRECOGNIZED_NAME_ALERT);
                    return Some(Err(Handshake::NoCertificate));
                }
            };
            let stream = tokio_rustls::StartHandshake::from_parts(hello, tcp).into_stream(config).await.ok()?;
            Some(Ok((stream, Session { sni })))
        };
        match tokio::time::timeout_at(done_by, handshake).await {
            Ok(Some(Ok((stream, session)))) => {
                let tls = stream.get_ref().1;
                let resumed = tls.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
                metrics.tls.handshake(
                    match (tls.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_2), resumed) {
                        (true, false) => Handshake::Tls12,
                        (true, true) => Handshake::Tls12Resumed,
                        (false, false) => Handshake::Tls13,
                        (false, true) => Handshake::Tls13Resumed,
                    },
                );
                Some((stream, session))
            }
            Ok(Some(Err(refused))) => {
                metrics.tls.handshake(refused);
                None
            }
            Ok(None) => {
                metrics.tls.handshake(Handshake::Failed);
                None
            }
            Err(_) => {
                metrics.tls.handshake(Handshake::TimedOut);
                metrics.closed(Closed::Handshake);
                None
            }
        }
    }
}

/// Reads the client's hello, and no further. A hello that does not parse
/// is answered with rustls's alert.
async fn read_hello(tcp: &TcpStream) -> std::io::Result<rustls::server::Accepted> {
    let mut acceptor = rustls::server::Acceptor::default();
    loop {
        match acceptor.read_tls(&mut TryRead(tcp)) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                tcp.readable().await?;
                continue;
            }
            Err(e) => return Err(e),
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => return Ok(accepted),
            Ok(None) => {}
            Err((e, mut alert)) => {
                let _ = alert.write_all(&mut TryWrite(tcp));
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
            }
        }
    }
}

/// A tokio socket as a `std::io::Read` that never blocks.
struct TryRead<'a>(&'a TcpStream);

impl Read for TryRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.try_read(buf)
    }
}

/// A tokio socket as a `std::io::Write` that never blocks.
struct TryWrite<'a>(&'a TcpStream);

impl Write for TryWrite<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.try_write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
