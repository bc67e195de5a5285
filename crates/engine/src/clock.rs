//! The engine's time.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix seconds as the engine sees them: a starting instant plus the time tokio's clock
/// has advanced since. On a real run that is the wall clock; on a runtime with paused time
/// (the simulator) it is virtual time, and a run of hours takes as long as its events.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    unix_at_start: f64,
    start: tokio::time::Instant,
}

impl Clock {
    /// The wall clock. Call inside a tokio runtime.
    pub fn system() -> Clock {
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        Clock::starting_at(unix)
    }

    /// A clock reading `unix` seconds now. Call inside a tokio runtime.
    pub fn starting_at(unix: f64) -> Clock {
        Clock { unix_at_start: unix, start: tokio::time::Instant::now() }
    }

    /// Unix seconds now.
    pub fn now(&self) -> f64 {
        self.unix_at_start + self.start.elapsed().as_secs_f64()
    }
}
