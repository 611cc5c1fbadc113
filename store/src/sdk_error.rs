//! [`describe_sdk_error`]: an AWS SDK error as one line for a person.
//!
//! The SDK's own `Display` says only which stage failed (`dispatch
//! failure`, `service error`), and its `DisplayErrorContext` walks the
//! causes but prints some of them with `Debug`
//! (`DispatchFailure(DispatchFailure { source: ConnectorError { kind: Io, …`).
//! What a person needs is what S3 answered, or why no answer came.

use std::error::Error;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStreamError;

/// The HTTP status of the raw response an [`SdkError`] carries (its `R`).
///
/// Implemented for the response type of every AWS SDK (each re-exports
/// `aws_smithy_runtime_api`'s, as `config::http::HttpResponse`), so that
/// [`describe_sdk_error`] takes the errors of any of them.
pub trait ResponseStatus {
    /// The status code, such as 404.
    fn status_code(&self) -> u16;
}

impl ResponseStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

/// Describes an AWS SDK error for a person, in one line and without any
/// Rust `Debug` output.
///
/// - An error answer from the service: its code, message and HTTP status,
///   `NoSuchBucket: The specified bucket does not exist (HTTP 404)`.
/// - No answer, or none that could be read: a short phrase for what failed
///   and the innermost cause's text, which is the one that says why,
///   `cannot connect: Connection refused (os error 111)` or
///   `timed out: operation timeout (all attempts including retries) occurred after 60s`.
pub fn describe_sdk_error<E, R>(err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + Error + 'static,
    R: ResponseStatus + std::fmt::Debug,
{
    let text = match err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status_code();
            let meta = service.err().meta();
            match (meta.code(), meta.message().filter(|m| !m.is_empty())) {
                (Some(code), Some(message)) => format!("{code}: {message} (HTTP {status})"),
                (Some(code), None) => format!("{code} (HTTP {status})"),
                (None, Some(message)) => format!("{message} (HTTP {status})"),
                // No body to say more (a HEAD, or a bare 403 from a proxy).
                // The SDK's error would print its empty metadata as a struct.
                (None, None) => format!("HTTP {status}"),
            }
        }
        SdkError::DispatchFailure(dispatch) => {
            // The connector's own text is only its kind (`io error`).
            let connected = dispatch.as_connector_error().is_some_and(|c| c.connection_metadata().is_some());
            let what = if dispatch.is_timeout() {
                "timed out"
            } else if dispatch.is_user() {
                "invalid request"
            } else if dispatch.is_io() && connected {
                "connection failed"
            } else if dispatch.is_io() {
                "cannot connect"
            } else {
                "request failed"
            };
            format!("{what}: {}", innermost_cause(err))
        }
        SdkError::TimeoutError(_) => format!("timed out: {}", innermost_cause(err)),
        SdkError::ResponseError(response) => {
            format!("unreadable response (HTTP {}): {}", response.raw().status_code(), innermost_cause(err))
        }
        SdkError::ConstructionFailure(_) => format!("cannot build the request: {}", innermost_cause(err)),
        // `SdkError` is non-exhaustive.
        _ => innermost_cause(err),
    };
    one_line(&text)
}

/// Describes a failure to read a response's body, as [`describe_sdk_error`]
/// does (the error's own text is only `streaming error` or `IO error`).
pub(crate) fn describe_body_error(err: &ByteStreamError) -> String {
    one_line(&format!("cannot read the body: {}", innermost_cause(err)))
}

/// The text of the last error in `err`'s chain of sources that has one.
fn innermost_cause(err: &dyn Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        let t = e.to_string();
        if !t.is_empty() {
            text = t;
        }
        cause = e.source();
    }
    text
}

/// `text` with every run of white space (line breaks included) made one space.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::config::http::HttpResponse;
    use aws_sdk_s3::error::{ConnectorError, ErrorMetadata};
    use aws_sdk_s3::operation::get_object::GetObjectError;
    use aws_sdk_s3::primitives::SdkBody;
    use aws_sdk_s3::types::error::NoSuchKey;

    fn response(status: u16) -> HttpResponse {
        HttpResponse::new(status.try_into().unwrap(), SdkBody::empty())
    }

    #[test]
    fn a_connection_failure_is_one_line_without_debug_output() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let expected = format!("cannot connect: {refused}");
        let err: SdkError<GetObjectError> = SdkError::dispatch_failure(ConnectorError::io(Box::new(refused)));
        let text = describe_sdk_error(&err);
        assert_eq!(text, expected);
        assert!(!text.contains('{') && !text.contains("DispatchFailure") && !text.contains('\n'), "{text}");
    }

    #[test]
    fn a_timeout_says_so() {
        let err: SdkError<GetObjectError> =
            SdkError::dispatch_failure(ConnectorError::timeout("read timed out after 5s".into()));
        assert_eq!(describe_sdk_error(&err), "timed out: read timed out after 5s");
        let err: SdkError<GetObjectError, HttpResponse> = SdkError::timeout_error("operation\ntimeout");
        assert_eq!(describe_sdk_error(&err), "timed out: operation timeout");
    }

    #[test]
    fn a_service_error_is_its_code_message_and_status() {
        let meta = ErrorMetadata::builder().code("NoSuchKey").message("The specified key does not exist.").build();
        let err =
            SdkError::service_error(GetObjectError::NoSuchKey(NoSuchKey::builder().meta(meta).build()), response(404));
        assert_eq!(describe_sdk_error(&err), "NoSuchKey: The specified key does not exist. (HTTP 404)");
    }

    #[test]
    fn a_service_error_without_a_body_is_its_status() {
        let meta = ErrorMetadata::builder().build();
        let err = SdkError::service_error(GetObjectError::generic(meta), response(403));
        let text = describe_sdk_error(&err);
        assert_eq!(text, "HTTP 403");
    }

    #[test]
    fn a_response_error_names_the_status_and_the_cause() {
        let err: SdkError<GetObjectError> = SdkError::response_error("unexpected end of XML", response(200));
        assert_eq!(describe_sdk_error(&err), "unreadable response (HTTP 200): unexpected end of XML");
    }
}
