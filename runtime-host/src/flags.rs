//! The `edgeroute-host` command line, all of it, and the configured objects
//! its flags become ([`ListenerArgs::limits`], [`OriginArgs::proxy_config`],
//! [`FollowerArgs::poll_interval`]). Nothing else in the binary looks at an
//! argument.
//!
//! One spelling per thing, as in `edgeroute`: a store is `--store STORE`,
//! a snapshot file `--snapshot FILE`. `--snapshots STORE`, the spelling of
//! earlier releases, still parses, hidden from `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
pub use edgeroute_cli::resolve::ResolveArgs;
use edgeroute_host::aws::{AwsSettings, S3Limits};
use edgeroute_host::http::Limits;
use edgeroute_host::plane::HttpsPolicy;
use edgeroute_host::proxy::{default_via_name, ProxyConfig, TlsName};
use edgeroute_host::trust::{Cidr, TrustedProxies};
use edgeroute_store::StoreLocation;

/// What `--help` says about exit statuses, and what `main` returns.
pub const EXIT_STATUS: &str = "\
Exit status:
  0  done (serve and demo: stopped by SIGTERM or Ctrl-C)
  1  failed: the error says what is wrong and what to do
  2  wrong usage (an unknown flag, a missing or malformed value)";

#[derive(Debug, Parser)]
#[command(
    name = "edgeroute-host",
    version,
    about = "The edgeroute data plane: resolve and serve HTTP through the WebAssembly edge module",
    after_help = EXIT_STATUS
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Resolve a request through the WebAssembly module; prints exactly what
    /// `edgeroute resolve` prints for the same input.
    Resolve(ResolveArgs),
    /// Serve HTTP: route every request by its host and path through the
    /// edge module, from a snapshot file or following a store.
    Serve(ServeArgs),
    /// The demo: a built-in upstream on 127.0.0.1:9042 (the demo table's load
    /// balancer) and the router serving the demo snapshot and sites.
    Demo(DemoArgs),
    /// Time lookups through Wasm, the native resolver, fst and a HashMap.
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub routes: RoutesArgs,
    #[command(flatten)]
    pub listener: ListenerArgs,
    #[command(flatten)]
    pub follower: FollowerArgs,
    #[command(flatten)]
    pub origins: OriginArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
}

/// Where the routes come from: one file, or a store to follow.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct RoutesArgs {
    /// Serve this snapshot file.
    #[arg(long, value_name = "FILE")]
    pub snapshot: Option<PathBuf>,
    /// Follow a store (dir:PATH or s3://BUCKET[/PREFIX]) and serve its current snapshot.
    #[arg(long = "store", alias = "snapshots", value_name = "STORE")]
    pub store: Option<StoreLocation>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The demo snapshot (scripts/demo.sh compiles it).
    #[arg(long, value_name = "FILE", default_value = "target/demo/demo.snap")]
    pub snapshot: PathBuf,
    /// Make the demo's requests, check the answers and exit.
    #[arg(long)]
    pub smoke: bool,
    #[command(flatten)]
    pub listener: ListenerArgs,
    #[command(flatten)]
    pub origins: OriginArgs,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The snapshot file.
    #[arg(long, value_name = "FILE")]
    pub snapshot: PathBuf,
    /// One `HOST PATH` per line (see `benches/src/bin/generate.rs`).
    #[arg(long, value_name = "FILE")]
    pub queries: PathBuf,
    /// Wasm worker threads, each resolving every query.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub threads: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The public and admin listeners, and the limits of the public one.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Listeners")]
