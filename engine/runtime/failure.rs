//! The engine's first critical failure and its reason. Every thread the pipeline cannot do
//! without (ingest, the correlation core, the Kafka output) runs under [`Failure::guard`]:
//! an error it returns, or a panic, stops the engine visibly (health `NOT_SERVING`, an
//! ordered stop, a non-zero exit naming the reason) instead of leaving the rest serving
//! over a pipeline that no longer moves.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug, Default)]
pub struct Failure {
    token: CancellationToken,
    reason: Arc<OnceLock<String>>,
}

impl Failure {
    pub fn new() -> Failure {
        Failure::default()
    }

    /// Records `reason` (the first one stays) and sets off the engine's stop.
    pub fn fail(&self, reason: impl Into<String>) {
        let _ = self.reason.set(reason.into());
        self.token.cancel();
    }

    pub fn is_failed(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Completes once the engine has failed.
    pub async fn failed(&self) {
        self.token.cancelled().await
    }

    /// The first failure's reason.
    pub fn reason(&self) -> Option<&str> {
        self.reason.get().map(String::as_str)
    }

    /// Runs the body of the critical thread `name`: an error or a panic is the engine's
    /// failure.
    pub fn guard<E: std::fmt::Display>(&self, name: &str, body: impl FnOnce() -> Result<(), E>) {
        match catch_unwind(AssertUnwindSafe(body)) {
            Ok(Ok(())) => tracing::debug!(thread = name, "stopped"),
            Ok(Err(error)) => {
                tracing::error!(thread = name, %error, "stopped on an error");
                self.fail(format!("{name}: {error}"));
            }
            Err(panic) => {
                let message = panic_message(panic.as_ref());
                tracing::error!(thread = name, panic = message, "panicked");
                self.fail(format!("{name} panicked: {message}"));
            }
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_or_an_error_is_the_failure_and_the_first_reason_stays() {
        let failure = Failure::new();
        failure.guard("quiet", || Ok::<(), String>(()));
        assert!(!failure.is_failed());

        let result = std::thread::spawn({
            let failure = failure.clone();
            move || failure.guard("correlation core", || -> Result<(), String> { panic!("index out of bounds") })
        })
        .join();
        assert!(result.is_ok(), "the panic does not leave the guard");
        assert!(failure.is_failed());
        assert_eq!(failure.reason(), Some("correlation core panicked: index out of bounds"));

        failure.guard("kafka output", || Err("fenced"));
        assert_eq!(failure.reason(), Some("correlation core panicked: index out of bounds"));
    }
}
