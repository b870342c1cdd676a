//! The two algorithms as pure functions over plain state, shared by the in-memory store and
//! the fair-share limiter, and mirrored line for line by the Redis Lua scripts.

use serde::{Deserialize, Serialize};

use crate::quota::Quota;

/// Which algorithm a rule uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Algorithm {
    /// The generic cell rate algorithm: a token bucket of `burst` tokens refilled at
    /// `count / period`, kept as one timestamp per key.
    #[default]
    Gcra,
    /// A sliding-window counter: at most `count` per `period`, the previous fixed window
    /// weighted by how much of it still overlaps the sliding window.
    SlidingWindow,
}

/// The result of one charge against one key, all times in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) allowed: bool,
    pub(crate) remaining: u64,
    /// Time until the key is back to its full quota.
    pub(crate) reset_after: u64,
    /// Time until the same charge could pass (zero when allowed).
    pub(crate) retry_after: u64,
}

/// The GCRA parameters of a quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gcra {
    pub(crate) interval: u64,
    pub(crate) burst: u64,
}

impl Gcra {
    pub(crate) fn of(q: &Quota) -> Self {
        Self {
            interval: q.gcra_interval_micros(),
            burst: u64::from(q.burst().get()),
        }
    }

    /// Charges `cost` at `now` against the theoretical arrival time `tat`. Returns the
    /// outcome and the new TAT (`None`: unchanged).
    pub(crate) fn charge(self, tat: Option<u64>, now: u64, cost: u64) -> (Outcome, Option<u64>) {
        let t = self.interval;
        let tat = tat.unwrap_or(now).max(now);
        let span = self.burst * t;
        if cost > self.burst {
            let remaining = (now + span - tat) / t;
            let out = Outcome {
                allowed: false,
                remaining,
                reset_after: tat - now,
                retry_after: tat - now + span,
            };
            return (out, None);
        }
        let new_tat = tat + cost * t;
        if new_tat > now + span {
            let out = Outcome {
                allowed: false,
                remaining: (now + span - tat) / t,
                reset_after: tat - now,
                retry_after: new_tat - span - now,
            };
            return (out, None);
        }
        let out = Outcome {
            allowed: true,
            remaining: (now + span - new_tat) / t,
            reset_after: new_tat - now,
            retry_after: 0,
        };
        (out, Some(new_tat))
    }

    /// Gives back `cost` charged earlier. Returns the new TAT, `None` when the key is full.
    pub(crate) fn refund(self, tat: u64, now: u64, cost: u64) -> Option<u64> {
        let back = tat.saturating_sub(cost * self.interval);
        (back > now).then_some(back)
    }
}

/// The sliding-window parameters of a quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) limit: u64,
    pub(crate) window: u64,
}

/// The counters of one sliding-window key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct WindowState {
    /// Start of the current fixed window.
    pub(crate) start: u64,
    pub(crate) prev: u64,
    pub(crate) cur: u64,
}

impl Window {
    pub(crate) fn of(q: &Quota) -> Self {
        Self {
            limit: u64::from(q.count().get()),
            window: q.period_micros(),
        }
    }

    /// The state rolled forward to the fixed window holding `now`.
    pub(crate) fn roll(self, state: Option<WindowState>, now: u64) -> WindowState {
        let start = now - now % self.window;
        match state {
            Some(s) if s.start == start => s,
            Some(s) if s.start + self.window == start => WindowState {
                start,
                prev: s.cur,
                cur: 0,
            },
            _ => WindowState {
                start,
                prev: 0,
                cur: 0,
            },
        }
    }

    /// The previous window's count weighted by its overlap with the sliding window,
    /// rounded up.
    fn weighted_prev(self, prev: u64, elapsed: u64) -> u64 {
        (prev * (self.window - elapsed)).div_ceil(self.window)
    }

