//! Bandwidth caps of the migrations in flight: weighted max-min fair shares of the hosts'
//! links.
//!
//! Each migration crosses at most two links (its source's outbound, its target's inbound).
//! The migrations that are sending share them by progressive filling: all rates grow in
//! proportion to their weights until a link is full; the migrations on it keep that rate;
//! the others grow on. Every cap then sums with the others to at most each link's speed,
//! and every migration is held back by a link that is full: none is capped below what its
//! links could give it while another link it crosses has room. (Taking, as before, the
//! smaller of a migration's shares of its two links wasted both: a migration first on its
//! source and last on its target was held at its target share, and the room it left on its
//! source went to no one.)
//!
//! A migration not sending yet (connecting, scanning zero pages) takes nothing from the
//! others; its cap is the share it will have when it starts, against those sending now.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// One migration in flight, as the allocation needs it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Flow {
    /// The links it crosses that have a speed (indices into the links given).
    pub links: Vec<usize>,
    /// Its weight: its rate grows in proportion to it. Positive.
    pub weight: f64,
    /// Whether it sends data now.
    pub sending: bool,
}

/// The cap of each flow, MiB/s, in order: `None` for a flow that crosses no link with a
/// speed. `links` are the speeds, MiB/s.
pub(crate) fn allocate(links: &[f64], flows: &[Flow]) -> Vec<Option<f64>> {
    let mut left: Vec<f64> = links.to_vec();
    // Weight of the sending flows on each link, and of those not yet given a rate.
    let mut sending_weight = vec![0.0; links.len()];
    let mut open_weight = vec![0.0; links.len()];
    let mut open: Vec<usize> = vec![0; links.len()];
    let mut on_link: Vec<Vec<usize>> = vec![Vec::new(); links.len()];
    for (f, flow) in flows.iter().enumerate().filter(|(_, f)| f.sending) {
        for &l in &flow.links {
            sending_weight[l] += flow.weight;
            open_weight[l] += flow.weight;
            open[l] += 1;
            on_link[l].push(f);
        }
    }
    let mut caps: Vec<Option<f64>> = vec![None; flows.len()];
    // Links by the rate per unit of weight that would fill them (lowest first); an entry is
    // stale once its link's version moved on.
    let mut version = vec![0u32; links.len()];
    let level = |left: f64, weight: f64| (left.max(0.0) / weight).to_bits();
    let mut heap: BinaryHeap<Reverse<(u64, usize, u32)>> =
        (0..links.len()).filter(|&l| open[l] > 0).map(|l| Reverse((level(left[l], open_weight[l]), l, 0))).collect();
    while let Some(Reverse((bits, l, v))) = heap.pop() {
        if v != version[l] || open[l] == 0 {
            continue;
        }
        // Non-negative floats order as their bits do.
        let per_weight = f64::from_bits(bits);
        for &f in &on_link[l] {
            if caps[f].is_some() {
                continue;
            }
            let rate = flows[f].weight * per_weight;
            caps[f] = Some(rate);
            for &other in &flows[f].links {
                left[other] -= rate;
                open_weight[other] -= flows[f].weight;
                open[other] -= 1;
                version[other] += 1;
                if other != l && open[other] > 0 {
                    heap.push(Reverse((
                        level(left[other], open_weight[other].max(f64::MIN_POSITIVE)),
                        other,
                        version[other],
                    )));
                }
            }
        }
    }
    for (f, flow) in flows.iter().enumerate().filter(|(_, f)| !f.sending) {
        caps[f] = flow
            .links
            .iter()
            .map(|&l| links[l] * flow.weight / (flow.weight + sending_weight[l]))
            .min_by(f64::total_cmp);
    }
    caps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(links: &[usize], weight: f64, sending: bool) -> Flow {
        Flow { links: links.to_vec(), weight, sending }
    }

    fn rounded(caps: Vec<Option<f64>>) -> Vec<Option<f64>> {
        caps.into_iter().map(|c| c.map(|c| (c * 10.0).round() / 10.0)).collect()
    }

    #[test]
    fn one_link_is_shared_by_weight() {
        let caps = allocate(&[90.0], &[flow(&[0], 2.0, true), flow(&[0], 1.0, true)]);
        assert_eq!(rounded(caps), [Some(60.0), Some(30.0)]);
    }

    #[test]
    fn room_left_by_a_flow_held_elsewhere_goes_to_the_others() {
        // Link 0 (100) carries a and b; b also crosses link 1 (20), which holds it at 20.
        // a gets the 80 left, though it weighs as much as b.
        let caps = allocate(&[100.0, 20.0], &[flow(&[0], 1.0, true), flow(&[0, 1], 1.0, true)]);
        assert_eq!(rounded(caps), [Some(80.0), Some(20.0)]);
    }

    #[test]
    fn first_on_its_source_and_last_on_its_target_it_still_fills_its_source() {
        // Source link 0 (90): a (weight 8) and b (1). a's target link 1 (90) also carries c
        // (weight 8 × 8, heavier). The smaller of a's weighted shares would cap it at 10 and
        // b at 10: 20 of link 0's 90. Filled: c and a split link 1 (80, 10), b gets 80.
        let caps = allocate(&[90.0, 90.0], &[flow(&[0, 1], 8.0, true), flow(&[0], 1.0, true), flow(&[1], 64.0, true)]);
        assert_eq!(rounded(caps), [Some(10.0), Some(80.0), Some(80.0)]);
    }

    #[test]
    fn a_flow_not_sending_takes_nothing_and_is_capped_at_the_share_it_will_have() {
        let caps = allocate(&[90.0], &[flow(&[0], 2.0, true), flow(&[0], 1.0, false)]);
        assert_eq!(rounded(caps), [Some(90.0), Some(30.0)]);
    }

    #[test]
    fn a_flow_on_no_link_with_a_speed_has_no_cap() {
        let caps = allocate(&[50.0], &[flow(&[], 1.0, true), flow(&[], 1.0, false), flow(&[0], 1.0, true)]);
        assert_eq!(caps, [None, None, Some(50.0)]);
    }
}
