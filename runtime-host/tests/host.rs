//! The edgeroute-host crate's integration tests, in one binary.

mod module {
    use edgeroute_host::{EXPORTS, MODULE};
    use wasmparser::{Parser, Payload};

    /// The module's size budget.
    const BUDGET: usize = 64 * 1024;

    #[test]
    fn module_has_no_imports_exactly_the_documented_exports_and_fits_its_budget() {
        let mut imports = 0;
        let mut exports = Vec::new();
        let mut memories = 0;
        for payload in Parser::new(0).parse_all(MODULE) {
            match payload.expect("the module parses") {
                Payload::ImportSection(reader) => imports += reader.count(),
                Payload::ExportSection(reader) => {
                    for e in reader {
                        exports.push(e.expect("export").name.to_owned());
                    }
                }
                Payload::MemorySection(reader) => memories += reader.count(),
                _ => {}
            }
        }
        assert_eq!(imports, 0, "the module must import nothing");
        let mut expected: Vec<String> = EXPORTS.iter().map(|s| s.to_string()).collect();
        expected.sort();
        exports.sort();
        assert_eq!(exports, expected);
        assert_eq!(memories, 1);
        println!("edge module: {} bytes (budget {BUDGET})", MODULE.len());
        assert!(MODULE.len() <= BUDGET, "the module is {} bytes, over its {BUDGET}-byte budget", MODULE.len());
        wasmparser::Validator::new().validate_all(MODULE).expect("the module validates");
    }
}
