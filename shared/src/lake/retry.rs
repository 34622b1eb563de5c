//! The reload-and-re-run loop for steps that lose a commit race, and what counts as losing one.
//!
//! delta-rs 1.x commits with put-if-absent; a conflicting MERGE is not retried by delta-rs, so the caller
//! reloads the table and re-runs its whole step (a step is a pure function of the tables it reads, so a
//! re-run is safe), with jittered exponential backoff and a bound.

use std::time::Duration;

use rand::Rng;

pub use crate::error::is_conflict;
use crate::error::{Error, Result};

/// Bounded, jittered retry for steps that lose a commit race.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// Sleep before attempt `attempt` (1-based; attempt 1 does not sleep): full jitter on an exponential cap.
    pub async fn backoff(&self, attempt: u32) {
        if attempt <= 1 {
            return;
        }
        let cap = self
            .base_delay
            .saturating_mul(1 << (attempt - 1).min(16))
            .min(self.max_delay);
        let ms = rand::thread_rng().gen_range(0..=cap.as_millis() as u64);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

impl RetryPolicy {
    /// Runs `step` until it succeeds, re-running the whole step (after a jittered backoff) when it lost a
    /// commit race; other errors return at once. Returns the value and the attempts used. `what` names
    /// the table in logs and in the give-up error.
    pub async fn run<T, F, Fut>(&self, what: &str, mut step: F) -> Result<(T, u32)>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut last = None;
        for attempt in 1..=self.max_attempts {
            self.backoff(attempt).await;
            match step().await {
                Ok(v) => return Ok((v, attempt)),
                Err(e) if e.is_conflict() => {
                    tracing::warn!(table = what, attempt, error = %e, "lost a commit race; reloading and re-running");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(match last {
            Some(last) => Error::ConflictRetriesExhausted {
                table: what.to_string(),
                attempts: self.max_attempts,
                last: Box::new(last),
            },
            None => Error::invariant(format!("{what}: retry policy allows no attempt")),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use deltalake::kernel::transaction::TransactionError;
    use deltalake::DeltaTableError;

    use super::*;

    fn fast(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
        }
    }

    fn lost_race() -> Error {
        Error::delta("t", "commit", DeltaTableError::VersionAlreadyExists(3))
    }

    #[test]
    fn conflicts_are_recognised_by_type() {
        assert!(is_conflict(&DeltaTableError::VersionAlreadyExists(1)));
        assert!(is_conflict(&DeltaTableError::Transaction {
            source: TransactionError::MaxCommitAttempts(15)
        }));
        assert!(is_conflict(&DeltaTableError::ObjectStore {
            source: object_store::Error::AlreadyExists {
                path: "_delta_log/00000000000000000001.json".into(),
                source: "exists".into(),
            }
        }));
        assert!(!is_conflict(&DeltaTableError::Generic(
            "a message that says already exists".into()
        )));
        assert!(lost_race().is_conflict());
        assert!(matches!(lost_race(), Error::Conflict { .. }));
        let other = Error::delta("t", "write", DeltaTableError::Generic("disk full".into()));
        assert!(!other.is_conflict());
    }

    #[tokio::test]
    async fn a_lost_race_re_runs_the_whole_step() {
        let runs = AtomicU32::new(0);
        let (v, attempts) = fast(5)
            .run("t", || async {
                match runs.fetch_add(1, Ordering::SeqCst) {
                    0 | 1 => Err(lost_race()),
                    n => Ok(n),
                }
            })
            .await
            .unwrap();
        assert_eq!((v, attempts), (2, 3));
    }

    #[tokio::test]
    async fn other_errors_return_at_once_and_endless_races_give_up_with_the_last_error() {
        let runs = AtomicU32::new(0);
        let e = fast(5)
            .run("t", || async {
                runs.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(Error::invariant("broken"))
            })
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Invariant(_)));
        assert_eq!(runs.load(Ordering::SeqCst), 1);

        let runs = AtomicU32::new(0);
        let e = fast(4)
            .run("silver/t", || async {
                runs.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(lost_race())
            })
            .await
            .unwrap_err();
        assert_eq!(runs.load(Ordering::SeqCst), 4);
        match e {
            Error::ConflictRetriesExhausted {
                table,
                attempts,
                last,
            } => {
                assert_eq!((table.as_str(), attempts), ("silver/t", 4));
                assert!(
                    last.is_conflict(),
                    "the last lost race is kept as the source"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
