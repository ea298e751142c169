//! `sliding_log`: exact; a ring of the last `limit` admission times.
//!
//! The twin of `scripts/redis/sliding_log.lua`: the same ring and the same steps in the same
//! order, in integers, so that both stores give the same answer to the same sequence of calls
//! (specified in `scripts/redis/README.md`).
//!
//! The ring holds the last `limit` admission times, oldest at `head`. A unit fits iff the
//! oldest of the slots it would take is out of the window, so the check is O(1) plus a binary
//! search for `remaining`. Redis packs the slots as offsets from a base time; here they are
//! plain µs, which gives the same answers because every offset Redis stores is exact.

use super::params::{ceil_div, outcome, to_u64, Checked, LimitParams};
use super::{Data, Entry, Pending};

/// The last admissions of one key.
pub(super) struct Ring {
    /// Admission times in µs, `slots[head]` the oldest; 0 is an empty slot.
    slots: Box<[u64]>,
    head: usize,
    /// The window start of the latest admission: a slot at or before it is dead for good
    /// (the sorted set this replaces deleted such entries).
    floor: i128,
}

/// What the check saw, for the commit.
pub(super) struct Seen {
    /// The clock clamped to the newest slot, so that slots stay in time order.
    eff: i128,
    /// The first live slot (logical index) and how many are live.
    first_live: usize,
    live: usize,
    /// False when there was no ring (or only an expired one): the commit starts a new one.
    had_ring: bool,
}

impl Ring {
    /// The admission time in logical slot `i` (0 = oldest).
    fn at(&self, i: usize) -> i128 {
        i128::from(self.slots[(self.head + i) % self.slots.len()])
    }

    /// The first logical slot later than `lo` (the length when none): slots are in time order.
    fn first_live(&self, lo: i128) -> usize {
        let (mut a, mut b) = (0, self.slots.len());
        while a < b {
            let m = (a + b) / 2;
            if self.at(m) > lo {
                b = m;
            } else {
                a = m + 1;
            }
        }
        a
    }

    /// Records an admission the check allowed: the oldest `cost` slots are dead, overwrite them
    /// (or rebuild at the new size when the limit changed).
    fn commit(&mut self, seen: &Seen, p: &LimitParams) {
        if self.slots.len() as i128 != p.limit {
            *self = Ring::build(Some(self), seen, p);
            return;
        }
        let floor = self.floor.max(new_floor(seen, p));
        let n = self.slots.len();
        let eff = to_slot(seen.eff);
        for i in 0..p.cost as usize {
            self.slots[(self.head + i) % n] = eff;
        }
        self.head = (self.head + p.cost as usize) % n;
        self.floor = floor;
    }

    /// A ring of `limit` slots: empty ones, the live ones of `old`, then `cost` new ones.
    fn build(old: Option<&Ring>, seen: &Seen, p: &LimitParams) -> Ring {
        let limit = p.limit as usize;
        let cost = p.cost as usize;
        let mut slots = vec![0u64; limit];
        let empty = limit - cost - seen.live;
        if let Some(old) = old {
            for j in 0..seen.live {
                slots[empty + j] = to_slot(old.at(seen.first_live + j));
            }
        }
        slots[limit - cost..].fill(to_slot(seen.eff));
        Ring {
            slots: slots.into_boxed_slice(),
            head: 0,
            floor: old.map_or(0, |o| o.floor).max(new_floor(seen, p)),
        }
    }
}

/// µs after which the ring is equivalent to no ring (the Lua script's TTL).
fn expires_us(seen: &Seen, p: &LimitParams) -> u64 {
    to_u64(seen.eff + p.window_ms * 1000)
}

/// Records an admission in the ring of `entry`. `None` when there is no ring yet (the caller
/// stores a new entry from [`fresh`]).
pub(super) fn append(entry: Option<&mut Entry>, seen: &Seen, p: &LimitParams) -> Option<()> {
    let Some(Entry {
        data: Data::Log(ring),
        expires_us: exp,
    }) = entry
    else {
        return None;
    };
    if !seen.had_ring {
        return None;
    }
    ring.commit(seen, p);
    *exp = expires_us(seen, p);
    Some(())
}

/// A new ring holding `cost` admissions.
pub(super) fn fresh(seen: &Seen, p: &LimitParams) -> Entry {
    Entry {
        expires_us: expires_us(seen, p),
        data: Data::Log(Ring::build(None, seen, p)),
    }
}

fn new_floor(seen: &Seen, p: &LimitParams) -> i128 {
    (seen.eff - p.window_ms * 1000).max(0)
}

fn to_slot(t: i128) -> u64 {
    to_u64(t)
}

/// `sliding_log_check` of the Lua script.
pub(super) fn check(entry: Option<&mut Entry>, p: &LimitParams) -> Checked {
    // A ring past its expiry is gone, as Redis drops the key at its TTL (this matters once a
    // reload widened the window: its dead slots must not come back).
    let ring = match entry {
        Some(Entry {
            data: Data::Log(ring),
            expires_us,
        }) if i128::from(*expires_us) >= p.now_us => Some(&*ring),
        _ => None,
    };
    let win_us = p.window_ms * 1000;
    let (eff, first_live, live) = match ring {
        Some(r) => {
            let eff = p.now_us.max(r.at(r.slots.len() - 1));
            let first = r.first_live(r.floor.max(eff - win_us));
            (eff, first, r.slots.len() - first)
        }
        None => (p.now_us, 0, 0),
    };
    let at = |i: usize| ring.map_or(eff, |r| r.at(i));
    let n = live as i128;
    if n + p.cost <= p.limit {
        let oldest = if live > 0 { at(first_live) } else { eff };
        let reset = ceil_div(oldest + win_us - p.now_us, 1000);
        let seen = Seen {
            eff,
            first_live,
            live,
            had_ring: ring.is_some(),
        };
        return (
            outcome(true, p.limit - n - p.cost, 0, reset),
            Some(Pending::Log(seen)),
        );
    }
    let reset = if live > 0 {
        ceil_div(at(first_live) + win_us - p.now_us, 1000)
    } else {
        0
    };
    let retry = if p.cost > p.limit {
        p.window_ms
    } else {
        // The k = live + cost - limit oldest live slots must leave the window first.
        let k = (n + p.cost - p.limit) as usize;
        ceil_div(at(first_live + k - 1) + win_us - p.now_us, 1000)
    };
    (outcome(false, (p.limit - n).max(0), retry, reset), None)
}
