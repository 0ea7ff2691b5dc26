//! Hand-off between two workers: a bounded single-producer single-consumer ring of slot
//! messages, and a wake-up descriptor for a consumer that went to sleep.
//!
//! What crosses is the ownership of a slab slot, never its bytes: a queue worker passes the
//! frame it received to the LUN worker, which passes the reply (or the slot) back. The ring is
//! sized for every slot of the shelf, so a push can only fail on a logic error.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// One message: a slot and what to do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// A received frame of `len` bytes in `slot`, from port `port` (global port index).
    Frame {
        /// Slot.
        slot: u32,
        /// Global port index.
        port: u16,
        /// Frame length.
        len: u16,
    },
    /// A reply of `len` bytes in `slot`, to send out of port `port`.
    Send {
        /// Slot.
        slot: u32,
        /// Global port index.
        port: u16,
        /// Frame length.
        len: u16,
    },
    /// `slot` is done with: it goes back to its owner's free list.
    Free {
        /// Slot.
        slot: u32,
    },
}

impl Message {
    fn encode(self) -> u64 {
        let (kind, slot, port, len) = match self {
            Message::Frame { slot, port, len } => (1u64, slot, port, len),
            Message::Send { slot, port, len } => (2, slot, port, len),
            Message::Free { slot } => (3, slot, 0, 0),
        };
        kind << 62 | (slot as u64 & 0x3FFF_FFFF) << 32 | (port as u64) << 16 | len as u64
    }

    fn decode(v: u64) -> Option<Message> {
        let slot = ((v >> 32) & 0x3FFF_FFFF) as u32;
        let port = (v >> 16) as u16;
        let len = v as u16;
        match v >> 62 {
            1 => Some(Message::Frame { slot, port, len }),
            2 => Some(Message::Send { slot, port, len }),
            3 => Some(Message::Free { slot }),
            _ => None,
        }
    }
}

/// Keeps the indices on their own cache lines (the producer writes one, the consumer the other).
#[repr(align(128))]
struct Padded<T>(T);

struct Ring {
    cells: Box<[AtomicU64]>,
    mask: usize,
    /// Next cell the producer writes (written by the producer only).
    tail: Padded<AtomicUsize>,
    /// Next cell the consumer reads (written by the consumer only).
    head: Padded<AtomicUsize>,
    /// The consumer is about to sleep (or sleeps): a producer must wake it.
    sleeping: AtomicBool,
    /// The producer's side is gone for good (its worker stopped).
    closed: AtomicBool,
    /// eventfd the consumer sleeps on.
    wake: OwnedFd,
}

/// The sending end (exactly one per ring).
pub struct Sender {
    ring: Arc<Ring>,
    /// Messages pushed since the last [`Sender::wake`].
    unannounced: bool,
}

/// The receiving end (exactly one per ring).
pub struct Receiver {
    ring: Arc<Ring>,
}

/// A new ring holding up to `capacity` messages (rounded up to a power of two).
pub fn channel(capacity: usize) -> std::io::Result<(Sender, Receiver)> {
    // SAFETY: eventfd has no memory preconditions; the result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by eventfd and is owned by nothing else.
    let wake = unsafe { OwnedFd::from_raw_fd(fd) };
    let size = capacity.max(2).next_power_of_two();
    let ring = Arc::new(Ring {
        cells: (0..size).map(|_| AtomicU64::new(0)).collect(),
        mask: size - 1,
        tail: Padded(AtomicUsize::new(0)),
        head: Padded(AtomicUsize::new(0)),
        sleeping: AtomicBool::new(false),
        closed: AtomicBool::new(false),
        wake,
    });
    Ok((
        Sender {
            ring: ring.clone(),
            unannounced: false,
        },
        Receiver { ring },
    ))
}

impl Sender {
    /// Queues `msg`; false when the ring is full (the caller still owns the slot).
    pub fn push(&mut self, msg: Message) -> bool {
        let r = &self.ring;
        let tail = r.tail.0.load(Ordering::Relaxed);
        let head = r.head.0.load(Ordering::Acquire);
        if tail.wrapping_sub(head) > r.mask {
            return false;
        }
        r.cells[tail & r.mask].store(msg.encode(), Ordering::Relaxed);
        // Release: the slot's bytes and the cell are visible before the consumer sees the
        // new tail.
        r.tail.0.store(tail.wrapping_add(1), Ordering::Release);
        self.unannounced = true;
        true
    }

    /// Wakes the consumer if it sleeps and messages were pushed since the last call (one
    /// system call per batch at most, none while the consumer is awake).
    pub fn wake(&mut self) {
        if !self.unannounced {
            return;
        }
        self.unannounced = false;
        // Pairs with the fence in `Receiver::prepare_sleep`: either the consumer sees our
        // tail, or we see its flag.
        fence(Ordering::SeqCst);
        if self.ring.sleeping.swap(false, Ordering::SeqCst) {
            ring_doorbell(&self.ring);
        }
    }

    /// Marks the ring closed (the producer's worker is stopping) and wakes the consumer.
    pub fn close(&mut self) {
        self.ring.closed.store(true, Ordering::SeqCst);
        ring_doorbell(&self.ring);
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.close();
    }
}

