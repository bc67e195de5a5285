//! One connection per host URI for the whole process, opened on first use and shared by every
//! call: over `qemu+ssh` each connection is an SSH handshake, and a drain used to open
//! several per host per move. The bookkeeping is generic over the connection so that it is
//! tested without libvirt; `conn` gives it libvirt's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// What the pool needs of a connection.
pub(crate) trait Connection: Clone {
    /// Whether it can still carry calls (libvirt closes it when its socket ends or its
    /// keepalive goes unanswered).
    fn alive(&self) -> bool;
    /// Whether two handles share one underlying connection.
    fn same(&self, other: &Self) -> bool;
}

/// A connection from the pool, and whether this call opened it.
pub(crate) struct Pooled<C> {
    /// A handle on the pooled connection (libvirt counts its references).
    pub conn: C,
    /// Opened by this call: a failure on it is the host's, not a stale connection's.
    pub fresh: bool,
}

/// Connections by URI.
pub(crate) struct Pool<C> {
    /// One slot per URI; each slot has its own lock, so that opening one host's connection
    /// (seconds over SSH, a TCP timeout for a dead host) never holds up calls to another.
    slots: Mutex<HashMap<String, Arc<Mutex<Option<C>>>>>,
    /// Connections opened so far, for logs and measurements.
    opened: AtomicU64,
}

impl<C: Connection> Default for Pool<C> {
    fn default() -> Self {
        Pool { slots: Mutex::new(HashMap::new()), opened: AtomicU64::new(0) }
    }
}

impl<C: Connection> Pool<C> {
    /// The connection to `uri`: the pooled one while it is alive, otherwise one `open`s now
    /// (a dead one is dropped first). Callers for one URI wait for one open rather than each
    /// opening their own. A failed open leaves the slot empty: the next call tries again.
    pub fn get<E>(&self, uri: &str, open: impl FnOnce() -> Result<C, E>) -> Result<Pooled<C>, E> {
        let slot = self.slot(uri);
        let mut held = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(conn) = held.as_ref().filter(|conn| conn.alive()) {
            return Ok(Pooled { conn: conn.clone(), fresh: false });
        }
        *held = None;
        let conn = open()?;
        self.opened.fetch_add(1, Ordering::SeqCst);
        *held = Some(conn.clone());
        Ok(Pooled { conn, fresh: true })
    }

    /// Drops `conn` from the pool when it is still the pooled connection to `uri` (a call on
    /// it found the host unreachable): the next call opens a new one. A connection already
    /// replaced is left alone, so that a late report cannot drop its fresh successor.
    pub fn discard(&self, uri: &str, conn: &C) {
        let slot = self.slot(uri);
        let mut held = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if held.as_ref().is_some_and(|pooled| pooled.same(conn)) {
            *held = None;
        }
    }

    /// How many connections the pool has opened.
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::SeqCst)
    }

    fn slot(&self, uri: &str) -> Arc<Mutex<Option<C>>> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(slots.entry(uri.to_string()).or_default())
    }
}

/// At most this many hosts are asked at once: a thousand-host cluster must not start a
/// thousand threads for one question.
const ASK_AT_ONCE: usize = 32;

