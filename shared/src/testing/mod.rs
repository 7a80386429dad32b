//! In-memory doubles of the ports, for domain tests here and, behind the `testing` feature, in
//! other crates' tests. Integration tests use the real adapters instead.

pub mod contract;
mod directory;
mod directory_store;
mod fanout;
mod grants;
pub mod lifecycle;
mod policy;
mod policy_store;
mod slack;

pub use directory::*;
pub use directory_store::*;
pub use fanout::*;
pub use grants::*;
pub use policy::*;
pub use policy_store::*;
pub use slack::*;
