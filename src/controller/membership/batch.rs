//! Rounds of one group that arrive together run as one batch: one fresh record read, one
//! write-ahead record write and one settled record write for all of them, their Okta writes
//! side by side.
//!
//! A round submits its job under the group's record name. The first round to find no batch
//! running leads: it takes every job queued so far, runs them, then the next queued lot, until
//! the queue is empty. The others wait for their job's answer. So the rounds of one group
//! still never interleave (the record and the member list stay consistent), but a burst
//! shares the Kubernetes work. Dropping the leader (its round abandoned when a leadership term
//! ends) drops the queued jobs, whose rounds then fail and are retried.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

struct Queue<J> {
    jobs: Vec<J>,
    leading: bool,
}

/// Job queues by group key.
pub struct Batches<J> {
    queues: Mutex<HashMap<String, Queue<J>>>,
}

impl<J> Default for Batches<J> {
    fn default() -> Self {
        Batches {
            queues: Mutex::new(HashMap::new()),
        }
    }
}

impl<J> std::fmt::Debug for Batches<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batches").finish_non_exhaustive()
    }
}

impl<J> Batches<J> {
    fn queues(&self) -> MutexGuard<'_, HashMap<String, Queue<J>>> {
        // Every update is a single push, take or flag change: consistent even after a panic.
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `job` under `key`. Returns the [`Leader`] when no batch of `key` is running: the
    /// caller must then run the batches until [`Leader::next_batch`] says the queue is empty.
    pub fn submit(self: &Arc<Self>, key: &str, job: J) -> Option<Leader<J>> {
        let mut queues = self.queues();
        let queue = queues.entry(key.to_owned()).or_insert_with(|| Queue {
            jobs: Vec::new(),
            leading: false,
        });
        queue.jobs.push(job);
        if queue.leading {
            return None;
        }
        queue.leading = true;
        Some(Leader {
            batches: self.clone(),
            key: key.to_owned(),
            ended: false,
        })
    }
}

/// The one runner of a group's batches.
pub struct Leader<J> {
    batches: Arc<Batches<J>>,
    key: String,
    /// The queue ran empty: the group may have a new leader already.
    ended: bool,
}

impl<J> Leader<J> {
    /// `carried` (jobs put off by the previous batch, first) and every job queued since;
    /// `None` when there are none, which ends the leadership.
    pub fn next_batch(&mut self, mut carried: Vec<J>) -> Option<Vec<J>> {
        if self.ended {
            return None;
        }
        let mut queues = self.batches.queues();
        if let Some(queue) = queues.get_mut(&self.key) {
            carried.append(&mut queue.jobs);
        }
        if carried.is_empty() {
            queues.remove(&self.key);
            self.ended = true;
            return None;
        }
        Some(carried)
    }
}

impl<J> Drop for Leader<J> {
    /// Ends the leadership. Jobs still queued (the leader was abandoned) are dropped, so their
    /// rounds stop waiting.
    fn drop(&mut self) {
        if !self.ended {
            self.batches.queues().remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_submitter_leads_and_takes_what_queued_meanwhile() {
        let batches: Arc<Batches<u32>> = Arc::default();
        let mut leader = batches.submit("g", 1).expect("nobody leads yet");
        assert!(batches.submit("g", 2).is_none(), "one leader per group");
        assert!(batches.submit("g", 3).is_none());
        let mut other = batches
            .submit("h", 9)
            .expect("another group has its own leader");
        assert_eq!(leader.next_batch(Vec::new()), Some(vec![1, 2, 3]));
        assert!(batches.submit("g", 4).is_none(), "still leading");
        assert_eq!(
            leader.next_batch(vec![3]),
            Some(vec![3, 4]),
            "carried first"
        );
        assert_eq!(leader.next_batch(Vec::new()), None);
        let next = batches.submit("g", 5);
        assert!(next.is_some(), "an empty queue ends the leadership");
        drop(leader);
        assert!(
            batches.submit("g", 6).is_none(),
            "the ended leader leaves its successor's queue alone"
        );
        assert_eq!(other.next_batch(Vec::new()), Some(vec![9]));
    }

    #[test]
    fn an_abandoned_leader_drops_the_queued_jobs_and_frees_the_group() {
        let batches: Arc<Batches<tokio::sync::oneshot::Sender<()>>> = Arc::default();
        let (tx, mut waiting) = tokio::sync::oneshot::channel();
        let (first, _) = tokio::sync::oneshot::channel();
        let leader = batches.submit("g", first).unwrap();
        assert!(batches.submit("g", tx).is_none());
        drop(leader);
        assert!(
            waiting
                .try_recv()
                .is_err_and(|e| e == tokio::sync::oneshot::error::TryRecvError::Closed),
            "the queued round stops waiting"
        );
        let (again, _) = tokio::sync::oneshot::channel();
        assert!(batches.submit("g", again).is_some());
    }
}
