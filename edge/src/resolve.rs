//! The resolve rules (`docs/resolve.md`): host + path to a [`Resolution`].

use core::fmt;

use crate::filter::{KeyHash, StateFilter};
use crate::format::{KEY_LABEL_SEPARATOR, KEY_WILDCARD};
use crate::fst::Fst;
use crate::host::HostName;
use crate::layer::Layer;
use crate::path::{self, Decoded};
use crate::snapshot::{Route, Scheme, Snapshot};
use crate::table::Record;

/// Why a request is a `bad_request`: the rule-1 host checks and the rule-4
/// path checks, in the order they are applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    HostBadPort,
    HostEmpty,
    HostTooLong,
    HostBadChar,
    HostBadLabel,
    PathNotAbsolute,
    PathBadEscape,
    PathBadChar,
    PathDotSegment,
    PathEmptySegment,
}

impl Reason {
    /// Every reason, in check order.
    pub const ALL: [Reason; 10] = [
        Reason::HostBadPort,
        Reason::HostEmpty,
        Reason::HostTooLong,
        Reason::HostBadChar,
        Reason::HostBadLabel,
        Reason::PathNotAbsolute,
        Reason::PathBadEscape,
        Reason::PathBadChar,
        Reason::PathDotSegment,
        Reason::PathEmptySegment,
    ];

    /// The code used in JSON answers, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::HostBadPort => "host_bad_port",
            Reason::HostEmpty => "host_empty",
            Reason::HostTooLong => "host_too_long",
            Reason::HostBadChar => "host_bad_char",
            Reason::HostBadLabel => "host_bad_label",
            Reason::PathNotAbsolute => "path_not_absolute",
            Reason::PathBadEscape => "path_bad_escape",
            Reason::PathBadChar => "path_bad_char",
            Reason::PathDotSegment => "path_dot_segment",
            Reason::PathEmptySegment => "path_empty_segment",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer for one request. `'s` borrows from the snapshot, `'r` from the
/// request; building one allocates nothing, and the strings that exist only
/// in pieces (a key made from the request path, a redirect location) are
/// rendered on demand through [`fmt::Display`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution<'s, 'r> {
    /// Serve `key` from `bucket` with `status` (200, or 404 for a site's 404.html).
    Static {
        domain: Domain<'r>,
        bucket: &'s str,
        key: Key<'s, 'r>,
        status: u16,
        /// For sites without an Assets list, whose bucket decides whether
        /// `key` exists: the Fallback to serve (200) when it does not.
        fallback: Option<Key<'s, 'r>>,
        /// The site's own not-found page, served with 404 when the bucket
        /// has neither `key` nor the Fallback: `404.html` of the site, if
        /// its Assets list holds one (or, without a list, always: the
        /// bucket decides). `None` when the answer is that page already.
        not_found_page: Option<Key<'s, 'r>>,
    },
    /// Answer with a redirect (301) to `location`.
    Redirect { domain: Domain<'r>, location: Location<'r>, status: u16 },
    /// Proxy to a load balancer or a direct origin.
    Balancer { domain: Domain<'r>, origin: &'s str, port: u16, scheme: Scheme },
    /// No table entry matches the host, or the site has no such page.
    NotFound,
    /// The host or path breaks a rule.
    BadRequest(Reason),
}

impl Resolution<'_, '_> {
    /// `static`, `redirect`, `balancer`, `not_found` or `bad_request`.
    pub fn kind(&self) -> &'static str {
        match self {
            Resolution::Static { .. } => "static",
            Resolution::Redirect { .. } => "redirect",
            Resolution::Balancer { .. } => "balancer",
            Resolution::NotFound => "not_found",
            Resolution::BadRequest(_) => "bad_request",
        }
    }

    /// The table entry that matched, if any.
    pub fn domain(&self) -> Option<Domain<'_>> {
        match *self {
            Resolution::Static { domain, .. }
            | Resolution::Redirect { domain, .. }
            | Resolution::Balancer { domain, .. } => Some(domain),
            _ => None,
        }
    }
}

