//! Choosing an origin for one attempt, among those the caller allows
//! (routable, not tried yet):
//!
//! - round robin: nginx's smooth weighted round robin: every pick adds each
//!   eligible origin's weight to its score, takes the highest, and takes
//!   the total off the winner, so weights 5/1/1 give `a a b a c a a`, not
//!   five `a` in a row;
//! - least connections: the fewest requests in flight per unit of weight,
//!   ties broken in turn;
//! - random two: two origins drawn at random by weight, the one with fewer
//!   requests in flight per unit of weight (Mitzenmacher's power of two
//!   choices, as Envoy and Pingora offer);
//! - hash and client address: weighted rendezvous hashing on the cache key
//!   or on the client's address (Thaler and
//!   Ravishankar; Schindelhauer and Schomaker for weights): every origin
//!   scores the key and the highest wins, so each object is fetched from
//!   one origin and removing an origin moves only the keys it had.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::Balance;

/// What the balancer knows of one origin.
pub(super) trait Candidate {
    fn weight(&self) -> u32;
    fn in_flight(&self) -> usize;
    /// A stable per-origin value for rendezvous hashing.
    fn seed(&self) -> u64;
}

/// One site's balancer.
#[derive(Debug)]
pub(super) enum Balancer {
    RoundRobin(Mutex<Vec<i64>>),
    LeastConn(AtomicUsize),
    RandomTwo,
    Hash,
}

/// SplitMix64's finaliser: a well-mixed 64-bit value from any input.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `a` carries less load per unit of weight than `b`.
fn lighter<C: Candidate>(a: &C, b: &C) -> bool {
    (a.in_flight() as u128) * u128::from(b.weight())
        < (b.in_flight() as u128) * u128::from(a.weight())
}

impl Balancer {
    pub(super) fn new(kind: Balance, origins: usize) -> Balancer {
        match kind {
            Balance::RoundRobin => Balancer::RoundRobin(Mutex::new(vec![0; origins])),
            Balance::LeastConn => Balancer::LeastConn(AtomicUsize::new(0)),
            Balance::RandomTwo => Balancer::RandomTwo,
            Balance::Hash | Balance::ClientIp => Balancer::Hash,
        }
    }

