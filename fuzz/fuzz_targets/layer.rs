//! `Layer::from_bytes` on hostile bytes, then a layered resolve over the
//! golden demo snapshot with whatever it accepts. As in `snapshot`, half
//! of the runs patch the input into the golden demo layer and recompute
//! its checksum, so that they reach the lineage, index and record checks.
#![no_main]

use edgeroute_edge::{crc32c, Layer, Snapshot};
use libfuzzer_sys::fuzz_target;

const DEMO: &[u8] = include_bytes!("../../snapshots/demo.snap");
const LAYER: &[u8] = include_bytes!("../../snapshots/demo-change.layer");

fn exercise(layer: Layer<&[u8]>) {
    let base = Snapshot::from_bytes(DEMO).expect("the golden snapshot is valid");
    let layers = [layer];
    for (host, path) in [
        ("env-123.example.com", "/about"),
        ("env-900.example.com", "/missing"),
        ("env-789.example.com", "/x"),
        ("a.b.pr-42.previews.example.com", "/"),
        ("docs.example.com", "/a/"),
        ("unknown.example.com", "/"),
    ] {
        let r = base.resolve_layered(&layers[..], host.as_bytes(), path.as_bytes());
        let _ = format!("{}", r.json());
    }
    layers[0].for_each_record(|_, _| {});
}

fuzz_target!(|data: &[u8]| {
    if let Some((&mode, rest)) = data.split_first() {
        if mode & 1 == 0 {
            if let Ok(layer) = Layer::from_bytes(rest) {
                exercise(layer);
            }
            return;
        }
        let mut bytes = LAYER.to_vec();
        let body = bytes.len() - 4;
        let at = rest.get(..2).map_or(0, |b| u16::from_le_bytes([b[0], b[1]]) as usize) % body;
        for (i, b) in rest.iter().skip(2).enumerate() {
            if at + i < body {
                bytes[at + i] ^= b;
            }
        }
        let crc = crc32c(&bytes[..body]);
        bytes[body..].copy_from_slice(&crc.to_le_bytes());
        if let Ok(layer) = Layer::from_bytes(bytes.as_slice()) {
            exercise(layer);
        }
    }
});
