//! ferry's application layer, between the binary and the engine.
//!
//! It builds runs ([`RunBuilder`]: a plan, a single move, a rollback, a drain's return),
//! starts them, resumes, aborts (from another process, or here when no process runs them),
//! rolls back and cleans up, and runs the operators' hooks. It returns outcomes and tells
//! what happens through [`Events`]; it never prints. The binary parses arguments, prints
//! and draws the progress.
//!
//! Its modules only look down: `execute` ← `rollback` ← `maintenance` ← `drain` ← `start` ←
//! `roll`.

pub mod abort;
mod build;
pub mod cleanup;
pub mod cluster;
pub mod drain;
pub mod drivers;
pub mod events;
mod execute;
pub mod hooks;
pub mod inputs;
pub mod journals;
mod maintenance;
pub mod moving;
pub mod owners;
pub mod preview;
pub mod reading;
pub mod roll;
pub mod rollback;
pub mod sim;
pub mod start;

pub use build::{Built, RunBuilder};
pub use events::{Error, Event, Events};
pub use execute::Drive;
pub use owners::Lost;
