//! A semaphore whose number of permits can be changed while permits are out.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

/// Limits how many connections of a class are out at once. Shrinking below the number of
/// permits in use leaves a debt that returning permits pay off (they are forgotten instead
/// of released), so the limit holds without waiting for anyone.
#[derive(Debug)]
pub(crate) struct Limiter {
    semaphore: Arc<Semaphore>,
    limit: AtomicU32,
    /// Permits to forget as they come back.
    debt: AtomicU32,
    /// Serialises `set_limit` calls; never taken on the acquire or release path.
    resize: Mutex<()>,
}

/// What to do with a returned permit's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Returned {
    /// The permit went back; keep the connection.
    Kept,
    /// The permit paid off shrink debt; close the connection so the pool shrinks too.
    Retired,
}

impl Limiter {
    pub(crate) fn new(limit: u32) -> Self {
        Self {
            semaphore: Arc::new(Semaphore::new(limit as usize)),
            limit: AtomicU32::new(limit),
            debt: AtomicU32::new(0),
            resize: Mutex::new(()),
        }
    }

    pub(crate) fn limit(&self) -> u32 {
        self.limit.load(Ordering::Relaxed)
    }

    /// A permit if one is free right now.
    pub(crate) fn try_acquire(&self) -> Option<Permit<'_>> {
        let permit = Arc::clone(&self.semaphore).try_acquire_owned().ok()?;
        Some(Permit::new(permit, self))
    }

    /// Waits for a permit; fails only when the limiter was closed.
    pub(crate) async fn acquire(&self) -> Result<Permit<'_>, AcquireError> {
        let permit = Arc::clone(&self.semaphore).acquire_owned().await?;
        Ok(Permit::new(permit, self))
    }

    /// Returns a permit, or forgets it when the limit was lowered below the permits out.
    pub(crate) fn release(&self, permit: OwnedSemaphorePermit) -> Returned {
        if self.debt.load(Ordering::Relaxed) == 0 {
            drop(permit);
            return Returned::Kept;
        }
        let paid = self
            .debt
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1))
            .is_ok();
        if paid {
            permit.forget();
            Returned::Retired
        } else {
            drop(permit);
            Returned::Kept
        }
    }

    /// Changes the limit: growing cancels outstanding debt first and adds the rest as permits;
    /// shrinking removes free permits now and the rest as they come back.
    pub(crate) fn set_limit(&self, limit: u32) {
        let _serial = self.resize.lock().unwrap_or_else(PoisonError::into_inner);
        let old = self.limit.swap(limit, Ordering::AcqRel);
        if limit > old {
            let mut grow = limit - old;
            let cancelled = self
                .debt
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| {
                    Some(d.saturating_sub(grow))
                })
                .map_or(0, |before| before.min(grow));
            grow -= cancelled;
            self.semaphore.add_permits(grow as usize);
        } else if limit < old {
            let shrink = old - limit;
            let forgotten = self.semaphore.forget_permits(shrink as usize);
            let owed = shrink.saturating_sub(u32::try_from(forgotten).unwrap_or(shrink));
            self.debt.fetch_add(owed, Ordering::AcqRel);
        }
    }

    /// Wakes every waiter with an error and refuses new acquires.
    pub(crate) fn close(&self) {
        self.semaphore.close();
    }

    /// Permits that can be taken right now.
    #[cfg(test)]
    fn available(&self) -> usize {
        self.semaphore.available_permits()
    }
}

/// A permit on its way to a connection: if the acquire fails or is cancelled before the
/// connection is handed out, dropping it still goes through [`Limiter::release`], so shrink
/// debt is paid.
#[derive(Debug)]
pub(crate) struct Permit<'a> {
    permit: Option<OwnedSemaphorePermit>,
    limiter: &'a Limiter,
}

impl<'a> Permit<'a> {
    fn new(permit: OwnedSemaphorePermit, limiter: &'a Limiter) -> Self {
        Self {
            permit: Some(permit),
            limiter,
        }
    }

    /// The permit itself, for a handed-out connection that releases it through the
    /// limiter when it is dropped.
    pub(crate) fn into_inner(mut self) -> Option<OwnedSemaphorePermit> {
        self.permit.take()
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.limiter.release(permit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrinking_with_permits_out_retires_them_as_they_return() {
        let limiter = Limiter::new(4);
        let held: Vec<_> = (0..3)
            .map(|_| limiter.try_acquire().unwrap().into_inner().unwrap())
            .collect();
        limiter.set_limit(1);
        // One free permit was forgotten at once, two more are owed.
        assert_eq!(limiter.available(), 0);
        let mut returned = held.into_iter().map(|p| limiter.release(p));
        assert_eq!(returned.next(), Some(Returned::Retired));
        assert_eq!(returned.next(), Some(Returned::Retired));
        assert_eq!(returned.next(), Some(Returned::Kept));
        assert_eq!(limiter.available(), 1);
        assert_eq!(limiter.limit(), 1);
    }

    #[test]
    fn growing_cancels_debt_before_adding_permits() {
        let limiter = Limiter::new(3);
        let held: Vec<_> = (0..3)
            .map(|_| limiter.try_acquire().unwrap().into_inner().unwrap())
            .collect();
        limiter.set_limit(1); // owes 2
        limiter.set_limit(4); // cancels the 2 owed, adds 1
        assert_eq!(limiter.available(), 1);
        for p in held {
            assert_eq!(limiter.release(p), Returned::Kept);
        }
        assert_eq!(limiter.available(), 4);
    }

    #[test]
    fn a_permit_dropped_before_use_pays_shrink_debt() {
        let limiter = Limiter::new(2);
        let a = limiter.try_acquire().unwrap();
        let b = limiter.try_acquire().unwrap();
        limiter.set_limit(1); // owes 1
        drop(a); // an acquire that failed after its permit: forgotten, not returned
        assert_eq!(limiter.available(), 0);
        drop(b);
        assert_eq!(limiter.available(), 1);
    }

    #[tokio::test]
    async fn close_fails_waiters() {
        let limiter = Arc::new(Limiter::new(1));
        let _held = limiter.try_acquire().unwrap();
        let waiter = {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move { limiter.acquire().await.is_err() })
        };
        tokio::task::yield_now().await;
        limiter.close();
        assert!(waiter.await.unwrap());
    }
}
