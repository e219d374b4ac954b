//! Durations written the Go way (`40s`, `1m30s`, `500ms`), as kube-controller-manager's
//! duration flags take them.

use std::time::Duration;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("time: invalid duration \"{0}\"")]
pub struct InvalidDuration(String);

/// Parses a sequence of whole numbers each with a unit: `h`, `m`, `s`, `ms`.
pub fn parse(s: &str) -> Result<Duration, InvalidDuration> {
    let invalid = || InvalidDuration(s.to_string());
    if s.is_empty() {
        return Err(invalid());
    }
    let mut rest = s;
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(invalid)?;
        let n: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "h" => Duration::from_secs(n * 3600),
            "m" => Duration::from_secs(n * 60),
            "s" => Duration::from_secs(n),
            "ms" => Duration::from_millis(n),
            _ => return Err(invalid()),
        };
        total += part;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse("40s"), Ok(Duration::from_secs(40)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "40", "s", "4x", "-1s", "1.5s"] {
            assert_eq!(parse(bad), Err(InvalidDuration(bad.into())), "{bad}");
        }
    }
}
