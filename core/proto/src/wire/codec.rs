//! Byte-level primitives: a growable [`Writer`], a bounds-checked [`Reader`], LEB128 varints and
//! length-prefixed byte strings. Every read checks the remaining length first, so a short or
//! malicious buffer yields a [`DecodeError`], never a panic or an allocation larger than the input.

use alloc::vec::Vec;
use core::fmt;

/// Why a packet or frame could not be decoded. Decoding errors are always the sender's fault (or the
/// network's); the receiver's state is never changed by a packet that fails to decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended in the middle of a field.
    Truncated,
    /// A varint ran over 10 bytes or overflowed 64 bits.
    BadVarint,
    /// The packet was written with a protocol version this node does not speak.
    UnsupportedVersion(u8),
    /// A field that must be UTF-8 was not.
    InvalidUtf8,
    /// A node name was empty or too long.
    InvalidName,
    /// An address failed to decode.
    InvalidAddress,
    /// An enum field held a value this version does not define.
    InvalidValue,
    /// A length field claimed more than the input holds or than the limits allow.
    TooLong,
    /// A message's body had bytes left over after its fields were read.
    TrailingBytes,
    /// The packet held no message at all.
    Empty,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => f.write_str("input ended inside a field"),
            DecodeError::BadVarint => f.write_str("malformed varint"),
            DecodeError::UnsupportedVersion(v) => write!(f, "unsupported protocol version {v}"),
            DecodeError::InvalidUtf8 => f.write_str("text field is not UTF-8"),
            DecodeError::InvalidName => f.write_str("invalid node name"),
            DecodeError::InvalidAddress => f.write_str("invalid address"),
            DecodeError::InvalidValue => f.write_str("field value out of range"),
            DecodeError::TooLong => f.write_str("length field exceeds input or limit"),
            DecodeError::TrailingBytes => f.write_str("message has trailing bytes"),
            DecodeError::Empty => f.write_str("packet holds no message"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for DecodeError {}

/// Number of bytes a LEB128 varint of `v` takes.
pub const fn varint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Number of bytes a length-prefixed byte string of `len` bytes takes.
pub const fn bytes_len(len: usize) -> usize {
    varint_len(len as u64) + len
}

/// Appends wire fields to a byte vector.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// A writer whose buffer will not reallocate below `cap` bytes.
    pub fn with_capacity(cap: usize) -> Self {
        Writer { buf: Vec::with_capacity(cap) }
    }

    /// Wraps an existing buffer (cleared first) so its allocation is reused.
    pub fn reuse(mut buf: Vec<u8>) -> Self {
        buf.clear();
        Writer { buf }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Gives back the written bytes.
    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }

    /// The written bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    /// Drops everything written after the first `len` bytes.
    pub fn truncate(&mut self, len: usize) {
        self.buf.truncate(len);
    }

    /// Appends one byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// Appends raw bytes with no length prefix.
    pub fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Appends a LEB128 varint.
    pub fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    /// Inserts a varint at byte offset `pos`, shifting what follows. Used to prefix a body whose
    /// length is only known once it has been written.
    pub fn insert_varint(&mut self, pos: usize, v: u64) {
        let mut tmp = Writer::with_capacity(10);
        tmp.varint(v);
        self.buf.splice(pos..pos, tmp.buf.iter().copied());
    }

    /// Appends a length-prefixed byte string.
    pub fn bytes(&mut self, bytes: &[u8]) {
        self.varint(bytes.len() as u64);
        self.raw(bytes);
    }

    /// Appends a length-prefixed UTF-8 string.
    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
}

/// Reads wire fields from a byte slice, checking bounds on every read.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// True when every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        let (&b, rest) = self.buf.split_first().ok_or(DecodeError::Truncated)?;
        self.buf = rest;
        Ok(b)
    }

    /// Reads exactly `n` raw bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// Reads a fixed-size array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// Reads a LEB128 varint of at most 64 bits.
    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let byte = self.u8()?;
            let chunk = u64::from(byte & 0x7f);
            if i == 9 && chunk > 1 {
                return Err(DecodeError::BadVarint);
            }
            value |= chunk << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::BadVarint)
    }

    /// Reads a varint that must fit a `u32`.
    pub fn varint_u32(&mut self) -> Result<u32, DecodeError> {
        u32::try_from(self.varint()?).map_err(|_| DecodeError::InvalidValue)
    }

    /// Reads a length-prefixed byte string (the length is checked against the input first).
    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| DecodeError::TooLong)?;
        if len > self.buf.len() {
            return Err(DecodeError::TooLong);
        }
        self.take(len)
    }

    /// Reads a length-prefixed UTF-8 string.
    pub fn str(&mut self) -> Result<&'a str, DecodeError> {
        core::str::from_utf8(self.bytes()?).map_err(|_| DecodeError::InvalidUtf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_every_width() {
        for v in [0u64, 1, 127, 128, 300, 16_383, 16_384, u32::MAX as u64, u64::MAX] {
            let mut w = Writer::default();
            w.varint(v);
            assert_eq!(w.len(), varint_len(v), "length of {v}");
            let mut r = Reader::new(w.as_slice());
            assert_eq!(r.varint(), Ok(v));
            assert!(r.is_empty());
        }
    }

    #[test]
    fn an_overlong_varint_is_rejected() {
        let eleven = [0xffu8; 11];
        assert_eq!(Reader::new(&eleven).varint(), Err(DecodeError::BadVarint));
        let overflow = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(Reader::new(&overflow).varint(), Err(DecodeError::BadVarint));
    }

    #[test]
    fn a_length_larger_than_the_input_is_rejected_before_reading() {
        let mut w = Writer::default();
        w.varint(1 << 40);
        w.raw(b"abc");
        assert_eq!(Reader::new(w.as_slice()).bytes(), Err(DecodeError::TooLong));
    }

    #[test]
    fn reading_past_the_end_is_truncation() {
        let mut r = Reader::new(&[1, 2]);
        assert_eq!(r.array::<3>(), Err(DecodeError::Truncated));
        assert_eq!(r.take(2), Ok(&[1u8, 2][..]));
        assert_eq!(r.u8(), Err(DecodeError::Truncated));
    }
}
