//! What keeps one host from abusing the console server: a lockout after repeated wrong
//! passwords (per MAC, bounded table), and a budget for log lines (a connect flood must not
//! flood the journal, and a stalled log must not stall the server).

use crate::wire::MacAddr;
use std::time::{Duration, Instant};

/// Wrong passwords from one MAC within [`WINDOW`] before it is locked out.
pub const WRONG_PASSWORDS: u32 = 6;
/// The window wrong passwords are counted in.
pub const WINDOW: Duration = Duration::from_secs(60);
/// How long a lockout lasts.
pub const LOCKOUT: Duration = Duration::from_secs(60);
/// Hosts remembered at most (the oldest is forgotten first).
const HOSTS: usize = 256;

struct Strikes {
    host: MacAddr,
    count: u32,
    since: Instant,
    locked_until: Option<Instant>,
}

/// Wrong-password counts per host.
#[derive(Default)]
pub struct Lockouts {
    hosts: Vec<Strikes>,
}

impl Lockouts {
    /// Is `host` locked out now?
    pub fn locked(&self, host: MacAddr, now: Instant) -> bool {
        self.hosts
            .iter()
            .any(|s| s.host == host && s.locked_until.is_some_and(|t| now < t))
    }

    /// Records `n` wrong passwords from `host`; true when that locks it out.
    pub fn wrong(&mut self, host: MacAddr, n: u32, now: Instant) -> bool {
        if n == 0 {
            return false;
        }
        let i = match self.hosts.iter().position(|s| s.host == host) {
            Some(i) => i,
            None => {
                if self.hosts.len() >= HOSTS {
                    if let Some(oldest) = (0..self.hosts.len()).min_by_key(|&i| self.hosts[i].since)
                    {
                        self.hosts.swap_remove(oldest);
                    }
                }
                self.hosts.push(Strikes {
                    host,
                    count: 0,
                    since: now,
                    locked_until: None,
                });
                self.hosts.len() - 1
            }
        };
        let s = &mut self.hosts[i];
        if now.duration_since(s.since) > WINDOW {
            s.count = 0;
            s.since = now;
        }
        s.count += n;
        if s.count >= WRONG_PASSWORDS {
            s.locked_until = Some(now + LOCKOUT);
            s.count = 0;
            s.since = now;
            return true;
        }
        false
    }
}

/// A budget of log lines per minute; what is over it is counted and reported once.
pub struct LogBudget {
    per_minute: u32,
    used: u32,
    suppressed: u64,
    since: Instant,
}

impl LogBudget {
    /// `per_minute` lines a minute.
    pub fn new(per_minute: u32, now: Instant) -> LogBudget {
        LogBudget {
            per_minute,
            used: 0,
            suppressed: 0,
            since: now,
        }
    }

    /// May a line be logged now? When a new minute starts after suppressed lines, their
    /// count is returned in `Err` (the caller logs it, then its own line).
    pub fn take(&mut self, now: Instant) -> Result<bool, u64> {
        if now.duration_since(self.since) >= Duration::from_secs(60) {
            self.since = now;
            self.used = 0;
            if self.suppressed > 0 {
                self.used = 1;
                return Err(std::mem::take(&mut self.suppressed));
            }
        }
        if self.used < self.per_minute {
            self.used += 1;
            Ok(true)
        } else {
            self.suppressed += 1;
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_wrong_passwords_lock_a_host_out_for_a_while() {
        let mut l = Lockouts::default();
        let (a, b) = (MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]));
        let t = Instant::now();
        assert!(!l.wrong(a, 3, t));
        assert!(!l.locked(a, t));
        assert!(l.wrong(a, 3, t + Duration::from_secs(1)));
        assert!(l.locked(a, t + Duration::from_secs(2)));
        assert!(!l.locked(b, t + Duration::from_secs(2)));
        assert!(!l.locked(a, t + Duration::from_secs(2) + LOCKOUT));
        // Slow guesses (outside the window) do not add up.
        assert!(!l.wrong(b, 5, t));
        assert!(!l.wrong(b, 5, t + WINDOW + Duration::from_secs(1)));
        for i in 0..1000u32 {
            l.wrong(MacAddr([2, 0, 0, 0, (i >> 8) as u8, i as u8]), 1, t);
        }
        assert!(l.hosts.len() <= HOSTS);
    }

    #[test]
    fn the_log_budget_suppresses_then_reports() {
        let t = Instant::now();
        let mut b = LogBudget::new(2, t);
        assert_eq!(b.take(t), Ok(true));
        assert_eq!(b.take(t), Ok(true));
        assert_eq!(b.take(t), Ok(false));
        assert_eq!(b.take(t), Ok(false));
        assert_eq!(b.take(t + Duration::from_secs(61)), Err(2));
        assert_eq!(b.take(t + Duration::from_secs(61)), Ok(true));
    }
}
