//! [`Connection`]: one accepted connection's share of the listener, held by
//! the task that serves it, by each of its requests until its answer is
//! sent ([`InRequest`], carried by the answer's body: [`Answer`]), and by a
//! WebSocket tunnel it turns into. Its slot (a permit of
//! `--max-connections`, a count against its client's cap, the connections
//! gauge) is given back when the last of them lets go, so that a tunnel
//! keeps the slot its connection had.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, OwnedSemaphorePermit};

use crate::body::{Body, BoxError};
use crate::metrics::{Closed, Metrics};
use crate::tls::Session;

/// Milliseconds on the coarse monotonic clock (`CLOCK_MONOTONIC_COARSE`:
/// the time of the kernel's last tick, read from the vDSO without the TSC).
/// A connection reads the clock a few times per request, and the precise
/// clock costs several times more in a virtual machine; deadlines are
/// seconds long, and a tick (1 to 10 ms) is nothing beside them. Since the
/// machine started, so never 0 (which stands for "never" where a time is
/// kept in an atomic).
pub(crate) fn now_ms() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    ms_of(now).max(1)
}

/// The whole milliseconds of a time read from the clock.
fn ms_of(time: rustix::time::Timespec) -> u64 {
    let secs = u64::try_from(time.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(time.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1000).saturating_add(nanos / 1_000_000)
}

/// The coarse clock's tick, in milliseconds rounded up (at least 1).
fn tick_ms() -> u64 {
    static TICK: OnceLock<u64> = OnceLock::new();
    *TICK.get_or_init(|| {
        let tick = rustix::time::clock_getres(rustix::time::ClockId::MonotonicCoarse);
        let nanos = u64::try_from(tick.tv_sec).unwrap_or(0).saturating_mul(1_000_000_000)
            + u64::try_from(tick.tv_nsec).unwrap_or(0);
        nanos.div_ceil(1_000_000).max(1)
    })
}

/// The instant of [`now_ms`]'s clock reading `ms`, for a timer: a tick
/// late, so that a timer that fires finds the coarse clock, which trails
/// the precise one by up to a tick, past `ms` already.
pub(crate) fn instant_at(ms: u64) -> tokio::time::Instant {
    let now = now_ms();
    // A day at most: far enough for any deadline, near enough not to overflow.
    let from_now = Duration::from_millis(ms.saturating_sub(now).min(86_400_000) + tick_ms());
    tokio::time::Instant::now() + from_now
}

/// One connection on the public listener.
#[derive(Debug)]
pub struct Connection {
    /// The peer's address.
    pub client: SocketAddr,
    /// The address the client connected to (its port is `X-Forwarded-Port`).
    pub local: SocketAddr,
    /// Whether the peer is a trusted proxy (`--trusted-proxies`).
    pub trusted: bool,
    /// What its TLS handshake agreed on; `None` for plain HTTP.
    pub tls: Option<Session>,
    /// How long a tunnel may carry nothing before it is closed.
    pub idle_timeout: Duration,
    /// Requests whose answer is not sent yet (nor dropped).
    in_flight: AtomicU32,
    /// Request heads read so far.
    heads: AtomicU64,
    /// The client speaks HTTP/2 (set by the socket once it has seen the preface).
    h2: AtomicBool,
    /// HTTP/2 answers waiting on the client: each has handed hyper a piece
    /// that hyper has not taken the next one after (it asks again only once
    /// the client's window has room). An answer waiting on its origin is not
    /// counted (the origin's read timeout bounds it).
    stalled: AtomicU32,
    /// When `stalled` last rose from 0.
    stalled_since: AtomicU64,
    /// When hyper last took a piece of an answer to send: while answers wait
    /// on the client, one must move within the idle timeout, or the client
    /// is one that stopped reading (an HTTP/2 peer keeping its window shut
    /// blocks no write).
    progress: AtomicU64,
    /// When `in_flight` last fell to 0 (on [`now_ms`]'s clock): the idle
    /// timeout counts from there.
    idle_since: AtomicU64,
    /// Told when the connection has been idle too long: its task then
    /// closes it gracefully (an HTTP/2 GOAWAY first).
    pub(crate) idle: Notify,
    /// Whether `idle` has been told (once: the socket's read and the
    /// connection's task may both find the connection idle).
    idle_told: AtomicBool,
    /// True once the host drains: tunnels end then.
    pub(crate) stop: tokio::sync::watch::Receiver<bool>,
    metrics: &'static Metrics,
    _permit: OwnedSemaphorePermit,
    _client_slot: ClientSlot,
}

/// What the listener hands a new [`Connection`].
#[derive(Debug)]
pub struct Admitted {
    pub client: SocketAddr,
    pub local: SocketAddr,
    pub trusted: bool,
    pub tls: Option<Session>,
    pub idle_timeout: Duration,
    pub permit: OwnedSemaphorePermit,
    pub client_slot: ClientSlot,
    pub stop: tokio::sync::watch::Receiver<bool>,
}

impl Connection {
    /// A connection just accepted, counted in the connections gauge until
    /// it is dropped.
    pub fn open(admitted: Admitted, metrics: &'static Metrics) -> Connection {
        metrics.connections.fetch_add(1, Ordering::Relaxed);
        let Admitted { client, local, trusted, tls, idle_timeout, permit, client_slot, stop } = admitted;
        Connection {
            client,
            local,
            trusted,
            tls,
            idle_timeout,
            in_flight: AtomicU32::new(0),
            heads: AtomicU64::new(0),
            h2: AtomicBool::new(false),
            stalled: AtomicU32::new(0),
            stalled_since: AtomicU64::new(0),
            progress: AtomicU64::new(now_ms()),
            idle_since: AtomicU64::new(now_ms()),
            idle: Notify::new(),
            idle_told: AtomicBool::new(false),
            stop,
            metrics,
            _permit: permit,
            _client_slot: client_slot,
        }
    }

    pub(crate) fn metrics(&self) -> &'static Metrics {
        self.metrics
    }

    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    pub(crate) fn heads(&self) -> u64 {
        self.heads.load(Ordering::Acquire)
    }

    pub(crate) fn idle_since(&self) -> u64 {
        self.idle_since.load(Ordering::Acquire)
    }

    /// When the connection is idle too long, on [`now_ms`]'s clock; `None`
    /// while a request is in flight.
    pub(crate) fn idle_deadline(&self) -> Option<u64> {
        let idle = u64::try_from(self.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        (self.in_flight() == 0).then(|| self.idle_since().saturating_add(idle))
    }

    /// Tells the connection's task that it has been idle too long (counted
    /// once, told once).
    pub(crate) fn tell_idle(&self) {
        if !self.idle_told.swap(true, Ordering::AcqRel) {
            self.metrics.closed(Closed::Idle);
            self.idle.notify_one();
        }
    }

    /// Notes that the client speaks HTTP/2.
    pub(crate) fn set_h2(&self) {
        self.h2.store(true, Ordering::Release);
    }

    fn is_h2(&self) -> bool {
        self.h2.load(Ordering::Acquire)
    }

    /// Since when answers have waited on the client with none moving, if
    /// any waits (see `stalled`).
    pub(crate) fn waiting_on_client(&self) -> Option<u64> {
        (self.stalled.load(Ordering::Acquire) > 0)
            .then(|| self.stalled_since.load(Ordering::Acquire).max(self.progress.load(Ordering::Acquire)))
    }

    fn stall(&self) {
        let now = now_ms();
        self.progress.store(now, Ordering::Release);
        if self.stalled.fetch_add(1, Ordering::AcqRel) == 0 {
            // The socket's read waits under a timer set no later than this
            // deadline (`deadlines.rs`): it need not be woken.
            self.stalled_since.store(now, Ordering::Release);
        }
    }

    fn unstall(&self) {
        self.stalled.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.metrics.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One request of a connection, from its head until its answer is sent or
/// dropped: while one is in flight the connection is not idle.
#[derive(Debug)]
pub struct InRequest(Arc<Connection>);

impl InRequest {
    pub fn begin(connection: &Arc<Connection>) -> InRequest {
        connection.heads.fetch_add(1, Ordering::AcqRel);
        InRequest::hold(connection)
    }

    /// Holds the connection busy without a request head: a WebSocket tunnel,
    /// for as long as it lives (its own idle timer bounds it), so that none
    /// of the socket's HTTP deadlines applies to its frames.
    pub fn hold(connection: &Arc<Connection>) -> InRequest {
        connection.in_flight.fetch_add(1, Ordering::AcqRel);
        InRequest(connection.clone())
    }

    /// The connection the request came on.
    pub fn connection(&self) -> &Arc<Connection> {
        &self.0
    }
}

impl Drop for InRequest {
    fn drop(&mut self) {
        let connection = &self.0;
        if connection.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The idle deadline starts: the socket's read waits under a
            // timer set no later than it (`deadlines.rs`).
            connection.idle_since.store(now_ms(), Ordering::Release);
        }
    }
}

/// The largest piece of an answer handed to hyper at once over HTTP/2:
/// hyper asks for the next only once the client's window has room for what
/// it holds, so small pieces keep a slow but steady reader moving.
const H2_PIECE: usize = 16 * 1024;

/// An answer's body, holding its request in flight until it is sent. Over
/// HTTP/2 it notes when it waits on the client (`Connection::stalled`).
#[derive(Debug)]
pub struct Answer {
    body: Body,
    request: InRequest,
    /// What is left of a frame cut into pieces.
    rest: Option<Bytes>,
    /// Counted in the connection's `stalled`.
    stalled: bool,
}

impl Answer {
    pub fn new(body: Body, request: InRequest) -> Answer {
        Answer { body, request, rest: None, stalled: false }
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        if self.stalled {
            self.request.connection().unstall();
        }
    }
}

impl hyper::body::Body for Answer {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        let Answer { body, request, rest, stalled } = &mut *self;
        let connection = request.connection();
        if !connection.is_h2() {
            return Pin::new(body).poll_frame(cx);
        }
        // Asked again: the piece handed before has gone (or has room to).
        if std::mem::take(stalled) {
            connection.unstall();
        }
        let frame = match rest.take() {
            Some(mut left) => {
                if left.len() > H2_PIECE {
                    *rest = Some(left.split_off(H2_PIECE));
                }
                Poll::Ready(Some(Ok(hyper::body::Frame::data(left))))
            }
            None => match Pin::new(body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(mut data) => {
                        if data.len() > H2_PIECE {
                            *rest = Some(data.split_off(H2_PIECE));
                        }
                        Poll::Ready(Some(Ok(hyper::body::Frame::data(data))))
                    }
                    Err(trailers) => Poll::Ready(Some(Ok(trailers))),
                },
                other => other,
            },
        };
        if let Poll::Ready(Some(Ok(_))) = &frame {
            *stalled = true;
            connection.stall();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_none() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        let inner = self.body.size_hint();
        let Some(rest) = &self.rest else { return inner };
        let rest = rest.len() as u64;
        let mut hint = hyper::body::SizeHint::new();
        hint.set_lower(inner.lower() + rest);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + rest);
        }
        hint
    }
}

