//! [`ReadAhead`]: items produced by a closure on a thread of its own while its consumer
//! works on earlier ones.

use crate::error::{Error, Result};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};

/// Items produced by a closure on its own thread, queued ahead of [`ReadAhead::next`]
/// while the items queued weigh less than a budget (at least one item is always queued).
/// With [`ReadAhead::spawn`] the budget is one item: the next chunk of input is read while
/// the current one is worked on. With [`ReadAhead::spawn_weighted`], many small items
/// (a stream's one-record mini-batches) wait in the queue, so that handing one over costs
/// a lock rather than a meeting of two threads: a full queue's producer sleeps until it
/// has drained to half the budget, and each side wakes the other only when that one
/// sleeps, so that a queue that stays near full costs no wake-up per item. The thread
/// stops after the last item, the first error, or once the `ReadAhead` is dropped (it is
/// not joined, as it may be waiting on stdin).
pub struct ReadAhead<T> {
    shared: Arc<Shared<T>>,
    /// Whether the last item was given: later calls give `None` again.
    ended: std::cell::Cell<bool>,
}

struct Shared<T> {
    queue: Mutex<Queue<T>>,
    /// Signalled when an item is queued or the producer stops.
    filled: Condvar,
    /// Signalled when an item is taken or the consumer is gone.
    drained: Condvar,
}

struct Queue<T> {
    items: VecDeque<(Result<Option<T>>, usize)>,
    weight: usize,
    /// The consumer was dropped, or the producer panicked.
    closed: bool,
    /// Who sleeps on the queue: the consumer on an empty one, the producer on a full one
    /// until its weight is at most `resume`.
    consumer_waits: bool,
    producer_waits: bool,
    resume: usize,
}

impl<T: Send + 'static> ReadAhead<T> {
    /// Read one item ahead.
    pub fn spawn(next: impl FnMut() -> Result<Option<T>> + Send + 'static) -> Self {
        Self::spawn_weighted(1, |_| 1, next)
    }

    /// Read ahead while the queued items weigh less than `budget` by `weight`.
    pub fn spawn_weighted(
        budget: usize,
        weight: impl Fn(&T) -> usize + Send + 'static,
        mut next: impl FnMut() -> Result<Option<T>> + Send + 'static,
    ) -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                weight: 0,
                closed: false,
                consumer_waits: false,
                producer_waits: false,
                resume: budget / 2,
            }),
            filled: Condvar::new(),
            drained: Condvar::new(),
        });
        let producer = Arc::clone(&shared);
        std::thread::spawn(move || {
            // Tells the consumer if `next` panics, instead of leaving it waiting.
            let _closer = Closer(&producer);
            loop {
                let item = next();
                let last = !matches!(item, Ok(Some(_)));
                let w = item.as_ref().map_or(0, |i| i.as_ref().map_or(0, &weight));
                let mut queue = producer.queue.lock().expect("the consumer does not panic");
                if queue.closed {
                    return;
                }
                queue.items.push_back((item, w));
                queue.weight += w;
                if queue.consumer_waits {
                    producer.filled.notify_one();
                }
                if last {
                    return;
                }
                if queue.weight >= budget {
                    queue.producer_waits = true;
                    while queue.weight > queue.resume && !queue.closed {
                        queue = producer
                            .drained
                            .wait(queue)
                            .expect("no panic holds the lock");
                    }
                    queue.producer_waits = false;
                }
                if queue.closed {
                    return;
                }
            }
        });
        ReadAhead {
            shared,
            ended: std::cell::Cell::new(false),
        }
    }

    /// The next item; `None` after the last, however often asked.
    pub fn next(&self) -> Result<Option<T>> {
        if self.ended.get() {
            return Ok(None);
        }
        let mut queue = self
            .shared
            .queue
            .lock()
            .expect("the producer does not panic");
        loop {
            if let Some((item, w)) = queue.items.pop_front() {
                queue.weight -= w;
                if queue.producer_waits && queue.weight <= queue.resume {
                    self.shared.drained.notify_one();
                }
                self.ended.set(matches!(item, Ok(None)));
                return item;
            }
            if queue.closed {
                return Err(Error::Config("the input reader stopped".into()));
            }
            queue.consumer_waits = true;
            queue = self
                .shared
                .filled
                .wait(queue)
                .expect("no panic holds the lock");
            queue.consumer_waits = false;
        }
    }
}

impl<T> Drop for ReadAhead<T> {
    fn drop(&mut self) {
        if let Ok(mut queue) = self.shared.queue.lock() {
            queue.closed = true;
            queue.items.clear();
        }
        self.shared.drained.notify_one();
    }
}

/// Closes the queue when the producer's thread ends, by return or by panic.
struct Closer<'a, T>(&'a Shared<T>);

impl<T> Drop for Closer<'_, T> {
    fn drop(&mut self) {
        if let Ok(mut queue) = self.0.queue.lock() {
            queue.closed = true;
        }
        self.0.filled.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_ahead_gives_its_items_in_order_then_none_however_often_asked() {
        for budget in [1, 2, 100] {
            let mut left = 30;
            let items = ReadAhead::spawn_weighted(
                budget,
                |_| 1,
                move || {
                    left -= 1;
                    Ok((left >= 0).then_some(left))
                },
            );
            for expected in (0..30).rev().map(Some).chain([None, None, None]) {
                assert_eq!(items.next().unwrap(), expected);
            }
        }
    }

    #[test]
    fn the_producer_waits_while_the_queue_weighs_its_budget() {
        let made = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&made);
        let items = ReadAhead::spawn_weighted(
            10,
            |&w: &usize| w,
            move || {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(Some(4))
            },
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
        // Three items of 4 reach the budget of 10; the producer then waits until the
        // queue has drained to half of it (5).
        let made_now = || made.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(made_now(), 3);
        assert_eq!(items.next().unwrap(), Some(4));
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(made_now(), 3, "8 queued is above half the budget");
        assert_eq!(items.next().unwrap(), Some(4));
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(made_now(), 5, "from 4 queued, two more reach the budget");
        drop(items);
    }

    #[test]
    fn an_error_ends_the_items_and_a_panic_is_an_error_not_a_hang() {
        let mut k = 0;
        let items = ReadAhead::spawn(move || {
            k += 1;
            if k == 2 {
                Err(Error::Config("bad".into()))
            } else {
                Ok(Some(k))
            }
        });
        assert_eq!(items.next().unwrap(), Some(1));
        assert!(items.next().is_err());
        let panics = ReadAhead::<u8>::spawn(|| panic!("a reader bug"));
        assert!(panics.next().is_err());
    }
}
