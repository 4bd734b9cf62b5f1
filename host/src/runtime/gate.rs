//! The concurrency gate in front of instantiation.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::SandboxError;

/// The concurrency gate in front of instantiation.
#[derive(Clone)]
pub struct Gate {
    slots: Arc<Semaphore>,
    queue_timeout: Duration,
}

impl Gate {
    pub fn new(slots: u32, queue_timeout: Duration) -> Self {
        Gate { slots: Arc::new(Semaphore::new(slots as usize)), queue_timeout }
    }

    /// Waits up to the queueing deadline for a slot.
    pub async fn enter(&self) -> Result<tokio::sync::OwnedSemaphorePermit, SandboxError> {
        match tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(SandboxError::Busy(self.queue_timeout)),
        }
    }
}
