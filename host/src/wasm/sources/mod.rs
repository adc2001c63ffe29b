//! Where component bytes come from: [`load`] turns a reference (an OCI reference, `file://…`
//! or a path, `nats://NAME:VERSION`) into validated component bytes; [`oci`] pulls from
//! registries with a digest-checked cache; [`artifacts`] keeps components in the lattice's own
//! object store; [`reference`](mod@reference) is the refusal of a reference, typed.

pub mod artifacts;
pub mod load;
pub mod oci;
pub mod reference;
