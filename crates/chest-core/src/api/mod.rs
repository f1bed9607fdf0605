//! The API layer: [`Chest`](crate::Chest) and every public method, its
//! builder, the upserts and bulk calls, the handle for async code and the
//! typeless view for tools. Calls go down into the engine.

#[cfg(feature = "tokio")]
pub(crate) mod async_chest;
pub(crate) mod builder;
pub(crate) mod bulk;
pub(crate) mod chest;
pub(crate) mod memory;
#[cfg(feature = "json")]
pub mod raw;
pub(crate) mod upsert;
