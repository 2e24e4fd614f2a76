//! Topology-aware budgets: `Spread` and `WholeDomain`.

use super::*;
use crate::plan::topology::{DomainSource, TopologyMode, TopologySettings};
use crate::slurm::topology::{Block, Topology};

/// Nodes n1..n6 in racks of two: rack-a (n1, n2), rack-b (n3, n4), rack-c (n5, n6).
fn racks() -> Vec<Node> {
    (1..=6)
        .map(|i| {
            let mut n = node(&format!("n{i}"), "IDLE", 0);
            n.features = vec![
                "gpu".into(),
                format!("rack-{}", ["a", "b", "c"][(i - 1) / 2]),
            ];
            n
        })
        .collect()
}

fn blocks() -> Topology {
    Topology {
        switches: vec![],
        blocks: (0..3)
            .map(|b| Block {
                name: format!("b{}", b + 1),
                nodes: vec![format!("n{}", 2 * b + 1), format!("n{}", 2 * b + 2)],
            })
            .collect(),
    }
}

fn with(count: u32, mode: TopologyMode, source: DomainSource) -> Settings {
    let mut s = settings(50.0);
    s.limit = BudgetLimit::Count(count);
    s.topology = Some(TopologySettings { source, mode });
    s
}

fn spread(count: u32, per: u32) -> Settings {
    with(
        count,
        TopologyMode::Spread {
            max_per_domain: per,
        },
        DomainSource::NodeFeature {
            prefix: "rack-".into(),
        },
    )
}

fn whole(count: u32) -> Settings {
    with(count, TopologyMode::WholeDomain, DomainSource::SlurmBlocks)
}

/// Our MAINT reservation `name` over block b1 (n1, n2) from `start`.
fn domain_b1_reservation(name: &str, start: Timestamp) -> Reservation {
    Reservation {
        name: name.into(),
        start,
        end: t(NOW + 600),
        nodes: vec!["n1".into(), "n2".into()],
        flags: vec!["MAINT".into()],
        users: vec!["root".into()],
        accounts: vec![],
        partition: None,
    }
}

fn all() -> Vec<Work> {
    pending(&["n1", "n2", "n3", "n4", "n5", "n6"])
}

#[test]
fn spread_takes_at_most_the_limit_from_each_domain() {
    let s = spread(6, 1);
    let p = plan("p", &s, &snapshot(racks(), vec![]), &all(), t(NOW));
    assert_eq!(admitted(&p), ["n1", "n3", "n5"]);
    let domains: Vec<_> = p.updates.iter().map(|u| u.status.domain.clone()).collect();
    assert!(domains.iter().all(Option::is_some), "{domains:?}");
    // Two per domain, but the partition allows three.
    let p = plan(
        "p",
        &spread(3, 2),
        &snapshot(racks(), vec![]),
        &all(),
        t(NOW),
    );
    assert_eq!(admitted(&p), ["n1", "n2", "n3"]);
}

#[test]
fn spread_counts_a_down_node_in_its_domain() {
    let mut nodes = racks();
    nodes[0].state = NodeState::parse("IDLE+DRAIN").unwrap();
    let p = plan("p", &spread(6, 1), &snapshot(nodes, vec![]), &all(), t(NOW));
    assert_eq!(admitted(&p), ["n3", "n5"]);
    assert!(p.waiting["n2"].contains("budget full"), "{:?}", p.waiting);
    let f = p.topology.expect("per-domain figures");
    assert_eq!((f.mode.as_str(), f.domains, f.unplaced), ("Spread", 3, 0));
    assert_eq!((f.max_out_in_a_domain, f.allowed_per_domain), (1, 1));
    let rack_a = f
        .busy
        .iter()
        .find(|d| d.name == "rack-a")
        .expect("rack-a busy");
    assert_eq!((rack_a.total, rack_a.out), (2, 1));
}

#[test]
fn spread_reserves_a_domain_s_second_node_after_its_first_is_back() {
    // n1's job ends at NOW + 5, n2 is idle: n2 goes now (out for the reboot timeout,
    // 10 min), n1 not before it is back — never both out in rack-a.
    let jobs = vec![job(1, "n1", Some(NOW + 5), false)];
    let p = plan("p", &spread(6, 1), &snapshot(racks(), jobs), &all(), t(NOW));
    let starts: BTreeMap<String, Option<Timestamp>> = reservation_starts(&p).into_iter().collect();
    assert_eq!(starts.get("n2"), Some(&None));
    assert!(!starts.contains_key("n1"), "{starts:?}");
}

