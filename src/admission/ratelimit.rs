//! Rate limits per client address: a token bucket (`requests` per
//! `period`, bursts of `burst`) kept as GCRA's one number per client, the
//! time its bucket is full again.
//!
//! Memory is bounded: at most `max_tracked_clients` addresses are kept
//! (over 16 shards, each with its own lock, so cores rarely meet). A full
//! shard first forgets the clients whose bucket is full again (they are no
//! different from new ones), then the eighth of its clients with the oldest
//! state; a flood of spoofed or distinct sources therefore costs a bounded
//! map and an amortised constant time per request. governor's keyed
//! limiter keeps every key until it is swept and cannot forget the oldest
//! ones, which is why this is not governor.

use std::collections::HashMap;

/// The clients' map: foldhash, seeded per process (an attacker cannot aim
/// addresses at one bucket chain without the seed), at a fraction of
/// SipHash's cost per request.
type Clients = HashMap<IpAddr, u64, foldhash::fast::RandomState>;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 16;

/// One site's limit.
#[derive(Debug)]
pub struct RateLimiter {
    /// Nanoseconds one request costs (period / requests).
    emission: u64,
    /// How far ahead of now a client's full-again time may be (burst - 1
    /// requests' worth).
    tolerance: u64,
    per_shard: usize,
    epoch: Instant,
    shards: [Mutex<Clients>; SHARDS],
    /// For the `RateLimit-Policy` field.
    pub requests: u32,
    pub period: Duration,
}

impl RateLimiter {
    /// `requests` per `period`, bursts of `burst`, at most `max_clients`
    /// addresses tracked.
    pub fn new(requests: u32, period: Duration, burst: u32, max_clients: usize) -> RateLimiter {
        let period_ns = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX);
        let emission = (period_ns / u64::from(requests.max(1))).max(1);
        RateLimiter {
            emission,
            tolerance: emission.saturating_mul(u64::from(burst.max(1) - 1)),
            per_shard: (max_clients / SHARDS).max(1),
            epoch: Instant::now(),
            shards: std::array::from_fn(|_| Mutex::new(Clients::default())),
            requests,
            period,
        }
    }

    fn shard(&self, ip: &IpAddr) -> &Mutex<Clients> {
        let h = match ip {
            IpAddr::V4(a) => u32::from(*a) as usize,
            IpAddr::V6(a) => (u128::from(*a) ^ (u128::from(*a) >> 64)) as usize,
        };
        // Spread neighbouring addresses over the shards.
        &self.shards[(h.wrapping_mul(0x9e37_79b9) >> 7) % SHARDS]
    }

    /// Takes one request from `ip`'s bucket, or says how long until one is
    /// there.
    ///
    /// The time is the coarse clock's (`crate::clock`, within a tick of
    /// 1–10 ms): requests in one tick share a `now`, which the bucket's
    /// tolerance absorbs; the rate over a period is exact.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let now = crate::clock::coarse_now().saturating_duration_since(self.epoch);
        self.check_at(ip, u64::try_from(now.as_nanos()).unwrap_or(u64::MAX))
    }

    fn check_at(&self, ip: IpAddr, now: u64) -> Result<(), Duration> {
        let mut map = self.shard(&ip).lock().unwrap_or_else(|p| p.into_inner());
        // A known client: one lookup.
        if let Some(t) = map.get_mut(&ip) {
            let full_again = (*t).max(now);
            if full_again - now > self.tolerance {
                return Err(Duration::from_nanos(full_again - now - self.tolerance));
            }
            *t = full_again + self.emission;
            return Ok(());
        }
        if map.len() >= self.per_shard {
            evict(&mut map, now);
        }
        // A new client's bucket is full: this request is within it.
        map.insert(ip, now + self.emission);
        Ok(())
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

/// Makes room in a full shard: the clients whose bucket is full again go;
/// if that is not enough, the eighth with the oldest state.
fn evict(map: &mut Clients, now: u64) {
    let before = map.len();
    map.retain(|_, t| *t > now);
    if map.len() < before {
        return;
    }
    let mut times: Vec<u64> = map.values().copied().collect();
    let k = (times.len() / 8).max(1);
    let (_, cut, _) = times.select_nth_unstable(k - 1);
    let cut = *cut;
    map.retain(|_, t| *t > cut);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_burst_then_the_rate() {
        let l = RateLimiter::new(50, Duration::from_secs(1), 50, 1000);
        let ip: IpAddr = "127.0.0.2".parse().unwrap_or(IpAddr::from([127, 0, 0, 2]));
        let other: IpAddr = IpAddr::from([127, 0, 0, 3]);
        let ok = (0..500).filter(|_| l.check_at(ip, 0).is_ok()).count();
        assert_eq!(ok, 50);
        let wait = l.check_at(ip, 0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(20));
        assert!(
            l.check_at(other, 0).is_ok(),
            "another client is not affected"
        );
        // One request's worth later, one more.
        assert!(l.check_at(ip, 20 * MS).is_ok());
        assert!(l.check_at(ip, 20 * MS).is_err());
        // A second later the whole burst is back.
        let ok = (0..60)
            .filter(|_| l.check_at(ip, 2_000 * MS).is_ok())
            .count();
        assert_eq!(ok, 50);
    }

    #[test]
    fn memory_stays_bounded_under_100000_distinct_clients() {
        let l = RateLimiter::new(10, Duration::from_secs(1), 10, 4096);
        for i in 0..100_000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert!(l.check_at(ip, u64::from(i) * 1_000).is_ok());
            assert!(l.tracked() <= 4096 + SHARDS);
        }
        assert!(l.tracked() > 1000, "{}", l.tracked());
    }
}