/// `ask` of every host, the hosts asked at once (at most [`ASK_AT_ONCE`] at a time), the
/// answers in the hosts' order.
pub(crate) fn ask_each<H: Sync, T: Send>(hosts: &[H], ask: impl Fn(&H) -> T + Sync) -> Vec<T> {
    if hosts.len() <= 1 {
        return hosts.iter().map(&ask).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut answers: Vec<(usize, T)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..hosts.len().min(ASK_AT_ONCE))
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::SeqCst);
                        let Some(host) = hosts.get(index) else { return mine };
                        mine.push((index, ask(host)));
                    }
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("asking a host does not panic")).collect()
    });
    answers.sort_by_key(|(index, _)| *index);
    answers.into_iter().map(|(_, answer)| answer).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::{ask_each, Connection, Pool, ASK_AT_ONCE};

    /// A connection as the pool sees it: an identity and a liveness flag shared by its clones.
    #[derive(Clone, Debug)]
    struct Fake {
        id: u64,
        alive: Arc<AtomicBool>,
    }

    impl Connection for Fake {
        fn alive(&self) -> bool {
            self.alive.load(Ordering::SeqCst)
        }
        fn same(&self, other: &Self) -> bool {
            self.id == other.id
        }
    }

    /// Opens numbered fakes, counting.
    #[derive(Default)]
    struct Opener(AtomicU64);

    impl Opener {
        fn open(&self) -> Result<Fake, String> {
            let id = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(Fake { id, alive: Arc::new(AtomicBool::new(true)) })
        }
    }

    #[test]
    fn one_connection_per_uri_shared_by_every_call() {
        let (pool, opener) = (Pool::default(), Opener::default());
        let first = pool.get("qemu+ssh://a/system", || opener.open()).expect("opens");
        let again = pool.get("qemu+ssh://a/system", || opener.open()).expect("reuses");
        let other = pool.get("qemu+ssh://b/system", || opener.open()).expect("opens");
        assert!(first.fresh && !again.fresh && other.fresh);
        assert_eq!((first.conn.id, again.conn.id, other.conn.id), (1, 1, 2));
        assert_eq!(pool.opened(), 2);
    }

    #[test]
    fn a_dead_connection_is_reopened_once_on_the_next_call() {
        let (pool, opener) = (Pool::default(), Opener::default());
        let first = pool.get("a", || opener.open()).expect("opens");
        first.conn.alive.store(false, Ordering::SeqCst);
        let next = pool.get("a", || opener.open()).expect("reopens");
        assert!(next.fresh);
        assert_eq!(next.conn.id, 2);
        let after = pool.get("a", || opener.open()).expect("reuses the new one");
        assert_eq!((after.conn.id, after.fresh), (2, false));
        assert_eq!(pool.opened(), 2);
    }

    #[test]
    fn a_discarded_connection_is_replaced_but_a_late_discard_spares_its_successor() {
        let (pool, opener) = (Pool::default(), Opener::default());
        let stale = pool.get("a", || opener.open()).expect("opens").conn;
        pool.discard("a", &stale);
        let fresh = pool.get("a", || opener.open()).expect("reopens").conn;
        assert_eq!(fresh.id, 2);
        // Another call that failed on the first connection reports it after the reopen.
        pool.discard("a", &stale);
        let kept = pool.get("a", || opener.open()).expect("reuses");
        assert_eq!((kept.conn.id, kept.fresh), (2, false));
        // Discarding on another URI touches nothing here.
        pool.discard("b", &fresh);
        assert_eq!(pool.get("a", || opener.open()).expect("reuses").conn.id, 2);
    }

    #[test]
    fn a_failed_open_is_not_kept_and_the_next_call_tries_again() {
        let (pool, opener) = (Pool::default(), Opener::default());
        let failed = pool.get("a", || Err::<Fake, _>("unreachable".to_string()));
        assert_eq!(failed.err().as_deref(), Some("unreachable"));
        assert_eq!(pool.opened(), 0);
        let next = pool.get("a", || opener.open()).expect("opens");
        assert_eq!((next.conn.id, next.fresh), (1, true));
    }

    #[test]
    fn callers_at_once_wait_for_one_open() {
        let (pool, opener) = (Pool::default(), Opener::default());
        let ids: Vec<u64> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        let slow_open = || {
                            // An SSH handshake's worth of waiting, scaled down.
                            std::thread::sleep(Duration::from_millis(50));
                            opener.open()
                        };
                        pool.get("a", slow_open).expect("opens").conn.id
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("no panic")).collect()
        });
        assert_eq!(ids, vec![1; 8]);
        assert_eq!(opener.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn every_host_is_asked_at_once_and_answers_come_in_the_hosts_order() {
        let hosts: Vec<usize> = (0..ASK_AT_ONCE + 8).collect();
        let (active, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let deadline = Instant::now() + Duration::from_secs(10);
        let answers = ask_each(&hosts, |&host| {
            let now = active.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            // Hold on until the first round of hosts is being asked together (asked one by
            // one, each would wait out the deadline instead).
            while most.load(Ordering::SeqCst) < ASK_AT_ONCE && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            active.fetch_sub(1, Ordering::SeqCst);
            host * 10
        });
        assert_eq!(most.load(Ordering::SeqCst), ASK_AT_ONCE, "never more, and no fewer, at once");
        assert_eq!(answers, hosts.iter().map(|h| h * 10).collect::<Vec<_>>());
        assert_eq!(ask_each(&[7usize], |&h| h + 1), vec![8]);
        assert_eq!(ask_each(&Vec::<usize>::new(), |&h| h), Vec::<usize>::new());
    }
}
