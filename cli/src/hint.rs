//! Hints for what people get wrong when they type a hostname on a command
//! line: both binaries' `resolve` print them beside a refused answer.

/// What to type instead of `host`, a Host header value the resolver
/// refuses, when it looks like a pasted URL or a name in Unicode; `None`
/// when it looks like neither.
pub fn host_value(host: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(host).ok()?;
    if let Some((_, rest)) = text.split_once("://") {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let path = match &rest[authority.len()..] {
            "" => "/",
            path => path,
        };
        return Some(format!(
            "HOST is a Host header's value, not a URL: give {authority:?}, and the path {path:?} as the next argument"
        ));
    }
    if !text.is_ascii() {
        let (name, port) = match text.rsplit_once(':') {
            Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => (name, Some(port)),
            _ => (text, None),
        };
        // The ASCII form a Host header carries (UTS #46, as browsers and the
        // table's own normalization make it), and only if the resolver would
        // take it: a hint never suggests a name that is refused too.
        let ascii = idna::domain_to_ascii(name.strip_suffix('.').unwrap_or(name)).ok()?;
        edgeroute_edge::HostName::parse(ascii.as_bytes()).ok()?;
        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
        return Some(format!(
            "a Host header carries an internationalized name in its ASCII form (IDNA): try {ascii}{port}"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pasted_url_is_split_into_host_and_path() {
        let hint = host_value(b"https://app.example.com/docs?x=1").unwrap();
        assert!(hint.contains("\"app.example.com\""), "{hint}");
        assert!(hint.contains("\"/docs?x=1\""), "{hint}");
        assert!(host_value(b"http://app.example.com").unwrap().contains("\"/\""));
    }

    #[test]
    fn a_unicode_name_gets_its_ascii_form() {
        assert!(host_value("bücher.example.com".as_bytes()).unwrap().ends_with("try xn--bcher-kva.example.com"));
        assert!(host_value("Bücher.example.com:8080".as_bytes()).unwrap().ends_with("xn--bcher-kva.example.com:8080"));
    }

    #[test]
    fn plain_names_and_bytes_get_none() {
        assert_eq!(host_value(b"app.example.com"), None);
        assert_eq!(host_value(b"app.example.com:8080"), None);
        assert_eq!(host_value(b"\xff\xfe"), None);
        // Unicode, but refused in its ASCII form too: no hint to try it.
        assert_eq!(host_value("bücher..example.com".as_bytes()), None);
        assert_eq!(host_value(format!("bücher.{}.com", "a".repeat(64)).as_bytes()), None);
    }
}
