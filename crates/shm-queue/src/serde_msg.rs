//! Serialized messages (feature `serde`): any `Serialize` value, written
//! with [postcard](https://docs.rs/postcard) straight into the slot, and
//! read back with `Deserialize` from the slot in place.
//!
//! postcard is compact (varint integers, no field names) and needs no
//! schema beyond the Rust type: both sides must use the same type (or one
//! with the same serde shape). Nothing in the message says which type it
//! is: the queue does not check it, and decoding with the wrong type gives
//! [`SerdeError::Decode`] at best and a wrong value at worst. For
//! fixed-size plain data, [`TypedQueue`](crate::TypedQueue) checks the
//! type at open and copies no more than the value.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use shm_queue::{Queue, QueueOptions, SegmentId, SendError, SerdeError};
//!
//! #[derive(Serialize, Deserialize, Debug, PartialEq)]
//! struct Order {
//!     id: u64,
//!     item: String,
//!     tags: Vec<String>,
//! }
//!
//! let id = SegmentId::posix(&format!("/doc-serde-{}", std::process::id()))?;
//! let queue = Queue::create(&id, &QueueOptions::new().capacity(4).slot_size(64))?;
//! let (tx, rx) = (queue.sender()?, queue.receiver()?);
//! let order = Order { id: 7, item: "tea".into(), tags: vec!["hot".into()] };
//! let len = tx.send_serialized(&order)?;
//! assert_eq!(rx.recv_deserialized::<Order>()?, order);
//! assert!(len < 64);
//!
//! // Too large for a 64-byte slot: refused with its real length, nothing sent.
//! let big = Order { id: 8, item: "x".repeat(100), tags: vec![] };
//! assert!(matches!(
//!     tx.send_serialized(&big),
//!     Err(SerdeError::Queue(SendError::TooLarge { len: 103, max: 64 }))
//! ));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::error::Error;
use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Receiver, RecvError, RecvTimeoutError, SendError, Sender, TryRecvError, TrySendError};

/// Why a serialized send or receive failed: the queue said no (`E` is the
/// queue's error for that way of waiting, e.g. [`SendError`]), or the
/// value could not be encoded, or the message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SerdeError<E> {
    /// The queue's own error. A value whose encoding is longer than the
    /// slot is the queue's `TooLarge { len, max }`, with the encoded
    /// length.
    Queue(E),
    /// The value could not be serialized (its `Serialize` failed, or gave
    /// a different encoding the second time). Nothing was sent.
    Encode(String),
    /// The message taken from the queue is not a valid encoding of the
    /// requested type. It was consumed.
    Decode {
        /// Length of the message.
        len: usize,
        /// What the decoder said.
        reason: String,
    },
}

impl<E: fmt::Display> fmt::Display for SerdeError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SerdeError::Queue(e) => e.fmt(f),
            SerdeError::Encode(reason) => write!(f, "could not serialize the message: {reason}"),
            SerdeError::Decode { len, reason } => write!(
                f,
                "a {len}-byte message is not a valid encoding of the requested type: {reason}"
            ),
        }
    }
}

impl<E: Error + 'static> Error for SerdeError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            SerdeError::Queue(e) => Some(e),
            _ => None,
        }
    }
}

impl<E> From<E> for SerdeError<E> {
    fn from(e: E) -> Self {
        SerdeError::Queue(e)
    }
}

fn encoded_len<T: Serialize + ?Sized>(value: &T) -> Result<usize, String> {
    postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default())
        .map_err(|e| e.to_string())
}

/// Serializes into the claimed slot; the encoded length on success.
fn encode_into<T: Serialize + ?Sized>(value: &T, slot: &mut [u8]) -> Result<usize, String> {
    postcard::to_slice(value, slot)
        .map(|used| used.len())
        .map_err(|e| e.to_string())
}

fn decode<T: DeserializeOwned>(msg: &[u8]) -> Result<T, (usize, String)> {
    postcard::from_bytes(msg).map_err(|e| (msg.len(), e.to_string()))
}

fn flatten<T, E>(r: Result<Result<T, String>, E>) -> Result<T, SerdeError<E>> {
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(reason)) => Err(SerdeError::Encode(reason)),
        Err(e) => Err(SerdeError::Queue(e)),
    }
}

fn decoded<T, E>(r: Result<Result<T, (usize, String)>, E>) -> Result<T, SerdeError<E>> {
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err((len, reason))) => Err(SerdeError::Decode { len, reason }),
        Err(e) => Err(SerdeError::Queue(e)),
    }
}

