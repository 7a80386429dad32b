//! The domain's types: the directory as the product stores it, and grants with their leases,
//! audit trail and events, and request fields parsed into types.

pub mod audit;
pub mod audit_chain;
pub mod directory;
pub mod duration;
pub mod events;
pub mod grant;
pub mod input;
pub mod schedules;

pub use audit::*;
pub use audit_chain::{ChainHead, ChainLink, DaySeal};
pub use directory::*;
pub use duration::*;
pub use events::*;
pub use grant::*;
pub use input::*;
pub use schedules::*;
