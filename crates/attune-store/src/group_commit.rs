//! Group commit, shared by the backends: concurrent writers queue their writes; the first one to
//! find no commit in progress leads — it takes a group of queued writes (its own included, or in a
//! later round), commits them together (one fsync, one transaction), hands the results out and
//! wakes the others. A panic while committing answers the group with an error and hands
//! leadership over before it unwinds, so no writer waits forever.

use std::collections::VecDeque;

use parking_lot::{Condvar, Mutex};
use rustc_hash::FxHashMap;

use crate::{Appended, Result, StoreError};

/// One queued write and its ticket.
pub(crate) type Ticketed<W> = (u64, W);

/// The result of each committed write, by ticket.
pub(crate) type Outcomes = Vec<(u64, Result<Vec<Appended>>)>;

/// A group-commit queue of writes `W`.
pub(crate) struct GroupCommit<W> {
    queue: Mutex<Queue<W>>,
    committed: Condvar,
}

struct Queue<W> {
    next_ticket: u64,
    waiting: VecDeque<Ticketed<W>>,
    leader_active: bool,
    results: FxHashMap<u64, Result<Vec<Appended>>>,
}

impl<W> GroupCommit<W> {
    pub(crate) fn new() -> GroupCommit<W> {
        GroupCommit {
            queue: Mutex::new(Queue {
                next_ticket: 0,
                waiting: VecDeque::new(),
                leader_active: false,
                results: FxHashMap::default(),
            }),
            committed: Condvar::new(),
        }
    }

    /// Queues `write` and waits for its result. A leader takes the first `group_len(waiting)`
    /// queued writes (at least one) and commits them with `commit`.
    pub(crate) fn submit(
        &self,
        write: W,
        group_len: impl Fn(&VecDeque<Ticketed<W>>) -> usize,
        mut commit: impl FnMut(Vec<Ticketed<W>>) -> Outcomes,
    ) -> Result<Vec<Appended>> {
        let mut queue = self.queue.lock();
        let ticket = queue.next_ticket;
        queue.next_ticket += 1;
        queue.waiting.push_back((ticket, write));
        loop {
            if let Some(result) = queue.results.remove(&ticket) {
                return result;
            }
            if queue.leader_active {
                self.committed.wait(&mut queue);
                continue;
            }
            queue.leader_active = true;
            let n = group_len(&queue.waiting).clamp(1, queue.waiting.len());
            let group: Vec<Ticketed<W>> = queue.waiting.drain(..n).collect();
            drop(queue);
            let tickets: Vec<u64> = group.iter().map(|(ticket, _)| *ticket).collect();
            let committed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| commit(group)));
            queue = self.queue.lock();
            let panicked = match committed {
                Ok(outcomes) => {
                    queue.results.extend(outcomes);
                    None
                }
                Err(panic) => {
                    for ticket in tickets {
                        queue.results.insert(ticket, Err(StoreError::Backend("the group commit panicked".to_owned())));
                    }
                    Some(panic)
                }
            };
            queue.leader_active = false;
            self.committed.notify_all();
            if let Some(panic) = panicked {
                drop(queue);
                std::panic::resume_unwind(panic);
            }
        }
    }
}
