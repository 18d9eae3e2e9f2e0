//! Flow control of one endpoint: how many deliveries it may have in flight across the fleet,
//! and at what rate it may receive them. The store enforces both when claiming.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The in-flight limit of an endpoint that sets none.
///
/// A receiver answering in 50 ms takes 640 deliveries a second at 32 in flight, far more than
/// a dashboard is sent even during a large incident, while a receiver that hangs holds at most
/// 32 of a worker's 200 delivery slots (the adaptive limit then brings it down to 1), and 32
/// keeps the limit out of the claim's way at ordinary loads.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 32;

/// The highest in-flight limit an endpoint may set.
pub const MAX_IN_FLIGHT_CEILING: u32 = 10_000;

/// A rate limit: at most `count` deliveries per `per`, with a burst of one second's worth
/// (at least 1) after a quiet spell. Written `50/s`, `600/m` or `100/h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Per,
}

/// The period of a [`Rate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Per {
    Second,
    Minute,
    Hour,
}

impl Per {
    pub fn duration(self) -> Duration {
        Duration::from_secs(match self {
            Per::Second => 1,
            Per::Minute => 60,
            Per::Hour => 3600,
        })
    }

    fn suffix(self) -> &'static str {
        match self {
            Per::Second => "s",
            Per::Minute => "m",
            Per::Hour => "h",
        }
    }
}

impl Rate {
    /// Milliseconds between two deliveries at this rate.
    pub fn interval_ms(&self) -> f64 {
        self.per.duration().as_millis() as f64 / f64::from(self.count)
    }

    /// Deliveries that may go at once after a quiet spell: one second's worth, at least 1.
    pub fn burst(&self) -> u32 {
        (f64::from(self.count) / self.per.duration().as_secs_f64())
            .floor()
            .max(1.0) as u32
    }
}

/// Why a rate did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rate {0:?} must be <count>/s, <count>/m or <count>/h with a count of 1 to 1000000, e.g. 50/s or 600/m")]
pub struct RateError(pub String);

impl FromStr for Rate {
    type Err = RateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || RateError(s.to_owned());
        let (count, per) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let per = match per.trim() {
            "s" | "sec" | "second" => Per::Second,
            "m" | "min" | "minute" => Per::Minute,
            "h" | "hour" => Per::Hour,
            _ => return Err(bad()),
        };
        if !(1..=1_000_000).contains(&count) {
            return Err(bad());
        }
        Ok(Rate { count, per })
    }
}

/// Reads a rate setting as operators write it: a [`Rate`] (`50/s`), or `none` (or `off`) for
/// no rate limit.
pub fn parse_rate_setting(text: &str) -> Result<Option<Rate>, RateError> {
    match text.trim() {
        "none" | "off" => Ok(None),
        rate => rate.parse().map(Some),
    }
}

/// Why an in-flight limit was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("max_in_flight {0} must be between 1 and {MAX_IN_FLIGHT_CEILING}")]
pub struct MaxInFlightError(pub u64);

/// Checks an in-flight limit: 1 to [`MAX_IN_FLIGHT_CEILING`].
pub fn check_max_in_flight(n: u64) -> Result<u32, MaxInFlightError> {
    match u32::try_from(n) {
        Ok(n) if (1..=MAX_IN_FLIGHT_CEILING).contains(&n) => Ok(n),
        _ => Err(MaxInFlightError(n)),
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.per.suffix())
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print_back() {
        for (text, count, per) in [("50/s", 50, Per::Second), ("600/m", 600, Per::Minute)] {
            let rate: Rate = text.parse().unwrap();
            assert_eq!(rate, Rate { count, per });
            assert_eq!(rate.to_string(), text);
        }
        assert_eq!("10/h".parse::<Rate>().unwrap().per, Per::Hour);
        for bad in ["", "50", "50/d", "0/s", "-1/s", "x/s", "2000000/s", "50/"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn rate_settings_and_in_flight_limits() {
        assert_eq!(parse_rate_setting(" none "), Ok(None));
        assert_eq!(parse_rate_setting("off"), Ok(None));
        assert_eq!(
            parse_rate_setting("5/m"),
            Ok(Some(Rate {
                count: 5,
                per: Per::Minute
            }))
        );
        assert!(parse_rate_setting("fast").is_err());
        assert_eq!(check_max_in_flight(1), Ok(1));
        assert_eq!(check_max_in_flight(10_000), Ok(10_000));
        assert_eq!(check_max_in_flight(0), Err(MaxInFlightError(0)));
        assert_eq!(check_max_in_flight(10_001), Err(MaxInFlightError(10_001)));
        assert!(check_max_in_flight(u64::MAX)
            .unwrap_err()
            .to_string()
            .contains("between 1 and 10000"));
    }

    #[test]
    fn interval_and_burst_follow_the_rate() {
        let r: Rate = "50/s".parse().unwrap();
        assert_eq!(r.interval_ms(), 20.0);
        assert_eq!(r.burst(), 50);
        let r: Rate = "600/m".parse().unwrap();
        assert_eq!(r.interval_ms(), 100.0);
        assert_eq!(r.burst(), 10);
        let r: Rate = "30/m".parse().unwrap();
        assert_eq!(r.burst(), 1);
        assert_eq!(r.interval_ms(), 2000.0);
    }
}