pub struct ListenerArgs {
    /// The public listener: IP:PORT (127.0.0.1:8080 for this machine only, 0.0.0.0:8080 for every interface).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080", value_parser = listen_address)]
    pub listen: SocketAddr,
    /// `/metrics` and `/health`; never on the public listener, and only on a
    /// loopback address unless --admin-public is given.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9901", value_parser = listen_address)]
    pub admin_listen: SocketAddr,
    /// Allow --admin-listen on an address other machines can reach (its
    /// metrics name every snapshot and count every answer).
    #[arg(long)]
    pub admin_public: bool,
    /// Threads serving requests, each with its own event loop
    /// [default: the CPUs this process may run on]
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Connections served at once (all threads together); more wait in the backlog.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Connections one client address (an IPv6 client's /64) may hold at
    /// once; more are closed as they come. 0: no cap. --trusted-proxies are exempt.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_connections_per_client: usize,
    /// Largest request head (HTTP/1.1) or header list (HTTP/2); larger is a 431.
    #[arg(long, value_name = "BYTES", default_value_t = 65_536)]
    pub max_header_bytes: usize,
    /// How long a new connection may stay silent before it is closed.
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = positive_seconds)]
    pub first_byte_timeout: Duration,
    /// How long a request head (HTTP/1.1) or header block (HTTP/2) may take
    /// from its first byte.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = positive_seconds)]
    pub header_timeout: Duration,
    /// How long a connection may stay without a request in flight (keep-alive,
    /// HTTP/2, a quiet WebSocket), and a client may leave its answer unread.
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = positive_seconds)]
    pub idle_timeout: Duration,
    /// How often an HTTP/2 connection is pinged; one whose peer does not
    /// answer within as long is closed.
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = positive_seconds)]
    pub h2_ping_interval: Duration,
    /// Requests one HTTP/2 connection may have in flight at once.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub h2_max_streams: u32,
    /// On SIGTERM or Ctrl-C, how long to wait for requests in flight.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub drain_seconds: u64,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// The TLS listener, its certificates, and what plain HTTP does beside it.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "TLS")]
pub struct TlsArgs {
    /// Serve https too, on IP:PORT (TLS 1.3 and 1.2, HTTP/2 and HTTP/1.1 by ALPN); needs --tls-certs.
    #[arg(long, value_name = "ADDR", value_parser = listen_address, requires = "tls_certs")]
    pub tls_listen: Option<SocketAddr>,
    /// A PEM file holding a certificate chain and its private key (or with
    /// the key in NAME.key beside it), or a folder of such `.pem` and `.crt`
    /// files (repeatable). Each certificate serves the names it carries;
    /// files are read again when they change.
    #[arg(long, value_name = "PATH", requires = "tls_listen")]
    pub tls_certs: Vec<PathBuf>,
    /// The certificate for a client whose name (SNI) no certificate covers,
    /// or that sends none; without it, such a handshake is refused.
    #[arg(long, value_name = "FILE", requires = "tls_listen")]
    pub tls_default_cert: Option<PathBuf>,
    /// Sessions remembered for clients that come back (a resumed handshake
    /// is cheaper), for all certificates together; 0: no resumption at all.
    #[arg(long, value_name = "N", default_value_t = 4096, requires = "tls_listen")]
    pub tls_sessions: usize,
    /// Answer plain HTTP requests with a 308 to https, on PORT [default: the
    /// --tls-listen port, else 443]. A trusted proxy's request that says
    /// `X-Forwarded-Proto: https` is served.
    #[arg(long, value_name = "PORT", num_args = 0..=1, require_equals = true, default_missing_value = "0")]
    pub redirect_https: Option<u16>,
    /// Serve requests whose Host resolves to another table entry than the
    /// name the client sent in its TLS handshake (else 421 Misdirected Request).
    #[arg(long)]
    pub allow_sni_mismatch: bool,
}

impl TlsArgs {
    /// What the data plane does about https, the TLS listener being on
    /// `tls_port` (if any).
    pub fn https_policy(&self, tls_port: Option<u16>) -> HttpsPolicy {
        HttpsPolicy {
            redirect_to_port: self.redirect_https.map(|port| match port {
                0 => tls_port.unwrap_or(443),
                port => port,
            }),
            sni_must_match: !self.allow_sni_mismatch,
        }
    }
}

impl ListenerArgs {
    /// The limits of the public listener.
    pub fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections,
            max_connections_per_client: self.max_connections_per_client,
            max_header_bytes: self.max_header_bytes,
            drain: Duration::from_secs(self.drain_seconds),
            first_byte_timeout: self.first_byte_timeout,
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            h2_ping_interval: self.h2_ping_interval,
            h2_max_streams: self.h2_max_streams,
        }
    }

    /// Serving threads: as asked, else one per CPU this process may use.
    pub fn threads(&self) -> usize {
        self.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

/// How a followed store is read.
#[derive(Debug, Args)]
#[command(next_help_heading = "Following a store")]
pub struct FollowerArgs {
    /// How often to look at the store's pointer (S3: a conditional GET).
    #[arg(long, value_name = "MS", default_value_t = 250)]
    pub poll_ms: u64,
    /// Where the last good snapshot is kept, for a start without the store
    /// [default: ~/.cache/edgeroute/<store hash>]
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// How long the host may serve another snapshot than the store names
    /// (or fail to read the store) before /health says `degraded` (still 200).
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = seconds)]
    pub max_behind: Duration,
}

