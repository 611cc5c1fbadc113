//! A WebSocket tunnel: the bytes of an upgraded connection, carried both
//! ways between the client and the origin, within the host's limits. It
//! holds the connection's slot (its `Arc<Connection>`) while it lives, is
//! closed when nothing passes for the idle timeout, and when the host
//! drains (a tunnel cannot be handed over; its client reconnects).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::http::connection::{instant_at, now_ms};
use crate::http::Connection;
use crate::metrics::Closed;

/// Carries `client` ⇄ `origin` until either side closes, nothing passes for
/// the connection's idle timeout, or the host drains.
pub(super) async fn carry(client: Upgraded, origin: Upgraded, connection: &Arc<Connection>) {
    let idle = u64::try_from(connection.idle_timeout.as_millis()).unwrap_or(u64::MAX);
    let last = AtomicU64::new(now_ms());
    let mut client = Counted { io: TokioIo::new(client), last: &last };
    let mut origin = Counted { io: TokioIo::new(origin), last: &last };
    let copy = tokio::io::copy_bidirectional(&mut client, &mut origin);
    tokio::pin!(copy);
    let mut stop = connection.stop.clone();
    loop {
        let quiet_until = last.load(Ordering::Relaxed).saturating_add(idle);
        tokio::select! {
            _ = &mut copy => return,
            _ = stop.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep_until(instant_at(quiet_until)) => {
                if now_ms() >= last.load(Ordering::Relaxed).saturating_add(idle) {
                    connection.metrics().closed(Closed::TunnelIdle);
                    return;
                }
            }
        }
    }
}

/// One side of a tunnel, noting when it last read anything (every byte
/// carried is read from one side or the other).
struct Counted<'a, T> {
    io: T,
    last: &'a AtomicU64,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<'_, T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.last.store(now_ms(), Ordering::Relaxed);
        }
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<'_, T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
