//! The admission queue: nodes waiting for placement and admission, in arrival order.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use uuid::Uuid;

/// Nodes waiting for placement and admission, in arrival order. Shared with the API (under a
/// short-held mutex) so reads can show `queue_position` without a round trip to the engine.
#[derive(Default)]
pub struct Queue {
    order: BTreeMap<u64, Uuid>,
    entries: HashMap<Uuid, QueueEntry>,
    next: u64,
}

#[derive(Clone, Copy)]
struct QueueEntry {
    seq: u64,
    needs_slot: bool,
}

impl Queue {
    pub(super) fn push(&mut self, uuid: Uuid, needs_slot: bool) {
        if self.entries.contains_key(&uuid) {
            return;
        }
        self.next += 1;
        self.order.insert(self.next, uuid);
        self.entries.insert(
            uuid,
            QueueEntry {
                seq: self.next,
                needs_slot,
            },
        );
    }

    pub(super) fn contains(&self, uuid: &Uuid) -> bool {
        self.entries.contains_key(uuid)
    }

    pub(super) fn remove(&mut self, uuid: &Uuid) -> bool {
        match self.entries.remove(uuid) {
            Some(e) => {
                self.order.remove(&e.seq);
                true
            }
            None => false,
        }
    }

    /// 1-based position, 0 when not queued. O(queue length): fine for reads, which are rare
    /// compared with the engine's own work.
    pub fn position(&self, uuid: &Uuid) -> u64 {
        match self.entries.get(uuid) {
            Some(e) => self.order.range(..e.seq).count() as u64 + 1,
            None => 0,
        }
    }

    /// The positions of many nodes (0 for those not queued), index-aligned with `uuids`, in
    /// ONE walk over the queue however many of them are queued: listing thousands of nodes
    /// must not cost a walk per node.
    pub fn positions(&self, uuids: &[Uuid]) -> Vec<u64> {
        let mut out = vec![0; uuids.len()];
        let mut want: Vec<(u64, usize)> = uuids
            .iter()
            .enumerate()
            .filter_map(|(i, u)| self.entries.get(u).map(|e| (e.seq, i)))
            .collect();
        if want.is_empty() {
            return out;
        }
        want.sort_unstable();
        let mut w = 0;
        for (rank, seq) in self.order.keys().enumerate() {
            while let Some(&(s, i)) = want.get(w)
                && s == *seq
            {
                out[i] = rank as u64 + 1;
                w += 1;
            }
            if w == want.len() {
                break;
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `(node, needs_slot)` in arrival order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (Uuid, bool)> + '_ {
        self.order
            .values()
            .filter_map(|u| self.entries.get(u).map(|e| (*u, e.needs_slot)))
    }

    pub(super) fn snapshot(&self) -> Vec<(Uuid, bool)> {
        self.iter().collect()
    }
}

pub type SharedQueue = Arc<Mutex<Queue>>;

/// Reads the queue position, tolerating a poisoned lock (a panic elsewhere must not take reads down).
pub fn queue_position(q: &SharedQueue, uuid: &Uuid) -> u64 {
    match q.lock() {
        Ok(g) => g.position(uuid),
        Err(p) => p.into_inner().position(uuid),
    }
}

/// [`Queue::positions`] under one short lock.
pub fn queue_positions(q: &SharedQueue, uuids: &[Uuid]) -> Vec<u64> {
    lock(q).positions(uuids)
}

pub(super) fn lock(q: &SharedQueue) -> std::sync::MutexGuard<'_, Queue> {
    match q.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_positions_follow_arrival_and_close_gaps() {
        let mut q = Queue::default();
        let ids: Vec<Uuid> = (0..4u128).map(Uuid::from_u128).collect();
        for id in &ids {
            q.push(*id, true);
        }
        q.push(ids[0], true); // already queued: keeps its place
        assert_eq!(q.position(&ids[0]), 1);
        assert_eq!(q.position(&ids[3]), 4);
        assert!(q.remove(&ids[1]));
        assert!(!q.remove(&ids[1]));
        assert_eq!(q.position(&ids[2]), 2);
        assert_eq!(q.position(&ids[1]), 0);
        assert_eq!(q.len(), 3);
        let many = [ids[3], ids[1], ids[0], ids[3], Uuid::from_u128(99), ids[2]];
        assert_eq!(q.positions(&many), vec![3, 0, 1, 3, 0, 2]);
        assert_eq!(
            q.positions(&many),
            many.iter().map(|u| q.position(u)).collect::<Vec<_>>()
        );
        assert_eq!(Queue::default().positions(&many), vec![0; 6]);
        assert_eq!(
            q.snapshot().iter().map(|(u, _)| *u).collect::<Vec<_>>(),
            vec![ids[0], ids[2], ids[3]]
        );
    }
}