impl FollowerArgs {
    /// How long the host may lag its store before `/health` says `degraded`.
    pub fn max_behind(&self) -> Duration {
        self.max_behind
    }

    /// The pause between two looks at the pointer (at least 10 ms).
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_ms.max(10))
    }
}

/// Where answers come from: static sites' objects and proxied origins.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Origins")]
pub struct OriginArgs {
    /// Static sites from this directory (`DIR/BUCKET/KEY`) instead of S3.
    #[arg(long, value_name = "DIR")]
    pub static_root: Option<PathBuf>,
    /// Serve S3's 403 on a static object as a missing one (404 or the
    /// site's fallback), for buckets whose reader may not list them (S3 then
    /// answers 403 for a missing key); else a 403 is a 502, logged and counted.
    #[arg(long)]
    pub s3_403_is_missing: bool,
    /// The name a TLS origin's certificate must carry, also sent as SNI.
    #[arg(long, value_name = "NAME", value_enum, default_value = "origin")]
    pub origin_tls_name: TlsName,
    /// PEM certificates to trust for TLS origins, besides the system's.
    #[arg(long, value_name = "FILE")]
    pub origin_ca: Vec<PathBuf>,
    /// The load balancers or CDNs in front (CIDR or address, repeatable or
    /// comma-separated): their X-Forwarded-*, X-Real-IP and Forwarded headers
    /// are passed on, and they are exempt from --max-connections-per-client.
    /// Everyone else's are replaced.
    #[arg(long, value_name = "CIDR", num_args = 1.., value_delimiter = ',')]
    pub trusted_proxies: Vec<Cidr>,
    /// The name this host adds to a proxied request's Via; a request already
    /// naming it is a loop (508). One name for a fleet behind one load
    /// balancer [default: this machine's host name]
    #[arg(long, value_name = "NAME")]
    pub via_name: Option<String>,
    /// Gone: it trusted every client's X-Forwarded-Proto. Refused, naming
    /// --trusted-proxies.
    #[arg(long, hide = true)]
    pub trust_forwarded_proto: bool,
    /// Idle keep-alive connections to origins kept by the whole host (all
    /// origins, all threads); past it a connection is closed once its answer is done.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_idle_origin_connections: usize,
    /// The longest wait for a connection to an origin.
    #[arg(long, value_name = "MS", default_value_t = 5_000)]
    pub connect_timeout_ms: u64,
    /// The longest wait for an origin's response, and between two reads of its body.
    #[arg(long, value_name = "MS", default_value_t = 60_000)]
    pub read_timeout_ms: u64,
}

impl OriginArgs {
    /// The proxy's settings, with the `--origin-ca` files read.
    pub fn proxy_config(&self) -> anyhow::Result<ProxyConfig> {
        use anyhow::Context as _;
        if self.trust_forwarded_proto {
            anyhow::bail!(
                "--trust-forwarded-proto is gone: it let every client claim https. Name the load balancers in \
                 front instead, --trusted-proxies CIDR… (their X-Forwarded-Proto, X-Forwarded-For and Forwarded \
                 are then passed on; everyone else's are replaced)"
            );
        }
        let mut extra_roots = Vec::new();
        for file in &self.origin_ca {
            extra_roots
                .push(std::fs::read(file).with_context(|| format!("cannot read --origin-ca {}", file.display()))?);
        }
        Ok(ProxyConfig {
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            read_timeout: Duration::from_millis(self.read_timeout_ms),
            tls_name: self.origin_tls_name,
            extra_roots,
            trusted_proxies: TrustedProxies::new(self.trusted_proxies.clone()),
            max_idle_connections: self.max_idle_origin_connections,
            via_name: self.via_name.clone().unwrap_or_else(default_via_name),
            ..ProxyConfig::default()
        })
    }
}

