//! Recognises Notify retries: the same `event_id` (`<from_id>/<msg_id>`) seen again.
//!
//! Memory is bounded by the window: the oldest ids are forgotten first. A retry of an event
//! still in flight waits for the first copy to become durable before it is acknowledged.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::watch;

/// What to do with a Notify.
pub(crate) enum Seen {
    /// First time: store it, then call [`Dedup::finish`].
    New(watch::Sender<Option<bool>>),
    /// A retry; the receiver says whether the first copy became durable (`Some(true)`).
    Duplicate(watch::Receiver<Option<bool>>),
}

pub(crate) struct Dedup {
    window: usize,
    ids: HashMap<Arc<str>, watch::Receiver<Option<bool>>>,
    order: VecDeque<Arc<str>>,
}

impl Dedup {
    pub(crate) fn new(window: usize) -> Self {
        Dedup {
            window,
            ids: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub(crate) fn check(&mut self, event_id: &str) -> Seen {
        if let Some(rx) = self.ids.get(event_id) {
            // A first copy that failed (or was abandoned) is forgotten so the retry is
            // stored afresh.
            let state = *rx.borrow();
            let abandoned = state.is_none() && rx.has_changed().is_err();
            if state != Some(false) && !abandoned {
                return Seen::Duplicate(rx.clone());
            }
        }
        let (tx, rx) = watch::channel(None);
        let key: Arc<str> = Arc::from(event_id);
        if self.ids.insert(key.clone(), rx).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > self.window {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        Seen::New(tx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_bounds_memory_and_failures_are_retried() {
        let mut d = Dedup::new(2);
        let Seen::New(a) = d.check("a") else { panic!() };
        assert!(matches!(d.check("a"), Seen::Duplicate(_)));
        let _ = a.send(Some(false));
        assert!(matches!(d.check("a"), Seen::New(_)));
        let _b = d.check("b");
        let _c = d.check("c");
        assert_eq!(d.ids.len(), 2);
        assert!(matches!(d.check("a"), Seen::New(_)));
    }
}
