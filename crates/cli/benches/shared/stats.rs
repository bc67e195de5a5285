//! The statistics every bench prints.

use std::borrow::Borrow;

/// The median of `values` (the mean of the middle two for an even count); NaN for none.
pub(crate) fn median<I>(values: I) -> f64
where
    I: IntoIterator,
    I::Item: Borrow<f64>,
{
    let mut values: Vec<f64> = values.into_iter().map(|v| *v.borrow()).collect();
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}