/// Where and as whom the host talks to AWS (a store in S3, static sites in
/// S3), and how long it waits for S3. Looked at only when something is in S3.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "AWS")]
pub struct AwsArgs {
    /// A profile from the AWS config files (else AWS_PROFILE).
    #[arg(long, value_name = "PROFILE")]
    pub profile: Option<String>,
    /// The AWS region (else AWS_REGION, else the profile's).
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// Every AWS request (the store, static sites) to this URL, with
    /// path-style S3 addressing (a local server).
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// The longest wait for a connection to S3.
    #[arg(long, value_name = "MS", default_value_t = 3_000)]
    pub s3_connect_timeout_ms: u64,
    /// The longest wait for the head of S3's answer, from the request's start.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub s3_head_timeout_ms: u64,
    /// Attempts per S3 request (throttling, 5xx and timeouts are tried again).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub s3_attempts: u32,
    /// The longest silence within an S3 body (large objects still stream).
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub s3_body_idle_ms: u64,
}

impl AwsArgs {
    /// The host's AWS settings.
    pub fn settings(&self) -> AwsSettings {
        AwsSettings {
            profile: self.profile.clone(),
            region: self.region.clone(),
            endpoint_url: self.endpoint_url.clone(),
            limits: S3Limits {
                connect: Duration::from_millis(self.s3_connect_timeout_ms),
                head: Duration::from_millis(self.s3_head_timeout_ms),
                attempts: self.s3_attempts.max(1),
                body_idle: Duration::from_millis(self.s3_body_idle_ms),
            },
        }
    }
}

/// A number of seconds, whole or not, zero or more.
fn seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| format!("{text:?} is not a number of seconds (e.g. 60, 2.5)"))
}

/// A timeout: a millisecond at least (deadlines are kept in whole
/// milliseconds, and 0 would close everything), a day at most.
fn positive_seconds(text: &str) -> Result<Duration, String> {
    seconds(text)
        .ok()
        .filter(|d| *d >= Duration::from_millis(1) && *d <= Duration::from_secs(86_400))
        .ok_or_else(|| format!("{text:?} is not a number of seconds from 0.001 to 86400 (e.g. 10, 2.5)"))
}

/// An address to listen on, with a hint for the usual slip: a bare port.
fn listen_address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let port = text.strip_prefix(':').unwrap_or(text);
    if port.parse::<u16>().is_ok() {
        return Err(format!(
            "{text:?} is a port without an address: give 127.0.0.1:{port} (this machine only) or 0.0.0.0:{port} (every interface)"
        ));
    }
    Err(format!("{text:?} is not IP:PORT (e.g. 127.0.0.1:8080, [::1]:8080)"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every flag and positional a user can see says what it is.
    #[test]
    fn every_visible_argument_has_a_help_line() {
        let missing = edgeroute_cli::help::undocumented(&Cli::command());
        assert!(missing.is_empty(), "no help line: {missing:#?}");
    }

    #[test]
    fn timeouts_are_more_than_zero_seconds() {
        assert_eq!(positive_seconds("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(positive_seconds("0.001"), Ok(Duration::from_millis(1)));
        // Deadlines are kept in whole milliseconds: less would be none at all.
        for bad in ["0", "0.0001", "-1", "soon", "86401", "1e17"] {
            assert!(positive_seconds(bad).unwrap_err().contains("from 0.001 to 86400"), "{bad}");
        }
    }

    #[test]
    fn trusted_proxies_are_networks_repeated_or_listed() {
        let cli = Cli::try_parse_from([
            "edgeroute-host",
            "serve",
            "--snapshot",
            "x.snap",
            "--trusted-proxies",
            "10.0.0.0/8,192.0.2.7",
            "--trusted-proxies",
            "2001:db8::/32",
        ])
        .unwrap();
        let Command::Serve(serve) = cli.command else { panic!("not serve") };
        let shown: Vec<String> = serve.origins.trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]);
        let e = Cli::try_parse_from(["edgeroute-host", "serve", "--snapshot", "x", "--trusted-proxies", "10.1.2.3/8"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean 10.0.0.0/8"), "{e}");
    }

    #[test]
    fn seconds_are_zero_or_more() {
        assert_eq!(seconds("2.5"), Ok(Duration::from_millis(2_500)));
        assert_eq!(seconds("0"), Ok(Duration::ZERO));
        for bad in ["-1", "NaN", "inf", "1e400", "soon", ""] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bare_port_gets_a_hint() {
        for text in ["8080", ":8080"] {
            let e = listen_address(text).unwrap_err();
            assert!(e.contains("127.0.0.1:8080") && e.contains("0.0.0.0:8080"), "{e}");
        }
        assert_eq!(listen_address("127.0.0.1:8080").unwrap().port(), 8080);
        assert!(listen_address("localhost:80").unwrap_err().contains("not IP:PORT"));
    }
}