/// The readable one-line form (`edgeroute resolve` without `--json`); a
/// static answer without an Assets list adds a second line for its Fallback.
impl fmt::Display for Resolution<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resolution::Static { domain, bucket, key, status, fallback, not_found_page } => {
                write!(f, "static   {status}  s3://{bucket}/{key}   (entry {domain})")?;
                if let Some(fb) = fallback {
                    write!(f, "\n         if the bucket has no such object: s3://{bucket}/{fb}")?;
                }
                if let Some(page) = not_found_page {
                    write!(f, "\n         if it has neither: 404 with s3://{bucket}/{page}")?;
                }
                Ok(())
            }
            Resolution::Redirect { domain, location, status } => {
                write!(f, "redirect {status}  Location: {location}   (entry {domain})")
            }
            Resolution::Balancer { domain, origin, port, scheme } => {
                write!(f, "balancer {}://{origin}:{port}   (entry {domain})", scheme.as_str())
            }
            Resolution::NotFound => f.write_str("not found"),
            Resolution::BadRequest(reason) => write!(f, "bad request: {reason}"),
        }
    }
}

/// The Domain of the matched entry, as stored: the request's host for an
/// exact entry, `*.` + the matched suffix for a wildcard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Domain<'r> {
    name: HostName<'r>,
    wildcard: bool,
}

impl<'r> Domain<'r> {
    /// Parses a Domain as stored (`api.example.com`, `*.example.com`), e.g.
    /// from an answer computed elsewhere. `None` unless it is normalized.
    pub fn from_stored(domain: &'r str) -> Option<Domain<'r>> {
        let (wildcard, name) = match domain.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, domain),
        };
        let parsed = HostName::parse(name.as_bytes()).ok()?;
        let normalized = parsed.len() == name.len() && !name.bytes().any(|b| b.is_ascii_uppercase());
        normalized.then_some(Domain { name: parsed, wildcard })
    }

    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// The Domain's bytes (lowercase ASCII).
    pub fn bytes(&self) -> impl Iterator<Item = u8> + '_ {
        let star: &[u8] = if self.wildcard { b"*." } else { b"" };
        star.iter().copied().chain(self.name.bytes())
    }

    /// Copies the Domain's bytes to the start of `out` in bulk and returns
    /// how many; `None` if `out` is too short. The fast form of
    /// [`bytes`](Self::bytes), for hosts that hand answers on in a buffer.
    pub fn copy_to(&self, out: &mut [u8]) -> Option<usize> {
        let star: &[u8] = if self.wildcard { b"*." } else { b"" };
        let raw = self.name.raw();
        let len = star.len() + raw.len();
        let dst = out.get_mut(..len)?;
        dst[..star.len()].copy_from_slice(star);
        dst[star.len()..].copy_from_slice(raw);
        dst.make_ascii_lowercase();
        Some(len)
    }
}

impl fmt::Display for Domain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wildcard {
            f.write_str("*.")?;
        }
        fmt::Display::fmt(&self.name, f)
    }
}

impl PartialEq<str> for Domain<'_> {
    fn eq(&self, other: &str) -> bool {
        self.bytes().eq(other.bytes())
    }
}

/// An object key: the site's prefix, `/`, then a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key<'s, 'r> {
    prefix: &'s str,
    name: KeyName<'s, 'r>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyName<'s, 'r> {
    /// A key stored in the snapshot (an asset, the Fallback, `404.html`).
    Stored(&'s str),
    /// The request path without its leading `/` (still escaped), then
    /// `index.html` when it is empty or ends in `/`.
    Request { path: &'r [u8], index: bool },
}

impl<'s> Key<'s, '_> {
    /// A whole key, e.g. from an answer computed elsewhere.
    pub fn whole(key: &'s str) -> Self {
        Key { prefix: "", name: KeyName::Stored(key) }
    }
}

impl Key<'_, '_> {
    /// Copies the key's bytes, decoded, to the start of `out` in bulk and
    /// returns how many; `None` if `out` is too short. The fast form of
    /// [`bytes`](Self::bytes), for hosts that hand answers on in a buffer.
    pub fn copy_to(&self, out: &mut [u8]) -> Option<usize> {
        let mut at = 0usize;
        let mut put = |bytes: &[u8]| -> Option<()> {
            out.get_mut(at..at.checked_add(bytes.len())?)?.copy_from_slice(bytes);
            at += bytes.len();
            Some(())
        };
        put(self.prefix.as_bytes())?;
        if !self.prefix.is_empty() {
            put(b"/")?;
        }
        match self.name {
            KeyName::Stored(s) => put(s.as_bytes())?,
            KeyName::Request { path, index } => {
                // Runs without escapes are copied whole.
                let mut rest = path;
                while !rest.is_empty() {
                    let plain = rest.iter().position(|&b| b == b'%').unwrap_or(rest.len());
                    put(&rest[..plain])?;
                    rest = &rest[plain..];
                    // At a `%`: an escape if two hex digits follow (as in
                    // `Decoded`), else a literal `%`.
                    if let [_, h, l, ref after @ ..] = *rest {
                        if let (Some(h), Some(l)) = (path::hex(h), path::hex(l)) {
                            put(&[h << 4 | l])?;
                            rest = after;
                            continue;
                        }
                    }
                    if let [_, ref after @ ..] = *rest {
                        put(b"%")?;
                        rest = after;
                    }
                }
                if index {
                    put(b"index.html")?;
                }
            }
        }
        Some(at)
    }

    /// The key's bytes, decoded.
    pub fn bytes(&self) -> impl Iterator<Item = u8> + '_ {
        let sep: &[u8] = if self.prefix.is_empty() { b"" } else { b"/" };
        let (stored, path, index): (&[u8], &[u8], &[u8]) = match self.name {
            KeyName::Stored(s) => (s.as_bytes(), b"", b""),
            KeyName::Request { path, index } => (b"", path, if index { b"index.html" } else { b"" }),
        };
        self.prefix
            .bytes()
            .chain(sep.iter().copied())
            .chain(stored.iter().copied())
            .chain(Decoded::new(path))
            .chain(index.iter().copied())
    }
}