    /// The index of the origin for the next attempt, among those `ok`
    /// allows; `key` is the cache key (for hashing).
    pub(super) fn pick<C: Candidate>(
        &self,
        origins: &[C],
        ok: impl Fn(usize) -> bool,
        key: Option<&[u8; 32]>,
    ) -> Option<usize> {
        match origins.len() {
            0 => return None,
            1 => return ok(0).then_some(0),
            _ => {}
        }
        match self {
            Balancer::RoundRobin(current) => {
                let mut cur = current.lock().unwrap_or_else(|p| p.into_inner());
                if cur.len() != origins.len() {
                    cur.resize(origins.len(), 0);
                }
                let mut total = 0i64;
                let mut best: Option<usize> = None;
                for (i, o) in origins.iter().enumerate() {
                    if !ok(i) {
                        continue;
                    }
                    let w = i64::from(o.weight());
                    cur[i] += w;
                    total += w;
                    if best.is_none_or(|b| cur[i] > cur[b]) {
                        best = Some(i);
                    }
                }
                let b = best?;
                cur[b] -= total;
                Some(b)
            }
            Balancer::LeastConn(next) => {
                let n = origins.len();
                let start = next.fetch_add(1, Ordering::Relaxed) % n;
                let mut best: Option<usize> = None;
                for j in 0..n {
                    let i = (start + j) % n;
                    if ok(i) && best.is_none_or(|b| lighter(&origins[i], &origins[b])) {
                        best = Some(i);
                    }
                }
                best
            }
            Balancer::RandomTwo => {
                let total: u64 = origins
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| ok(*i))
                    .map(|(_, o)| u64::from(o.weight()))
                    .sum();
                if total == 0 {
                    return None;
                }
                let draw = |skip: Option<usize>| -> Option<usize> {
                    let total = total - skip.map_or(0, |s| u64::from(origins[s].weight()));
                    if total == 0 {
                        return None;
                    }
                    let mut r = rand::random_range(0..total);
                    for (i, o) in origins.iter().enumerate() {
                        if !ok(i) || Some(i) == skip {
                            continue;
                        }
                        let w = u64::from(o.weight());
                        if r < w {
                            return Some(i);
                        }
                        r -= w;
                    }
                    None
                };
                let a = draw(None)?;
                match draw(Some(a)) {
                    Some(b) if lighter(&origins[b], &origins[a]) => Some(b),
                    _ => Some(a),
                }
            }
            Balancer::Hash => {
                let k = key.map_or(0, |k| {
                    u64::from_le_bytes([k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]])
                });
                let mut best: Option<(usize, f64)> = None;
                for (i, o) in origins.iter().enumerate() {
                    if !ok(i) {
                        continue;
                    }
                    // A uniform value in (0, 1) for (key, origin), then
                    // weight / -ln(u): the largest wins, in proportion to
                    // the weights.
                    let h = mix(k ^ o.seed());
                    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                    let score = f64::from(o.weight()) / -u.ln();
                    if best.is_none_or(|(_, s)| score > s) {
                        best = Some((i, score));
                    }
                }
                best.map(|(i, _)| i)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    struct C {
        weight: u32,
        in_flight: Cell<usize>,
        seed: u64,
    }

    impl Candidate for C {
        fn weight(&self) -> u32 {
            self.weight
        }
        fn in_flight(&self) -> usize {
            self.in_flight.get()
        }
        fn seed(&self) -> u64 {
            self.seed
        }
    }

    fn cs(weights: &[u32]) -> Vec<C> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| C {
                weight: w,
                in_flight: Cell::new(0),
                seed: mix(i as u64 + 1000),
            })
            .collect()
    }

    #[test]
    fn smooth_round_robin_interleaves_by_weight() {
        let o = cs(&[5, 1, 1]);
        let b = Balancer::new(Balance::RoundRobin, 3);
        let picks: Vec<usize> = (0..7)
            .map(|_| b.pick(&o, |_| true, None).unwrap_or(9))
            .collect();
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
        // An origin that is not allowed is skipped; the others share.
        let picks: Vec<usize> = (0..4)
            .map(|_| b.pick(&o, |i| i != 0, None).unwrap_or(9))
            .collect();
        assert_eq!(picks.iter().filter(|&&i| i == 1).count(), 2);
        assert_eq!(b.pick(&o, |_| false, None), None);
    }

    #[test]
    fn least_conn_weighs_in_flight_requests() {
        let o = cs(&[1, 1, 2]);
        let b = Balancer::new(Balance::LeastConn, 3);
        o[0].in_flight.set(1);
        o[1].in_flight.set(2);
        o[2].in_flight.set(3); // 1.5 per unit of weight
        assert_eq!(b.pick(&o, |_| true, None), Some(0));
        o[0].in_flight.set(2);
        // Ties (1 and 1 per weight... 2/1 vs 3/2): origin 2 is lighter.
        assert_eq!(b.pick(&o, |_| true, None), Some(2));
        // Equal loads: taken in turn.
        for c in &o {
            c.in_flight.set(0);
        }
        let picks: std::collections::HashSet<usize> =
            (0..3).filter_map(|_| b.pick(&o, |_| true, None)).collect();
        assert_eq!(picks.len(), 3);
    }

    #[test]
    fn random_two_prefers_the_lighter_and_respects_ok() {
        let o = cs(&[1, 1]);
        let b = Balancer::new(Balance::RandomTwo, 2);
        o[0].in_flight.set(5);
        for _ in 0..50 {
            assert_eq!(b.pick(&o, |_| true, None), Some(1));
            assert_eq!(b.pick(&o, |i| i == 0, None), Some(0));
        }
    }

    #[test]
    fn rendezvous_moves_only_the_removed_origins_keys() {
        let o = cs(&[1, 1, 1]);
        let b = Balancer::new(Balance::Hash, 3);
        let keys: Vec<[u8; 32]> = (0..3000u32)
            .map(|i| *blake3::hash(&i.to_le_bytes()).as_bytes())
            .collect();
        let before: Vec<usize> = keys
            .iter()
            .map(|k| b.pick(&o, |_| true, Some(k)).unwrap_or(9))
            .collect();
        for i in 0..3 {
            let share = before.iter().filter(|&&x| x == i).count();
            assert!((800..1200).contains(&share), "origin {i}: {share}");
        }
        let after: Vec<usize> = keys
            .iter()
            .map(|k| b.pick(&o, |i| i != 1, Some(k)).unwrap_or(9))
            .collect();
        for (x, y) in before.iter().zip(&after) {
            if *x != 1 {
                assert_eq!(x, y, "a key of a remaining origin moved");
            }
        }
    }
}
