//! Errors for a person: one line, each cause once.

use std::error::Error;

/// `error` and its causes as one line, `outer: inner: innermost`, leaving
/// out a cause whose text the line already holds (an error that prints its
/// source, such as `cannot read FILE: No such file…`, would otherwise show
/// the OS error twice), and folding any line breaks.
pub fn one_line(error: &(dyn Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let text = e.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = e.source();
    }
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read table.json: {source}")]
    struct Read {
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_printed_is_not_printed_again() {
        let e = Read { source: std::io::Error::from(std::io::ErrorKind::NotFound) };
        let line = one_line(&e);
        assert_eq!(line.matches("not found").count(), 1, "{line}");
    }

    #[test]
    fn context_and_causes_make_one_line() {
        let e = anyhow::Error::new(std::io::Error::other("disk\nfull")).context("cannot write out.snap");
        assert_eq!(one_line(e.as_ref()), "cannot write out.snap: disk full");
    }
}