impl fmt::Display for Key<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.prefix)?;
        if !self.prefix.is_empty() {
            f.write_str("/")?;
        }
        match self.name {
            KeyName::Stored(s) => f.write_str(s),
            KeyName::Request { path, index } => {
                path::write_decoded(f, path)?;
                if index {
                    f.write_str("index.html")?;
                }
                Ok(())
            }
        }
    }
}

impl PartialEq<str> for Key<'_, '_> {
    fn eq(&self, other: &str) -> bool {
        self.bytes().eq(other.bytes())
    }
}

/// A redirect target: the request path + `/`, then the query if there was one.
/// Rendered as URL-safe ASCII (anything else percent-encoded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location<'r> {
    inner: LocationInner<'r>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LocationInner<'r> {
    Parts {
        path: &'r [u8],
        query: Option<&'r [u8]>,
    },
    /// Already rendered (decoded from an answer computed elsewhere).
    Rendered(&'r str),
}

impl<'r> Location<'r> {
    /// A location rendered already, e.g. by the WebAssembly module.
    pub fn rendered(location: &'r str) -> Location<'r> {
        Location { inner: LocationInner::Rendered(location) }
    }
}

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.inner {
            LocationInner::Rendered(s) => f.write_str(s),
            LocationInner::Parts { path, query } => {
                path::write_url_bytes(f, path)?;
                f.write_str("/")?;
                if let Some(q) = query {
                    f.write_str("?")?;
                    path::write_url_bytes(f, q)?;
                }
                Ok(())
            }
        }
    }
}

/// Watches a resolve step by step, for `edgeroute resolve --explain`.
/// Every method defaults to doing nothing; [`NoTrace`] compiles away.
pub trait Trace {
    /// Report candidates even after the index walk has proven them absent.
    const EXHAUSTIVE: bool = false;
    /// Rule 1 accepted the host; this is its normalized form.
    fn host(&mut self, _host: HostName<'_>) {}
    /// A table entry was looked up in the index.
    fn entry(&mut self, _domain: Domain<'_>, _route: Option<u32>) {}
    /// A static key name (relative to the prefix) was looked up in Assets.
    fn asset(&mut self, _name: &dyn fmt::Display, _found: bool) {}
}

/// The [`Trace`] that records nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoTrace;

impl Trace for NoTrace {}

/// Displays decoded path bytes (plus a suffix) for tracing.
struct AssetName<'a> {
    path: &'a [u8],
    suffix: &'a str,
}

impl fmt::Display for AssetName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        path::write_decoded(f, self.path)?;
        f.write_str(self.suffix)
    }
}

