//! [Component model](https://component-model.bytecodealliance.org/) codec

mod values;
pub use values::*;
