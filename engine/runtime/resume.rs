//! Resume tokens of the live stream. Every published change gets the next sequence number;
//! a token names a point of the stream (this run of the engine, a sequence number). The
//! core remembers the sequence number of each incident's last change and, for a bounded
//! number of closures, which incident closed when: enough to tell a resubscribing client
//! which incidents changed or closed after its token, instead of sending it every incident
//! again. A dashboard dropped for falling behind in a storm comes back for the incidents
//! that moved, not the thousands that did not.

use crate::model::incident::{ChangeKind, IncidentChange, IncidentId};
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::VecDeque;
use std::fmt;

/// Closures remembered: 16 bytes each. A token older than the oldest closure forgotten
/// cannot be resumed.
pub const CLOSED_KEPT: usize = 100_000;

/// A point of the live stream: after the change numbered `seq` of the run `run`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResumeToken {
    run: u64,
    seq: u64,
}

impl fmt::Display for ResumeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}-{}", self.run, self.seq)
    }
}

impl std::str::FromStr for ResumeToken {
    type Err = ();

    fn from_str(token: &str) -> Result<ResumeToken, ()> {
        let (run, seq) = token.split_once('-').ok_or(())?;
        if run.len() != 16 {
            return Err(());
        }
        Ok(ResumeToken { run: u64::from_str_radix(run, 16).map_err(|_| ())?, seq: seq.parse().map_err(|_| ())? })
    }
}

/// Why a token cannot be resumed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResumeError {
    #[error("`resume_token` is from an earlier run of the engine; subscribe without it for a whole snapshot")]
    OtherRun,
    #[error(
        "`resume_token` is too old: the incidents closed since are no longer all known; subscribe without it for a whole snapshot"
    )]
    TooOld,
    #[error("`resume_token` names a change not yet published")]
    Ahead,
}

/// What changed after a token.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Since {
    /// Incidents changed after the token and still in memory.
    pub changed: FxHashSet<IncidentId>,
    /// Incidents closed after the token, in the order they closed.
    pub closed: Vec<IncidentId>,
}

/// The sequence numbers behind resume tokens, kept by the publisher on the core thread.
pub struct ResumeLog {
    run: u64,
    /// The last change published.
    seq: u64,
    /// Each incident in memory: its last change.
    last_change: FxHashMap<IncidentId, u64>,
    /// (change, incident) of the latest closures, oldest first.
    closed: VecDeque<(u64, IncidentId)>,
    keep: usize,
    /// Tokens before this change cannot be resumed: closures after them were forgotten.
    horizon: u64,
}

impl ResumeLog {
    /// A log for a run told apart from every other by `run` (the start time in
    /// nanoseconds, say), remembering `keep` closures.
    pub fn new(run: u64, keep: usize) -> ResumeLog {
        ResumeLog {
            run,
            seq: 0,
            last_change: FxHashMap::default(),
            closed: VecDeque::new(),
            keep: keep.max(1),
            horizon: 0,
        }
    }

    /// Numbers `change`; returns the token of the point after it.
    pub fn record(&mut self, change: &IncidentChange) -> ResumeToken {
        self.seq += 1;
        let id = change.incident.id;
        if change.kind == ChangeKind::Closed {
            self.last_change.remove(&id);
            if self.closed.len() == self.keep
                && let Some((forgotten, _)) = self.closed.pop_front()
            {
                self.horizon = forgotten;
            }
            self.closed.push_back((self.seq, id));
        } else {
            self.last_change.insert(id, self.seq);
        }
        self.point()
    }

    /// The token of the point after the last change published.
    pub fn point(&self) -> ResumeToken {
        ResumeToken { run: self.run, seq: self.seq }
    }

    /// What changed and closed after `token`.
    pub fn since(&self, token: ResumeToken) -> Result<Since, ResumeError> {
        if token.run != self.run {
            return Err(ResumeError::OtherRun);
        }
        if token.seq > self.seq {
            return Err(ResumeError::Ahead);
        }
        if token.seq < self.horizon {
            return Err(ResumeError::TooOld);
        }
        let changed = self.last_change.iter().filter(|&(_, &seq)| seq > token.seq).map(|(&id, _)| id).collect();
        let first = self.closed.partition_point(|&(seq, _)| seq <= token.seq);
        let closed = self.closed.range(first..).map(|&(_, id)| id).collect();
        Ok(Since { changed, closed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::incident::Incident;
    use std::sync::Arc;

    fn change(id: u64, kind: ChangeKind) -> IncidentChange {
        IncidentChange { kind, incident: Arc::new(Incident::new(IncidentId(id), 0)) }
    }

    fn ids(list: impl IntoIterator<Item = IncidentId>) -> Vec<u64> {
        let mut ids: Vec<u64> = list.into_iter().map(|id| id.0).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn a_token_resumes_with_what_changed_and_closed_after_it() {
        let mut log = ResumeLog::new(7, 3);
        let start = log.point();
        log.record(&change(1, ChangeKind::Opened));
        log.record(&change(2, ChangeKind::Opened));
        let after_two = log.record(&change(3, ChangeKind::Opened));
        log.record(&change(2, ChangeKind::Updated));
        log.record(&change(1, ChangeKind::Closed));
        let after_close = log.record(&change(4, ChangeKind::Opened));

        let since = log.since(start).unwrap();
        assert_eq!((ids(since.changed), ids(since.closed)), (vec![2, 3, 4], vec![1]));
        let since = log.since(after_two).unwrap();
        assert_eq!((ids(since.changed), ids(since.closed)), (vec![2, 4], vec![1]));
        assert_eq!(log.since(after_close).unwrap(), Since::default(), "nothing after the latest point");

        // The token as the client sees it.
        let parsed: ResumeToken = after_two.to_string().parse().unwrap();
        assert_eq!(parsed, after_two);
        assert!("0000000000000007".parse::<ResumeToken>().is_err() && "7-2".parse::<ResumeToken>().is_err());

        // Another run, a token not yet reached.
        assert_eq!(ResumeLog::new(8, 3).since(after_two), Err(ResumeError::OtherRun));
        let ahead = ResumeToken { run: 7, seq: 100 };
        assert_eq!(log.since(ahead), Err(ResumeError::Ahead));

        // Three closures are remembered: a fourth forgets the first, and the tokens before it.
        log.record(&change(2, ChangeKind::Closed));
        log.record(&change(3, ChangeKind::Closed));
        assert!(log.since(start).is_ok(), "three closures known");
        log.record(&change(4, ChangeKind::Closed));
        assert_eq!(log.since(start), Err(ResumeError::TooOld));
        assert_eq!(log.since(after_two), Err(ResumeError::TooOld));
        let since = log.since(after_close).unwrap();
        assert_eq!((ids(since.changed), ids(since.closed)), (vec![], vec![2, 3, 4]));
    }
}