/// A stack of layers on a base, oldest first, as a state holds them:
/// a slice of [`Layer`]s, or of `Option<Layer>`s for holders with a
/// fixed table (the WebAssembly module), where `None` ends the stack.
pub trait Layers {
    type Data: AsRef<[u8]>;
    /// How many layers.
    fn count(&self) -> usize;
    /// Layer `i`, from 0 (the oldest).
    fn layer(&self, i: usize) -> Option<&Layer<Self::Data>>;
    /// A filter over every layer's keys, if the holder keeps one: see
    /// [`FilteredLayers`].
    fn state_filter(&self) -> Option<&StateFilter> {
        None
    }
}

/// Layers with a [`StateFilter`] their holder built from exactly these
/// layers (each [`StateFilter::add`]ed): a lookup that it rules out skips
/// them all at once. A filter that misses a layer's key would hide it.
#[derive(Clone, Copy, Debug)]
pub struct FilteredLayers<'a, L: ?Sized> {
    pub layers: &'a L,
    pub filter: &'a StateFilter,
}

impl<L: Layers + ?Sized> Layers for FilteredLayers<'_, L> {
    type Data = L::Data;
    #[inline]
    fn count(&self) -> usize {
        self.layers.count()
    }
    #[inline]
    fn layer(&self, i: usize) -> Option<&Layer<L::Data>> {
        self.layers.layer(i)
    }
    #[inline]
    fn state_filter(&self) -> Option<&StateFilter> {
        Some(self.filter)
    }
}

impl<D: AsRef<[u8]>> Layers for [Layer<D>] {
    type Data = D;
    fn count(&self) -> usize {
        self.len()
    }
    fn layer(&self, i: usize) -> Option<&Layer<D>> {
        self.get(i)
    }
}

impl<D: AsRef<[u8]>> Layers for [Option<Layer<D>>] {
    type Data = D;
    fn count(&self) -> usize {
        self.iter().take_while(|l| l.is_some()).count()
    }
    fn layer(&self, i: usize) -> Option<&Layer<D>> {
        self.get(i)?.as_ref()
    }
}

/// One of rule 2's candidates for a host: the exact host (`rank` 0), or
/// the wildcard over the suffix that starts at label `rank` (1 for the
/// longest suffix), at byte `start` of the host. Candidates are tried in
/// ascending rank.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    rank: u32,
    start: usize,
}

impl Candidate {
    fn domain<'r>(self, host: HostName<'r>) -> Domain<'r> {
        Domain { name: host.suffix(self.start), wildcard: self.rank != 0 }
    }
}

/// Walks `fst` down `host` once and calls `hit(candidate, output)` for
/// each candidate the index holds, in the order the walk finds them:
/// wildcards from the shortest suffix to the longest, then the exact
/// host. Labels are fed right to left; after each complete label that is
/// not the host's first, `.*` is tried. The walk stops where the index
/// has no path (unless `T::EXHAUSTIVE`, which reports every candidate to
/// `trace`).
#[inline]
fn walk_candidates<T: Trace>(fst: Fst<'_>, host: HostName<'_>, trace: &mut T, mut hit: impl FnMut(Candidate, u64)) {
    let raw = host.raw();
    let mut node = fst.root_addr();
    let mut out = 0u64;
    let mut end = raw.len();
    let mut walking = true;
    // The label index (from the left) of the label being walked.
    let mut label = raw.iter().filter(|&&b| b == b'.').count() as u32;
    loop {
        let start = raw[..end].iter().rposition(|&b| b == b'.').map_or(0, |dot| dot + 1);
        if walking {
            for &b in &raw[start..end] {
                match fst.step_addr(node, b.to_ascii_lowercase()) {
                    Some((o, next)) => {
                        out = out.wrapping_add(o);
                        node = next;
                    }
                    None => {
                        walking = false;
                        break;
                    }
                }
            }
        }
        if start == 0 {
            let exact = if walking { fst.accept(node).map(|f| out.wrapping_add(f)) } else { None };
            let candidate = Candidate { rank: 0, start: 0 };
            trace.entry(candidate.domain(host), exact.and_then(|id| u32::try_from(id).ok()));
            if let Some(id) = exact {
                hit(candidate, id);
            }
            return;
        }
        // Another label follows: try `.*` below the suffix walked so far.
        let candidate = Candidate { rank: label, start };
        let mut wildcard = None;
        if walking {
            match fst.step_addr(node, KEY_LABEL_SEPARATOR) {
                Some((o, dot)) => {
                    out = out.wrapping_add(o);
                    node = dot;
                    if let Some((o, star)) = fst.step_addr(node, KEY_WILDCARD) {
                        if let Some(f) = fst.accept(star) {
                            let id = out.wrapping_add(o).wrapping_add(f);
                            wildcard = Some(id);
                            hit(candidate, id);
                        }
                    }
                }
                None => walking = false,
            }
        }
        if walking || T::EXHAUSTIVE {
            trace.entry(candidate.domain(host), wildcard.and_then(|id| u32::try_from(id).ok()));
        }
        if !walking && !T::EXHAUSTIVE {
            return;
        }
        end = start - 1;
        label = label.saturating_sub(1);
    }
}

