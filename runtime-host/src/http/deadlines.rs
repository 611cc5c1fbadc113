//! [`Watched`]: a client's socket with the listener's deadlines on it.
//!
//! hyper bounds an HTTP/1.1 head, but not the wait for the first byte (its
//! protocol detection reads with no timeout), nor an HTTP/2 header block,
//! nor an idle HTTP/2 connection. So the socket keeps the deadlines
//! itself, for both protocols alike, as its reads wait:
//!
//! - the **first byte** within `first_byte_timeout` of the accept;
//! - a **request head** within `header_timeout` of its first byte: for
//!   HTTP/1.1 the bytes read while no request is in flight; for HTTP/2 a
//!   HEADERS frame until the frame that ends its block (CONTINUATION) has
//!   been read whole (the frames' 9-byte headers are followed as they pass,
//!   nothing is copied). PINGs, SETTINGS and WINDOW_UPDATEs start no head;
//! - **idle**: no request in flight for `idle_timeout` (from the end of the
//!   last answer, whatever bytes come meanwhile): the connection's task is
//!   told, and closes it gracefully (a GOAWAY on HTTP/2);
//! - a **write** that waits on a client that does not read, `idle_timeout`
//!   at most; and over HTTP/2, where a peer that keeps its window shut
//!   blocks no write, answers waiting on the client (a piece handed to
//!   hyper, the next not asked for) with none moving for `idle_timeout`.
//!
//! A head or first byte past its deadline fails the read (`TimedOut`), and
//! hyper closes the connection. Timers are armed only when a read or write
//! has to wait. A waiting read always has one: while a request is in flight
//! and no deadline applies, it checks again `idle_timeout` later. So a
//! deadline that begins elsewhere (the last answer ends; an HTTP/2 answer
//! begins to wait on the client), which is always `idle_timeout` or more
//! after its beginning, finds the read's timer set no later than itself,
//! and nothing has to wake the reader: waking it as each request ends would
//! poll the whole connection once more per request.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::connection::{instant_at, now_ms, Connection};
use crate::metrics::Closed;

/// The connection preface of HTTP/2 (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An HTTP/2 frame header: length (3 bytes), type, flags, stream (4).
const H2_FRAME_HEADER: usize = 9;
const H2_HEADERS: u8 = 0x1;
const H2_CONTINUATION: u8 = 0x9;
const H2_END_HEADERS: u8 = 0x4;

/// The deadlines of the listener's connections.
#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    pub first_byte: Duration,
    pub header: Duration,
    pub idle: Duration,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What the client speaks, as far as its bytes tell.
#[derive(Debug)]
enum Protocol {
    /// Bytes matching the HTTP/2 preface so far (0 before the first byte).
    Detecting {
        matched: usize,
    },
    /// HTTP/1.1: when the pending head's first byte came, and the count of
    /// heads read then (the head is over once that count moves).
    Http1 {
        head: Option<(u64, u64)>,
    },
    Http2(H2Frames),
}

/// HTTP/2 frames as they pass, for the header blocks among them.
#[derive(Debug, Default)]
struct H2Frames {
    header: [u8; H2_FRAME_HEADER],
    have: usize,
    /// Payload bytes of the current frame still to come.
    payload_left: u64,
    /// The current frame ends a header block.
    ends_head: bool,
    /// When the pending header block's first frame header came.
    head_since: Option<u64>,
}

impl H2Frames {
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let n = usize::try_from(self.payload_left).unwrap_or(usize::MAX).min(bytes.len());
                bytes = &bytes[n..];
                self.payload_left -= n as u64;
                if self.payload_left == 0 {
                    self.frame_done();
                }
                continue;
            }
            let n = (H2_FRAME_HEADER - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == H2_FRAME_HEADER {
                self.have = 0;
                let [l0, l1, l2, kind, flags, ..] = self.header;
                self.payload_left = u64::from(l0) << 16 | u64::from(l1) << 8 | u64::from(l2);
                self.ends_head = false;
                if kind == H2_HEADERS || kind == H2_CONTINUATION {
                    self.head_since.get_or_insert_with(now_ms);
                    self.ends_head = flags & H2_END_HEADERS != 0;
                }
                if self.payload_left == 0 {
                    self.frame_done();
                }
            }
        }
    }

    fn frame_done(&mut self) {
        if self.ends_head {
            self.head_since = None;
            self.ends_head = false;
        }
    }
}

