//! The async side's way into the core thread: a cloneable handle that runs a closure
//! against the core and awaits its result. Never blocks the runtime: a full queue is
//! reported at once as busy, and a core that does not answer in time (its brokers are
//! unreachable and a commit is being retried) as busy too.

use super::core_loop::{CoreContext, Job, Reply};
use std::time::Duration;

/// How long a caller waits for the core before it is told the engine is busy.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    #[error("the correlation engine is busy; retry shortly")]
    Busy,
    #[error("the correlation engine is shutting down")]
    Stopped,
}

#[derive(Clone)]
pub struct EngineHandle {
    jobs: crossbeam_channel::Sender<Job>,
}

impl EngineHandle {
    pub fn new(jobs: crossbeam_channel::Sender<Job>) -> EngineHandle {
        EngineHandle { jobs }
    }

    /// Runs `f` on the core thread, between two batches.
    pub async fn call<R, F>(&self, f: F) -> Result<R, Unavailable>
    where
        R: Send + 'static,
        F: FnOnce(&mut CoreContext<'_>) -> R + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |ctx| {
            let result = f(ctx);
            let reply: Reply = Box::new(move || {
                let _ = tx.send(result);
            });
            reply
        });
        self.jobs.try_send(job).map_err(|e| match e {
            crossbeam_channel::TrySendError::Full(_) => Unavailable::Busy,
            crossbeam_channel::TrySendError::Disconnected(_) => Unavailable::Stopped,
        })?;
        match tokio::time::timeout(ANSWER_WITHIN, rx).await {
            Ok(answer) => answer.map_err(|_| Unavailable::Stopped),
            Err(_) => Err(Unavailable::Busy),
        }
    }
}
