//! The rate-limit budget one provider account shares across every node of a run, and the
//! `Retry-After` header (seconds or an HTTP date).

use reqwest::header::HeaderMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One rate-limit budget per provider account, shared (`Arc`) by every node of a run: when
/// the provider says the quota is spent or asks us to wait, every caller waits.
#[derive(Debug, Default)]
pub struct RateBudget {
    state: Mutex<BudgetState>,
}

#[derive(Debug, Default)]
struct BudgetState {
    remaining: Option<u64>,
    reset: Option<SystemTime>,
    pause_until: Option<Instant>,
}

impl RateBudget {
    pub fn new() -> Arc<RateBudget> {
        Arc::new(RateBudget::default())
    }

    /// How long a caller must wait before its next request.
    pub fn delay(&self) -> Duration {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let mut wait = st
            .pause_until
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or_default();
        if st.remaining == Some(0) {
            match st
                .reset
                .and_then(|r| r.duration_since(SystemTime::now()).ok())
            {
                Some(d) => wait = wait.max(d),
                None => st.remaining = None,
            }
        }
        wait
    }

    /// Records what the provider's rate-limit headers said (read by the driver's hooks):
    /// requests remaining, and when the quota resets.
    pub fn record(&self, remaining: Option<u64>, reset: Option<u64>) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = remaining {
            st.remaining = Some(r);
        }
        if let Some(reset) = reset {
            // Unix time; a small number is a relative delay in seconds.
            st.reset = Some(if reset > 1_000_000_000 {
                UNIX_EPOCH + Duration::from_secs(reset)
            } else {
                SystemTime::now() + Duration::from_secs(reset)
            });
        }
    }

    /// Every caller waits at least `d` from now.
    pub fn pause(&self, d: Duration) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let until = Instant::now() + d;
        st.pause_until = Some(st.pause_until.map_or(until, |t| t.max(until)));
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(v, &fmt).ok()?.assume_utc();
    let secs = (at - time::OffsetDateTime::now_utc())
        .whole_milliseconds()
        .max(0);
    Some(Duration::from_millis(secs as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_seconds_and_date() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = time::OffsetDateTime::now_utc() + time::Duration::seconds(30);
        let fmt = time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        );
        let s = later.format(&fmt).unwrap();
        h.insert("retry-after", HeaderValue::from_str(&s).unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
    }

    #[test]
    fn budget_waits_for_reset_when_spent() {
        let b = RateBudget::new();
        b.record(Some(0), Some(3));
        assert!(b.delay() > Duration::from_secs(1));
        b.pause(Duration::from_secs(10));
        assert!(b.delay() > Duration::from_secs(5));
    }
}
