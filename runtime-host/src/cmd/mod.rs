//! One module per command of `edgeroute-host`, each with one documented
//! entry point that `main` dispatches to, and what they share: loading a
//! router, AWS settings, starting the listeners, and waiting for a signal.

pub mod bench;
pub mod demo;
pub mod resolve;
pub mod serve;

use std::path::Path;

use anyhow::{Context as _, Result};
use edgeroute_host::aws::S3Limits;
use std::sync::Arc;

use edgeroute_host::http::{Listening, Workers};
use edgeroute_host::plane::DataPlane;
use edgeroute_host::proxy::Proxy;
use edgeroute_host::statics::{DirObjects, Objects, S3Objects};
use edgeroute_host::tls::{CertificateFiles, TlsTerminator};
use edgeroute_host::{EdgeEngine, HostState, Router};

use crate::flags::{ListenerArgs, OriginArgs, TlsArgs};

/// The router for the snapshot file at `path`: read, validated by the
/// module, ready to serve.
pub fn load_router(path: &Path) -> Result<Router> {
    load(path).map(|(router, _)| router)
}

/// [`load_router`], and the snapshot's bytes (for a native look at them).
pub fn load(path: &Path) -> Result<(Router, Vec<u8>)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read snapshot {}", path.display()))?;
    let router = router_for(&bytes).with_context(|| format!("cannot use snapshot {}", path.display()))?;
    Ok((router, bytes))
}

/// The router for a snapshot's bytes.
pub fn router_for(bytes: &[u8]) -> Result<Router> {
    Ok(Router::new(EdgeEngine::new()?, bytes)?)
}

/// Where static sites' objects come from: `--static-root`, checked to be
/// a folder, else S3 through a client bounded by `limits` (`aws` is then
/// the AWS configuration: see [`edgeroute_host::aws::load`]).
pub fn static_objects(origins: &OriginArgs, aws: Option<&aws_config::SdkConfig>, limits: &S3Limits) -> Result<Objects> {
    match (&origins.static_root, aws) {
        // A mistyped folder would make every static request a 404, as if
        // the host were unknown: refused at start instead.
        (Some(root), _) if !root.is_dir() => anyhow::bail!(
            "--static-root {} is not a folder{}: give the folder that holds BUCKET/KEY",
            root.display(),
            if root.exists() { "" } else { " (it does not exist)" }
        ),
        (Some(root), _) => Ok(Objects::Dir(DirObjects::new(root))),
        (None, Some(config)) => {
            Ok(Objects::S3(S3Objects::new(edgeroute_host::aws::s3_client(config, limits), origins.s3_403_is_missing)))
        }
        (None, None) => anyhow::bail!("static sites in S3 need an AWS configuration"),
    }
}

/// The TLS listener's certificates, read a first time (a path that cannot
/// be read, a refused default or no good certificate at all stop the
/// start), then followed as their files change.
fn tls_terminator(tls: &TlsArgs, state: &'static HostState) -> Result<Arc<TlsTerminator>> {
    let (files, set) =
        CertificateFiles::open(&tls.tls_certs, tls.tls_default_cert.as_deref(), tls.tls_sessions, &state.metrics)?;
    tracing::info!("TLS: {} certificate(s) from --tls-certs", set.all().len());
    let terminator = Arc::new(TlsTerminator::new(set));
    tokio::spawn(edgeroute_host::tls::watch::follow(files, terminator.clone(), &state.metrics));
    Ok(terminator)
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down: draining requests in flight");
}

/// Starts serving `state`: the admin listener on this runtime, and the
/// public listener on its own threads. Returns the public listener's
/// threads, to shut down.
pub async fn start(
    state: &'static HostState,
    listener: &ListenerArgs,
    origins: &OriginArgs,
    objects: Objects,
) -> Result<Workers> {
    // (Two port-0 addresses are two listeners, each on a port of its own.)
    if listener.admin_listen == listener.listen && listener.listen.port() != 0 {
        anyhow::bail!("--admin-listen must differ from --listen: metrics are never served on the public listener");
    }
    if !listener.admin_listen.ip().is_loopback() && !listener.admin_public {
        anyhow::bail!(
            "--admin-listen {} is reachable from other machines: give a loopback address (127.0.0.1:PORT), or add --admin-public to mean it",
            listener.admin_listen
        );
    }
    let proxy = Proxy::new(origins.proxy_config()?)?;
    // The certificates first: a host that cannot serve them never listens.
    let tls = match listener.tls.tls_listen {
        Some(addr) if [listener.listen, listener.admin_listen].contains(&addr) && addr.port() != 0 => {
            anyhow::bail!("--tls-listen must differ from --listen and --admin-listen")
        }
        Some(addr) => Some((addr, tls_terminator(&listener.tls, state)?)),
        None => None,
    };
    let public = std::net::TcpListener::bind(listener.listen)
        .with_context(|| format!("cannot listen on {} (--listen)", listener.listen))?;
    let mut listeners = vec![Listening::plain(public)];
    let mut tls_port = None;
    if let Some((addr, tls)) = tls {
        let socket =
            std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr} (--tls-listen)"))?;
        tls_port = Some(socket.local_addr()?.port());
        listeners.push(Listening::tls(socket, tls));
    }
    let admin = tokio::net::TcpListener::bind(listener.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {} (--admin-listen)", listener.admin_listen))?;
    let threads = listener.threads();
    let https = listener.tls.https_policy(tls_port);
    let workers = Workers::start(&DataPlane { state, objects, proxy, https }, listeners, threads, listener.limits())
        .context("cannot start the serving threads")?;
    let serving = state.router.live().map_or_else(
        || "no snapshot yet (answering 503)".to_owned(),
        |live| format!("serving {} ({} routes)", live.id, live.route_count()),
    );
    let addrs: Vec<String> = workers.local_addrs().iter().map(ToString::to_string).collect();
    tracing::info!(
        "listening on {} ({threads} thread(s)), {serving}; metrics on http://{}/metrics",
        addrs.join(" and https on "),
        admin.local_addr().unwrap_or(listener.admin_listen)
    );
    tokio::spawn(edgeroute_admin::serve(std::sync::Arc::new(state), admin));
    Ok(workers)
}
