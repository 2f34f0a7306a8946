//! Coalesced polling for pools. While many nodes wait to run, each would poll `get` on its own
//! — 100 nodes make 100 calls per interval, a pattern real APIs rate-limit. This wrapper answers
//! `get` from one shared `list` call that is at most one poll interval old, so one list call
//! serves every waiting node. Everything else passes straight through.

use super::{Catalog, Destroyed, Node, NodeSpec, Prepared, Provider};
use crate::error::Result;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Coalesced {
    inner: Arc<dyn Provider>,
    /// The last list and when it was fetched; the lock also makes concurrent callers wait for
    /// one fetch instead of each making their own.
    cache: Mutex<Option<(Instant, Vec<Node>)>>,
    max_age: Duration,
}

impl Coalesced {
    pub fn new(inner: Arc<dyn Provider>) -> Coalesced {
        let max_age = inner.poll_interval();
        Coalesced {
            inner,
            cache: Mutex::new(None),
            max_age,
        }
    }
}

impl Provider for Coalesced {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn create(&self, spec: &NodeSpec) -> Result<Node> {
        self.inner.create(spec)
    }
    fn list(&self, all: bool) -> Result<Vec<Node>> {
        self.inner.list(all)
    }
    fn list_here(&self, all: bool) -> Result<Vec<Node>> {
        self.inner.list_here(all)
    }
    /// From the shared list when it is fresh; a node missing from a fresh list is looked up
    /// directly (it may be too new for an eventually consistent list) before being called gone.
    fn get(&self, id: &str) -> Result<Option<Node>> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = cache
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < self.max_age);
        if !fresh {
            *cache = Some((Instant::now(), self.inner.list_here(false)?));
        }
        let found = cache
            .as_ref()
            .and_then(|(_, nodes)| nodes.iter().find(|n| n.id == id).cloned());
        drop(cache);
        match found {
            Some(n) => Ok(Some(n)),
            None => self.inner.get(id),
        }
    }
    fn destroy(&self, id: &str) -> Result<Destroyed> {
        self.inner.destroy(id)
    }
    fn prepare(&self, image: &str, size: &str, location: &str) -> Result<Prepared> {
        self.inner.prepare(image, size, location)
    }
    fn catalog(&self, kind: Catalog) -> Result<Vec<(String, String)>> {
        self.inner.catalog(kind)
    }
    fn poll_interval(&self) -> Duration {
        self.inner.poll_interval()
    }
    /// Just after the shared list goes stale, so the first node to wake refreshes it and every
    /// other waiting node reads that refresh.
    fn next_poll_in(&self) -> Option<Duration> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        Some(match cache.as_ref() {
            Some((at, _)) => self.max_age.saturating_sub(at.elapsed()) + Duration::from_millis(5),
            None => Duration::ZERO,
        })
    }
    fn updates_tags(&self) -> bool {
        self.inner.updates_tags()
    }
    fn update_tags(
        &self,
        node: &Node,
        tags: &std::collections::BTreeMap<String, String>,
    ) -> Result<()> {
        self.inner.update_tags(node, tags)
    }
    fn max_tags(&self) -> Option<usize> {
        self.inner.max_tags()
    }
    fn driver_tags(&self) -> usize {
        self.inner.driver_tags()
    }
    fn destroys_machines(&self) -> bool {
        self.inner.destroys_machines()
    }
    fn scope(&self) -> Option<String> {
        self.inner.scope()
    }
    fn scope_of(&self, location: &str) -> Option<String> {
        self.inner.scope_of(location)
    }
    fn scopes(&self) -> Vec<String> {
        self.inner.scopes()
    }
    /// The shared list was of the old scope: dropped.
    fn enter_scope(&self, scope: &str) {
        *self.cache.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.inner.enter_scope(scope)
    }
    fn names_must_be_free(&self) -> bool {
        self.inner.names_must_be_free()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting {
        lists: AtomicUsize,
        gets: AtomicUsize,
    }

    fn node(id: &str) -> Node {
        Node {
            public_ip: Some("127.0.0.9".into()),
            ..crate::provider::test_node(id, id)
        }
    }

    impl Provider for Counting {
        fn name(&self) -> &str {
            "counting"
        }
        fn create(&self, _: &NodeSpec) -> Result<Node> {
            unreachable!()
        }
        fn list(&self, _: bool) -> Result<Vec<Node>> {
            self.lists.fetch_add(1, Ordering::SeqCst);
            Ok((0..100).map(|i| node(&format!("n{i}"))).collect())
        }
        fn get(&self, id: &str) -> Result<Option<Node>> {
            self.gets.fetch_add(1, Ordering::SeqCst);
            Ok((id == "late").then(|| node("late")))
        }
        fn destroy(&self, _: &str) -> Result<Destroyed> {
            unreachable!()
        }
        fn poll_interval(&self) -> Duration {
            Duration::from_secs(60)
        }
    }

    #[test]
    fn waiting_nodes_wake_for_the_next_shared_list_not_their_own_backoff() {
        let inner = Arc::new(Counting {
            lists: AtomicUsize::new(0),
            gets: AtomicUsize::new(0),
        });
        assert_eq!(
            inner.next_poll_in(),
            None,
            "a plain provider: the waiter's backoff"
        );
        let c = Coalesced::new(inner.clone());
        assert_eq!(
            c.next_poll_in(),
            Some(Duration::ZERO),
            "no list yet: poll now"
        );
        c.get("n1").unwrap();
        let next = c.next_poll_in().unwrap();
        // the list is 60 s fresh: wake just after it goes stale, whoever asks
        assert!(
            next > Duration::from_secs(59) && next <= Duration::from_secs(61),
            "{next:?}"
        );
        assert_eq!(inner.lists.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn one_list_serves_a_hundred_waiting_nodes() {
        let inner = Arc::new(Counting {
            lists: AtomicUsize::new(0),
            gets: AtomicUsize::new(0),
        });
        let c = Arc::new(Coalesced::new(inner.clone()));
        std::thread::scope(|s| {
            for i in 0..100 {
                let c = c.clone();
                s.spawn(move || {
                    assert_eq!(
                        c.get(&format!("n{i}")).unwrap().unwrap().id,
                        format!("n{i}")
                    )
                });
            }
        });
        assert_eq!(inner.lists.load(Ordering::SeqCst), 1);
        assert_eq!(inner.gets.load(Ordering::SeqCst), 0);
        // not in the list: asked directly, not called gone
        assert_eq!(c.get("late").unwrap().unwrap().id, "late");
        assert_eq!(c.get("gone").unwrap(), None);
        assert_eq!(inner.gets.load(Ordering::SeqCst), 2);
    }
}
