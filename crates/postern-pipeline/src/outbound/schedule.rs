//! When the next attempt of a delivery is due.

use std::time::Duration;

/// The wait after the `attempts`-th attempt failed temporarily: `initial`,
/// doubling with each attempt, never more than `max`.
pub fn backoff(attempts: u32, initial: Duration, max: Duration) -> Duration {
    let factor = 1u64 << attempts.saturating_sub(1).min(30);
    let secs = initial.as_secs_f64() * factor as f64;
    Duration::from_secs_f64(secs.min(max.as_secs_f64()).max(0.0))
}

/// The time of the next attempt, or None when the job has run out of
/// time: its last attempt is the one that just failed.
pub fn next_attempt(
    now: f64,
    expires_at: f64,
    attempts: u32,
    initial: Duration,
    max: Duration,
) -> Option<f64> {
    if now >= expires_at {
        return None;
    }
    Some((now + backoff(attempts, initial, max).as_secs_f64()).min(expires_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_maximum() {
        let (i, m) = (Duration::from_secs(60), Duration::from_secs(3600));
        let waits: Vec<u64> = (1..=8).map(|n| backoff(n, i, m).as_secs()).collect();
        assert_eq!(waits, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(backoff(1000, i, m).as_secs(), 3600);
    }

    #[test]
    fn the_last_attempt_is_at_the_end_of_the_lifetime() {
        let (i, m) = (Duration::from_secs(60), Duration::from_secs(3600));
        assert_eq!(next_attempt(100.0, 1000.0, 1, i, m), Some(160.0));
        assert_eq!(next_attempt(980.0, 1000.0, 3, i, m), Some(1000.0));
        assert_eq!(next_attempt(1000.0, 1000.0, 4, i, m), None);
    }
}
