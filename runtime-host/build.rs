//! Builds the edge module (`edge-wasm`, for `wasm32-unknown-unknown`, profile
//! `wasm`) so that a plain `cargo build` of the host embeds a fresh module:
//! no manual step. The nested cargo gets a target directory of its own (the
//! outer build holds the workspace's), one for every profile of the host
//! (tests, clippy, release), so that the module is built once, and runs
//! offline (the module's only dependency is the `edge` crate in this
//! workspace).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest.parent().expect("runtime-host lives in the workspace").to_path_buf();
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    for watched in ["edge/src", "edge/Cargo.toml", "edge-wasm/src", "edge-wasm/Cargo.toml", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", workspace.join(watched).display());
    }
    // Beside the profiles in the build's target directory (wherever
    // `--target-dir`, `CARGO_TARGET_DIR` or `build.target-dir` put it: cargo
    // marks its root with CACHEDIR.TAG), since the module is the same
    // whichever profile builds the host; in OUT_DIR if there is no mark.
    // OUT_DIR is <target>[/<triple>]/<profile>/build/<package>/out: the
    // mark is at most five levels up, and nothing above counts.
    let target_dir = out
        .ancestors()
        .take(6)
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map_or_else(|| out.join("wasm-target"), |root| root.join("edge-module"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args(["build", "--offline", "-p", "edgeroute-edge-wasm", "--target", "wasm32-unknown-unknown"])
        .args(["--profile", "wasm", "--target-dir"])
        .arg(&target_dir);
    // The outer build's settings are for the host, not for the module.
    for var in
        ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "RUSTC_WORKSPACE_WRAPPER", "RUSTC_WRAPPER", "CARGO_BUILD_TARGET"]
    {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("cannot run cargo to build the edge module");
    if !status.success() {
        panic!(
            "building the edge module failed. It needs the wasm32-unknown-unknown target: \
             `rustup target add wasm32-unknown-unknown` (scripts/test.sh and scripts/demo.sh run it)"
        );
    }
    let built = target_dir.join("wasm32-unknown-unknown/wasm/edgeroute_edge_wasm.wasm");
    copy(&built, &out.join("edgeroute_edge.wasm"));
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap_or_else(|e| panic!("cannot copy {} to {}: {e}", from.display(), to.display()));
}