/// Who a client is, for the per-client cap: its IPv4 address, or its IPv6
/// /64 (one subscriber's prefix; a client owns every address in it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum ClientKey {
    V4(u32),
    V6(u64),
}

impl ClientKey {
    fn of(ip: IpAddr) -> ClientKey {
        match ip.to_canonical() {
            IpAddr::V4(v4) => ClientKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => ClientKey::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

/// The connections each client holds, against `--max-connections-per-client`.
#[derive(Debug)]
pub struct ClientSlots {
    cap: usize,
    held: Mutex<HashMap<ClientKey, usize>>,
}

impl ClientSlots {
    /// Slots of `cap` connections per client; 0: no cap.
    pub fn new(cap: usize) -> Arc<ClientSlots> {
        Arc::new(ClientSlots { cap, held: Mutex::new(HashMap::new()) })
    }

    /// A slot for a connection from `ip`, or `None` when it holds its cap.
    pub fn take(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        if self.cap == 0 {
            return Some(ClientSlot::uncapped());
        }
        let key = ClientKey::of(ip);
        let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = held.entry(key).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(ClientSlot(Some((self.clone(), key))))
    }

    fn give_back(&self, key: ClientKey) {
        let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = held.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                held.remove(&key);
            }
        }
    }
}

/// One connection's count against its client's cap, given back on drop.
#[derive(Debug)]
pub struct ClientSlot(Option<(Arc<ClientSlots>, ClientKey)>);

impl ClientSlot {
    /// A slot that counts against nothing (no cap, or a trusted proxy).
    pub fn uncapped() -> ClientSlot {
        ClientSlot(None)
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if let Some((slots, key)) = self.0.take() {
            slots.give_back(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deadline's timer wakes its task once, finding the coarse clock past
    /// the deadline, not short of it (a wake for nothing, then another). A
    /// machine under load may make the clock trail by more than a tick now
    /// and then: a few extra wakes in all are let pass.
    #[tokio::test]
    async fn a_timer_set_for_a_time_finds_the_clock_past_it() {
        let aheads = [0, 1, 2, 3, 5, 8, 13, 21, 34, 1, 2, 3, 5, 8, 13];
        let mut wakes = 0;
        for ahead in aheads {
            let at = now_ms() + ahead;
            while now_ms() < at {
                tokio::time::sleep_until(instant_at(at)).await;
                wakes += 1;
            }
        }
        assert!(wakes <= aheads.len() + 3, "{wakes} wakes for {} deadlines", aheads.len());
    }

    #[test]
    fn a_client_holds_its_cap_and_gets_slots_back() {
        let slots = ClientSlots::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let (one, two) = (slots.take(a).unwrap(), slots.take(a).unwrap());
        assert!(slots.take(a).is_none());
        assert!(slots.take("192.0.2.2".parse().unwrap()).is_some(), "another client has its own cap");
        drop(one);
        let three = slots.take(a).expect("a slot given back is free again");
        drop((two, three));
        assert!(slots.held.lock().unwrap().is_empty(), "no entry left for a client with no connection");
        // An IPv6 client is its /64; an IPv4 client on a dual-stack socket is its IPv4 address.
        let _x = slots.take("2001:db8:1:2::1".parse().unwrap()).unwrap();
        let _y = slots.take("2001:db8:1:2:ffff::9".parse().unwrap()).unwrap();
        assert!(slots.take("2001:db8:1:2::77".parse().unwrap()).is_none());
        assert!(slots.take("2001:db8:1:3::1".parse().unwrap()).is_some());
        let _v4 = (slots.take(a).unwrap(), slots.take("::ffff:192.0.2.1".parse().unwrap()).unwrap());
        assert!(slots.take(a).is_none());
        let none = ClientSlots::new(0);
        assert!((0..1000).all(|_| none.take(a).is_some_and(|slot| slot.0.is_none())));
    }
}
