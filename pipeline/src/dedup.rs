//! Recognises Notify retries: the same `event_id` (`<from_id>/<msg_id>`) seen again.
//!
//! Memory is bounded by the window, in ids and in bytes (an id is as long as the agent makes
//! its msg_id): the oldest ids are forgotten first. A retry of an event still in flight waits
//! for the first copy to become durable before it is acknowledged.
//!
//! Every Notify passes through here, so an entry is kept small (one shared slot with a state
//! byte and a waiter list) and the ids are hashed with a fast hasher seeded per process, which
//! keeps agents from choosing colliding ids.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio::sync::Notify;

const PENDING: u8 = 0;
const DURABLE: u8 = 1;
const FAILED: u8 = 2;

#[derive(Default)]
struct Slot {
    state: AtomicU8,
    done: Notify,
}

/// The first copy's handle. Dropping it without [`Pending::finish`] counts as a failure, so
/// a retry is stored afresh and waiting duplicates are released.
pub(crate) struct Pending(Arc<Slot>);

impl Pending {
    pub(crate) fn finish(self, durable: bool) {
        self.settle(if durable { DURABLE } else { FAILED });
    }

    fn settle(&self, state: u8) {
        if self
            .0
            .state
            .compare_exchange(PENDING, state, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.0.done.notify_waiters();
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.settle(FAILED);
    }
}

/// A retry's view of the first copy.
pub(crate) struct Waiter(Arc<Slot>);

impl Waiter {
    /// Whether the first copy became durable; waits while it is in flight.
    pub(crate) async fn durable(self) -> bool {
        loop {
            let notified = self.0.done.notified();
            tokio::pin!(notified);
            // Registered before the state is read, so a finish in between is not missed.
            notified.as_mut().enable();
            match self.0.state.load(Ordering::Acquire) {
                PENDING => notified.await,
                s => return s == DURABLE,
            }
        }
    }
}

/// What to do with a Notify.
pub(crate) enum Seen {
    /// First time: store it, then call [`Pending::finish`].
    New(Pending),
    /// A retry of an event that is in flight or durable.
    Duplicate(Waiter),
}

/// Bytes one remembered id costs besides its text: the map and queue slots, the two
/// reference counts and the shared slot with its waiter list.
pub(crate) const ENTRY_OVERHEAD: usize = 128;

pub(crate) struct Dedup {
    window: usize,
    max_bytes: usize,
    bytes: usize,
    ids: HashMap<Arc<str>, Arc<Slot>, foldhash::fast::RandomState>,
    order: VecDeque<Arc<str>>,
}

impl Dedup {
    pub(crate) fn new(window: usize, max_bytes: usize) -> Self {
        Dedup {
            window,
            max_bytes,
            bytes: 0,
            ids: HashMap::default(),
            order: VecDeque::new(),
        }
    }

    /// Bytes the remembered ids take (estimated as text plus [`ENTRY_OVERHEAD`] each).
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn check(&mut self, event_id: &str) -> Seen {
        if let Some(slot) = self.ids.get_mut(event_id) {
            // A first copy that failed (or was abandoned) is forgotten so the retry is
            // stored afresh.
            if slot.state.load(Ordering::Acquire) != FAILED {
                return Seen::Duplicate(Waiter(slot.clone()));
            }
            let fresh = Arc::new(Slot::default());
            *slot = fresh.clone();
            return Seen::New(Pending(fresh));
        }
        let slot = Arc::new(Slot::default());
        let key: Arc<str> = Arc::from(event_id);
        self.bytes += key.len() + ENTRY_OVERHEAD;
        self.ids.insert(key.clone(), slot.clone());
        self.order.push_back(key);
        // The newest id always stays, even alone over the budget: its retry must be known.
        while self.order.len() > 1
            && (self.order.len() > self.window || self.bytes > self.max_bytes)
        {
            if let Some(old) = self.order.pop_front() {
                self.bytes -= old.len() + ENTRY_OVERHEAD;
                self.ids.remove(&old);
            }
        }
        Seen::New(Pending(slot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_ids_are_bounded_in_bytes_not_only_in_count() {
        let budget = 1024 * 1024;
        let mut d = Dedup::new(100_000, budget);
        // Agents choose msg_ids; 60 KB ones must not keep 100,000 × 60 KB.
        for i in 0..1_500 {
            let id = format!("os::00256D-1/{i:0>60000}");
            if let Seen::New(first) = d.check(&id) {
                first.finish(true);
            }
        }
        assert!(d.bytes() <= budget, "{} bytes remembered", d.bytes());
        let held: usize = d.ids.keys().map(|k| k.len() + ENTRY_OVERHEAD).sum();
        assert_eq!(held, d.bytes());
        assert!(d.ids.len() >= 10, "recent ids are still remembered");
        let newest = format!("os::00256D-1/{:0>60000}", 1_499);
        assert!(matches!(d.check(&newest), Seen::Duplicate(_)));
    }

    #[test]
    fn window_bounds_memory_and_failures_are_retried() {
        let mut d = Dedup::new(2, usize::MAX);
        let Seen::New(a) = d.check("a") else { panic!() };
        assert!(matches!(d.check("a"), Seen::Duplicate(_)));
        a.finish(false);
        assert!(matches!(d.check("a"), Seen::New(_)));
        let _b = d.check("b");
        let _c = d.check("c");
        assert_eq!(d.ids.len(), 2);
        assert!(matches!(d.check("a"), Seen::New(_)));
    }

    /// A first copy of event "e" and a retry of it.
    fn first_and_retry(d: &mut Dedup) -> (Pending, Waiter) {
        let Seen::New(first) = d.check("e") else {
            panic!("the first copy is new")
        };
        let Seen::Duplicate(retry) = d.check("e") else {
            panic!("the second copy is a duplicate")
        };
        (first, retry)
    }

    #[tokio::test]
    async fn a_retry_waits_for_the_first_copy() {
        let mut d = Dedup::new(8, usize::MAX);
        let (first, retry) = first_and_retry(&mut d);
        let waiting = tokio::spawn(retry.durable());
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        first.finish(true);
        assert!(waiting.await.unwrap());
        let Seen::Duplicate(late) = d.check("e") else {
            panic!()
        };
        assert!(
            late.durable().await,
            "a retry after durability is acknowledged at once"
        );
    }

    #[tokio::test]
    async fn an_abandoned_first_copy_releases_its_retries() {
        let mut d = Dedup::new(8, usize::MAX);
        let (first, retry) = first_and_retry(&mut d);
        drop(first);
        assert!(!retry.durable().await);
        assert!(matches!(d.check("e"), Seen::New(_)));
    }
}
