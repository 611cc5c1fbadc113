//! The shared conformance corpus against the native resolver.

use edgeroute_tests::{conformance, resolve_json, snapshot, write_conformance};

#[test]
fn conformance_corpus_native() {
    let (table, cases) = conformance();
    let snap = snapshot(&table);
    let answers: Vec<String> = cases.iter().map(|c| resolve_json(&snap, &c.host, &c.path)).collect();
    if std::env::var_os("UPDATE_CONFORMANCE").is_some() {
        write_conformance(&cases, &answers);
        return;
    }
    assert!(cases.len() > 100);
    for (case, answer) in cases.iter().zip(&answers) {
        let expect = case.expect.as_deref().expect("every case has an expected answer");
        // Compare as JSON values: the corpus file may order keys differently.
        let (a, e): (serde_json::Value, serde_json::Value) =
            (serde_json::from_str(answer).unwrap(), serde_json::from_str(expect).unwrap());
        assert_eq!(a, e, "host {:?} path {:?}", case.host, case.path);
    }
}
