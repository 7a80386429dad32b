//! The domain's types: the directory as the product stores it, and grants with their leases,
//! audit trail and events.

pub mod directory;
pub mod grant;

pub use directory::*;
pub use grant::*;
