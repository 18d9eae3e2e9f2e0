//! Failed logins slowed down per client address: each failure from an address makes its next
//! failure's answer wait twice as long, from 1 s up to 30 s, until 15 minutes pass without one
//! or a login from it succeeds. A right token is never made to wait.
//!
//! The address is the TCP peer's: behind a reverse proxy every client shares the proxy's, and
//! the slowdown applies to them together.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The wait of a first failure.
pub const FIRST_WAIT: Duration = Duration::from_secs(1);

/// The longest wait.
pub const LONGEST_WAIT: Duration = Duration::from_secs(30);

/// How long an address's failures are remembered after its last one.
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);

/// Most addresses remembered; past it, the ones whose last failure is oldest are forgotten.
const MOST_ADDRESSES: usize = 10_000;

/// Recent login failures, by client address.
#[derive(Debug, Default)]
pub struct LoginFailures {
    by_address: Mutex<HashMap<IpAddr, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl LoginFailures {
    /// Records a failure from `address` at `now` and answers how long its answer waits.
    pub fn failed(&self, address: IpAddr, now: Instant) -> Duration {
        let mut map = self.by_address.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(address).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.saturating_duration_since(entry.last) >= FORGET_AFTER {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        let wait = wait_after(entry.count);
        if map.len() > MOST_ADDRESSES {
            forget_oldest(&mut map, now);
        }
        wait
    }

    /// Forgets `address`'s failures: a login from it succeeded.
    pub fn succeeded(&self, address: IpAddr) {
        let mut map = self.by_address.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&address);
    }
}

/// The wait of the `count`th failure in a row: 1 s, 2 s, 4 s, … up to [`LONGEST_WAIT`].
fn wait_after(count: u32) -> Duration {
    let doublings = count.saturating_sub(1).min(16);
    (FIRST_WAIT * 2u32.pow(doublings)).min(LONGEST_WAIT)
}

/// Drops the addresses whose failures are forgotten by now, and if that is not enough, the
/// older half.
fn forget_oldest(map: &mut HashMap<IpAddr, Failures>, now: Instant) {
    map.retain(|_, f| now.saturating_duration_since(f.last) < FORGET_AFTER);
    if map.len() > MOST_ADDRESSES {
        let mut lasts: Vec<Instant> = map.values().map(|f| f.last).collect();
        lasts.sort_unstable();
        let cut = lasts[lasts.len() / 2];
        map.retain(|_, f| f.last > cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    #[test]
    fn each_failure_from_an_address_doubles_its_wait_up_to_the_longest() {
        let failures = LoginFailures::default();
        let t = Instant::now();
        let waits: Vec<u64> = (0..8)
            .map(|i| {
                failures
                    .failed(address(1), t + Duration::from_secs(i))
                    .as_secs()
            })
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        // Another address starts from the first wait.
        assert_eq!(failures.failed(address(2), t), FIRST_WAIT);
    }

    #[test]
    fn a_success_or_a_quiet_quarter_hour_forgets_the_failures() {
        let failures = LoginFailures::default();
        let t = Instant::now();
        failures.failed(address(1), t);
        failures.failed(address(1), t);
        failures.succeeded(address(1));
        assert_eq!(failures.failed(address(1), t), FIRST_WAIT);
        failures.failed(address(1), t);
        assert_eq!(failures.failed(address(1), t + FORGET_AFTER), FIRST_WAIT);
    }

    #[test]
    fn the_remembered_addresses_are_bounded() {
        let failures = LoginFailures::default();
        let t = Instant::now();
        for i in 0..(MOST_ADDRESSES as u32 + 10) {
            let ip = IpAddr::from(i.to_be_bytes());
            failures.failed(ip, t + Duration::from_millis(u64::from(i)));
        }
        let kept = failures.by_address.lock().unwrap().len();
        assert!(kept <= MOST_ADDRESSES, "{kept}");
        // The newest are kept.
        let newest = IpAddr::from((MOST_ADDRESSES as u32 + 9).to_be_bytes());
        assert_eq!(
            failures.failed(newest, t + Duration::from_secs(60)),
            Duration::from_secs(2)
        );
    }
}
