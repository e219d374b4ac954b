//! Parsing of `resource.Quantity` strings, enough to validate and compare them.

use thiserror::Error;

/// The message Kubernetes gives for an unparseable quantity (`resource.ErrFormatWrong`).
#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)]
pub struct QuantityError;

/// Parses a quantity (`100m`, `1Gi`, `1e3`, `0.5`) into its value as `f64`. Precision is
/// ample for validation and comparison; wkube never stores the parsed form.
pub fn parse_quantity(s: &str) -> Result<f64, QuantityError> {
    let split = s
        .char_indices()
        .find(|(i, c)| !(c.is_ascii_digit() || *c == '.' || (*i == 0 && (*c == '+' || *c == '-'))))
        .map_or(s.len(), |(i, _)| i);
    let (num, suffix) = s.split_at(split);
    let digits = num.trim_start_matches(['+', '-']);
    if digits.is_empty() || digits == "." || digits.matches('.').count() > 1 {
        return Err(QuantityError);
    }
    let value: f64 = num.parse().map_err(|_| QuantityError)?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => {
            let e: i32 = exp[1..].parse().map_err(|_| QuantityError)?;
            10f64.powi(e)
        }
        _ => return Err(QuantityError),
    };
    Ok(value * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantity_table() {
        let cases: &[(&str, Option<f64>)] = &[
            ("1", Some(1.0)),
            ("100m", Some(0.1)),
            ("1Gi", Some(1073741824.0)),
            ("1.5G", Some(1.5e9)),
            ("1e3", Some(1000.0)),
            ("-1", Some(-1.0)),
            ("+2k", Some(2000.0)),
            ("abc", None),
            ("1x", None),
            ("", None),
            ("1..2", None),
            ("1Gii", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_quantity(s).ok(), *want, "{s}");
        }
    }
}
