//! [`Outbox`]: the bounded queue of frames waiting to be written to one WebSocket connection.
//!
//! Bounded twice, in frames and in bytes, so a connection's backlog never exceeds
//! `queue_frames` frames nor `queue_bytes` bytes (plus one frame: a frame is always accepted
//! into an empty queue, so a frame larger than `queue_bytes` does not make a healthy consumer
//! look slow). A push that does not fit fails at once with [`PushError::Full`]: the switchboard
//! drops that frame and counts it; the member stays connected. A full queue says only that frames
//! arrive faster than the member's link drains them (a burst, or someone flooding it), not that
//! the member stopped reading: that is judged by its writer, from how long the socket takes
//! nothing (`stall_timeout`). Nothing here waits for room.
//!
//! One consumer (the connection's writer task) takes frames with [`Outbox::pop`]; any number of
//! producers push. [`Outbox::close`] discards the backlog, makes `pop` return `None` and wakes
//! everyone waiting on [`Outbox::closed`] (the connection's reader), which is how a connection is
//! told to go away.
//!
//! The relay tells a member why it goes away with [`Outbox::close_with`]: a slow consumer, a
//! connection replaced by a newer one with the same peer id, the relay shutting down, an idle or
//! misbehaving connection ([`CloseReason`]). The queue keeps the reason of the close that closed
//! it ([`Outbox::close_reason`]; later closes change nothing) and the writer sends it in the
//! WebSocket close frame, which is how the member knows whether to reconnect. A plain [`Outbox::close`] carries no reason: the
//! connection ended by itself (the member left, the socket failed) and there is nobody to tell.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::close::CloseReason;

/// Why a frame was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushError {
    /// The queue holds `queue_frames` frames or the frame would take it past `queue_bytes`: the
    /// consumer is not keeping up. Nothing was queued.
    Full,
    /// The queue was closed (its connection is going away). Nothing was queued.
    Closed,
}

impl std::fmt::Display for PushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PushError::Full => "the connection's queue is full",
            PushError::Closed => "the connection's queue is closed",
        })
    }
}

impl std::error::Error for PushError {}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Bytes>,
    bytes: usize,
    closed: bool,
    /// Why it was closed, if the close said ([`Outbox::close_with`]).
    reason: Option<CloseReason>,
}

/// A bounded frame queue with one consumer. See the module documentation.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    /// Wakes the consumer: one stored permit, so a push between its check and its wait is not lost.
    wake: Notify,
    /// Wakes everyone waiting for the close.
    close_wake: Notify,
    max_frames: usize,
    max_bytes: usize,
}

