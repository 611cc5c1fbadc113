//! Hostile Host and path against the demo snapshot: never a panic, and a
//! static answer's key never leaves its entry's prefix.
#![no_main]

use edgeroute_edge::{Resolution, Snapshot};
use libfuzzer_sys::fuzz_target;

const DEMO: &[u8] = include_bytes!("../../snapshots/demo.snap");

fuzz_target!(|data: &[u8]| {
    let snap = Snapshot::from_bytes(DEMO).expect("the golden snapshot is valid");
    let split = data.iter().position(|&b| b == 0xFF).unwrap_or(data.len());
    let (host, path) = (&data[..split], data.get(split + 1..).unwrap_or_default());
    for host in [host, b"env-123.example.com".as_slice(), b"docs.example.com".as_slice()] {
        let r = snap.resolve(host, path);
        let json = format!("{}", r.json());
        assert!(!json.contains('\n'));
        if let Resolution::Static { key, .. } = r {
            let key = key.to_string();
            assert!(!key.split('/').any(|s| s == ".." || s == "." || s.is_empty()), "{key:?}");
        }
        if let Resolution::Redirect { location, .. } = r {
            assert!(location.to_string().bytes().all(|b| b.is_ascii_graphic()));
        }
    }
});
