//! Start-up clean-up of workers left by finished jobs (e.g. containers whose backend died
//! after the job was cancelled or marked lost).
//!
//! Only workers of jobs this store knows, that are finished and whose lease nobody holds, are
//! discarded: workers of other backends sharing the engine (another store), and of jobs another
//! live instance still owns, are left alone.

use super::JobManager;
use std::sync::Arc;

impl JobManager {
    pub(super) async fn remove_leftovers(self: &Arc<Self>) {
        let ids = match self.scheduler.leftovers().await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!("cannot list leftover workers: {e}");
                return;
            }
        };
        for id in ids {
            if self.supervised.lock().expect("poisoned").contains_key(&id) {
                continue;
            }
            let finished = matches!(self.store.get(id).await, Ok(Some(job)) if job.status.is_terminal());
            let unowned = match self.store.lease(id).await {
                Ok(lease) => lease.is_none_or(|l| l.owner == self.instance_id()),
                Err(_) => false,
            };
            if finished && unowned {
                tracing::info!(job_id = %id, "removing the worker left by a finished job");
                if let Err(e) = self.scheduler.discard(id).await {
                    tracing::warn!(job_id = %id, "cannot remove the leftover worker: {e}");
                }
            }
        }
    }
}