/// Candidates whose key is hashed for the layers' filters: ranks below
/// this. A candidate of a higher rank (a host of more labels, which no
/// real name has) is never ruled out by a filter: every layer that could
/// hold it is walked. A small array keeps the lookup's stack small.
const HASHED_RANKS: usize = 16;

/// A set of candidate ranks (0 to 126: a host has at most 127 labels), in
/// two words: WebAssembly has no 128-bit shifts, and a `u128` shift there
/// is a call into the compiler's runtime, a few of which per lookup cost
/// more than the layers' filters save.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ranks {
    lo: u64,
    hi: u64,
}

impl Ranks {
    const NONE: Ranks = Ranks { lo: 0, hi: 0 };
    const ALL: Ranks = Ranks { lo: u64::MAX, hi: u64::MAX };

    /// Just `rank`.
    #[inline]
    fn one(rank: u32) -> Ranks {
        match rank {
            0..64 => Ranks { lo: 1 << rank, hi: 0 },
            _ => Ranks { lo: 0, hi: 1u64.checked_shl(rank - 64).unwrap_or(0) },
        }
    }

    /// Every rank below `rank`.
    #[inline]
    fn below(rank: u32) -> Ranks {
        match rank {
            0..64 => Ranks { lo: (1 << rank) - 1, hi: 0 },
            _ => Ranks { lo: u64::MAX, hi: 1u64.checked_shl(rank - 64).map_or(u64::MAX, |bit| bit - 1) },
        }
    }

    #[inline]
    fn and(self, other: Ranks) -> Ranks {
        Ranks { lo: self.lo & other.lo, hi: self.hi & other.hi }
    }

    #[inline]
    fn without(self, other: Ranks) -> Ranks {
        Ranks { lo: self.lo & !other.lo, hi: self.hi & !other.hi }
    }

    #[inline]
    fn with(self, other: Ranks) -> Ranks {
        Ranks { lo: self.lo | other.lo, hi: self.hi | other.hi }
    }

    #[inline]
    fn holds(self, rank: u32) -> bool {
        self.and(Ranks::one(rank)) != Ranks::NONE
    }

    /// Whether every rank of `other` is in this set.
    #[inline]
    fn covers(self, other: Ranks) -> bool {
        self.and(other) == other
    }
}

/// A host's candidates for the layers' filters: the same as
/// [`walk_candidates`]'s, hashed once per request rather than once per
/// layer.
struct CandidateHashes {
    /// The filter hash ([`key_hash`](crate::key_hash)) of the key of the
    /// candidate of each rank below [`HASHED_RANKS`] (that the host has).
    hashes: [u64; HASHED_RANKS],
    /// The ranks the host has.
    all: Ranks,
}

impl CandidateHashes {
    /// Whether a filter (`may_contain`) may hold any candidate of `open`:
    /// a rank not hashed always may.
    #[inline]
    fn may_be_in(&self, may_contain: impl Fn(u64) -> bool, open: Ranks) -> bool {
        if open.hi != 0 || open.lo >> HASHED_RANKS != 0 {
            return true;
        }
        let mut open = open.lo;
        while open != 0 {
            let rank = open.trailing_zeros() as usize;
            open &= open - 1;
            if self.hashes.get(rank).is_none_or(|&h| may_contain(h)) {
                return true;
            }
        }
        false
    }
}

