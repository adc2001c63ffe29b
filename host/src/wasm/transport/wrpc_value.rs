//! Decoding wRPC values from the network without trusting their lengths.
//!
//! wRPC encodes a `list<T>` or a `string` as a LEB128 length and then the elements. A decoder
//! that reserves what the length announces lets five bytes (`ff ff ff ff 0f`: a `list<u32>` of
//! 2³²−1 elements) ask for ~170 GB and abort the process. [`read_plain`] reserves at most what
//! the bytes already read justify (capacity grows as elements arrive) and charges every value it
//! builds to a [`Budget`]: a bound per call ([`MAX_CALL_VALUE_BYTES`]) and a pool shared by all
//! of a host's calls ([`MAX_HOST_VALUE_BYTES`]), both counted in host memory (a decoded value is
//! a [`Val`], 40 bytes per element, so a `list<u8>` costs 40× its wire size).
//!
//! Values without streams or futures are decoded: what Trellis carries between components and
//! providers ([`plain_type`]), and resource handles, read as their bytes
//! ([`super::handles`]).

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasm_tokio::cm::AsyncReadValue as _;
use wasm_tokio::{AsyncReadLeb128 as _, AsyncReadUtf8 as _};
use wasmtime::component::{Type, Val};

/// Host memory one call's decoded parameters (or results) may take.
pub const MAX_CALL_VALUE_BYTES: usize = 64 << 20;

/// Host memory all wRPC values being decoded or waiting for their call may take at once.
pub const MAX_HOST_VALUE_BYTES: usize = 256 << 20;

/// Whether values of `t` can cross to another store (no resources, futures or streams).
pub(crate) fn plain_type(t: &Type) -> bool {
    match t {
        // A map is carried by neither WAVE nor Trellis's wRPC decoder (wrpc_value).
        Type::Own(_) | Type::Borrow(_) | Type::Future(_) | Type::Stream(_) | Type::ErrorContext | Type::Map(_) => false,
        Type::List(l) => plain_type(&l.ty()),
        Type::Option(o) => plain_type(&o.ty()),
        Type::Result(r) => r.ok().as_ref().is_none_or(plain_type) && r.err().as_ref().is_none_or(plain_type),
        Type::Record(r) => r.fields().all(|f| plain_type(&f.ty)),
        Type::Tuple(t) => t.types().all(|t| plain_type(&t)),
        Type::Variant(v) => v.cases().all(|c| c.ty.as_ref().is_none_or(plain_type)),
        _ => true,
    }
}

/// Capacity reserved for a list before its elements arrive.
const MAX_RESERVED_ELEMENTS: usize = 1024;

/// The pool is taken in chunks of this many bytes (one semaphore permit per KiB).
const CHUNK: usize = 64 << 10;

/// What a value costs in host memory, beyond the bytes of its strings.
const VAL_SIZE: usize = std::mem::size_of::<Val>();

/// The memory a host lets decoded wRPC values take, shared by all its calls.
#[derive(Debug, Clone)]
pub struct ValuePool(Arc<Semaphore>);

impl ValuePool {
    /// A pool of `bytes`.
    pub fn new(bytes: usize) -> Self {
        Self(Arc::new(Semaphore::new((bytes / 1024).max(1))))
    }

    /// A budget for one call, at most `limit` bytes, drawn from this pool.
    pub fn budget(&self, limit: usize) -> Budget {
        Budget { pool: self.0.clone(), held: None, left: 0, used: 0, limit }
    }
}

impl Default for ValuePool {
    fn default() -> Self {
        Self::new(MAX_HOST_VALUE_BYTES)
    }
}

/// The host memory one call's values may take; what it drew from the pool is given back when it
/// is dropped (so keep it until the values are gone).
#[derive(Debug)]
pub struct Budget {
    pool: Arc<Semaphore>,
    held: Option<OwnedSemaphorePermit>,
    /// Drawn from the pool, not yet used.
    left: usize,
    used: usize,
    limit: usize,
}

