#![allow(clippy::module_name_repetitions)]

mod core;

/// [Component model](https://component-model.bytecodealliance.org/) codec
pub mod cm;

pub use core::*;
pub use leb128_tokio::*;
pub use utf8_tokio::*;

pub use tokio;
pub use tokio_util;
