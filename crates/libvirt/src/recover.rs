//! What `resume` needs after a crash: a migration job that outlived its ferry.

use std::time::Instant;

use ferry_driver::Progress;
use virt::domain::Domain;

use crate::conn::job_stats;
use crate::error::Failure;
use crate::live::progress_of;

/// The domain's running job, if any.
pub(crate) fn job(domain: &Domain) -> Result<Option<Progress>, Failure> {
    let stats = job_stats(domain, 0)?;
    Ok((stats.r#type != 0).then(|| progress_of(&stats, Instant::now())))
}
