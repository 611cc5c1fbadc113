//! Layers in the data plane ([5/8]): `edgeroute-host` applies a layer
//! without touching its base (no reload, no re-hash of the base), follows
//! rollbacks and compactions, starts from a cached layered state, refuses
//! layers that do not belong while the state keeps serving; the
//! WebAssembly module answers a layered state as the native resolver
//! answers a full compile; and layer swaps reuse the module's memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use edgeroute_compiler::{read_changes, source, write_layer, Lineage, Options};
use edgeroute_control::publish::{self, Manual};
use edgeroute_control::state::{self, Applied, Compacted};
use edgeroute_edge::{Snapshot, SnapshotId};
use edgeroute_host::{EdgeEngine, HostLayer, Router};
use edgeroute_store::{LayerRef, ObjectKind, Pointer, Store, StoreLocation};
use edgeroute_tests::changes::RandomChanges;
use edgeroute_tests::compile_text;
use edgeroute_tests_aws::aws_env;

use super::serve::{free_port, id, runtime, scratch, snapshot, Served};

/// Applies JSON Lines `text` to the store; the new pointer.
fn apply(store: &Store, text: &str) -> Pointer {
    let changes = read_changes(source::parse_json(text.as_bytes()).unwrap(), Options::default()).unwrap();
    match runtime().block_on(state::apply(store, &changes.changes, "test", 0, &Manual::named("apply"))).unwrap() {
        Applied::Current { pointer, .. } => pointer,
        other => panic!("{other:?}"),
    }
}

/// The bytes a layer of `text` written on `lineage` has.
fn layer_bytes(lineage: Lineage, text: &str) -> Vec<u8> {
    let changes = read_changes(source::parse_json(text.as_bytes()).unwrap(), Options::default()).unwrap();
    write_layer(lineage, &changes.changes).unwrap()
}

/// A layer object in a store: its id and its bytes.
type StoredLayer<'a> = (&'a str, &'a [u8]);

