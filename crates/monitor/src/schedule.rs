//! A fixed, drift-free cycle grid: tick `n` is due at `t0 + n·interval`.
//!
//! A cycle that overruns makes the next one start at once; any grid points that
//! passed meanwhile are skipped (reported, never queued), so the agent never
//! fires a burst of catch-up cycles.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Schedule {
    origin: Instant,
    interval: Duration,
    next_index: u32,
}

/// When the next cycle starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// Wait until this instant (it may already be in the past: start at once).
    pub start_at: Instant,
    /// Grid points that passed while the previous cycle overran.
    pub skipped: u32,
}

impl Schedule {
    pub fn new(origin: Instant, interval: Duration) -> Self {
        Schedule {
            origin,
            interval,
            next_index: 0,
        }
    }

    fn due(&self, index: u32) -> Instant {
        self.origin + self.interval * index
    }

    /// The next tick, given the current time.
    pub fn next(&mut self, now: Instant) -> Tick {
        let due = self.due(self.next_index);
        if now <= due {
            self.next_index += 1;
            return Tick {
                start_at: due,
                skipped: 0,
            };
        }
        // Late: run now, and drop the grid points that also passed.
        let late_by = now - due;
        let skipped =
            u32::try_from(late_by.as_nanos() / self.interval.as_nanos().max(1)).unwrap_or(u32::MAX);
        self.next_index = self.next_index.saturating_add(skipped).saturating_add(1);
        Tick {
            start_at: now,
            skipped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn on_time_ticks_follow_the_grid_exactly() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, 100 * MS);
        for n in 0..50u32 {
            // Each cycle ends 70 ms before the next grid point; the grid does not move.
            let now = (t0 + 100 * MS * n).checked_sub(70 * MS).unwrap_or(t0);
            let tick = s.next(now);
            assert_eq!(tick.start_at, t0 + 100 * MS * n);
            assert_eq!(tick.skipped, 0);
        }
    }

    #[test]
    fn overrun_starts_at_once_and_skips_missed_points() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, 100 * MS);
        assert_eq!(s.next(t0).start_at, t0); // tick 0
        // Tick 1 was due at 100 ms, but the cycle ran until 350 ms.
        let late = t0 + 350 * MS;
        let tick = s.next(late);
        assert_eq!(tick.start_at, late);
        assert_eq!(tick.skipped, 2); // 200 ms and 300 ms
        // Back on the grid afterwards, not 100 ms after the late start.
        let tick = s.next(late + 10 * MS);
        assert_eq!(tick.start_at, t0 + 400 * MS);
        assert_eq!(tick.skipped, 0);
    }

    #[test]
    fn slightly_late_tick_skips_nothing() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, 100 * MS);
        s.next(t0);
        let tick = s.next(t0 + 150 * MS);
        assert_eq!((tick.start_at, tick.skipped), (t0 + 150 * MS, 0));
        assert_eq!(s.next(t0 + 160 * MS).start_at, t0 + 200 * MS);
    }
}
