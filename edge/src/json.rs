//! The one JSON encoding of a [`Resolution`], shared by the CLI's `--json`,
//! the hosts and the JavaScript bindings so they can never drift apart.

use core::fmt::{self, Display, Write};

use crate::Resolution;

/// A [`Resolution`] rendered as one JSON object (see [`Resolution::json`]).
#[derive(Debug)]
pub struct Json<'a, 's, 'r>(&'a Resolution<'s, 'r>);

impl<'s, 'r> Resolution<'s, 'r> {
    /// The answer as one JSON object, fields in this order:
    ///
    /// - `{"kind":"static","domain":…,"bucket":…,"key":…,"status":200}`, then
    ///   `"fallback":…` for a site without Assets that has a Fallback (the
    ///   key to serve when the bucket has no object `key`), then
    ///   `"not_found_page":…` (the site's 404.html, served with 404 when the
    ///   bucket has neither)
    /// - `{"kind":"redirect","domain":…,"location":"/about/","status":301}`
    /// - `{"kind":"balancer","domain":…,"origin":"HOST","port":443,"scheme":"https"}`
    /// - `{"kind":"not_found"}`
    /// - `{"kind":"bad_request","reason":"host_bad_char"}`
    pub fn json(&self) -> Json<'_, 's, 'r> {
        Json(self)
    }
}

/// Writes `value` as a JSON string, escaping as RFC 8259 requires.
struct JsonStr<T>(T);

impl<T: Display> Display for JsonStr<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Escape<'a, 'b>(&'a mut fmt::Formatter<'b>);
        impl Write for Escape<'_, '_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                for c in s.chars() {
                    match c {
                        '"' => self.0.write_str("\\\"")?,
                        '\\' => self.0.write_str("\\\\")?,
                        '\n' => self.0.write_str("\\n")?,
                        '\r' => self.0.write_str("\\r")?,
                        '\t' => self.0.write_str("\\t")?,
                        c if (c as u32) < 0x20 => write!(self.0, "\\u{:04x}", c as u32)?,
                        c => self.0.write_char(c)?,
                    }
                }
                Ok(())
            }
        }
        f.write_char('"')?;
        write!(Escape(f), "{}", self.0)?;
        f.write_char('"')
    }
}

impl Display for Json<'_, '_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Resolution::Static { domain, bucket, key, status, fallback, not_found_page } => {
                write!(
                    f,
                    r#"{{"kind":"static","domain":{},"bucket":{},"key":{},"status":{status}"#,
                    JsonStr(domain),
                    JsonStr(bucket),
                    JsonStr(key)
                )?;
                if let Some(fallback) = fallback {
                    write!(f, r#","fallback":{}"#, JsonStr(fallback))?;
                }
                if let Some(page) = not_found_page {
                    write!(f, r#","not_found_page":{}"#, JsonStr(page))?;
                }
                f.write_char('}')
            }
            Resolution::Redirect { domain, location, status } => write!(
                f,
                r#"{{"kind":"redirect","domain":{},"location":{},"status":{status}}}"#,
                JsonStr(domain),
                JsonStr(location)
            ),
            Resolution::Balancer { domain, origin, port, scheme } => write!(
                f,
                r#"{{"kind":"balancer","domain":{},"origin":{},"port":{port},"scheme":"{}"}}"#,
                JsonStr(domain),
                JsonStr(origin),
                scheme.as_str()
            ),
            Resolution::NotFound => f.write_str(r#"{"kind":"not_found"}"#),
            Resolution::BadRequest(reason) => {
                write!(f, r#"{{"kind":"bad_request","reason":"{reason}"}}"#)
            }
        }
    }
}