/// Replaces the pointer with `layers` on `current`'s base, by hand.
fn point_at_layers(store: &Store, layers: &[StoredLayer<'_>]) {
    let rt = runtime();
    let (current, version) = rt.block_on(store.read_pointer()).unwrap().unwrap();
    let refs: Vec<LayerRef> = layers
        .iter()
        .map(|(id, bytes)| LayerRef { id: (*id).to_owned(), upserts: 1, deletes: 0, size: bytes.len() as u64 })
        .collect();
    let ids: Vec<SnapshotId> = layers.iter().map(|(id, _)| id.parse().unwrap()).collect();
    let next = Pointer {
        id: SnapshotId::of_state(&current.base.id.parse().unwrap(), &ids).to_string(),
        layers: refs,
        routes: None,
        previous: Some(current.id.clone()),
        ..current
    };
    assert!(rt.block_on(store.replace_pointer(&next, Some(&version))).unwrap());
}

#[test]
fn a_host_swaps_layers_without_touching_its_base_and_follows_rollback_and_compaction() {
    let dir = scratch("layers");
    let location = format!("dir:{}", dir.join("store").display());
    let cache = dir.join("cache");
    let store = Store::open(&StoreLocation::Dir(dir.join("store")), None).unwrap();
    let rt = runtime();
    rt.block_on(publish::publish(&store, &snapshot(1), "test", 0)).unwrap();
    let host = Served::start(&location, &cache, &[]).unwrap();
    host.wait_for(&id(&snapshot(1)));
    let base_load = host.metric("edgeroute_snapshot_load_seconds");

    // A new name: one layer, served without reloading the base.
    let p1 = apply(&store, r#"{"Domain":"new.example.com","Target":"s3://b-3/site"}"#);
    host.wait_for(&p1.id);
    assert!(host.get("new.example.com").1.contains("site b-3"));
    assert!(host.get("probe.example.com").1.contains("site b-1"));
    assert_eq!(host.metric("edgeroute_snapshot_load_seconds"), base_load, "the base was loaded again");
    assert_eq!(host.metric("edgeroute_state_layers"), 1.0);
    assert!(host.metric("edgeroute_state_layer_bytes") > 0.0);
    // A delete, then the name again with another site.
    let p2 = apply(&store, r#"{"Domain":"Probe.Example.com","Deleted":true}"#);
    host.wait_for(&p2.id);
    assert_eq!(host.get("probe.example.com").1, "not found");
    let p3 = apply(&store, r#"{"Domain":"probe.example.com","Target":"s3://b-4/site"}"#);
    host.wait_for(&p3.id);
    assert!(host.get("probe.example.com").1.contains("site b-4"));
    assert_eq!(host.metric("edgeroute_snapshot_load_seconds"), base_load);
    // Each layer swap fetched its layer alone, not the base.
    let fetched: Vec<u64> = host
        .log()
        .lines()
        .filter(|l| l.contains("layer(s);"))
        .filter_map(|l| l.split("; ").nth(1)?.split(' ').next()?.parse().ok())
        .collect();
    assert!(fetched.len() >= 3 && fetched[1..].iter().all(|&b| b < 4096), "{fetched:?}\n{}", host.log());

    // A rollback to a state with fewer layers: the instances drop the others.
    rt.block_on(publish::rollback(&store, Some(&p1.id))).unwrap();
    host.wait_for(&p1.id);
    assert!(host.get("probe.example.com").1.contains("site b-1"));
    assert!(host.get("new.example.com").1.contains("site b-3"));
    rt.block_on(publish::unpin(&store)).unwrap();
    // A compaction: a new base, the same answers.
    let p4 = apply(&store, r#"{"Domain":"other.example.com","Deleted":true}"#);
    host.wait_for(&p4.id);
    let Compacted::Current { pointer: compacted, .. } =
        rt.block_on(state::compact(&store, "test", &Manual::named("compact"))).unwrap()
    else {
        panic!("nothing compacted")
    };
    host.wait_for(&compacted.id);
    assert_eq!(host.metric("edgeroute_state_layers"), 0.0);
    assert!(host.get("new.example.com").1.contains("site b-3"));
    assert_eq!(host.get("other.example.com").1, "not found");
    // One more layer; then a start without the store serves it from the cache.
    let p5 = apply(&store, r#"{"Domain":"late.example.com","Target":"s3://b-5/site"}"#);
    host.wait_for(&p5.id);
    host.wait_until("the state cached", 30, |_| {
        std::fs::read_to_string(cache.join("current.state")).is_ok_and(|s| s.lines().count() == 2)
    });
    drop(host);
    let unreachable = aws_env(&format!("http://127.0.0.1:{}", free_port()));
    let host = Served::start("s3://edge/p", &cache, &unreachable).unwrap();
    host.wait_for(&p5.id);
    assert!(host.get("late.example.com").1.contains("site b-5"));
    assert!(host.get("new.example.com").1.contains("site b-3"));
    assert!(host.log().contains("serving the cached snapshot"), "{}", host.log());
}

#[test]
fn layers_that_do_not_belong_are_refused_while_the_state_keeps_serving() {
    let dir = scratch("layer-refusals");
    let location = format!("dir:{}", dir.join("store").display());
    let store = Store::open(&StoreLocation::Dir(dir.join("store")), None).unwrap();
    let rt = runtime();
    rt.block_on(publish::publish(&store, &snapshot(1), "test", 0)).unwrap();
    let host = Served::start(&location, &dir.join("cache"), &[]).unwrap();
    let p1 = apply(&store, r#"{"Domain":"new.example.com","Target":"s3://b-3/site"}"#);
    host.wait_for(&p1.id);
    let base: SnapshotId = p1.base.id.parse().unwrap();
    let first = rt.block_on(store.get_object(ObjectKind::Layer, &p1.layers[0].id)).unwrap();
    let first_id = p1.layers[0].id.clone();
    let second = layer_bytes(
        Lineage { base, parent: first_id.parse().unwrap(), depth: 2 },
        r#"{"Domain":"probe.example.com","Target":"s3://b-4/site"}"#,
    );
    let second_id = id(&second);
    rt.block_on(store.put_object(ObjectKind::Layer, &second_id, &second)).unwrap();
    let other_base = SnapshotId::of(&snapshot(2));
    let foreign = layer_bytes(
        Lineage { base: other_base, parent: other_base, depth: 1 },
        r#"{"Domain":"probe.example.com","Target":"s3://b-5/site"}"#,
    );
    let foreign_id = id(&foreign);
    rt.block_on(store.put_object(ObjectKind::Layer, &foreign_id, &foreign)).unwrap();
    // The second layer's bytes under another id: damaged.
    let wrong = "ab".repeat(32);
    rt.block_on(store.put_object(ObjectKind::Layer, &wrong, &second)).unwrap();

    let cases: [(Vec<StoredLayer<'_>>, String); 3] = [
        (vec![(&first_id, &first), (&wrong, &second)], format!("refused layer {wrong}: the object's SHA-256 is")),
        (vec![(&foreign_id, &foreign)], "it was written on another base".to_owned()),
        (vec![(&second_id, &second), (&first_id, &first)], "it is out of order".to_owned()),
    ];
    for (layers, line) in cases {
        point_at_layers(&store, &layers);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !host.log().lines().any(|l| l.contains(&line) && l.contains("still serving")) {
            assert!(Instant::now() < deadline, "never logged {line:?}: {}", host.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        let (served, body) = host.get("probe.example.com");
        assert!(p1.id.starts_with(&served), "{served}");
        assert!(body.contains("site b-1"), "{body}");
    }
    // The layers in order are served.
    point_at_layers(&store, &[(&first_id, &first), (&second_id, &second)]);
    let state = SnapshotId::of_state(&base, &[first_id.parse().unwrap(), second_id.parse().unwrap()]);
    host.wait_for(&state.to_string());
    assert!(host.get("probe.example.com").1.contains("site b-4"));
}

/// The contract's differential test through the WebAssembly module: the
/// random changes of `edgeroute-tests`' native test, and at every 100th
/// step the state (base and layers, pushed into one worker's instance as a
/// host does: only the layers it does not hold) answers every probe as
/// the native resolver answers a fresh full compile; then the state of
/// half as many layers (the instance drops the others, as after a
/// rollback), then the whole state again.
#[test]
fn the_module_answers_a_layered_state_as_a_full_compile_every_100th_step() {
    let engine = EdgeEngine::new().unwrap();
    let mut random = RandomChanges::new(0x1a7e_45ed);
    let probes = random.probes();
    let mut base = compile_text(&random.table(), Options::default()).unwrap();
    // One router and one worker per base, for as long as the base lasts.
    let new_router =
        |bytes: &[u8]| -> &'static Router { Box::leak(Box::new(Router::new(engine.clone(), bytes).unwrap())) };
    let mut router = new_router(&base.bytes);
    let mut worker = router.worker();
    let mut layers: Vec<Arc<HostLayer>> = Vec::new();
    // The table after each layer on this base.
    let mut tables: Vec<String> = Vec::new();
    let mut checked = 0;
    let check = |router: &Router,
                 worker: &mut edgeroute_host::Worker<'_>,
                 layers: &[Arc<HostLayer>],
                 table: &str,
                 step: usize| {
        router.swap_layers(router.live().unwrap().base.id, layers.to_vec()).unwrap().expect("the same base");
        let full = compile_text(table, Options::default()).unwrap();
        let native = Snapshot::from_bytes(&full.bytes[..]).unwrap();
        for (host, path) in &probes {
            let wasm = worker.resolve(host.as_bytes(), path.as_bytes()).unwrap().json().to_string();
            let want = native.resolve(host.as_bytes(), path.as_bytes()).json().to_string();
            assert_eq!(wasm, want, "step {step}, {} layers: {host} {path}", layers.len());
        }
    };
    for step in 1..=1000 {
        let text = random.step();
        let changes = read_changes(source::parse_json(text.as_bytes()).unwrap(), Options::default()).unwrap();
        let parent = layers.last().map_or(base.id, |l| l.id);
        let lineage = Lineage { base: base.id, parent, depth: layers.len() as u32 + 1 };
        let bytes = write_layer(lineage, &changes.changes).unwrap();
        layers.push(Arc::new(HostLayer { id: SnapshotId::of(&bytes), bytes }));
        tables.push(random.table());
        if step % 100 == 0 {
            check(router, &mut worker, &layers, &random.table(), step);
            let half = layers.len() / 2;
            check(router, &mut worker, &layers[..half], &tables[half - 1], step);
            check(router, &mut worker, &layers, &random.table(), step);
            checked += 1;
        }
        // A compaction right after each check: a new base (at most 128 layers on one).
        if step % 100 == 5 {
            let snap = Snapshot::from_bytes(&base.bytes[..]).unwrap();
            let parsed: Vec<_> =
                layers.iter().map(|l| edgeroute_edge::Layer::from_bytes(&l.bytes[..]).unwrap()).collect();
            base = edgeroute_compiler::compact(&snap, &parsed).unwrap();
            router = new_router(&base.bytes);
            worker = router.worker();
            layers.clear();
            tables.clear();
        }
    }
    assert_eq!(checked, 10);
}

/// Layer swaps on one base reuse the instances' memory: following a store
/// whose layers change (and are rolled back) for hours does not grow it.
#[test]
fn layer_swaps_reuse_the_module_s_memory() {
    let engine = EdgeEngine::new().unwrap();
    let base =
        compile_text("{\"Domain\":\"probe.example.com\",\"Target\":\"s3://b-1/site\"}\n", Options::default()).unwrap();
    let router = Router::new(engine, &base.bytes).unwrap();
    let mut worker = router.worker();
    // Two stacks of layers that share none: each swap truncates and pushes.
    let stack = |tag: &str, n: usize| -> Vec<Arc<HostLayer>> {
        let mut layers: Vec<Arc<HostLayer>> = Vec::new();
        for i in 0..n {
            let parent = layers.last().map_or(base.id, |l| l.id);
            let text: String = (0..200)
                .map(|j| format!("{{\"Domain\":\"{tag}-{i}-{j}.example.com\",\"Target\":\"s3://b-2/site\"}}\n"))
                .collect();
            let bytes = layer_bytes(Lineage { base: base.id, parent, depth: i as u32 + 1 }, &text);
            layers.push(Arc::new(HostLayer { id: SnapshotId::of(&bytes), bytes }));
        }
        layers
    };
    let (a, b) = (stack("a", 3), stack("b", 4));
    let mut sizes = Vec::new();
    for round in 0..200 {
        let layers = if round % 2 == 0 { a.clone() } else { b.clone() };
        router.swap_layers(base.id, layers).unwrap().unwrap();
        let host = if round % 2 == 0 { "a-2-7.example.com" } else { "b-3-9.example.com" };
        assert!(worker.resolve(host.as_bytes(), b"/").unwrap().json().to_string().contains("\"bucket\":\"b-2\""));
        assert!(worker.resolve(b"a-0-0.example.com", b"/").unwrap().json().to_string().contains(if round % 2 == 0 {
            "\"bucket\":\"b-2\""
        } else {
            "not_found"
        }));
        sizes.push(worker.memory_bytes().unwrap());
    }
    assert_eq!(sizes[10], sizes[199], "the memory grew with the swaps: {:?}", &sizes[..12]);
}

/// The module's own checks, without a host in front (a host validates
/// natively first, so these would never show): layers that do not stack
/// are refused by code, the arena moves when other memory grew after it
/// and its layers still answer, and no attached region may overlap it.
#[test]
fn the_module_refuses_layers_that_do_not_stack_and_moves_its_arena() {
    use edgeroute_edge_wasm::{commit, field, kind, mode};
    use wasmtime::{Instance, Module};

    let engine = wasmtime::Engine::default();
    let module = Module::new(&engine, edgeroute_host::MODULE).unwrap();
    let mut store = wasmtime::Store::new(&engine, ());
    let instance = Instance::new(&mut store, &module, &[]).unwrap();
    let memory = instance.get_memory(&mut store, "memory").unwrap();
    let f1 = |store: &mut wasmtime::Store<()>, name: &str, arg: u32| -> u32 {
        instance.get_typed_func::<u32, u32>(&mut *store, name).unwrap().call(&mut *store, arg).unwrap()
    };
    let f0 = |store: &mut wasmtime::Store<()>, name: &str| -> u32 {
        instance.get_typed_func::<(), u32>(&mut *store, name).unwrap().call(&mut *store, ()).unwrap()
    };
    let input = f0(&mut store, "edgeroute_input") as usize;
    let output = f0(&mut store, "edgeroute_output") as usize;
    let put = |store: &mut wasmtime::Store<()>, at: usize, bytes: &[u8]| {
        memory.data_mut(&mut *store)[at..at + bytes.len()].copy_from_slice(bytes);
    };
    // Reserves, writes and pushes a layer; its status.
    let push = |store: &mut wasmtime::Store<()>, bytes: &[u8]| -> u32 {
        let ptr = f1(store, "edgeroute_layer_reserve", bytes.len() as u32) as usize;
        assert_ne!(ptr, 0);
        put(store, ptr, bytes);
        put(store, input, SnapshotId::of(bytes).as_bytes());
        f1(store, "edgeroute_layer_push", mode::FULL)
    };
    // The kind of the answer for `host`.
    let resolve = |store: &mut wasmtime::Store<()>, host: &str| -> u8 {
        let mut record = Vec::new();
        for (tag, value) in [(field::HOST, host.as_bytes()), (field::TARGET, b"/".as_slice())] {
            record.push(tag);
            record.extend_from_slice(&(value.len() as u32).to_le_bytes());
            record.extend_from_slice(value);
        }
        // An unknown field, as a later host would send: skipped.
        record.extend_from_slice(&[200, 3, 0, 0, 0, b'x', b'y', b'z']);
        put(store, input, &record);
        f1(store, "edgeroute_resolve", record.len() as u32);
        memory.data(&*store)[output]
    };
    let balancer = |name: &str| format!("{{\"Domain\":\"{name}\",\"Target\":\"https://o-{name}\"}}");
    let base = compile_text(&balancer("base.example.com"), Options::default()).unwrap();
    let first = layer_bytes(Lineage { base: base.id, parent: base.id, depth: 1 }, &balancer("one.example.com"));
    let first_id = SnapshotId::of(&first);

    // No base yet.
    assert_eq!(push(&mut store, &first), commit::NO_BASE);
    let ptr = f1(&mut store, "edgeroute_reserve", base.bytes.len() as u32) as usize;
    put(&mut store, ptr, &base.bytes);
    put(&mut store, input, base.id.as_bytes());
    assert_eq!(f1(&mut store, "edgeroute_commit", mode::FULL), commit::OK);
    assert_eq!(push(&mut store, &first), commit::OK);
    assert_eq!(resolve(&mut store, "one.example.com"), kind::BALANCER);
    // Foreign, out of order, a bad count to keep.
    let other = SnapshotId::of(b"another base");
    let foreign = layer_bytes(Lineage { base: other, parent: other, depth: 1 }, &balancer("f.example.com"));
    assert_eq!(push(&mut store, &foreign), commit::FOREIGN_BASE);
    let third = layer_bytes(Lineage { base: base.id, parent: first_id, depth: 3 }, &balancer("t.example.com"));
    assert_eq!(push(&mut store, &third), commit::OUT_OF_ORDER);
    assert_eq!(push(&mut store, &first), commit::OUT_OF_ORDER, "the same layer twice");
    assert_eq!(f1(&mut store, "edgeroute_layers_truncate", 5), commit::BAD_COUNT);
    assert_eq!(f0(&mut store, "edgeroute_layer_count"), 1);
    // Other memory grows after the arena (a base reserved, not committed):
    // the next layer that does not fit moves the arena, and every layer answers.
    assert_ne!(f1(&mut store, "edgeroute_reserve", 70_000), 0);
    let big: String = (0..3000).map(|i| format!("{}\n", balancer(&format!("big-{i}.example.com")))).collect();
    let second = layer_bytes(Lineage { base: base.id, parent: first_id, depth: 2 }, &big);
    assert!(second.len() > 65_536, "{}", second.len());
    assert_eq!(push(&mut store, &second), commit::OK);
    for host in ["base.example.com", "one.example.com", "big-2999.example.com"] {
        assert_eq!(resolve(&mut store, host), kind::BALANCER, "{host}");
    }
    assert_eq!(resolve(&mut store, "none.example.com"), kind::NOT_FOUND);
    // No attached region may overlap the arena, whose memory is reused.
    let size = memory.data_size(&store) as u32;
    let attach = instance.get_typed_func::<(u32, u32), u32>(&mut store, "edgeroute_attach").unwrap();
    assert_eq!(attach.call(&mut store, (size - 65_536, 100)).unwrap(), commit::BAD_REGION);
    // At most 128 layers.
    assert_eq!(f1(&mut store, "edgeroute_layers_truncate", 0), commit::OK);
    let mut parent = base.id;
    for depth in 1..=128u32 {
        let layer = layer_bytes(Lineage { base: base.id, parent, depth }, &balancer(&format!("d{depth}.example.com")));
        assert_eq!(push(&mut store, &layer), commit::OK, "layer {depth}");
        parent = SnapshotId::of(&layer);
    }
    let extra = layer_bytes(Lineage { base: base.id, parent, depth: 129 }, &balancer("x.example.com"));
    assert_eq!(push(&mut store, &extra), commit::TOO_MANY_LAYERS);
    assert_eq!(resolve(&mut store, "d128.example.com"), kind::BALANCER);
    assert_eq!(resolve(&mut store, "one.example.com"), kind::NOT_FOUND);
}

/// A cached state whose layer is gone (a disk error, a hand) is refused
/// whole: the host answers 503 rather than serve the base without it.
#[test]
fn a_cached_state_missing_a_layer_is_refused_not_served_as_its_base() {
    let dir = scratch("layer-cache");
    let location = format!("dir:{}", dir.join("store").display());
    let cache = dir.join("cache");
    let store = Store::open(&StoreLocation::Dir(dir.join("store")), None).unwrap();
    runtime().block_on(publish::publish(&store, &snapshot(1), "test", 0)).unwrap();
    let host = Served::start(&location, &cache, &[]).unwrap();
    let p1 = apply(&store, r#"{"Domain":"probe.example.com","Deleted":true}"#);
    host.wait_for(&p1.id);
    host.wait_until("the state cached", 30, |_| {
        std::fs::read_to_string(cache.join("current.state")).is_ok_and(|s| s.lines().count() == 2)
    });
    drop(host);
    std::fs::remove_file(cache.join(format!("layers/{}.layer", p1.layers[0].id))).unwrap();
    let unreachable = aws_env(&format!("http://127.0.0.1:{}", free_port()));
    let host = Served::start("s3://edge/p", &cache, &unreachable).unwrap();
    host.wait_until("the cache refused", 30, |h| h.log().contains("cannot be read") && h.log().contains("is missing"));
    let (status, _, body) = super::serve::raw_get(host.port, "probe.example.com", "/");
    assert_eq!(status, 503, "{body}");
}
