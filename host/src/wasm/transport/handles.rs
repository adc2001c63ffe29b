//! Resource handles across a link, as wRPC carries them: a resource of an interface a component
//! imports through a link is the *target's*, and the calling guest holds only its handle, the
//! bytes the target chose (wRPC writes it as a `list<u8>`). The host keeps those bytes in the
//! guest's resource table as a [`Handle`], with the target that issued them, and carries them
//! (never looking inside) only back to that target: a guest cannot hand one provider's handle
//! to another by re-pointing its link. In the codec's store a handle is a [`RemoteResource`]
//! (wrpc-runtime-wasmtime's type, the one its encoder knows).
//!
//! Between the guest's store and the wire a handle travels as its bytes in a `list<u8>` value
//! in the resource's place ([`handle_bytes`] / [`as_handle`]): [`each_handle`] finds those
//! places in a value by its type.

use wasmtime::component::{Type, Val};

pub use wrpc_runtime_wasmtime::RemoteResource;

/// A guest's handle of a resource a link's target serves.
#[derive(Debug, Clone)]
pub struct Handle {
    /// The target that issued it (a provider's id).
    pub issuer: String,
    /// The target's bytes.
    pub bytes: bytes::Bytes,
}

/// The longest handle a target may hand out (wasmCloud's are 16-byte ids).
pub const MAX_HANDLE_BYTES: usize = 1024;

/// Whether values of `t` can cross a link: plain values (`super::wrpc_value::plain_type`) and
/// resource handles.
pub fn crossable(t: &Type) -> bool {
    match t {
        Type::Own(_) | Type::Borrow(_) => true,
        Type::Future(_) | Type::Stream(_) | Type::ErrorContext | Type::Map(_) => false,
        Type::List(l) => crossable(&l.ty()),
        Type::Option(o) => crossable(&o.ty()),
        Type::Result(r) => r.ok().as_ref().is_none_or(crossable) && r.err().as_ref().is_none_or(crossable),
        Type::Record(r) => r.fields().all(|f| crossable(&f.ty)),
        Type::Tuple(t) => t.types().all(|t| crossable(&t)),
        Type::Variant(v) => v.cases().all(|c| c.ty.as_ref().is_none_or(crossable)),
        _ => true,
    }
}

/// Whether values of `t` hold resource handles.
pub fn has_handles(t: &Type) -> bool {
    match t {
        Type::Own(_) | Type::Borrow(_) => true,
        Type::List(l) => has_handles(&l.ty()),
        Type::Option(o) => has_handles(&o.ty()),
        Type::Result(r) => r.ok().as_ref().is_some_and(has_handles) || r.err().as_ref().is_some_and(has_handles),
        Type::Record(r) => r.fields().any(|f| has_handles(&f.ty)),
        Type::Tuple(t) => t.types().any(|t| has_handles(&t)),
        Type::Variant(v) => v.cases().any(|c| c.ty.as_ref().is_some_and(has_handles)),
        _ => false,
    }
}

/// Calls `f` on every resource in `val` (of type `ty`) with whether it is owned, and puts what
/// `f` returns in its place. A value that does not match its type is left as it is (the encoder
/// or the guest refuses it).
///
/// # Errors
/// The first error of `f`.
pub fn each_handle<E>(val: &mut Val, ty: &Type, f: &mut dyn FnMut(Val, bool) -> Result<Val, E>) -> Result<(), E> {
    match (ty, val) {
        (Type::Own(_) | Type::Borrow(_), val) => {
            let owned = matches!(ty, Type::Own(_));
            let taken = std::mem::replace(val, Val::Bool(false));
            *val = f(taken, owned)?;
        }
        (Type::List(l), Val::List(items)) => {
            let t = l.ty();
            if has_handles(&t) {
                for item in items {
                    each_handle(item, &t, f)?;
                }
            }
        }
        (Type::Option(o), Val::Option(Some(v))) => each_handle(v, &o.ty(), f)?,
        (Type::Result(r), Val::Result(Ok(Some(v)))) => {
            if let Some(t) = r.ok() {
                each_handle(v, &t, f)?;
            }
        }
        (Type::Result(r), Val::Result(Err(Some(v)))) => {
            if let Some(t) = r.err() {
                each_handle(v, &t, f)?;
            }
        }
        (Type::Record(r), Val::Record(fields)) => {
            for (field, (_, v)) in r.fields().zip(fields.iter_mut()) {
                each_handle(v, &field.ty, f)?;
            }
        }
        (Type::Tuple(t), Val::Tuple(items)) => {
            for (t, v) in t.types().zip(items.iter_mut()) {
                each_handle(v, &t, f)?;
            }
        }
        (Type::Variant(variant), Val::Variant(name, Some(v))) => {
            if let Some(t) = variant.cases().find(|c| c.name == name.as_str()).and_then(|c| c.ty) {
                each_handle(v, &t, f)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// A handle's bytes as the value that stands in its place between stores.
pub fn as_handle(bytes: &[u8]) -> Val {
    Val::List(bytes.iter().copied().map(Val::U8).collect())
}

/// The bytes of a handle standing in as [`as_handle`] made it; `None` for any other value.
pub fn handle_bytes(val: &Val) -> Option<bytes::Bytes> {
    let Val::List(items) = val else { return None };
    items.iter().map(|v| if let Val::U8(b) = v { Some(*b) } else { None }).collect::<Option<Vec<u8>>>().map(bytes::Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_stands_in_as_its_bytes_and_only_a_byte_list_is_one() {
        let bytes = [7u8, 0, 255];
        assert_eq!(handle_bytes(&as_handle(&bytes)).as_deref(), Some(&bytes[..]));
        assert_eq!(handle_bytes(&Val::List(vec![Val::U32(1)])), None);
        assert_eq!(handle_bytes(&Val::String("x".into())), None);
        assert_eq!(handle_bytes(&as_handle(&[])).as_deref(), Some(&[][..]));
    }
}
