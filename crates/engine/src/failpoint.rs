//! Named points where a test can freeze ferry to kill it there (`kill -9`), proving that a
//! crash at that point is recoverable. Built only with the `failpoints` feature (the cli's
//! tests turn it on), and then off unless `FERRY_FAILPOINT=POINT:VM` is set: a release
//! ferry has no way to be frozen by its environment.

/// Freezes this task for good when `FERRY_FAILPOINT` names `point` and `vm`, after saying
/// so on stderr (`failpoint POINT VM`) so the test knows when to kill.
#[cfg(feature = "failpoints")]
pub(crate) async fn reach(point: &str, vm: &str) {
    use std::sync::OnceLock;
    static WANTED: OnceLock<Option<(String, String)>> = OnceLock::new();
    let wanted = WANTED.get_or_init(|| {
        let value = std::env::var("FERRY_FAILPOINT").ok()?;
        let (point, vm) = value.split_once(':')?;
        Some((point.to_string(), vm.to_string()))
    });
    if wanted.as_ref().is_some_and(|(p, v)| p == point && v == vm) {
        eprintln!("failpoint {point} {vm}");
        std::future::pending::<()>().await;
    }
}

/// Without the `failpoints` feature: nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) async fn reach(_point: &str, _vm: &str) {}