#[test]
fn whole_domain_takes_a_domain_together_in_one_reservation() {
    let jobs = vec![
        job(1, "n1", Some(NOW + 10), false),
        job(2, "n2", Some(NOW + 20), false),
        job(3, "n5", Some(NOW + 15), false),
    ];
    let mut snap = snapshot(racks(), jobs);
    snap.topology = Some(blocks());
    let p = plan("p", &whole(2), &snap, &all(), t(NOW));
    let creates: Vec<_> = p
        .actions()
        .filter_map(|a| match a {
            Action::CreateReservation {
                name,
                node,
                with,
                start,
                ..
            } => Some((name.clone(), node.clone(), with.clone(), *start)),
            _ => None,
        })
        .collect();
    // Earliest release first: b2 is idle (now, out for 10 min); b3 is free at NOW + 15;
    // b1 at NOW + 20 (its latest job) would be out beside b3.
    assert_eq!(creates.len(), 2, "{creates:?}");
    let b2 = creates.iter().find(|c| c.1 == "n3").unwrap();
    assert_eq!((b2.2.clone(), b2.3), (vec!["n4".to_string()], None));
    assert!(b2.0.contains("-b2-"), "{}", b2.0);
    let b3 = creates.iter().find(|c| c.1 == "n6").unwrap();
    assert_eq!(
        (b3.2.clone(), b3.3),
        (vec!["n5".to_string()], Some(t(NOW + 15)))
    );
    // Both of a domain's works hold the one reservation, from the same start.
    for (a, b) in [("n5", "n6"), ("n3", "n4")] {
        let st = |n: &str| {
            p.updates
                .iter()
                .find(|u| u.node == n)
                .unwrap()
                .status
                .clone()
        };
        assert_eq!(st(a).reservation_name, st(b).reservation_name);
        assert_eq!(st(a).reservation_start, st(b).reservation_start);
        assert_eq!(st(a).phase, Phase::Reserved);
    }
    assert!(p.waiting["n1"].contains("domain b1"), "{:?}", p.waiting);
    assert!(p.waiting["n2"].contains("domain b1"), "{:?}", p.waiting);
}

#[test]
fn whole_domain_larger_than_the_budget_waits_and_says_why() {
    let mut snap = snapshot(racks(), vec![]);
    snap.topology = Some(blocks());
    let p = plan("p", &whole(1), &snap, &all(), t(NOW));
    assert!(admitted(&p).is_empty());
    assert!(
        p.waiting["n1"].contains("more than the 1"),
        "{:?}",
        p.waiting
    );
}

#[test]
fn a_source_that_finds_no_domain_holds_rolling_reboots() {
    let p = plan("p", &whole(4), &snapshot(racks(), vec![]), &all(), t(NOW));
    assert!(admitted(&p).is_empty());
    assert!(p.waiting["n1"].contains("no blocks"), "{:?}", p.waiting);
}

#[test]
fn a_domain_returns_whole_its_reservation_goes_with_its_last_work() {
    let mut snap = snapshot(racks(), vec![]);
    snap.topology = Some(blocks());
    let s = whole(2);
    let mut work = pending(&["n1", "n2"]);
    let p = plan("p", &s, &snap, &work, t(NOW));
    apply(&mut work, &p);
    let name = work[0].status.reservation_name.clone().unwrap();
    snap.reservations.push(domain_b1_reservation(&name, t(NOW)));
    // n1 done, n2 still checking: the reservation stays, and n1 still counts as out.
    work[0].status.phase = Phase::Completed;
    work[1].status.phase = Phase::HealthCheck;
    let p = plan("p", &s, &snap, &work, t(NOW + 5));
    let deletes = |p: &Plan| {
        p.actions()
            .filter(|a| matches!(a, Action::DeleteReservation { .. }))
            .count()
    };
    assert_eq!(deletes(&p), 0);
    assert!(p.peak_out >= 2, "peak {}", p.peak_out);
    // Both ended: deleted once.
    work[1].status.phase = Phase::Completed;
    let p = plan("p", &s, &snap, &work, t(NOW + 6));
    assert_eq!(deletes(&p), 1);
}

#[test]
fn a_budget_of_one_domain_still_holds_the_next_domains_beyond_the_lead_time() {
    let mut snap = snapshot(
        racks(),
        (1..=6)
            .map(|i| {
                let end = NOW + 120 * (1 + (i as i64 - 1) / 2);
                job(i, &format!("n{i}"), Some(end), false)
            })
            .collect(),
    );
    snap.topology = Some(blocks());
    let mut s = whole(2);
    s.lead_time = SignedDuration::from_mins(30);
    let p = plan("p", &s, &snap, &all(), t(NOW));
    // Each domain under one reservation at its release, one after the other: as many
    // reservations ahead as the budget's two nodes would have, not one domain's worth.
    let starts: BTreeMap<String, Timestamp> = p
        .updates
        .iter()
        .filter(|u| u.status.phase == Phase::Reserved)
        .map(|u| {
            (
                u.status.reservation_name.clone().unwrap(),
                u.status.reservation_start.unwrap(),
            )
        })
        .collect();
    let mut starts: Vec<Timestamp> = starts.into_values().collect();
    starts.sort();
    assert_eq!(starts, vec![t(NOW + 120), t(NOW + 240)], "{:?}", p.waiting);
    assert!(
        p.waiting["n5"].contains("beyond the reservation lead time"),
        "{:?}",
        p.waiting
    );
}