/// What happens when a read's deadline passes.
#[derive(Clone, Copy, Debug)]
enum Expiry {
    Close(Closed),
    Idle,
    /// No deadline yet: look again (see the module docs).
    Recheck,
}

/// A client's socket (TCP, or TLS over it) with the connection's deadlines
/// (module docs): they watch the HTTP bytes, after any decryption.
#[derive(Debug)]
pub struct Watched<S> {
    io: S,
    connection: Arc<Connection>,
    deadlines: Deadlines,
    accepted: u64,
    first_byte_at: Option<u64>,
    protocol: Protocol,
    read_timer: Option<(Pin<Box<tokio::time::Sleep>>, u64)>,
    write_timer: Option<(Pin<Box<tokio::time::Sleep>>, u64)>,
    write_stalled_since: Option<u64>,
}

impl<S> Watched<S> {
    pub fn new(io: S, connection: Arc<Connection>, deadlines: Deadlines) -> Watched<S> {
        Watched {
            io,
            connection,
            deadlines,
            accepted: now_ms(),
            first_byte_at: None,
            protocol: Protocol::Detecting { matched: 0 },
            read_timer: None,
            write_timer: None,
            write_stalled_since: None,
        }
    }

    /// Follows the bytes just read: the protocol, and where heads start and end.
    fn saw(&mut self, bytes: &[u8]) {
        let first = *self.first_byte_at.get_or_insert_with(now_ms);
        if let Protocol::Detecting { matched } = &mut self.protocol {
            let n = (H2_PREFACE.len() - *matched).min(bytes.len());
            if bytes[..n] != H2_PREFACE[*matched..*matched + n] {
                self.protocol = Protocol::Http1 { head: None };
            } else {
                *matched += n;
                if *matched < H2_PREFACE.len() {
                    return;
                }
                let mut frames = H2Frames::default();
                frames.feed(&bytes[n..]);
                self.protocol = Protocol::Http2(frames);
                self.connection.set_h2();
                return;
            }
            // Not HTTP/2: these bytes began the first head.
            self.protocol = Protocol::Http1 { head: Some((first, self.connection.heads())) };
            return;
        }
        match &mut self.protocol {
            Protocol::Http1 { head } => {
                let heads = self.connection.heads();
                let pending = head.is_some_and(|(_, at)| at == heads);
                if !pending && self.connection.in_flight() == 0 {
                    *head = Some((now_ms(), heads));
                }
            }
            Protocol::Http2(frames) => frames.feed(bytes),
            Protocol::Detecting { .. } => {}
        }
    }

    /// The deadline a waiting read is under, and what its passing means;
    /// while a request is in flight with no deadline on the client (its
    /// origin's timeouts bound it), a look again `idle_timeout` from now.
    fn read_deadline(&mut self, now: u64) -> (u64, Expiry) {
        let Some(first) = self.first_byte_at else {
            return (self.accepted.saturating_add(ms(self.deadlines.first_byte)), Expiry::Close(Closed::FirstByte));
        };
        let header = ms(self.deadlines.header);
        let in_flight = self.connection.in_flight();
        match &mut self.protocol {
            // A preface begun and not finished.
            Protocol::Detecting { .. } => return (first.saturating_add(header), Expiry::Close(Closed::Head)),
            Protocol::Http1 { head } => match *head {
                Some((since, heads)) if heads == self.connection.heads() && in_flight == 0 => {
                    return (since.saturating_add(header), Expiry::Close(Closed::Head));
                }
                _ => *head = None,
            },
            Protocol::Http2(frames) => {
                if let Some(since) = frames.head_since {
                    return (since.saturating_add(header), Expiry::Close(Closed::Head));
                }
                // Answers waiting on the client must move: HTTP/2 sends
                // nothing to a peer whose window is shut, so no write blocks.
                if let Some(since) = self.connection.waiting_on_client() {
                    return (since.saturating_add(ms(self.deadlines.idle)), Expiry::Close(Closed::Send));
                }
            }
        }
        let idle = ms(self.deadlines.idle);
        if in_flight == 0 {
            (self.connection.idle_since().saturating_add(idle), Expiry::Idle)
        } else {
            (now.saturating_add(idle), Expiry::Recheck)
        }
    }

