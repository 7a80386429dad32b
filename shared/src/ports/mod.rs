//! The small traits the domain works through, and the types they speak in. The domain owns
//! them: the adapters (`adapters/`) implement them over JumpCloud and AWS, `testing/`
//! in memory. Nothing here or in `crate::domain` imports an adapter (a test checks).

mod directory;
mod events;
mod fanout;
mod insights;
mod integrations;
mod policy;
mod scheduler;
mod store;

pub use directory::*;
pub use events::*;
pub use fanout::*;
pub use insights::*;
pub use integrations::*;
pub use policy::*;
pub use scheduler::*;
pub use store::*;
