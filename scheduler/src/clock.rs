//! Wall time and waiting, behind a trait so tests can drive days of schedule instantly.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::time::Instant;
use vigil_model::Timestamp;

/// Where the scheduler reads wall time and waits: the seam that lets tests control time.
#[async_trait]
pub trait Clock: Send + Sync {
    /// The current wall time (whole seconds, UTC).
    fn now(&self) -> Timestamp;

    /// Waits until wall time reaches `deadline`; returns at once when it already has.
    async fn sleep_until(&self, deadline: Timestamp);

    /// Waits for `duration` of elapsed time (jitter, timeouts, grace periods).
    async fn sleep(&self, duration: Duration);
}

/// The machine's wall clock, for production.
///
/// Long waits are taken in slices and re-checked against the wall clock, so a
/// clock step (NTP, a suspended VM) delays a fire by at most one slice.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

/// The longest wait taken before the wall clock is read again.
const WALL_CLOCK_RECHECK: Duration = Duration::from_secs(30);

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
            });
        Timestamp(secs)
    }

    async fn sleep_until(&self, deadline: Timestamp) {
        // A deadline before the epoch has passed.
        let Ok(deadline_secs) = u64::try_from(deadline.secs()) else {
            return;
        };
        let target = UNIX_EPOCH + Duration::from_secs(deadline_secs);
        loop {
            match target.duration_since(SystemTime::now()) {
                Ok(remaining) if !remaining.is_zero() => {
                    tokio::time::sleep(remaining.min(WALL_CLOCK_RECHECK)).await;
                }
                _ => return,
            }
        }
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// Wall time derived from tokio's clock: a chosen start time plus the time tokio
/// says has elapsed since the clock was made.
///
/// Under `#[tokio::test(start_paused = true)]` (or `tokio::time::pause`), time
/// only moves when the runtime is idle or a test calls `tokio::time::advance`,
/// so a week of schedule runs in milliseconds and deterministically. Useful for
/// simulations and demos too; production uses [`SystemClock`].
#[derive(Clone, Copy, Debug)]
pub struct TokioClock {
    start_wall: Timestamp,
    start_instant: Instant,
}

impl TokioClock {
    /// A clock that reads `start` now and advances with tokio's time.
    pub fn starting_at(start: Timestamp) -> Self {
        Self {
            start_wall: start,
            start_instant: Instant::now(),
        }
    }

    /// The tokio instant at which wall time reads `wall`; `None` beyond what `Instant` can hold.
    fn instant_at(&self, wall: Timestamp) -> Option<Instant> {
        let ahead = u64::try_from(wall.secs().saturating_sub(self.start_wall.secs())).unwrap_or(0);
        self.start_instant.checked_add(Duration::from_secs(ahead))
    }
}

#[async_trait]
impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        let elapsed = self.start_instant.elapsed().as_secs();
        self.start_wall
            .plus_secs(i64::try_from(elapsed).unwrap_or(i64::MAX))
    }

    async fn sleep_until(&self, deadline: Timestamp) {
        match self.instant_at(deadline) {
            Some(instant) => tokio::time::sleep_until(instant).await,
            // So far ahead that it never comes.
            None => std::future::pending().await,
        }
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let clock = TokioClock::starting_at(Timestamp(1_000));
        assert_eq!(clock.now(), Timestamp(1_000));
        tokio::time::advance(Duration::from_millis(1_500)).await;
        assert_eq!(clock.now(), Timestamp(1_001), "whole seconds, rounded down");
        clock.sleep_until(Timestamp(5_000)).await;
        assert_eq!(clock.now(), Timestamp(5_000));
        clock.sleep_until(Timestamp(10)).await;
        assert_eq!(
            clock.now(),
            Timestamp(5_000),
            "a past deadline does not wait"
        );
    }

    #[test]
    fn system_clock_reads_the_wall_clock() {
        let unix_secs = || {
            let secs = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("machine clock is after 1970")
                .as_secs();
            i64::try_from(secs).expect("seconds fit in i64")
        };
        let before = unix_secs();
        let now = SystemClock.now().secs();
        let after = unix_secs();
        assert!(
            before <= now && now <= after,
            "{before} <= {now} <= {after}"
        );
    }
}
