//! The crate layout's promise: the compiler is "table in, snapshot out",
//! so neither it nor its tests ever build an AWS SDK or an async runtime.

/// `edgeroute-compiler`'s normal, build and dev dependencies, as cargo
/// resolves them from the lockfile, hold no `aws-*` crate and no tokio.
#[test]
fn the_compiler_and_its_tests_link_no_aws_sdk_and_no_tokio() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["tree", "-p", "edgeroute-compiler", "-e", "normal,build,dev", "--prefix", "none", "--offline"])
        .args(["--locked", "--format", "{p}"])
        .current_dir(edgeroute_tests::workspace_root())
        .output()
        .expect("cargo tree runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(tree.lines().any(|l| l.starts_with("fst ")), "not the compiler's tree:\n{tree}");
    let forbidden: Vec<&str> =
        tree.lines().filter(|l| l.starts_with("aws-") || l.starts_with("tokio ") || l.starts_with("hyper ")).collect();
    assert!(forbidden.is_empty(), "edgeroute-compiler depends on {forbidden:?}");
}
