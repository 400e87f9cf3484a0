//! Job bookkeeping: idempotency by job id, per-node serialisation, and the
//! latest update of every job (replayed to the coordinator on reconnect).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use vmedia_proto::v1 as pb;

/// Where updates go: the current coordinator session, if any.
#[derive(Debug, Default)]
pub struct UpdateSink {
    tx: Mutex<Option<mpsc::Sender<pb::AgentMessage>>>,
}

impl UpdateSink {
    /// Installs the sender of a new session, queueing `first` (the hello)
    /// ahead of everything else. `first` runs under the sink's lock, so an
    /// update is either in the hello's `known_jobs` snapshot (recorded
    /// before) or sent on the new session after the hello (recorded after):
    /// none falls between two sessions.
    pub fn connect_with(
        &self,
        tx: mpsc::Sender<pb::AgentMessage>,
        first: impl FnOnce() -> pb::AgentMessage,
    ) -> bool {
        let mut g = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        if tx.try_send(first()).is_err() {
            return false;
        }
        *g = Some(tx);
        true
    }

    /// Forgets the session (it ended).
    pub fn disconnect(&self) {
        *self.tx.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn sender(&self) -> Option<mpsc::Sender<pb::AgentMessage>> {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sends a power-sync answer (best effort: a lost one is asked again next round).
    pub fn send_power_report(&self, report: pb::PowerReport) {
        let Some(tx) = self.sender() else { return };
        let msg = pb::AgentMessage {
            msg: Some(pb::agent_message::Msg::PowerReport(report)),
        };
        if tx.try_send(msg).is_err() {
            tracing::debug!("power report dropped: coordinator session congested or gone");
        }
    }

    /// Sends an update. Progress lines are best effort (dropped when the
    /// session is congested: the next line supersedes them); final results wait
    /// for room, and if the session is gone they reach the coordinator through
    /// `hello.known_jobs` on the next connect.
    pub async fn send(&self, update: pb::JobUpdate) {
        let Some(tx) = self.sender() else { return };
        let final_state = update.state != pb::JobState::Running as i32;
        let msg = pb::AgentMessage {
            msg: Some(pb::agent_message::Msg::JobUpdate(update)),
        };
        if final_state {
            let _ = tx.send(msg).await;
        } else if tx.try_send(msg).is_err() {
            tracing::debug!("progress update dropped: coordinator session congested or gone");
        }
    }
}

struct Slot {
    latest: pb::JobUpdate,
    done: bool,
    abort: Option<AbortHandle>,
    /// Cancelled before its task was registered (e.g. while queued on the node lock).
    cancelled: bool,
}

#[derive(Default)]
struct Inner {
    jobs: HashMap<String, Slot>,
    finished: VecDeque<String>,
    /// Per node, the last job in line and the signal that it finished.
    tails: HashMap<String, (String, oneshot::Receiver<()>)>,
}

/// What [`JobRegistry::admit`] decided for an incoming job.
#[derive(Debug)]
pub enum Admission {
    /// New job id: run it.
    Run,
    /// Known id: this is its latest update (final or running); do not run again.
    Known(pb::JobUpdate),
}

/// All jobs this process has seen (bounded history of finished ones).
pub struct JobRegistry {
    inner: Mutex<Inner>,
    history: usize,
}

impl JobRegistry {
    /// A registry keeping up to `history` finished results.
    pub fn new(history: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            history: history.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a new job, or returns what is known about a repeated id.
    pub fn admit(&self, job_id: &str, node: &str) -> Admission {
        let mut g = self.lock();
        if let Some(slot) = g.jobs.get(job_id) {
            return Admission::Known(slot.latest.clone());
        }
        g.jobs.insert(
            job_id.to_string(),
            Slot {
                latest: pb::JobUpdate {
                    job_id: job_id.to_string(),
                    node_uuid: node.to_string(),
                    state: pb::JobState::Running as i32,
                    progress: "queued".to_string(),
                    ..Default::default()
                },
                done: false,
                abort: None,
                cancelled: false,
            },
        );
        Admission::Run
    }

    /// Remembers how to abort a running job. A job cancelled before this
    /// point is aborted right away (returns false).
    pub fn set_abort(&self, job_id: &str, handle: AbortHandle) -> bool {
        if let Some(s) = self.lock().jobs.get_mut(job_id) {
            if s.cancelled {
                handle.abort();
                return false;
            }
            s.abort = Some(handle);
        }
        true
    }

    /// True when the coordinator cancelled the job before it started.
    pub fn is_cancelled(&self, job_id: &str) -> bool {
        self.lock().jobs.get(job_id).is_some_and(|s| s.cancelled)
    }

    /// Records an update; returns false when the job already finished
    /// (a late progress line after a cancel, say) and the update must be dropped.
    pub fn record(&self, update: &pb::JobUpdate) -> bool {
        let mut g = self.lock();
        let final_state = update.state != pb::JobState::Running as i32;
        let Some(slot) = g.jobs.get_mut(&update.job_id) else {
            return false;
        };
        if slot.done {
            return false;
        }
        slot.latest = update.clone();
        if final_state {
            slot.done = true;
            slot.abort = None;
            g.finished.push_back(update.job_id.clone());
            while g.finished.len() > self.history {
                if let Some(old) = g.finished.pop_front() {
                    g.jobs.remove(&old);
                }
            }
        }
        true
    }

    /// Aborts a running job; returns its node when it was running.
    pub fn cancel(&self, job_id: &str) -> Option<String> {
        let mut g = self.lock();
        let slot = g.jobs.get_mut(job_id)?;
        if slot.done {
            return None;
        }
        match slot.abort.take() {
            Some(handle) => handle.abort(),
            None => slot.cancelled = true,
        }
        Some(slot.latest.node_uuid.clone())
    }

    /// Puts a job in its node's line, in arrival order: one job at a time
    /// per node. Returns the signal to wait for (the previous job's end, if
    /// any) and this job's own end signal, which fires when it is dropped.
    pub fn enqueue(
        &self,
        node: &str,
        job_id: &str,
    ) -> (Option<oneshot::Receiver<()>>, oneshot::Sender<()>) {
        let (tx, rx) = oneshot::channel();
        let prev = self
            .lock()
            .tails
            .insert(node.to_string(), (job_id.to_string(), rx))
            .map(|(_, r)| r);
        (prev, tx)
    }

    /// Takes a finished job out of its node's line (if nobody queued behind it).
    pub fn dequeue(&self, node: &str, job_id: &str) {
        let mut g = self.lock();
        if g.tails.get(node).is_some_and(|(id, _)| id == job_id) {
            g.tails.remove(node);
        }
    }

    /// Latest update of every known job (for `hello.known_jobs`).
    pub fn snapshot(&self) -> Vec<pb::JobUpdate> {
        self.lock()
            .jobs
            .values()
            .map(|s| s.latest.clone())
            .collect()
    }

    /// Jobs still running.
    pub fn running(&self) -> u32 {
        let n = self.lock().jobs.values().filter(|s| !s.done).count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(id: &str) -> pb::JobUpdate {
        pb::JobUpdate {
            job_id: id.into(),
            node_uuid: "n".into(),
            state: pb::JobState::Succeeded as i32,
            ..Default::default()
        }
    }

    #[test]
    fn idempotent_and_bounded() {
        let r = JobRegistry::new(2);
        assert!(matches!(r.admit("a", "n"), Admission::Run));
        assert!(
            matches!(r.admit("a", "n"), Admission::Known(u) if u.state == pb::JobState::Running as i32)
        );
        assert_eq!(r.running(), 1);
        assert!(r.record(&done("a")));
        assert!(
            !r.record(&done("a")),
            "a finished job takes no more updates"
        );
        assert!(
            matches!(r.admit("a", "n"), Admission::Known(u) if u.state == pb::JobState::Succeeded as i32)
        );
        for id in ["b", "c"] {
            r.admit(id, "n");
            r.record(&done(id));
        }
        // "a" fell out of the history of 2.
        assert!(matches!(r.admit("a", "n"), Admission::Run));
        assert_eq!(r.snapshot().len(), 3);
    }

    #[tokio::test]
    async fn hello_goes_first_and_updates_follow() {
        let sink = UpdateSink::default();
        let r = JobRegistry::new(10);
        r.admit("a", "n");
        // No session: the update is only recorded.
        assert!(r.record(&done("a")));
        sink.send(done("a")).await;
        let (tx, mut rx) = mpsc::channel(8);
        let ok = sink.connect_with(tx, || pb::AgentMessage {
            msg: Some(pb::agent_message::Msg::Hello(pb::AgentHello {
                known_jobs: r.snapshot(),
                ..Default::default()
            })),
        });
        assert!(ok);
        r.admit("b", "n");
        sink.send(done("b")).await;
        match rx.recv().await.unwrap().msg {
            Some(pb::agent_message::Msg::Hello(h)) => assert_eq!(h.known_jobs.len(), 1),
            other => panic!("{other:?}"),
        }
        match rx.recv().await.unwrap().msg {
            Some(pb::agent_message::Msg::JobUpdate(u)) => assert_eq!(u.job_id, "b"),
            other => panic!("{other:?}"),
        }
        sink.disconnect();
        sink.send(done("c")).await;
        assert!(
            rx.recv().await.is_none(),
            "a disconnected sink drops its sender"
        );
    }

    #[tokio::test]
    async fn one_job_at_a_time_per_node_in_arrival_order() {
        let r = JobRegistry::new(10);
        let (p1, t1) = r.enqueue("n1", "a");
        assert!(p1.is_none());
        let (p2, t2) = r.enqueue("n1", "b");
        let (p3, _t3) = r.enqueue("n2", "c");
        assert!(p3.is_none(), "other nodes do not wait");
        let mut p2 = p2.unwrap();
        assert!(p2.try_recv().is_err(), "b waits for a");
        drop(t1);
        r.dequeue("n1", "a");
        assert!(p2.await.is_err(), "a's end (sender dropped) releases b");
        drop(t2);
        r.dequeue("n1", "b");
        r.dequeue("n2", "c");
        assert!(r.lock().tails.is_empty());
    }
}