#[test]
fn a_domain_whose_works_end_in_one_pass_loses_its_reservation_in_that_pass() {
    let mut snap = snapshot(racks(), vec![]);
    snap.topology = Some(blocks());
    let mut s = whole(2);
    let mut work = pending(&["n1", "n2"]);
    let p = plan("p", &s, &snap, &work, t(NOW));
    apply(&mut work, &p);
    let name = work[0].status.reservation_name.clone().unwrap();
    assert_eq!(
        work[1].status.reservation_name.as_deref(),
        Some(name.as_str())
    );
    snap.reservations
        .push(domain_b1_reservation(&name, t(NOW + 30)));
    // The campaign withdrawn while both wait in the reservation: both end in this pass.
    s.reboot_required_before = None;
    let p = plan("p", &s, &snap, &work, t(NOW + 1));
    let deletes: Vec<_> = p
        .actions()
        .filter(|a| matches!(a, Action::DeleteReservation { name: n } if *n == name))
        .collect();
    assert_eq!(deletes.len(), 1, "{:?}", p.updates);
    apply(&mut work, &p);
    assert!(work.iter().all(|w| w.status.phase == Phase::Completed));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Spread: no two nodes of a domain are ever committed over overlapping intervals
    /// by one pass, and nothing is admitted into a domain with a node down.
    #[test]
    fn spread_never_doubles_up_a_domain(w in world()) {
        let (mut s, mut snap, work) = build(&w);
        s.topology = Some(TopologySettings {
            source: DomainSource::NodeFeature { prefix: "rack-".into() },
            mode: TopologyMode::Spread { max_per_domain: 1 },
        });
        for (i, n) in snap.nodes.iter_mut().enumerate() {
            n.features = vec![format!("rack-{}", i / 3)];
        }
        let p = plan("p", &s, &snap, &work, t(NOW));
        let dom = |n: &str| snap.nodes.iter().position(|x| x.name == n).unwrap() / 3;
        let d = s.reboot_timeout + s.settle_time;
        let mut by_domain: BTreeMap<usize, Vec<(Timestamp, Timestamp)>> = BTreeMap::new();
        for u in p.updates.iter().filter(|u| u.status.phase == Phase::Reserved) {
            let was = work.iter().find(|w| w.name == u.name).unwrap().status.phase;
            if was != Phase::Pending { continue; }
            let from = u.status.reservation_start.unwrap();
            by_domain.entry(dom(&u.node)).or_default().push((from, from + d));
            let down = snap.nodes.iter().any(|n| dom(&n.name) == dom(&u.node) && !n.state.in_service());
            prop_assert!(!down, "{} admitted beside a node down in its domain", u.node);
        }
        for (k, spans) in by_domain {
            for (i, a) in spans.iter().enumerate() {
                for b in &spans[i + 1..] {
                    prop_assert!(a.1 <= b.0 || b.1 <= a.0, "domain {k}: {a:?} overlaps {b:?}");
                }
            }
        }
    }

    /// WholeDomain: every domain's admitted works share one reservation and one start,
    /// and the partition's budget holds.
    #[test]
    fn whole_domain_never_splits_a_domain(w in world()) {
        let (mut s, mut snap, work) = build(&w);
        s.topology = Some(TopologySettings {
            source: DomainSource::NodeFeature { prefix: "rack-".into() },
            mode: TopologyMode::WholeDomain,
        });
        for (i, n) in snap.nodes.iter_mut().enumerate() {
            n.features = vec![format!("rack-{}", i / 3)];
        }
        let p = plan("p", &s, &snap, &work, t(NOW));
        let dom = |n: &str| snap.nodes.iter().position(|x| x.name == n).unwrap() / 3;
        let mut seen: BTreeMap<usize, (Option<String>, Option<Timestamp>)> = BTreeMap::new();
        for u in p.updates.iter().filter(|u| u.status.phase == Phase::Reserved) {
            let was = work.iter().find(|w| w.name == u.name).unwrap().status.phase;
            if was != Phase::Pending { continue; }
            let key = (u.status.reservation_name.clone(), u.status.reservation_start);
            let first = seen.entry(dom(&u.node)).or_insert(key.clone());
            prop_assert_eq!(&*first, &key, "domain of {} split", u.node);
        }
        // Every node a domain reservation names is one of that domain's works.
        for a in p.actions() {
            if let Action::CreateReservation { node, with, .. } = a {
                for n in with {
                    prop_assert_eq!(dom(n), dom(node));
                }
            }
        }
        prop_assert!(p.budget.combined().len() <= p.observed.combined().len().max(p.budget.allowed));
    }
}