impl Budget {
    /// Charges `n` bytes.
    ///
    /// # Errors
    /// `InvalidData` past the call's limit; `OutOfMemory` when the host's pool is spent.
    pub fn charge(&mut self, n: usize) -> std::io::Result<()> {
        self.used = self.used.saturating_add(n);
        if self.used > self.limit {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the value takes more than {} bytes of host memory (the bound of one call)", self.limit),
            ));
        }
        while self.left < n {
            let want = n.saturating_sub(self.left).max(CHUNK).div_ceil(1024);
            let permits = u32::try_from(want).unwrap_or(u32::MAX);
            let permit = self.pool.clone().try_acquire_many_owned(permits).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::OutOfMemory,
                    "busy: the host's memory for wRPC values being decoded is spent; try again",
                )
            })?;
            match &mut self.held {
                Some(held) => held.merge(permit),
                None => self.held = Some(permit),
            }
            self.left = self.left.saturating_add(permits as usize * 1024);
        }
        self.left -= n;
        Ok(())
    }

    /// Bytes charged so far.
    pub fn used(&self) -> usize {
        self.used
    }
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

/// Reads one value of type `ty` (without streams or futures; a resource handle stands in as its
/// bytes, see [`super::handles`]), charging what it builds to `budget`.
///
/// # Errors
/// A read error, malformed bytes, a type that cannot be carried, or the budget spent.
pub async fn read_plain<R: AsyncRead + Unpin + Send>(r: &mut R, ty: &Type, budget: &mut Budget) -> std::io::Result<Val> {
    budget.charge(VAL_SIZE)?;
    Ok(match ty {
        Type::Bool => Val::Bool(r.read_bool().await?),
        Type::S8 => Val::S8(r.read_i8().await?),
        Type::U8 => Val::U8(r.read_u8().await?),
        Type::S16 => Val::S16(r.read_i16_leb128().await?),
        Type::U16 => Val::U16(r.read_u16_leb128().await?),
        Type::S32 => Val::S32(r.read_i32_leb128().await?),
        Type::U32 => Val::U32(r.read_u32_leb128().await?),
        Type::S64 => Val::S64(r.read_i64_leb128().await?),
        Type::U64 => Val::U64(r.read_u64_leb128().await?),
        Type::Float32 => Val::Float32(r.read_f32_le().await?),
        Type::Float64 => Val::Float64(r.read_f64_le().await?),
        Type::Char => Val::Char(r.read_char_utf8().await?),
        Type::String => {
            let n = r.read_u32_leb128().await? as usize;
            // Charged and grown as bytes arrive: nothing is reserved on the sender's word, so a
            // sender that announces a long string and goes quiet holds next to nothing.
            let mut bytes = Vec::new();
            let mut chunk = [0u8; 8192];
            let mut rest = (&mut *r).take(n as u64);
            loop {
                let k = rest.read(&mut chunk).await?;
                if k == 0 {
                    break;
                }
                budget.charge(k)?;
                bytes.extend_from_slice(&chunk[..k]);
            }
            if bytes.len() != n {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            Val::String(String::from_utf8(bytes).map_err(|e| invalid(format!("a string that is not UTF-8: {e}")))?)
        }
        Type::List(list) => {
            let n = r.read_u32_leb128().await? as usize;
            let element = list.ty();
            let mut values = Vec::with_capacity(n.min(MAX_RESERVED_ELEMENTS));
            for _ in 0..n {
                values.push(Box::pin(read_plain(r, &element, budget)).await?);
            }
            Val::List(values)
        }
        Type::Record(record) => {
            let mut fields = Vec::with_capacity(record.fields().len());
            for field in record.fields() {
                // The name is copied into the value too.
                budget.charge(field.name.len())?;
                let value = Box::pin(read_plain(r, &field.ty, budget)).await?;
                fields.push((field.name.to_string(), value));
            }
            Val::Record(fields)
        }
        Type::Tuple(tuple) => {
            let mut values = Vec::with_capacity(tuple.types().len());
            for ty in tuple.types() {
                values.push(Box::pin(read_plain(r, &ty, budget)).await?);
            }
            Val::Tuple(values)
        }
        Type::Variant(variant) => {
            let d = r.read_u32_leb128().await? as usize;
            let case = variant.cases().nth(d).ok_or_else(|| invalid(format!("unknown variant case {d}")))?;
            budget.charge(case.name.len())?;
            let payload = match &case.ty {
                Some(ty) => Some(Box::new(Box::pin(read_plain(r, ty, budget)).await?)),
                None => None,
            };
            Val::Variant(case.name.to_string(), payload)
        }
        Type::Enum(e) => {
            let d = r.read_u32_leb128().await? as usize;
            let name = e.names().nth(d).ok_or_else(|| invalid(format!("unknown enum case {d}")))?;
            budget.charge(name.len())?;
            Val::Enum(name.to_string())
        }
        Type::Option(option) => {
            if r.read_option_status().await? {
                Val::Option(Some(Box::new(Box::pin(read_plain(r, &option.ty(), budget)).await?)))
            } else {
                Val::Option(None)
            }
        }
        Type::Result(result) => {
            let ok = r.read_result_status().await?;
            let payload = if ok { result.ok() } else { result.err() };
            let value = match payload {
                Some(ty) => Some(Box::new(Box::pin(read_plain(r, &ty, budget)).await?)),
                None => None,
            };
            Val::Result(if ok { Ok(value) } else { Err(value) })
        }
        Type::Flags(flags) => {
            let names: Vec<&str> = flags.names().collect();
            let mut bits = vec![0u8; names.len().div_ceil(8)];
            r.read_exact(&mut bits).await?;
            let set: Vec<&str> = names.iter().enumerate().filter(|(i, _)| bits[i / 8] & (1 << (i % 8)) != 0).map(|(_, n)| *n).collect();
            budget.charge(set.iter().map(|n| n.len() + VAL_SIZE).sum())?;
            Val::Flags(set.into_iter().map(str::to_string).collect())
        }
        // A resource handle: the sender's bytes, read as the `list<u8>` that stands in for it
        // until the caller makes it a resource in its store (`super::handles`).
        Type::Own(_) | Type::Borrow(_) => {
            let n = r.read_u32_leb128().await? as usize;
            if n > super::handles::MAX_HANDLE_BYTES {
                return Err(invalid(format!("a resource handle of {n} bytes (at most {} are taken)", super::handles::MAX_HANDLE_BYTES)));
            }
            budget.charge(n.saturating_mul(VAL_SIZE))?;
            let mut bytes = vec![0u8; n];
            r.read_exact(&mut bytes).await?;
            super::handles::as_handle(&bytes)
        }
        Type::Future(_) | Type::Stream(_) | Type::ErrorContext | Type::Map(_) => {
            return Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "a value with streams, futures or maps cannot be carried"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_vector_past_the_limit_is_refused_when_announced() {
        use wasm_tokio::tokio_util::codec::Decoder as _;
        // Five bytes announcing 2^32-1 bytes of a `list<u8>`, a string or a body chunk: refused
        // at once, where wasm-tokio upstream waited for (and buffered) whatever arrived.
        let mut src = bytes::BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 0x0f][..]);
        let err = wasm_tokio::CoreVecDecoderBytes::default().decode(&mut src).expect_err("refused");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
        // At the limit it waits for the bytes, as before.
        let mut src = bytes::BytesMut::from(&[0x80, 0x80, 0x80, 0x20][..]);
        assert_eq!(wasm_tokio::MAX_BYTE_VECTOR, 64 << 20);
        assert!(wasm_tokio::CoreVecDecoderBytes::default().decode(&mut src).expect("waits").is_none());
    }

    #[test]
    fn a_budget_stops_at_its_limit_and_at_the_pool() {
        let pool = ValuePool::new(256 << 10);
        let mut a = pool.budget(1 << 20);
        a.charge(200 << 10).unwrap();
        let mut b = pool.budget(1 << 20);
        let busy = b.charge(100 << 10).unwrap_err();
        assert_eq!(busy.kind(), std::io::ErrorKind::OutOfMemory, "{busy}");
        drop(a);
        b.charge(100 << 10).unwrap();
        let mut small = ValuePool::default().budget(10);
        assert_eq!(small.charge(11).unwrap_err().kind(), std::io::ErrorKind::InvalidData);
    }
}
