//! Which agents get which fault (deterministic with the seed), and the values each scenario
//! produces.

use std::collections::{BTreeMap, HashSet};
use std::ops::RangeInclusive;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::config::{FaultSpec, FleetConfig, Scenario};
use crate::status::Wan;

/// `Device.DeviceInfo.MemoryStatus.Total`, KiB.
pub(crate) const MEMORY_TOTAL: u32 = 524_288;

/// Agent index → the faults assigned to it (scenario, onset), for every agent of the fleet.
pub(crate) type Assignment = BTreeMap<usize, Vec<(Scenario, Duration)>>;

/// Assigns each fault spec to `round(fraction × eligible)` agents (at least one when the
/// fraction is above zero), drawn by a seeded shuffle per scenario. Agents that have no fault
/// yet are preferred, so scenarios overlap only when the fleet is too small for them not to.
pub(crate) fn assign(cfg: &FleetConfig) -> Assignment {
    let mut out = Assignment::new();
    let mut used = HashSet::new();
    let indices = cfg.first_index..cfg.first_index + cfg.agents;
    for (n, spec) in cfg.faults.iter().enumerate() {
        let mut eligible: Vec<usize> = indices
            .clone()
            .filter(|i| eligible_for(spec.scenario, Wan::of_index(*i)))
            .collect();
        let seed = cfg
            .seed
            .wrapping_add((spec.scenario as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .wrapping_add(n as u64);
        eligible.shuffle(&mut StdRng::seed_from_u64(seed));
        let count = count_for(spec, eligible.len());
        let (fresh, taken): (Vec<usize>, Vec<usize>) =
            eligible.into_iter().partition(|i| !used.contains(i));
        for i in fresh.into_iter().chain(taken).take(count) {
            used.insert(i);
            out.entry(i).or_default().push((spec.scenario, spec.onset));
        }
    }
    out
}

fn count_for(spec: &FaultSpec, eligible: usize) -> usize {
    if spec.fraction <= 0.0 || eligible == 0 {
        return 0;
    }
    ((spec.fraction * eligible as f64).round() as usize).clamp(1, eligible)
}

fn eligible_for(s: Scenario, wan: Wan) -> bool {
    match s {
        Scenario::DslDegradation => wan == Wan::Dsl,
        Scenario::PonLowPower => wan == Wan::Pon,
        _ => true,
    }
}

/// A value drawn from `range` that differs from `prev` (values jitter on every sample, so a
/// ValueChange goes out each time).
pub(crate) fn jitter(rng: &mut impl Rng, range: RangeInclusive<i64>, prev: Option<i64>) -> i64 {
    let v = rng.random_range(range.clone());
    match prev {
        Some(p) if p == v => {
            if v < *range.end() {
                v + 1
            } else {
                v - 1
            }
        }
        _ => v,
    }
}

/// Ranges of the sampled values, normal and under fault (units as in the data model).
pub(crate) mod ranges {
    use std::ops::RangeInclusive;
    pub(crate) const NOISE: RangeInclusive<i64> = -95..=-85;
    pub(crate) const NOISE_INTERFERENCE: RangeInclusive<i64> = -65..=-55;
    pub(crate) const FREE: RangeInclusive<i64> = 200_000..=300_000;
    pub(crate) const CPU: RangeInclusive<i64> = 5..=40;
    pub(crate) const CPU_LEAK: RangeInclusive<i64> = 90..=99;
    pub(crate) const TEMP: RangeInclusive<i64> = 45..=60;
    pub(crate) const TEMP_HOT: RangeInclusive<i64> = 90..=100;
    pub(crate) const DSL_MARGIN: RangeInclusive<i64> = 60..=120;
    pub(crate) const DSL_MARGIN_BAD: RangeInclusive<i64> = 10..=30;
    pub(crate) const PON_RX: RangeInclusive<i64> = -18_000..=-15_000;
    pub(crate) const PON_RX_LOW: RangeInclusive<i64> = -29_000..=-27_500;
    pub(crate) const SIGNAL: RangeInclusive<i64> = -70..=-40;
}

/// Free memory after one more sample of a leak: about 5 % of Total less, never below ~3 %.
pub(crate) fn leak_step(rng: &mut impl Rng, prev: i64) -> i64 {
    let total = i64::from(MEMORY_TOTAL);
    let step = total * rng.random_range(45..=55) / 1000;
    let floor = total * rng.random_range(25..=35) / 1000;
    let next = (prev - step).max(floor);
    if next == prev { next - 1 } else { next }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(seed: u64, faults: &str) -> FleetConfig {
        FleetConfig {
            agents: 50,
            seed,
            faults: FaultSpec::parse_list(faults).unwrap(),
            ..Default::default()
        }
    }

    #[test]
    fn assignment_is_deterministic_and_seed_dependent() {
        let f = "wifi_interference:0.1@1s,silent:0.1,reboot_loop:0.1";
        assert_eq!(assign(&cfg(7, f)), assign(&cfg(7, f)));
        assert_ne!(assign(&cfg(7, f)), assign(&cfg(8, f)));
    }

    #[test]
    fn fractions_counts_and_disjointness() {
        let a = assign(&cfg(3, "wifi_interference:0.1,silent:0.2,memory_leak:0.01"));
        let count = |s| a.values().flatten().filter(|(x, _)| *x == s).count();
        assert_eq!(count(Scenario::WifiInterference), 5);
        assert_eq!(count(Scenario::Silent), 10);
        assert_eq!(
            count(Scenario::MemoryLeak),
            1,
            "a positive fraction gets at least one"
        );
        assert!(
            a.values().all(|v| v.len() == 1),
            "disjoint when the fleet is big enough"
        );
    }

    #[test]
    fn wan_specific_scenarios_pick_matching_agents() {
        let a = assign(&cfg(1, "dsl_degradation:0.5,pon_low_power:0.5"));
        for (i, fs) in &a {
            for (s, _) in fs {
                match s {
                    Scenario::DslDegradation => assert_eq!(i % 2, 0),
                    Scenario::PonLowPower => assert_eq!(i % 2, 1),
                    _ => unreachable!(),
                }
            }
        }
        assert_eq!(a.len(), 26, "round(0.5 × 25) = 13 of each kind");
    }

    #[test]
    fn jitter_always_changes() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut prev = None;
        for _ in 0..1000 {
            let v = jitter(&mut rng, -1..=0, prev);
            assert_ne!(Some(v), prev);
            assert!((-1..=0).contains(&v));
            prev = Some(v);
        }
    }

    #[test]
    fn leak_reaches_critical_and_stops_at_floor() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut free = 250_000;
        for _ in 0..9 {
            free = leak_step(&mut rng, free);
        }
        assert!(free < i64::from(MEMORY_TOTAL) / 20, "{free}");
        assert!(free > i64::from(MEMORY_TOTAL) / 50, "{free}");
    }
}
