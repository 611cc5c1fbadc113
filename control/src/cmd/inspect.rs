//! `edgeroute inspect`: what a snapshot holds.

use anyhow::Result;
use edgeroute_edge::{Route, SnapshotId};

use super::load_snapshot;
use crate::flags::InspectArgs;

/// Prints a snapshot's format version, id, size, routes by kind and
/// section sizes, as text or one JSON object.
pub fn run(args: &InspectArgs) -> Result<()> {
    let path = args.snapshot.path();
    let snap = load_snapshot(path)?;
    let bytes = snap.as_bytes();
    let id = SnapshotId::of(bytes).to_string();
    let (mut statics, mut with_assets, mut balancers, mut wildcards) = (0usize, 0usize, 0usize, 0usize);
    snap.for_each_route(|domain, route| {
        if domain.starts_with("*.") {
            wildcards += 1;
        }
        match route {
            Route::Static(s) => {
                statics += 1;
                with_assets += s.assets.is_some() as usize;
            }
            Route::Balancer(_) => balancers += 1,
        }
    });
    let routes = snap.route_count() as usize;
    let per_route = bytes.len() as f64 / routes.max(1) as f64;
    if args.json {
        let sections: serde_json::Map<String, serde_json::Value> =
            snap.sections().iter().map(|s| (s.kind.name().to_owned(), s.len.into())).collect();
        let v = serde_json::json!({
            "format_version": snap.format_version(),
            "id": id,
            "size": bytes.len(),
            "bytes_per_route": (per_route * 10.0).round() / 10.0,
            "routes": {
                "total": routes,
                "static": statics,
                "static_with_assets": with_assets,
                "balancer": balancers,
                "wildcard": wildcards,
            },
            "sections": sections,
        });
        println!("{v}");
        return Ok(());
    }
    println!("snapshot  {}", path.display());
    println!("format    version {}", snap.format_version());
    println!("id        {id}");
    println!("size      {} bytes ({per_route:.1} bytes/route)", bytes.len());
    println!(
        "routes    {routes}: {statics} static sites ({with_assets} with an Assets list), {balancers} balancers; {wildcards} wildcards"
    );
    print!("sections ");
    for s in snap.sections() {
        print!(" {} {} B", s.kind.name(), s.len);
    }
    println!();
    Ok(())
}
