//! Resource handles across a link, as wRPC carries them: a resource of an interface a component
//! imports through a link is the *target's*, and the calling guest holds only its handle, the
//! bytes the target chose (wRPC writes it as a `list<u8>`). The host keeps those bytes in the
//! guest's resource table as a [`Handle`], with the target that issued them, and carries them
//! (never looking inside) only back to that target: a guest cannot hand one provider's handle
//! to another by re-pointing its link. In the codec's store a handle is a [`RemoteResource`]
//! (wrpc-runtime-wasmtime's type, the one its encoder knows).
//!
//! Between the guest's store and the wire a handle travels in the resource's place as a
//! stand-in: going out, its index (a `u32`) among the call's handles ([`Outgoing`], at most
//! [`MAX_HANDLES_PER_CALL`]); coming back, its bytes as a `list<u8>` ([`as_handle`] /
//! [`handle_bytes`], charged to the call's value budget as they are read). [`each_handle`]
//! finds those places in a value by its type.

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

/// Handles one call may pass (a guest can lend one handle many times in a list; each costs
/// host memory).
pub const MAX_HANDLES_PER_CALL: usize = 1024;

/// The handles a call passes, in order, and who issued them.
#[derive(Debug, Default)]
pub struct Outgoing {
    /// Each handle's bytes; a stand-in is its index here.
    pub bytes: Vec<bytes::Bytes>,
    /// The targets that issued them, each once.
    pub issuers: Vec<String>,
}

impl Outgoing {
    /// Adds `handle`, issued by `issuer`; the stand-in for it.
    ///
    /// # Errors
    /// Past [`MAX_HANDLES_PER_CALL`].
    pub fn add(&mut self, handle: &Handle) -> Result<Val, TooManyHandles> {
        if self.bytes.len() >= MAX_HANDLES_PER_CALL {
            return Err(TooManyHandles);
        }
        if !self.issuers.contains(&handle.issuer) {
            self.issuers.push(handle.issuer.clone());
        }
        self.bytes.push(handle.bytes.clone());
        Ok(Val::U32(u32::try_from(self.bytes.len() - 1).unwrap_or(u32::MAX)))
    }
}

/// More than [`MAX_HANDLES_PER_CALL`] handles in one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a call passes more than {MAX_HANDLES_PER_CALL} resource handles")]
pub struct TooManyHandles;

/// The bytes of the handle a stand-in made by [`Outgoing::add`] points to in `handles`.
pub fn outgoing_bytes<'a>(stand_in: &Val, handles: &'a [bytes::Bytes]) -> Option<&'a bytes::Bytes> {
    let Val::U32(i) = stand_in else { return None };
    handles.get(usize::try_from(*i).ok()?)
}

/// The longest handle a target may hand out (wasmCloud's are 16-byte ids).
pub const MAX_HANDLE_BYTES: usize = 1024;

/// Whether values of `t` can cross a link: plain values (`super::wrpc_value::plain_type`) and
/// handles of `own`, the resources of the linked interface itself (not another interface's,
/// e.g. a WASI stream, which the link's target cannot hold).
pub fn crossable(t: &Type, own: &[wasmtime::component::ResourceType]) -> bool {
    let crossable = |t: &Type| crossable(t, own);
    match t {
        Type::Own(r) | Type::Borrow(r) => own.contains(r),
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

/// A function's name on the wire: wRPC names a resource's functions without the component
/// model's `[constructor]`, `[method]` and `[static]` (`counter`, `counter.add`).
pub fn wire_name(func: &str) -> &str {
    ["[constructor]", "[method]", "[static]"].iter().find_map(|p| func.strip_prefix(p)).unwrap_or(func)
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
    fn a_resources_functions_go_by_wrpcs_names() {
        assert_eq!(wire_name("[constructor]counter"), "counter");
        assert_eq!(wire_name("[method]counter.add"), "counter.add");
        assert_eq!(wire_name("[static]counter.open"), "counter.open");
        assert_eq!(wire_name("echo"), "echo");
    }

    #[test]
    fn a_call_passes_a_bounded_number_of_handles_each_issuer_named_once() {
        let mut out = Outgoing::default();
        let handle = Handle { issuer: "tp".into(), bytes: bytes::Bytes::from_static(b"counter-0") };
        for i in 0..MAX_HANDLES_PER_CALL {
            let stand_in = out.add(&handle).expect("under the bound");
            assert_eq!(stand_in, Val::U32(u32::try_from(i).unwrap()));
        }
        assert_eq!(out.add(&handle), Err(TooManyHandles));
        assert_eq!(out.issuers, vec!["tp".to_string()]);
        assert_eq!(outgoing_bytes(&Val::U32(3), &out.bytes).map(|b| &b[..]), Some(&b"counter-0"[..]));
        assert_eq!(outgoing_bytes(&Val::U32(u32::MAX), &out.bytes), None);
        assert_eq!(outgoing_bytes(&Val::U8(0), &out.bytes), None);
    }

    #[test]
    fn a_handle_stands_in_as_its_bytes_and_only_a_byte_list_is_one() {
        let bytes = [7u8, 0, 255];
        assert_eq!(handle_bytes(&as_handle(&bytes)).as_deref(), Some(&bytes[..]));
        assert_eq!(handle_bytes(&Val::List(vec![Val::U32(1)])), None);
        assert_eq!(handle_bytes(&Val::String("x".into())), None);
        assert_eq!(handle_bytes(&as_handle(&[])).as_deref(), Some(&[][..]));
    }
}