impl Sender {
    /// Serializes `value` with postcard straight into a slot and sends
    /// it, blocking while the queue is full (feature `serde`). Returns the
    /// encoded length.
    ///
    /// The length is computed first, so a value too large for the slot is
    /// refused with [`SendError::TooLarge`] (holding the encoded length)
    /// before anything is claimed; nothing is sent. See the
    /// [module docs](crate::serde_msg) for the encoding.
    pub fn send_serialized<T: Serialize + ?Sized>(
        &self,
        value: &T,
    ) -> Result<usize, SerdeError<SendError>> {
        let len = encoded_len(value).map_err(SerdeError::Encode)?;
        let max = self.queue().slot_size();
        if len > max {
            return Err(SerdeError::Queue(SendError::TooLarge { len, max }));
        }
        flatten(self.send_filled(|slot| encode_into(value, slot)))
    }

    /// [`send_serialized`](Sender::send_serialized) if there is room now.
    pub fn try_send_serialized<T: Serialize + ?Sized>(
        &self,
        value: &T,
    ) -> Result<usize, SerdeError<TrySendError>> {
        let len = encoded_len(value).map_err(SerdeError::Encode)?;
        let max = self.queue().slot_size();
        if len > max {
            return Err(SerdeError::Queue(TrySendError::TooLarge { len, max }));
        }
        flatten(self.try_send_filled(|slot| encode_into(value, slot)))
    }
}

impl Receiver {
    /// Receives a message and deserializes a `T` from it with postcard,
    /// in place in the slot, blocking while the queue is empty (feature
    /// `serde`). A message that is not a valid encoding of `T` is consumed
    /// and reported as [`SerdeError::Decode`], never a panic.
    pub fn recv_deserialized<T: DeserializeOwned>(&self) -> Result<T, SerdeError<RecvError>> {
        decoded(self.recv_with(decode::<T>))
    }

    /// [`recv_deserialized`](Receiver::recv_deserialized) if a message is
    /// there now.
    pub fn try_recv_deserialized<T: DeserializeOwned>(
        &self,
    ) -> Result<T, SerdeError<TryRecvError>> {
        decoded(self.try_recv_with(decode::<T>))
    }

    /// [`recv_deserialized`](Receiver::recv_deserialized), blocking at most
    /// `timeout`.
    pub fn recv_deserialized_timeout<T: DeserializeOwned>(
        &self,
        timeout: Duration,
    ) -> Result<T, SerdeError<RecvTimeoutError>> {
        decoded(self.recv_with_timeout(timeout, decode::<T>))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Queue, QueueOptions, SegmentId};
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    enum Msg {
        Hello { name: String },
        Data(Vec<u32>),
        Bye,
    }

    fn queue(tag: &str, slot: u32) -> Queue {
        let id = SegmentId::posix(&format!("/shmrs-test-serde-{tag}-{}", std::process::id()))
            .expect("name");
        Queue::create(&id, &QueueOptions::new().capacity(4).slot_size(slot)).expect("create")
    }

    #[test]
    fn round_trip_too_large_and_malformed() {
        let q = queue("rt", 32);
        let (tx, rx) = (q.sender().unwrap(), q.receiver().unwrap());
        for m in [
            Msg::Hello { name: "a".into() },
            Msg::Data(vec![1, 2, 300]),
            Msg::Bye,
        ] {
            tx.send_serialized(&m).unwrap();
            assert_eq!(rx.recv_deserialized::<Msg>().unwrap(), m);
        }
        // Too large: the real encoded length, nothing sent.
        let big = Msg::Data((0..100).collect());
        let len = encoded_len(&big).unwrap();
        assert_eq!(
            tx.try_send_serialized(&big),
            Err(SerdeError::Queue(TrySendError::TooLarge { len, max: 32 }))
        );
        assert_eq!(q.len(), 0);
        // Malformed: a variant index that does not exist.
        tx.send(&[9]).unwrap();
        assert!(matches!(
            rx.try_recv_deserialized::<Msg>(),
            Err(SerdeError::Decode { len: 1, .. })
        ));
        // Truncated: a string length past the end.
        tx.send(&[0, 200]).unwrap();
        assert!(matches!(
            rx.recv_deserialized_timeout::<Msg>(Duration::from_secs(5)),
            Err(SerdeError::Decode { len: 2, .. })
        ));
        assert_eq!(
            rx.try_recv_deserialized::<Msg>(),
            Err(SerdeError::Queue(TryRecvError::Empty))
        );
    }
}