    /// Charges `cost` at `now`. Returns the outcome and the new state (`None`: unchanged
    /// apart from rolling, which the caller may still store).
    pub(crate) fn charge(
        self,
        state: Option<WindowState>,
        now: u64,
        cost: u64,
    ) -> (Outcome, WindowState) {
        let mut s = self.roll(state, now);
        let w = self.window;
        let elapsed = now - s.start;
        let used = self.weighted_prev(s.prev, elapsed) + s.cur;
        if used + cost <= self.limit {
            s.cur += cost;
            let out = Outcome {
                allowed: true,
                remaining: self.limit - used - cost,
                reset_after: (w - elapsed) + w,
                retry_after: 0,
            };
            return (out, s);
        }
        let retry_after = if cost > self.limit {
            2 * w - elapsed
        } else if s.cur + cost <= self.limit {
            // Wait in this window until the previous window's weight has shrunk enough.
            let room = self.limit - cost - s.cur;
            (w - (room * w) / s.prev) - elapsed
        } else {
            // Wait for the next window, where the current count becomes the previous one.
            let room = self.limit - cost;
            (w - elapsed) + (w - (room * w) / s.cur)
        };
        let reset_after = if s.cur > 0 {
            (w - elapsed) + w
        } else {
            w - elapsed
        };
        let out = Outcome {
            allowed: false,
            remaining: self.limit.saturating_sub(used),
            reset_after,
            retry_after,
        };
        (out, s)
    }

    /// Gives back `cost` charged at `charged_at`.
    pub(crate) fn refund(self, state: WindowState, charged_at: u64, cost: u64) -> WindowState {
        let charged_start = charged_at - charged_at % self.window;
        let mut s = state;
        if charged_start == s.start {
            s.cur = s.cur.saturating_sub(cost);
        } else if charged_start + self.window == s.start {
            s.prev = s.prev.saturating_sub(cost);
        }
        s
    }

    /// The sliding-window usage at `now`.
    pub(crate) fn usage(self, state: Option<WindowState>, now: u64) -> (u64, WindowState) {
        let s = self.roll(state, now);
        (self.weighted_prev(s.prev, now - s.start) + s.cur, s)
    }

    /// When the state no longer matters (two windows after its start).
    pub(crate) fn expires_at(self, s: &WindowState) -> u64 {
        s.start + 2 * self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gcra(s: &str) -> Gcra {
        Gcra::of(&s.parse().unwrap())
    }

    fn window(s: &str) -> Window {
        Window::of(&s.parse().unwrap())
    }

    #[test]
    fn gcra_allows_burst_then_rate() {
        let g = gcra("1/s burst 3");
        let mut tat = None;
        let now = 1_000_000_000;
        for expect_remaining in [2, 1, 0] {
            let (o, t) = g.charge(tat, now, 1);
            assert!(o.allowed);
            assert_eq!(o.remaining, expect_remaining);
            tat = t;
        }
        let (o, t) = g.charge(tat, now, 1);
        assert!(!o.allowed && t.is_none());
        assert_eq!(o.retry_after, 1_000_000);
        assert_eq!(o.reset_after, 3_000_000);
        let (o, _) = g.charge(tat, now + 1_000_000, 1);
        assert!(o.allowed);
        let (o, _) = g.charge(tat, now, 4);
        assert!(!o.allowed, "a cost above the burst never passes");
    }

    #[test]
    fn gcra_refund_restores() {
        let g = gcra("1/s burst 3");
        let (_, tat) = g.charge(None, 100, 2);
        let tat = tat.unwrap();
        assert_eq!(g.refund(tat, 100, 1), Some(1_000_100));
        assert_eq!(g.refund(tat, 100, 2), None);
    }

    #[test]
    fn window_weights_previous() {
        let w = window("10/s");
        let base = 5_000_000;
        let (o, s) = w.charge(None, base, 10);
        assert!(o.allowed && o.remaining == 0);
        let (o, _) = w.charge(Some(s), base + 999_999, 1);
        assert!(!o.allowed);
        assert_eq!(
            o.retry_after,
            1 + 100_000,
            "next window, once 1 of the 10 has slid out"
        );
        // Half-way through the next window half of the previous count still weighs.
        let (o, s2) = w.charge(Some(s), base + 1_500_000, 5);
        assert!(o.allowed && o.remaining == 0);
        let (o, _) = w.charge(Some(s2), base + 1_500_000, 1);
        assert!(!o.allowed);
        assert_eq!(o.retry_after, 100_000);
        let back = w.refund(s2, base + 1_500_000, 5);
        assert_eq!(back.cur, 0);
        let back = w.refund(s2, base, 4);
        assert_eq!(back.prev, 6);
    }
}
