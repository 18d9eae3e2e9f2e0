//! The retry schedule: how long to wait after each failed attempt before the next one.
//!
//! A schedule of `n` delays allows `n` retries, so `n + 1` attempts in all. The default is the
//! product's: 20 retries over about 24 days, from 3 seconds to over 5 days, each delay jittered
//! by ±10 % so that a burst of failures does not come back as a burst.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::Rng;

/// Default delays in seconds (SPEC §1.7); their sum is about 24.0 days.
pub const DEFAULT_DELAYS_SECS: [u64; 20] = [
    3, 46, 232, 735, 1793, 3719, 6889, 11753, 18826, 28694, 42011, 59499, 81952, 110230, 145262,
    188047, 239653, 301216, 373940, 459100,
];

/// Default jitter: each delay is drawn uniformly from `delay × (1 ± 0.10)`.
pub const DEFAULT_JITTER: f64 = 0.10;

/// Why a schedule string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("retry schedule entry {index} ({text:?}) is not a duration such as 50ms, 3s, 2m, 1h: {reason}")]
    BadDuration {
        index: usize,
        text: String,
        reason: String,
    },
    #[error("retry schedule entry {index} is zero; every delay must be positive")]
    Zero { index: usize },
}

/// The delays between attempts, with jitter.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
    jitter: f64,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self {
            delays: DEFAULT_DELAYS_SECS
                .iter()
                .map(|s| Duration::from_secs(*s))
                .collect(),
            jitter: DEFAULT_JITTER,
        }
    }
}

impl RetrySchedule {
    /// A schedule of exactly these delays (an empty list means: never retry).
    pub fn new(delays: Vec<Duration>) -> Self {
        Self {
            delays,
            jitter: DEFAULT_JITTER,
        }
    }

    /// The same delays with another jitter fraction (clamped to `0.0..=0.5`).
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter.clamp(0.0, 0.5);
        self
    }

    /// How many retries the schedule allows.
    pub fn retries(&self) -> u32 {
        self.delays.len() as u32
    }

    /// How many attempts a job gets in all: the first one plus every retry.
    pub fn max_attempts(&self) -> u32 {
        self.retries() + 1
    }

    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// The longest delay of the schedule; the cap for a receiver's `Retry-After`.
    pub fn longest(&self) -> Duration {
        self.delays.iter().copied().max().unwrap_or_default()
    }

    /// The sum of all delays without jitter: how long a job can stay in the system.
    pub fn window(&self) -> Duration {
        self.delays.iter().sum()
    }

    /// The un-jittered delay after failed attempt number `attempts` (1-based), or `None` when
    /// that attempt was the last one and the job is to be discarded.
    pub fn base_delay(&self, attempts: u32) -> Option<Duration> {
        let index = attempts.checked_sub(1)? as usize;
        self.delays.get(index).copied()
    }

    /// The jittered delay after failed attempt number `attempts`, or `None` when retries are
    /// exhausted.
    pub fn next_delay(&self, attempts: u32, rng: &mut impl Rng) -> Option<Duration> {
        let base = self.base_delay(attempts)?;
        if self.jitter == 0.0 {
            return Some(base);
        }
        let factor = rng.random_range((1.0 - self.jitter)..=(1.0 + self.jitter));
        Some(base.mul_f64(factor))
    }
}

impl FromStr for RetrySchedule {
    type Err = ScheduleError;

    /// Parses a comma-separated list of durations such as `50ms,1s,2m`. An empty string is a
    /// schedule with no retries.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(Self::new(Vec::new()));
        }
        let delays = s
            .split(',')
            .enumerate()
            .map(|(index, part)| {
                let text = part.trim();
                let d =
                    humantime::parse_duration(text).map_err(|e| ScheduleError::BadDuration {
                        index: index + 1,
                        text: text.to_owned(),
                        reason: e.to_string(),
                    })?;
                if d.is_zero() {
                    return Err(ScheduleError::Zero { index: index + 1 });
                }
                Ok(d)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(delays))
    }
}

impl fmt::Display for RetrySchedule {
    /// Writes the schedule back in the form [`FromStr`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.delays.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}", humantime::format_duration(*d))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_twenty_retries_over_about_24_days() {
        let s = RetrySchedule::default();
        assert_eq!(s.retries(), 20);
        assert_eq!(s.max_attempts(), 21);
        let days = s.window().as_secs_f64() / 86_400.0;
        assert!((23.5..24.5).contains(&days), "window is {days} days");
        assert_eq!(s.longest(), Duration::from_secs(459_100));
    }

    #[test]
    fn parses_and_prints_durations() {
        let s: RetrySchedule = "50ms, 1s,2m".parse().unwrap();
        assert_eq!(
            s.delays(),
            &[
                Duration::from_millis(50),
                Duration::from_secs(1),
                Duration::from_secs(120)
            ]
        );
        assert_eq!(s.to_string().parse::<RetrySchedule>().unwrap(), s);
        assert_eq!("".parse::<RetrySchedule>().unwrap().retries(), 0);
    }

    #[test]
    fn refuses_bad_entries_naming_them() {
        let err = "1s,soon".parse::<RetrySchedule>().unwrap_err();
        assert!(matches!(err, ScheduleError::BadDuration { index: 2, .. }));
        assert!(err.to_string().contains("soon"));
        assert_eq!(
            "1s,0s".parse::<RetrySchedule>().unwrap_err(),
            ScheduleError::Zero { index: 2 }
        );
    }

    #[test]
    fn jitter_stays_within_bounds_and_exhaustion_is_none() {
        let s = RetrySchedule::default();
        let mut rng = rand::rng();
        for attempt in 1..=20 {
            let base = s.base_delay(attempt).unwrap().as_secs_f64();
            for _ in 0..200 {
                let d = s.next_delay(attempt, &mut rng).unwrap().as_secs_f64();
                assert!(d >= base * 0.9 - 1e-9 && d <= base * 1.1 + 1e-9);
            }
        }
        assert_eq!(s.next_delay(21, &mut rng), None);
        assert_eq!(s.next_delay(0, &mut rng), None);
    }
}
