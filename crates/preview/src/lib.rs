//! Knowing every move's fate before touching anything: prechecks, placement of VMs whose
//! target is `ANY`, and estimates of downtime, transfer time and the run's makespan.
//!
//! Pure: functions of the cluster, the inventory and the plan that return decisions.

pub mod checks;
pub mod estimate;
pub mod placement;
mod preview;
pub mod schedule;

pub use preview::{
    policy_live_input, preview, EstimateView, Kind, MemoryProfile, ObservedCompression, ObservedMemory, PlacementView,
    Preview, PreviewConfig, VmPreview, ASSUMED_LINK_MIB_S,
};