#[inline]
fn candidate_hashes(host: HostName<'_>) -> CandidateHashes {
    let raw = host.raw();
    let mut hashes = [0u64; HASHED_RANKS];
    let mut hash = KeyHash::START;
    let mut end = raw.len();
    // A host has at most 127 labels (253 bytes), so every rank fits.
    let labels = raw.iter().filter(|&&b| b == b'.').count() as u32 + 1;
    let mut label = labels as usize - 1;
    loop {
        let start = raw[..end].iter().rposition(|&b| b == b'.').map_or(0, |dot| dot + 1);
        hash = hash.with(&raw[start..end]);
        let (rank, key) = if start == 0 { (0, hash) } else { (label, hash.with(&[KEY_WILDCARD])) };
        if let Some(slot) = hashes.get_mut(rank) {
            *slot = key.finish();
        }
        if start == 0 {
            // Ranks 0 (the host) to its label count - 1 (the shortest suffix's wildcard).
            return CandidateHashes { hashes, all: Ranks::below(labels) };
        }
        end = start - 1;
        label = label.saturating_sub(1);
    }
}

impl<D: AsRef<[u8]>> Snapshot<D> {
    /// Resolves a request: `host` is the `Host` header value, `target` the
    /// request target (path, optionally `?query` and `#fragment`).
    ///
    /// Allocates nothing and never panics.
    #[inline]
    pub fn resolve<'s, 'r>(&'s self, host: &'r [u8], target: &'r [u8]) -> Resolution<'s, 'r> {
        self.resolve_traced(host, target, &mut NoTrace)
    }

    /// [`resolve`](Self::resolve), reporting each step to `trace`.
    pub fn resolve_traced<'s, 'r, T: Trace>(
        &'s self,
        host: &'r [u8],
        target: &'r [u8],
        trace: &mut T,
    ) -> Resolution<'s, 'r> {
        let host = match HostName::parse(host) {
            Ok(h) => h,
            Err(reason) => return Resolution::BadRequest(reason),
        };
        trace.host(host);
        // The last candidate the walk finds is the first in rank: the
        // exact host, else the longest wildcard.
        let mut best = None;
        walk_candidates(self.fst(), host, trace, |candidate, id| best = Some((candidate, id)));
        let Some((candidate, id)) = best else { return Resolution::NotFound };
        match u32::try_from(id).ok().and_then(|id| self.route_at(id)) {
            Some(route) => answer(route, candidate.domain(host), target, trace),
            // Unreachable after validation: every output is a valid record.
            None => Resolution::NotFound,
        }
    }

