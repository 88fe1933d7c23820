//! Durations written the way Kubernetes (Go's `time.ParseDuration`) writes them: `5m`, `1h30m`,
//! `90s`, `1.5h`, `250ms`. The CRD schema checks the same grammar with [`PATTERN`], so a value the
//! API server accepts always parses here.

use std::time::Duration;

/// The schema pattern for a Go duration: one or more `<number><unit>` groups, no sign.
pub const PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseDurationError(pub String);

impl std::fmt::Display for ParseDurationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid duration {:?}: expected groups like 5m, 1h30m, 90s or 250ms",
            self.0
        )
    }
}

impl std::error::Error for ParseDurationError {}

/// Parses a Go-style duration such as `1h30m` or `1.5s`.
pub fn parse(input: &str) -> Result<Duration, ParseDurationError> {
    let err = || ParseDurationError(input.to_string());
    let mut rest = input;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(err());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        let number: f64 = rest[..num_len].parse().map_err(|_| err())?;
        if num_len == 0 || rest[..num_len].ends_with('.') || rest[..num_len].starts_with('.') {
            return Err(err());
        }
        rest = &rest[num_len..];
        let (unit_secs, unit_len) = [
            ("ns", 1e-9),
            ("us", 1e-6),
            ("µs", 1e-6),
            ("ms", 1e-3),
            ("h", 3600.0),
            ("m", 60.0),
            ("s", 1.0),
        ]
        .iter()
        .find(|(unit, _)| rest.starts_with(unit))
        .map(|(unit, secs)| (*secs, unit.len()))
        .ok_or_else(err)?;
        total += number * unit_secs;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| err())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let cases = [
            ("5m", 300.0),
            ("1h30m", 5400.0),
            ("90s", 90.0),
            ("1.5h", 5400.0),
            ("250ms", 0.25),
            ("2m30s", 150.0),
            ("10us", 0.00001),
        ];
        for (input, secs) in cases {
            let got = parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert!(
                (got.as_secs_f64() - secs).abs() < 1e-9,
                "{input}: got {got:?}"
            );
        }
    }

    #[test]
    fn refuses_what_go_refuses() {
        for input in ["", "5", "m", "5 m", "-5m", "5d", "1.m", ".5m", "abc", "5mm"] {
            assert!(parse(input).is_err(), "{input:?} should not parse");
        }
    }
}
