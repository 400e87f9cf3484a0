//! What the jobs and the HTTP side hand each other, per node: images a job
//! publishes for the ramdisk to download (jobs -> HTTP), and wake-ups when the
//! node's ramdisk heartbeats (HTTP -> jobs). Neither side knows the other.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// One published file.
#[derive(Debug, Clone)]
pub struct Published {
    /// File on the share.
    pub path: PathBuf,
    /// Name in the URL.
    pub name: String,
    /// The node it was published for.
    pub node: String,
}

/// The table of token -> file that the image endpoint serves from. A token
/// is 128 random bits, so URLs cannot be guessed.
#[derive(Debug, Default)]
pub struct Publications {
    map: Mutex<HashMap<String, Published>>,
}

impl Publications {
    /// Publishes `path` for `node`; returns the URL path (`/images/<token>/<name>`).
    pub fn publish(&self, node: &str, path: PathBuf) -> (String, String) {
        let token = format!("{:032x}", rand::random::<u128>());
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "image".to_string());
        let url_path = format!("/images/{token}/{name}");
        self.lock().insert(
            token.clone(),
            Published {
                path,
                name,
                node: node.to_string(),
            },
        );
        (token, url_path)
    }

    /// Withdraws one publication.
    pub fn unpublish(&self, token: &str) {
        self.lock().remove(token);
    }

    /// Withdraws every publication of a node.
    pub fn unpublish_node(&self, node: &str) {
        self.lock().retain(|_, p| p.node != node);
    }

    /// Number of live publications.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when nothing is published.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn get(&self, token: &str) -> Option<Published> {
        self.lock().get(token).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Published>> {
        // A poisoned map is still a valid map (inserts/removes are atomic).
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Per-node wake-ups: the heartbeat handler pokes, a waiting job wakes.
/// `Notify::notify_one` stores a permit, so a heartbeat that arrives between
/// two waits is not lost.
#[derive(Debug, Default)]
pub struct HeartbeatBus {
    map: Mutex<HashMap<String, Arc<Notify>>>,
    /// `agent_verify_ca` of each ramdisk that sent one (IPA auto-TLS): the
    /// PEM its command API's self-signed certificate verifies against.
    cas: Mutex<HashMap<String, String>>,
    /// Nodes with a certificate-carrying heartbeat on its way to the coordinator:
    /// the certificate is stored only once the coordinator accepts the heartbeat,
    /// but the coordinator may already have sent a job for it.
    cas_in_flight: Mutex<HashMap<String, usize>>,
}

impl HeartbeatBus {
    /// The notifier of a node (created on first use).
    pub fn subscribe(&self, node: &str) -> Arc<Notify> {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(node.to_string()).or_default().clone()
    }

    /// Drops a node's notifier when no job waits on it any more.
    pub fn forget(&self, node: &str) {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if m.get(node).is_some_and(|n| Arc::strong_count(n) == 1) {
            m.remove(node);
        }
    }

    /// Remembers the certificate a node's ramdisk presented in its heartbeat.
    pub fn set_ca(&self, node: &str, pem: String) {
        // The first accepted certificate is kept, as the call-back URL is pinned: a
        // later heartbeat (a stolen token) cannot swap in a certificate of its own.
        let mut m = self.cas.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(node.to_string()).or_insert(pem);
    }

    /// A heartbeat of `node` carrying a certificate is being relayed (`true`) or
    /// its relay is over (`false`; the certificate was stored or refused).
    pub fn ca_in_flight(&self, node: &str, in_flight: bool) {
        let mut m = self.cas_in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if in_flight {
            *m.entry(node.to_string()).or_default() += 1;
        } else if let Some(n) = m.get_mut(node) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(node);
            }
        }
    }

    /// Whether a certificate-carrying heartbeat of `node` is being relayed.
    pub fn ca_pending(&self, node: &str) -> bool {
        let m = self.cas_in_flight.lock().unwrap_or_else(|e| e.into_inner());
        m.contains_key(node)
    }

    /// The certificate of a node's ramdisk, if it sent one.
    pub fn ca(&self, node: &str) -> Option<String> {
        let m = self.cas.lock().unwrap_or_else(|e| e.into_inner());
        m.get(node).cloned()
    }

    /// Forgets a node's ramdisk certificate (its ramdisk is gone).
    pub fn forget_ca(&self, node: &str) {
        let mut m = self.cas.lock().unwrap_or_else(|e| e.into_inner());
        m.remove(node);
    }

    /// Signals a heartbeat from `node`, if a job cares.
    pub fn beat(&self, node: &str) {
        let m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get(node) {
            n.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publication_table() {
        let p = Publications::default();
        let (t1, url) = p.publish("n1", PathBuf::from("/s/cache/abc.img"));
        assert_eq!(url, format!("/images/{t1}/abc.img"));
        let (_t2, _) = p.publish("n2", PathBuf::from("/s/x.iso"));
        assert_eq!(p.len(), 2);
        p.unpublish_node("n2");
        assert_eq!(p.len(), 1);
        assert!(p.get(&t1).is_some());
        p.unpublish(&t1);
        assert!(p.is_empty());
    }

    #[test]
    fn certificates_in_flight_are_counted_per_node() {
        let b = HeartbeatBus::default();
        assert!(!b.ca_pending("n1"));
        b.ca_in_flight("n1", true);
        b.ca_in_flight("n1", true);
        b.ca_in_flight("n1", false);
        assert!(b.ca_pending("n1"), "one relay still in flight");
        assert!(!b.ca_pending("n2"));
        b.ca_in_flight("n1", false);
        b.ca_in_flight("n1", false);
        assert!(!b.ca_pending("n1"));
    }
}
