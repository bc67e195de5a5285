//! The simulator: a fleet of hosts, links and VMs behind ferry's driver trait, in virtual
//! time.
//!
//! A deterministic discrete-event model for planning, estimating and testing at fleet
//! scale with the same engine and scheduler as real runs (`--cluster sim:FILE`). It is a
//! product feature, not a stand-in for libvirt in tests: what it says about one migration is
//! what the lab-calibrated estimate says ([`ferry_preview::estimate`], whose pre-copy loop it
//! runs), and what it adds is time — links shared by the migrations that use them at each
//! moment, controls applied mid-flight, faults.
//!
//! - [`Fleet`]: the fleet file (hosts with memory and a full-duplex migration link, VMs with
//!   memory, dirty rate, working set and how well its memory compresses, faults, the seed),
//!   parsed and validated; [`generate`] makes one of any size.
//! - [`SimDriver`]: the [`Driver`](ferry_driver::Driver). Live migrations prepare, copy
//!   disks, run QEMU's pre-copy loop at the bandwidth their links give them, pause, and
//!   finish; they report progress every 250 ms of virtual time and obey
//!   `SetBandwidth`, `SetMaxDowntime`, `StartPostCopy` and `Abort`. Cold moves shut down,
//!   copy and start. Faults: hosts going down at a given time, and a chance that a live
//!   migration's stream breaks.
//!
//! Time is tokio's: on a runtime with paused time, it jumps from one event to the next. The
//! world keeps no clock of its own and draws its random numbers from the seed, per VM and
//! attempt, so the same fleet and the same calls give the same results, byte for byte.
//!
//! **Architecture invariant:** no IO and no wall clock. The only time is tokio's; the only
//! randomness is the seed's.

mod compress;
mod driver;
mod fleet;
mod gen;
mod rng;
mod world;

pub use compress::{DEFAULT_COMPRESSION_RATIO, ZLIB_CPU_MS_PER_MIB, ZSTD_CPU_MS_PER_MIB};
pub use driver::SimDriver;
pub use fleet::{derived_uuid, Fault, Fleet, HostDesc, Settings, VmDesc, DEFAULT_START, SHARED_POOL, SIM_URI_PREFIX};
pub use gen::{generate, host_name, vm_name, GenOptions, RACK};
pub use rng::Rng;
pub use world::{FINISH_S, PREPARE_S, SAMPLE_EVERY_S};

/// A runtime on virtual time, for a simulation: one thread, time paused, so that it jumps
/// from one event to the next whenever every task waits (and runs each simulation the same
/// way).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build()
}
