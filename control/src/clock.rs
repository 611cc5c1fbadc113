//! The control plane's one clock, and the two ways its time stamps are
//! written: pointers (`created_at`) to the millisecond, environments'
//! records (`CreatedAt`, `TakenAt`, `DeletedAt`) to the second.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now. Every time stamp the control plane writes comes from here.
pub fn now() -> SystemTime {
    SystemTime::now()
}

/// `t` in RFC 3339, UTC, with milliseconds.
pub fn rfc3339_millis(t: SystemTime) -> String {
    aws_sdk_s3::primitives::DateTime::from(t).fmt(aws_sdk_s3::primitives::DateTimeFormat::DateTime).unwrap_or_default()
}

/// `t` in RFC 3339, UTC, to the second.
pub fn rfc3339_seconds(t: SystemTime) -> String {
    rfc3339(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs())
}

/// Seconds since the epoch in RFC 3339, without a date library: civil-from-days.
fn rfc3339(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn both_forms_name_the_same_instant() {
        let t = UNIX_EPOCH + Duration::from_millis(1_764_571_714_123);
        assert_eq!(rfc3339_seconds(t), "2025-12-01T06:48:34Z");
        assert_eq!(rfc3339_millis(t), "2025-12-01T06:48:34.123Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_735_689_599), "2024-12-31T23:59:59Z");
    }
}