    /// A read has to wait: under which deadline, and is it past?
    fn wait_read(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        loop {
            let now = now_ms();
            let (at, expiry) = self.read_deadline(now);
            if now >= at {
                match expiry {
                    Expiry::Close(why) => {
                        self.connection.metrics().closed(why);
                        return Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, why.as_str())));
                    }
                    Expiry::Idle => {
                        self.connection.tell_idle();
                        return Poll::Pending;
                    }
                    Expiry::Recheck => {}
                }
            }
            if arm(&mut self.read_timer, at, cx).is_pending() {
                return Poll::Pending;
            }
        }
    }

    /// A write has to wait: the client is not reading. Past `idle`, fail it.
    fn wait_write<T>(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<T>> {
        let since = *self.write_stalled_since.get_or_insert_with(now_ms);
        let at = since.saturating_add(ms(self.deadlines.idle));
        loop {
            if now_ms() >= at {
                self.connection.metrics().closed(Closed::Send);
                return Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, Closed::Send.as_str())));
            }
            if arm(&mut self.write_timer, at, cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

/// Sets `timer` for `at` (made on first use) and polls it; called only
/// while `at` is not reached. A timer still pending for an earlier time is
/// left as it is: it wakes the reader early, who finds the deadline not
/// reached and sets it again then (the idle deadline moves on with every
/// request, and resetting the timer each time would take it out of tokio's
/// timer wheel and put it back, request after request). A timer that has
/// fired is always set again, even for the same `at` (the coarse clock may
/// trail by more than the tick `instant_at` allows for): so it is never
/// `Ready` twice in a row, and a waiting read cannot spin.
fn arm(timer: &mut Option<(Pin<Box<tokio::time::Sleep>>, u64)>, at: u64, cx: &mut Context<'_>) -> Poll<()> {
    match timer {
        Some((sleep, armed)) => {
            if sleep.is_elapsed() || *armed > at {
                sleep.as_mut().reset(instant_at(at));
                *armed = at;
            }
        }
        None => *timer = Some((Box::pin(tokio::time::sleep_until(instant_at(at))), at)),
    }
    let (sleep, _) = timer.as_mut().expect("armed above");
    sleep.as_mut().poll(cx)
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.saw(&buf.filled()[before..]);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.wait_read(cx),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write(cx, buf) {
            Poll::Pending => this.wait_write(cx),
            ready => {
                this.write_stalled_since = None;
                ready
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.wait_write(cx),
            ready => {
                this.write_stalled_since = None;
                ready
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The coarse clock may trail a fired timer by more than the tick
    /// `instant_at` allows for: the timer is then set again, not found
    /// `Ready` again (a read waiting under it would spin, holding its thread).
    #[tokio::test]
    async fn a_timer_that_fired_short_of_its_deadline_is_set_again() {
        let at = now_ms() + 60_000;
        let mut timer = Some((Box::pin(tokio::time::sleep_until(tokio::time::Instant::now())), at));
        std::future::poll_fn(|cx| timer.as_mut().expect("set").0.as_mut().poll(cx)).await;
        let again = std::future::poll_fn(|cx| Poll::Ready(arm(&mut timer, at, cx))).await;
        assert!(again.is_pending(), "a fired timer was Ready again for a deadline a minute away");
    }

    fn frame(kind: u8, flags: u8, payload: usize) -> Vec<u8> {
        let mut f = vec![(payload >> 16) as u8, (payload >> 8) as u8, payload as u8, kind, flags, 0, 0, 0, 1];
        f.resize(H2_FRAME_HEADER + payload, 0xaa);
        f
    }

    #[test]
    fn header_blocks_are_followed_across_any_split() {
        let mut stream = frame(0x4, 0, 6); // SETTINGS
        let block_begins = stream.len() + H2_FRAME_HEADER; // once the HEADERS frame's header is in
        stream.extend(frame(H2_HEADERS, 0, 5));
        stream.extend(frame(H2_CONTINUATION, 0, 3));
        stream.extend(frame(H2_CONTINUATION, H2_END_HEADERS, 4));
        let block_ends = stream.len(); // once its last payload byte is in
        stream.extend(frame(0x6, 0, 8)); // PING
        stream.extend(frame(H2_HEADERS, H2_END_HEADERS, 0)); // a whole empty block
        for split in 1..=stream.len() {
            let mut frames = H2Frames::default();
            let mut end = 0;
            for chunk in stream.chunks(split) {
                frames.feed(chunk);
                end += chunk.len();
                let pending = (block_begins..block_ends).contains(&end);
                assert_eq!(frames.head_since.is_some(), pending, "split {split}, at {end}");
            }
        }
    }
}