    /// Resolves a request against the state made of this snapshot (the
    /// base) and `layers` on it, oldest first, by the rule of
    /// `docs/resolve.md` ("Layers"): for each candidate in rank order
    /// (the exact host, then each wildcard, longest suffix first), the
    /// newest layer that holds its key decides: a route matches, a
    /// tombstone moves on to the next candidate; a candidate that no layer
    /// holds falls to the base. The answer is the one a full compile of
    /// the resulting table gives.
    ///
    /// Newest first: a layer whose filter holds none of the candidates
    /// still open is skipped, any other's index is walked once, then the
    /// base's, stopping as soon as no older table can change the answer.
    /// Allocates nothing and never panics.
    pub fn resolve_layered<'s, 'r, L: Layers + ?Sized>(
        &'s self,
        layers: &'s L,
        host: &'r [u8],
        target: &'r [u8],
    ) -> Resolution<'s, 'r> {
        let host = match HostName::parse(host) {
            Ok(h) => h,
            Err(reason) => return Resolution::BadRequest(reason),
        };
        // Candidates whose key a newer table held (decided), and the
        // lowest-ranked route found so far.
        let mut decided = Ranks::NONE;
        let mut best: Option<(Candidate, Route<'s>)> = None;
        let settled = |decided: Ranks, best: &Option<(Candidate, Route<'s>)>| match best {
            // Every candidate ranked before the best one is decided already.
            Some((c, _)) => decided.covers(Ranks::below(c.rank)),
            None => false,
        };
        // Counted once (a fixed table counts its entries), hashed once for
        // all layers, and only when there are layers.
        let count = layers.count();
        let candidates = if count > 0 { Some(candidate_hashes(host)) } else { None };
        // A holder's filter over every layer: no candidate in any, no layer walked.
        let count = match (&candidates, layers.state_filter()) {
            (Some(c), Some(filter)) if !c.may_be_in(|h| filter.may_contain(h), c.all) => 0,
            _ => count,
        };
        for i in (0..count).rev() {
            let Some(layer) = layers.layer(i) else { continue };
            // Ranks that could still change the answer: not decided by a
            // newer layer, and before the best route found so far.
            let below_best = best.as_ref().map_or(Ranks::ALL, |(b, _)| Ranks::below(b.rank));
            if let Some(c) = &candidates {
                if !c.may_be_in(|h| layer.may_contain(h), c.all.without(decided).and(below_best)) {
                    continue;
                }
            }
            walk_candidates(layer.fst(), host, &mut NoTrace, |candidate, id| {
                if decided.holds(candidate.rank) {
                    return;
                }
                decided = decided.with(Ranks::one(candidate.rank));
                if best.as_ref().is_some_and(|(b, _)| b.rank < candidate.rank) {
                    return;
                }
                if let Some(Record::Route(route)) = u32::try_from(id).ok().and_then(|id| layer.record_at(id)) {
                    best = Some((candidate, route));
                }
            });
            if settled(decided, &best) {
                break;
            }
        }
        if !settled(decided, &best) {
            // The walk finds candidates in falling rank, so the last one
            // that no layer decided and that ranks before the layers' best
            // is the answer: its record alone is read (each read of a
            // record of a large base is a cache miss).
            let mut found = None;
            walk_candidates(self.fst(), host, &mut NoTrace, |candidate, id| {
                if !decided.holds(candidate.rank) && best.as_ref().is_none_or(|(b, _)| candidate.rank < b.rank) {
                    found = Some((candidate, id));
                }
            });
            if let Some(route) = found.and_then(|(c, id)| Some((c, self.route_at(u32::try_from(id).ok()?)?))) {
                best = Some(route);
            }
        }
        match best {
            Some((candidate, route)) => answer(route, candidate.domain(host), target, &mut NoTrace),
            None => Resolution::NotFound,
        }
    }
}

/// Rules 3 and 4: the answer of the entry `domain` matched, with `route`.
#[inline]
fn answer<'s, 'r, T: Trace>(
    route: Route<'s>,
    domain: Domain<'r>,
    target: &'r [u8],
    trace: &mut T,
) -> Resolution<'s, 'r> {
    let site = match route {
        Route::Balancer(o) => {
            return Resolution::Balancer { domain, origin: o.host, port: o.port, scheme: o.scheme };
        }
        Route::Static(site) => site,
    };
    let (path, query) = path::split_target(target);
    if let Err(reason) = path::check(path) {
        return Resolution::BadRequest(reason);
    }
    // `check` guarantees the leading `/`.
    let p = path.get(1..).unwrap_or_default();
    let index = p.is_empty() || p.ends_with(b"/");
    let key = |name| Key { prefix: site.prefix, name };
    const NOT_FOUND_PAGE: &str = "404.html";
    let Some(assets) = site.assets else {
        // The bucket decides; the Fallback and the site's 404.html travel
        // along for when it has no such object.
        let is_page = !index && Decoded::new(p).eq(NOT_FOUND_PAGE.bytes());
        return Resolution::Static {
            domain,
            bucket: site.bucket,
            key: key(KeyName::Request { path: p, index }),
            status: 200,
            fallback: site.fallback.map(|f| key(KeyName::Stored(f))),
            not_found_page: (!is_page).then(|| key(KeyName::Stored(NOT_FOUND_PAGE))),
        };
    };
    let page = assets.find(NOT_FOUND_PAGE.bytes());
    let serve = |name: &'s str, status| Resolution::Static {
        domain,
        bucket: site.bucket,
        key: key(KeyName::Stored(name)),
        status,
        fallback: None,
        // Should the bucket lack a listed object: the site's page, unless that is the answer.
        not_found_page: page.filter(|&p| status == 200 && p != name).map(|p| key(KeyName::Stored(p))),
    };
    let suffix = if index { "index.html" } else { "" };
    let found = assets.find(Decoded::new(p).chain(suffix.bytes()));
    trace.asset(&AssetName { path: p, suffix }, found.is_some());
    if let Some(asset) = found {
        return serve(asset, 200);
    }
    if !index {
        let dir = assets.find(Decoded::new(p).chain(*b"/index.html"));
        trace.asset(&AssetName { path: p, suffix: "/index.html" }, dir.is_some());
        if dir.is_some() {
            return Resolution::Redirect {
                domain,
                location: Location { inner: LocationInner::Parts { path, query } },
                status: 301,
            };
        }
    }
    if let Some(fallback) = site.fallback {
        trace.asset(&fallback, true);
        return serve(fallback, 200);
    }
    trace.asset(&NOT_FOUND_PAGE, page.is_some());
    match page {
        Some(page) => serve(page, 404),
        None => Resolution::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    /// Records the key of every candidate an exhaustive walk tries.
    struct Candidates(Vec<String>);

    impl Trace for Candidates {
        const EXHAUSTIVE: bool = true;
        fn entry(&mut self, domain: Domain<'_>, _route: Option<u32>) {
            let name: String = domain.name.bytes().map(char::from).collect();
            let mut key: Vec<&str> = name.split('.').rev().collect();
            if domain.wildcard {
                key.push("*");
            }
            self.0.push(key.join("."));
        }
    }

    #[test]
    fn rank_sets_hold_every_rank_a_host_can_have() {
        for rank in 0..127u32 {
            let below = Ranks::below(rank);
            assert_eq!(below.lo.count_ones() + below.hi.count_ones(), rank);
            assert!(Ranks::one(rank).holds(rank) && !below.holds(rank) && Ranks::below(rank + 1).holds(rank));
            assert!(Ranks::below(rank + 1).covers(below) && !below.covers(Ranks::one(rank)));
            assert_eq!(Ranks::below(rank + 1).without(below), Ranks::one(rank));
        }
        assert_eq!(Ranks::below(128), Ranks::ALL);
    }

    /// The filter's hashes are the keys' the walk tries, rank by rank, for
    /// hosts of every shape rule 1 accepts: a wrong hash would make the
    /// lookup skip a layer that holds a candidate.
    #[test]
    fn candidate_hashes_are_the_hashes_of_the_keys_the_walk_tries() {
        let deep = ["l"; 127].join(".");
        let hosts: [&[u8]; 9] = [
            b"api.example.com",
            b"API.Example.COM",
            b"svc_1.under_score.example.com.",
            b"localhost",
            b"x.pr-7.example.com:8080",
            b"A-B.0-9.Z_Z",
            b"a.b.c.d.e.f.g.h.i.j.k",
            deep.as_bytes(),
            b"m\xc3",
        ];
        // An index with no path: the exhaustive walk still reports every candidate.
        let fst = Fst::from_parts(&[], 0, 0);
        for raw in hosts {
            let Ok(host) = HostName::parse(raw) else {
                assert_eq!(raw, b"m\xc3", "only the last host is refused");
                continue;
            };
            let mut walked = Candidates(Vec::new());
            walk_candidates(fst, host, &mut walked, |_, _| {});
            let c = candidate_hashes(host);
            assert_eq!((c.all.lo.count_ones() + c.all.hi.count_ones()) as usize, walked.0.len(), "{host}");
            let labels = host.raw().iter().filter(|&&b| b == b'.').count();
            for (i, key) in walked.0.iter().enumerate() {
                // The walk tries wildcards from the shortest suffix, then the host.
                let rank = if i + 1 == walked.0.len() { 0 } else { labels - i };
                assert!(c.all.holds(rank as u32), "{host}: rank {rank} missing");
                if rank < HASHED_RANKS {
                    assert_eq!(c.hashes[rank], crate::filter::key_hash(key.as_bytes()), "{host}: {key} at {rank}");
                }
            }
        }
    }

    #[test]
    fn copy_to_agrees_with_bytes() {
        let paths: [&[u8]; 9] = [b"", b"a/b/", b"%41%42c", b"%25", b"%2", b"%", b"%zz%4", b"x%c3%bc-y", b"caf%C3%A9/"];
        for prefix in ["", "env-1"] {
            for path in paths {
                for index in [false, true] {
                    let key = Key { prefix, name: KeyName::Request { path, index } };
                    let mut out = [0u8; 64];
                    let n = key.copy_to(&mut out).unwrap();
                    assert_eq!(out[..n], key.bytes().collect::<Vec<u8>>(), "{prefix:?} {path:?}");
                    assert_eq!(key.copy_to(&mut out[..n.saturating_sub(1)]), if n == 0 { Some(0) } else { None });
                }
            }
        }
        let host = HostName::parse(b"Api.Example.COM").unwrap();
        for wildcard in [false, true] {
            let d = Domain { name: host, wildcard };
            let mut out = [0u8; 64];
            let n = d.copy_to(&mut out).unwrap();
            assert_eq!(out[..n], d.bytes().collect::<Vec<u8>>());
            assert_eq!(d.copy_to(&mut out[..n - 1]), None);
        }
    }
}