fn ring_doorbell(ring: &Ring) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64 to our own eventfd.
    unsafe { libc::write(ring.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
}

impl Receiver {
    /// The next message, if any.
    pub fn pop(&mut self) -> Option<Message> {
        let r = &self.ring;
        let head = r.head.0.load(Ordering::Relaxed);
        // Acquire: pairs with the producer's release of `tail`.
        if head == r.tail.0.load(Ordering::Acquire) {
            return None;
        }
        let v = r.cells[head & r.mask].load(Ordering::Relaxed);
        r.head.0.store(head.wrapping_add(1), Ordering::Release);
        Message::decode(v)
    }

    /// True when messages wait (a memory read, no system call).
    pub fn pending(&self) -> bool {
        let r = &self.ring;
        r.head.0.load(Ordering::Relaxed) != r.tail.0.load(Ordering::Acquire)
    }

    /// The producer has closed the ring.
    pub fn closed(&self) -> bool {
        self.ring.closed.load(Ordering::SeqCst)
    }

    /// Announces that the consumer is going to sleep on [`Receiver::wake_fd`]. Returns false
    /// (and stays awake) if messages arrived meanwhile. A closed ring with nothing left does
    /// not keep the consumer awake: nothing more will come from it.
    pub fn prepare_sleep(&mut self) -> bool {
        self.ring.sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.pending() {
            self.ring.sleeping.store(false, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Marks the consumer awake (producers stop ringing the doorbell).
    pub fn awake(&mut self) {
        self.ring.sleeping.store(false, Ordering::SeqCst);
    }

    /// Clears the doorbell after the wake-up descriptor polled readable.
    pub fn clear_doorbell(&mut self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our own nonblocking eventfd.
        unsafe { libc::read(self.ring.wake.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }

    /// The descriptor that polls readable when the producer wakes the consumer.
    pub fn wake_fd(&self) -> RawFd {
        self.ring.wake.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_through_the_encoding() {
        for m in [
            Message::Frame {
                slot: 0x3FFF_FFFF,
                port: 65535,
                len: 9018,
            },
            Message::Send {
                slot: 7,
                port: 3,
                len: 60,
            },
            Message::Free { slot: 1023 },
        ] {
            assert_eq!(Message::decode(m.encode()), Some(m));
        }
        assert_eq!(Message::decode(0), None);
    }

    #[test]
    fn a_full_ring_refuses_and_order_is_kept() {
        let (mut tx, mut rx) = channel(4).unwrap();
        for slot in 0..4 {
            assert!(tx.push(Message::Free { slot }));
        }
        assert!(
            !tx.push(Message::Free { slot: 9 }),
            "ring of 4 took a fifth"
        );
        for slot in 0..4 {
            assert_eq!(rx.pop(), Some(Message::Free { slot }));
        }
        assert_eq!(rx.pop(), None);
        assert!(tx.push(Message::Free { slot: 5 }));
        assert_eq!(rx.pop(), Some(Message::Free { slot: 5 }));
    }

    #[test]
    fn a_sleeping_consumer_is_woken_and_an_awake_one_costs_no_system_call() {
        let (mut tx, mut rx) = channel(8).unwrap();
        let readable = |fd: RawFd| {
            let mut p = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, no wait.
            unsafe { libc::poll(&mut p, 1, 0) == 1 }
        };
        // Awake consumer: no doorbell.
        tx.push(Message::Free { slot: 1 });
        tx.wake();
        assert!(!readable(rx.wake_fd()));
        assert!(
            !rx.prepare_sleep(),
            "a waiting message must keep the consumer awake"
        );
        assert_eq!(rx.pop(), Some(Message::Free { slot: 1 }));
        // Sleeping consumer: the doorbell rings once.
        assert!(rx.prepare_sleep());
        tx.push(Message::Free { slot: 2 });
        tx.wake();
        assert!(readable(rx.wake_fd()));
        rx.awake();
        rx.clear_doorbell();
        assert!(!readable(rx.wake_fd()));
        assert_eq!(rx.pop(), Some(Message::Free { slot: 2 }));
        tx.close();
        assert!(rx.closed());
        rx.clear_doorbell();
        assert!(
            rx.prepare_sleep(),
            "a closed, empty ring must let the consumer sleep"
        );
    }

    #[test]
    fn two_threads_pass_every_message_in_order() {
        let (mut tx, mut rx) = channel(64).unwrap();
        const N: u32 = 200_000;
        let producer = std::thread::spawn(move || {
            let mut slot = 0;
            while slot < N {
                if tx.push(Message::Free { slot }) {
                    slot += 1;
                } else {
                    std::hint::spin_loop();
                }
                tx.wake();
            }
            tx.close();
        });
        let mut expected = 0;
        while expected < N {
            match rx.pop() {
                Some(Message::Free { slot }) => {
                    assert_eq!(slot, expected);
                    expected += 1;
                }
                Some(other) => panic!("unexpected {other:?}"),
                None => std::hint::spin_loop(),
            }
        }
        producer.join().unwrap();
        assert!(rx.closed());
    }
}
