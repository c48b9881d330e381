//! The retry policy for webhook deliveries, as a value: which answers are retried and after
//! how long.
//!
//! Retried: transport errors and timeouts, 5xx, 408 and 429. A 429 or 503 with `Retry-After`
//! waits that long, clamped to [`RetryPolicy::max_delay`]. Other answers are final.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts, the first included.
    pub max_attempts: u32,
    pub initial_delay: Duration,
    pub max_delay: Duration,
    /// Each delay is multiplied by a random factor in `[1 - jitter, 1 + jitter]`.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 8, initial_delay: Duration::from_secs(1), max_delay: Duration::from_secs(600), jitter: 0.2 }
    }
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    /// 2xx.
    Delivered,
    /// An HTTP answer, with its Retry-After if any.
    Status { code: u16, retry_after: Option<Duration> },
    /// No answer: connect error, timeout, ...
    Transport,
}

impl AttemptOutcome {
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Delivered => false,
            Self::Transport => true,
            Self::Status { code, .. } => *code >= 500 || *code == 408 || *code == 429,
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1` after attempt number `attempt` (1-based) ended
    /// with `outcome`, or `None` when there is to be no further attempt.
    pub fn next_delay(&self, attempt: u32, outcome: &AttemptOutcome, random01: f64) -> Option<Duration> {
        if !outcome.is_retryable() || attempt >= self.max_attempts {
            return None;
        }
        if let AttemptOutcome::Status { retry_after: Some(ra), .. } = outcome {
            return Some((*ra).clamp(self.initial_delay, self.max_delay));
        }
        let exp = self.initial_delay.as_secs_f64() * 2f64.powi(attempt.saturating_sub(1).min(30) as i32);
        let factor = 1.0 + self.jitter * (2.0 * random01.clamp(0.0, 1.0) - 1.0);
        Some(Duration::from_secs_f64((exp * factor).min(self.max_delay.as_secs_f64())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(code: u16) -> AttemptOutcome {
        AttemptOutcome::Status { code, retry_after: None }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_stops() {
        let p = RetryPolicy { max_attempts: 5, jitter: 0.2, ..Default::default() };
        assert_eq!(p.next_delay(1, &s(500), 0.5), Some(Duration::from_secs(1)));
        assert_eq!(p.next_delay(3, &s(502), 0.5), Some(Duration::from_secs(4)));
        assert_eq!(p.next_delay(3, &AttemptOutcome::Transport, 1.0), Some(Duration::from_secs_f64(4.8)));
        assert_eq!(p.next_delay(3, &s(503), 0.0), Some(Duration::from_secs_f64(3.2)));
        assert_eq!(p.next_delay(5, &s(500), 0.5), None, "attempts exhausted");
        assert_eq!(p.next_delay(1, &s(404), 0.5), None, "4xx is final");
        assert_eq!(p.next_delay(1, &AttemptOutcome::Delivered, 0.5), None);
        assert!(p.next_delay(1, &s(429), 0.5).is_some() && p.next_delay(1, &s(408), 0.5).is_some());
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        let p = RetryPolicy::default();
        let ra = |secs| AttemptOutcome::Status { code: 429, retry_after: Some(Duration::from_secs(secs)) };
        assert_eq!(p.next_delay(1, &ra(30), 0.5), Some(Duration::from_secs(30)));
        assert_eq!(p.next_delay(1, &ra(86_400), 0.5), Some(p.max_delay));
        assert_eq!(p.next_delay(1, &ra(0), 0.5), Some(p.initial_delay));
    }

    #[test]
    fn delays_never_exceed_the_cap() {
        let p = RetryPolicy { max_attempts: 100, ..Default::default() };
        for a in 1..100 {
            assert!(p.next_delay(a, &AttemptOutcome::Transport, 1.0).unwrap() <= p.max_delay);
        }
    }
}