impl Outbox {
    /// A queue of at most `max_frames` frames (at least 1) and `max_bytes` bytes.
    pub fn new(max_frames: usize, max_bytes: usize) -> Outbox {
        Outbox {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            close_wake: Notify::new(),
            max_frames: max_frames.max(1),
            max_bytes,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is consistent after every statement, so a panic elsewhere cannot corrupt it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `frame` if it fits; never waits.
    pub fn try_push(&self, frame: Bytes) -> Result<(), PushError> {
        {
            let mut s = self.state();
            if s.closed {
                return Err(PushError::Closed);
            }
            let fits_bytes = s.frames.is_empty() || s.bytes + frame.len() <= self.max_bytes;
            if s.frames.len() >= self.max_frames || !fits_bytes {
                return Err(PushError::Full);
            }
            s.bytes += frame.len();
            s.frames.push_back(frame);
        }
        self.wake.notify_one();
        Ok(())
    }

    /// The oldest frame, if any (`None` also once closed).
    pub fn try_pop(&self) -> Option<Bytes> {
        let mut s = self.state();
        let frame = s.frames.pop_front()?;
        s.bytes -= frame.len();
        if s.frames.is_empty() && s.frames.capacity() > 64 {
            // A burst grew the ring; give the memory back now that the consumer caught up.
            s.frames.shrink_to(16);
        }
        Some(frame)
    }

    /// Waits for the oldest frame; `None` once the queue is closed. One consumer only.
    pub async fn pop(&self) -> Option<Bytes> {
        loop {
            if let Some(frame) = self.try_pop() {
                return Some(frame);
            }
            if self.is_closed() {
                return None;
            }
            self.wake.notified().await;
        }
    }

    /// Closes the queue: drops the backlog, refuses later pushes, wakes the consumer and every
    /// [`closed`](Self::closed) waiter. Idempotent. Call it when the connection ended by itself;
    /// when the relay ends it, use [`close_with`](Self::close_with) so the member learns why.
    /// Returns how many frames of the backlog were discarded (for the drop counters).
    pub fn close(&self) -> usize {
        self.shut(None)
    }

    /// As [`close`](Self::close), and the connection's writer then sends `reason` in a WebSocket
    /// close frame. Only the first close counts: a queue already closed keeps its reason (or its
    /// lack of one).
    pub fn close_with(&self, reason: impl Into<CloseReason>) -> usize {
        self.shut(Some(reason.into()))
    }

    fn shut(&self, reason: Option<CloseReason>) -> usize {
        let discarded;
        {
            let mut s = self.state();
            if !s.closed {
                s.closed = true;
                s.reason = reason;
            }
            discarded = s.frames.len();
            s.frames = VecDeque::new();
            s.bytes = 0;
        }
        self.wake.notify_one();
        self.close_wake.notify_waiters();
        discarded
    }

    /// Whether [`close`](Self::close) or [`close_with`](Self::close_with) was called.
    pub fn is_closed(&self) -> bool {
        self.state().closed
    }

    /// The reason the queue was closed with, if it is closed and the first close gave one.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.state().reason
    }

    /// Completes once the queue is closed (at once if it already is).
    pub async fn closed(&self) {
        loop {
            let notified = self.close_wake.notified();
            tokio::pin!(notified);
            // Register before checking, so a close in between cannot be missed.
            notified.as_mut().enable();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    /// Frames queued.
    pub fn len(&self) -> usize {
        self.state().frames.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes queued.
    pub fn bytes(&self) -> usize {
        self.state().bytes
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use shoal_core::relay::CloseCode;

    use super::*;

    fn frame(n: usize) -> Bytes {
        Bytes::from(vec![7u8; n])
    }

    #[test]
    fn frames_come_out_in_the_order_they_went_in() {
        let q = Outbox::new(8, 1_000);
        for n in 1..=3 {
            q.try_push(frame(n)).unwrap();
        }
        assert_eq!((q.len(), q.bytes()), (3, 6));
        assert_eq!(q.try_pop().unwrap().len(), 1);
        assert_eq!(q.try_pop().unwrap().len(), 2);
        assert_eq!(q.try_pop().unwrap().len(), 3);
        assert!(q.try_pop().is_none());
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn a_queue_refuses_frames_past_its_frame_limit() {
        let q = Outbox::new(2, 1_000);
        q.try_push(frame(1)).unwrap();
        q.try_push(frame(1)).unwrap();
        assert_eq!(q.try_push(frame(1)), Err(PushError::Full));
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn a_queue_refuses_frames_past_its_byte_limit() {
        let q = Outbox::new(100, 10);
        q.try_push(frame(6)).unwrap();
        assert_eq!(q.try_push(frame(5)), Err(PushError::Full));
        q.try_push(frame(4)).unwrap();
        assert_eq!(q.bytes(), 10);
    }

    #[test]
    fn an_empty_queue_takes_one_frame_larger_than_its_byte_limit() {
        let q = Outbox::new(100, 10);
        q.try_push(frame(50)).unwrap();
        assert_eq!(q.try_push(frame(1)), Err(PushError::Full));
    }

    #[test]
    fn a_closed_queue_drops_its_backlog_and_refuses_pushes() {
        let q = Outbox::new(8, 1_000);
        q.try_push(frame(3)).unwrap();
        assert_eq!(q.close(), 1, "one frame discarded");
        assert!(q.is_closed());
        assert_eq!((q.len(), q.bytes()), (0, 0));
        assert_eq!(q.try_push(frame(1)), Err(PushError::Closed));
    }

    #[test]
    fn a_queue_remembers_the_reason_of_the_close_that_closed_it() {
        let q = Outbox::new(8, 1_000);
        assert_eq!(q.close_reason(), None);
        q.try_push(frame(3)).unwrap();
        q.close_with(CloseCode::Replaced);
        assert!(q.is_closed());
        assert_eq!((q.len(), q.bytes()), (0, 0), "the backlog is dropped as for a plain close");
        q.close_with(CloseCode::ShuttingDown);
        q.close();
        assert_eq!(q.close_reason(), Some(CloseReason::Replaced), "later closes change nothing");
    }

    #[test]
    fn a_queue_closed_without_a_reason_keeps_none_even_if_a_reason_comes_later() {
        let q = Outbox::new(8, 1_000);
        q.close();
        q.close_with(CloseCode::SlowConsumer);
        assert_eq!(q.close_reason(), None);
    }

    #[tokio::test]
    async fn a_waiting_consumer_wakes_for_a_push_and_for_the_close() {
        let q = Arc::new(Outbox::new(8, 1_000));
        let consumer = tokio::spawn({
            let q = q.clone();
            async move {
                let first = q.pop().await.map(|f| f.len());
                let second = q.pop().await.map(|f| f.len());
                (first, second)
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        q.try_push(frame(4)).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        q.close();
        let got = tokio::time::timeout(Duration::from_secs(2), consumer).await.unwrap().unwrap();
        assert_eq!(got, (Some(4), None));
    }

    #[tokio::test]
    async fn closed_completes_for_every_waiter_even_after_the_fact() {
        let q = Arc::new(Outbox::new(8, 1_000));
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let q = q.clone();
                tokio::spawn(async move { q.closed().await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        q.close();
        for w in waiters {
            tokio::time::timeout(Duration::from_secs(2), w).await.unwrap().unwrap();
        }
        tokio::time::timeout(Duration::from_secs(2), q.closed()).await.unwrap();
    }
}
