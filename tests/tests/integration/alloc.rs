//! Proof that resolving allocates nothing: a counting global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::Write;

use edgeroute_tests::{generate_table, snapshot};

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// Counts allocations per thread, so parallel tests do not disturb a count.
pub struct Counting;

// SAFETY: defers to `System` for all real work; the counter is a
// thread-local `Cell` with a const initializer, which never allocates.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// A `fmt::Write` into a fixed buffer, as a host would render answers.
struct Fixed {
    buf: [u8; 2048],
    len: usize,
}

impl Write for Fixed {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[test]
fn resolving_allocates_nothing() {
    let demo = std::fs::read_to_string(edgeroute_tests::workspace_root().join("snapshots/demo.jsonl")).unwrap();
    let table = generate_table(2_000, 77);
    let snap = snapshot(&format!("{demo}\n{}", table.jsonl));
    let requests: Vec<(Vec<u8>, Vec<u8>)> = [
        ("env-123.example.com", "/"),
        ("env-123.example.com", "/about?x=1"),
        ("env-123.example.com", "/missing"),
        ("env-123.example.com", "/docs/getting-started.html"),
        ("ENV-456.example.com:443", "/deep/link"),
        ("env-789.example.com", "/"),
        ("x.y.pr-42.previews.example.com", "/"),
        ("pinned.pr-42.previews.example.com", "/"),
        ("xn--bcher-kva.example.com", "/%C3%BCber-uns.html"),
        ("docs.example.com", "/guide/caf%C3%A9/"),
        ("marketing.example.com", "/a%20b"),
        ("unknown.example.com", "/"),
        ("bad host", "/"),
        ("env-123.example.com", "/a/../b"),
        ("env-123.example.com", "/%2e"),
    ]
    .iter()
    .map(|(h, p)| (h.as_bytes().to_vec(), p.as_bytes().to_vec()))
    .chain(table.hosts.iter().take(500).map(|h| (h.as_bytes().to_vec(), b"/index.html".to_vec())))
    .collect();
    let mut out = Fixed { buf: [0; 2048], len: 0 };
    let before = allocations();
    let mut kinds = 0usize;
    for (host, path) in &requests {
        let r = snap.resolve(host, path);
        kinds += r.kind().len();
        out.len = 0;
        // Rendering the answer (keys, locations, domains) allocates nothing either.
        write!(out, "{}", r.json()).unwrap();
    }
    let after = allocations();
    assert!(kinds > 0);
    assert_eq!(after - before, 0, "the resolve path allocated {} times", after - before);
    // The counter works: an allocation is seen.
    let before = allocations();
    let v = std::hint::black_box(vec![1u8; 16]);
    drop(v);
    assert!(allocations() > before);
}
