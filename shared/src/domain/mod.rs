//! What the product does, over the ports only: no network here, every path testable in memory.

pub mod directory;
pub mod sync;
