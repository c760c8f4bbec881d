//! Small synchronisation pieces the driver needs without depending on a runtime: [`Wakeup`], a
//! single-consumer "something changed" flag, [`Rounds`], a counter of the driver's send rounds,
//! [`Latch`], a value set once and awaited by many, and [`EventQueue`], a bounded per-subscriber
//! event queue that drops the oldest event (and counts it) when a subscriber falls behind.
//! Locks are held only for a few instructions and never across an `.await`.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// Locks, recovering the data if a panicking thread poisoned the lock (the state is plain data and
/// stays consistent between statements, so continuing is safe).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Wakes the driver when a command changed the node.
#[derive(Debug, Default)]
pub(crate) struct Wakeup {
    state: Mutex<(bool, Option<Waker>)>,
}

impl Wakeup {
    pub fn notify(&self) {
        let mut s = lock(&self.state);
        s.0 = true;
        if let Some(w) = s.1.take() {
            w.wake();
        }
    }

    /// Completes once `notify` has been called since the last completion.
    pub fn notified(&self) -> Notified<'_> {
        Notified { wakeup: self }
    }
}

pub(crate) struct Notified<'a> {
    wakeup: &'a Wakeup,
}

impl Future for Notified<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = lock(&self.wakeup.state);
        if s.0 {
            s.0 = false;
            Poll::Ready(())
        } else {
            s.1 = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

/// A multi-waiter "the driver finished a round of sending" signal.
#[derive(Debug, Default)]
pub(crate) struct Rounds {
    state: Mutex<(u64, Vec<Waker>)>,
}

impl Rounds {
    pub fn current(&self) -> u64 {
        lock(&self.state).0
    }

    /// Marks a round done and wakes every waiter.
    pub fn bump(&self) {
        let wakers = {
            let mut s = lock(&self.state);
            s.0 += 1;
            std::mem::take(&mut s.1)
        };
        for w in wakers {
            w.wake();
        }
    }

    /// Completes once a round after `seen` is done.
    pub fn after(&self, seen: u64) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            let mut s = lock(&self.state);
            if s.0 > seen {
                Poll::Ready(())
            } else {
                s.1.push(cx.waker().clone());
                Poll::Pending
            }
        })
    }
}

/// A value set once and awaited by any number of waiters: how the member's end is announced.
#[derive(Debug)]
pub(crate) struct Latch<T> {
    state: Mutex<(Option<T>, Vec<Waker>)>,
}

impl<T> Default for Latch<T> {
    fn default() -> Self {
        Latch { state: Mutex::new((None, Vec::new())) }
    }
}

impl<T: Clone> Latch<T> {
    /// Sets the value and wakes every waiter. Only the first call counts.
    pub fn set(&self, value: T) {
        let wakers = {
            let mut s = lock(&self.state);
            if s.0.is_some() {
                return;
            }
            s.0 = Some(value);
            std::mem::take(&mut s.1)
        };
        for w in wakers {
            w.wake();
        }
    }

    /// Completes with the value once it is set.
    pub fn wait(&self) -> impl Future<Output = T> + '_ {
        std::future::poll_fn(move |cx| {
            let mut s = lock(&self.state);
            if let Some(v) = &s.0 {
                return Poll::Ready(v.clone());
            }
            // A waiter polled again replaces its waker instead of adding one more.
            s.1.retain(|w| !w.will_wake(cx.waker()));
            s.1.push(cx.waker().clone());
            Poll::Pending
        })
    }
}

#[derive(Debug)]
struct QueueState<T> {
    items: VecDeque<T>,
    waker: Option<Waker>,
    closed: bool,
    dropped: u64,
}

/// A bounded queue of events for one subscriber.
#[derive(Debug)]
pub(crate) struct EventQueue<T> {
    state: Mutex<QueueState<T>>,
    capacity: usize,
}

impl<T> EventQueue<T> {
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(EventQueue {
            state: Mutex::new(QueueState { items: VecDeque::new(), waker: None, closed: false, dropped: 0 }),
            capacity: capacity.max(1),
        })
    }

    /// Adds an event, dropping the oldest if the subscriber is `capacity` events behind.
    pub fn push(&self, item: T) {
        let mut s = lock(&self.state);
        if s.items.len() >= self.capacity {
            s.items.pop_front();
            s.dropped += 1;
        }
        s.items.push_back(item);
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }

    /// No more events will come; pending ones can still be read.
    pub fn close(&self) {
        let mut s = lock(&self.state);
        s.closed = true;
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }

    pub fn dropped(&self) -> u64 {
        lock(&self.state).dropped
    }

    pub fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut s = lock(&self.state);
        if let Some(item) = s.items.pop_front() {
            return Poll::Ready(Some(item));
        }
        if s.closed {
            return Poll::Ready(None);
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;

    struct Flag(Mutex<bool>);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            *lock(&self.0) = true;
        }
    }

    #[test]
    fn a_slow_subscriber_loses_the_oldest_events_and_knows_how_many() {
        let q = EventQueue::new(2);
        for i in 0..5 {
            q.push(i);
        }
        let waker = Waker::from(Arc::new(Flag(Mutex::new(false))));
        let mut cx = Context::from_waker(&waker);
        assert_eq!(q.poll_next(&mut cx), Poll::Ready(Some(3)));
        assert_eq!(q.poll_next(&mut cx), Poll::Ready(Some(4)));
        assert_eq!(q.dropped(), 3);
        assert_eq!(q.poll_next(&mut cx), Poll::Pending);
        q.close();
        assert_eq!(q.poll_next(&mut cx), Poll::Ready(None));
    }

    #[test]
    fn a_latch_wakes_every_waiter_and_keeps_its_first_value() {
        let latch = Latch::default();
        let flags: Vec<_> = (0..2).map(|_| Arc::new(Flag(Mutex::new(false)))).collect();
        let wakers: Vec<_> = flags.iter().map(|f| Waker::from(f.clone())).collect();
        let mut first = std::pin::pin!(latch.wait());
        let mut second = std::pin::pin!(latch.wait());
        assert_eq!(first.as_mut().poll(&mut Context::from_waker(&wakers[0])), Poll::Pending);
        assert_eq!(second.as_mut().poll(&mut Context::from_waker(&wakers[1])), Poll::Pending);
        latch.set(1);
        latch.set(2);
        assert!(flags.iter().all(|f| *lock(&f.0)), "both waiters woken");
        assert_eq!(first.as_mut().poll(&mut Context::from_waker(&wakers[0])), Poll::Ready(1));
        assert_eq!(second.as_mut().poll(&mut Context::from_waker(&wakers[1])), Poll::Ready(1));
    }

    #[test]
    fn a_notification_before_waiting_is_not_lost() {
        let w = Wakeup::default();
        w.notify();
        let flag = Arc::new(Flag(Mutex::new(false)));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let mut fut = std::pin::pin!(w.notified());
        assert_eq!(fut.as_mut().poll(&mut cx), Poll::Ready(()));
        let mut fut = std::pin::pin!(w.notified());
        assert_eq!(fut.as_mut().poll(&mut cx), Poll::Pending);
        w.notify();
        assert!(*lock(&flag.0));
    }
}
