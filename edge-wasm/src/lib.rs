//! `edgeroute-edge-wasm` wraps the `edgeroute-edge` resolver in an
//! import-free WebAssembly module (`wasm32-unknown-unknown`) with the small
//! ABI of `docs/wasm-abi.md`: the host reserves guest memory for a snapshot,
//! writes it, commits it (the guest validates it and keeps it parsed), then
//! writes `Host` + path into a fixed input buffer and calls `resolve`, which
//! fills a fixed output record. Nothing is allocated: the snapshot region is
//! grown directly with `memory.grow`, and the buffers are static. A panic
//! ends as a `unreachable` trap.
//!
//! The ABI is tested through wasmtime (`runtime-host`), where pointers are
//! 32-bit as the ABI requires.
#![no_std]

mod abi;

pub use abi::*;

#[cfg(all(target_arch = "wasm32", not(test)))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}
