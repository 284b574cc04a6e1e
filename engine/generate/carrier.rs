//! A synthetic carrier network of any size, in the topology file format: regions of sites
//! on fibre rings homed on a hub site, each site with two provider-edge routers, line
//! cards and ports; diverse fibre pairs between neighbouring sites carrying a protected
//! hop (`all`), three-member link bundles (`quorum 2`), label-switched paths both ways
//! round the ring to the hub (`any` over their hops) joined into a protected path
//! (`all`), one customer-facing service per access port (`any` over the access port and
//! the site's protected path), wholesale services over the bundles (`degrade`), and
//! customers with SLA tiers buying services across many sites. With `vpn_sites` K above
//! 1, each L2VPN and L3VPN service spans K consecutive sites: it depends on the same access
//! port and the protected path at each (a port carries several customers' VLANs), and a
//! failure at any one of them degrades it (`degrade`); K = 6 gives about three relations
//! per CI.
//!
//! `faultline generate topology --cis N` writes exactly N CIs; the same seed gives the same
//! bytes.

use super::Rng;
use std::io::{self, Write};

/// Sites per fibre ring; site 0 of each ring is its hub.
pub const RING_SITES: usize = 8;
const DEVICES: usize = 2;
const CARDS: usize = 4;
const PORTS: usize = 8;
/// Cards 0 and 1 face the network, 2 and 3 the customers.
const ACCESS_CARDS: std::ops::Range<usize> = 2..4;
/// One customer for about this many CIs.
const CIS_PER_CUSTOMER: usize = 40;
/// The smallest network: one site and its customers.
pub const MIN_CIS: usize = 200;

/// The shape of a generated network, for the caller to report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    pub cis: usize,
    pub relations: usize,
    pub sites: usize,
    pub services: usize,
    pub customers: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum CarrierError {
    #[error("--cis {0} is too small: a carrier network needs at least {MIN_CIS} CIs")]
    TooSmall(usize),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// CIs one site adds, without its customers: `hub` sites have no paths of their own to
/// build, and every fourth site sells a wholesale service over its bundle.
fn site_cost(position: usize, links: bool) -> usize {
    let equipment = 1 + DEVICES + DEVICES * CARDS + DEVICES * CARDS * PORTS;
    let network = if links { 2 + 3 + 2 } else { 0 };
    let paths = if position == 0 { 1 } else { 3 };
    let wholesale = usize::from(links && position.is_multiple_of(4));
    equipment + network + paths + DEVICES * ACCESS_CARDS.len() * PORTS + wholesale
}

/// Writes a network of exactly `cis` CIs to `out`, one JSON record per line. `progress` is
/// called with the CIs written so far after each site.
pub fn write_network(
    cis: usize,
    seed: u64,
    vpn_sites: usize,
    out: &mut impl Write,
    mut progress: impl FnMut(usize),
) -> Result<Shape, CarrierError> {
    if cis < MIN_CIS {
        return Err(CarrierError::TooSmall(cis));
    }
    let customers_planned = (cis / CIS_PER_CUSTOMER).max(1);
    // Plan the sites: as many as fit beside the customers.
    let mut sites = 0;
    let mut planned = 0;
    while planned + site_cost(sites % RING_SITES, true) + customers_planned <= cis {
        planned += site_cost(sites % RING_SITES, true);
        sites += 1;
    }
    let sites = sites.max(1);

    let mut rng = Rng::new(seed);
    let mut shape = Shape { sites, ..Shape::default() };
    let mut service = 0usize;
    let span = vpn_sites.clamp(1, sites);
    for ring_start in (0..sites).step_by(RING_SITES) {
        let ring = ring_start / RING_SITES;
        let size = RING_SITES.min(sites - ring_start);
        for position in 0..size {
            let place = Place { ring, position, size, sites, span };
            write_site(out, &mut rng, &mut shape, &mut service, place, customers_planned)?;
            progress(shape.cis);
        }
    }
    // Customers fill the rest, so the count is exact; the planned ones carry the services.
    let customers = cis - shape.cis;
    for c in 0..customers {
        let sla = match rng.below(10) {
            0 => "gold",
            1..=3 => "silver",
            _ => "bronze",
        };
        writeln!(out, r#"{{"id":"cust-{c}","class":"customer","name":"Customer {c}","sla":"{sla}"}}"#)?;
    }
    shape.cis += customers;
    shape.customers = customers;
    progress(shape.cis);
    Ok(shape)
}

fn site_id(ring: usize, position: usize) -> String {
    format!("g{ring}-s{position}")
}

/// Where a site is: its ring, its position on it and the ring's size, among how many sites,
/// and how many sites a VPN spans.
#[derive(Clone, Copy)]
struct Place {
    ring: usize,
    position: usize,
    size: usize,
    sites: usize,
    span: usize,
}

fn write_site(
    out: &mut impl Write,
    rng: &mut Rng,
    shape: &mut Shape,
    service: &mut usize,
    place: Place,
    customers: usize,
) -> io::Result<()> {
    let Place { ring, position, size, sites, span } = place;
    let site = site_id(ring, position);
    let mut cis = 0;
    let mut relations = 0;
    writeln!(out, r#"{{"id":"{site}","class":"site"}}"#)?;
    cis += 1;
    for d in 0..DEVICES {
        writeln!(out, r#"{{"id":"{site}-pe{d}","class":"device","depends_on":["{site}"]}}"#)?;
        for c in 0..CARDS {
            writeln!(out, r#"{{"id":"{site}-pe{d}/{c}","class":"card","depends_on":["{site}-pe{d}"]}}"#)?;
            for p in 0..PORTS {
                writeln!(out, r#"{{"id":"{site}-pe{d}/{c}/{p}","class":"port","depends_on":["{site}-pe{d}/{c}"]}}"#)?;
            }
        }
    }
    cis += DEVICES + DEVICES * CARDS + DEVICES * CARDS * PORTS;
    relations += DEVICES + DEVICES * CARDS + DEVICES * CARDS * PORTS;

    let links = size >= 2;
    if links {
        // Eastward to the next site of the ring (the last one closes the ring at the hub):
        // a diverse pair (one per router) carrying the hop, and a bundle on router 0.
        let east = site_id(ring, (position + 1) % size);
        for (d, name) in [(0, "a"), (1, "b")] {
            writeln!(
                out,
                r#"{{"id":"{site}~{east}-{name}","class":"link","depends_on":["{site}-pe{d}/0/0","{east}-pe{d}/0/1"]}}"#
            )?;
        }
        writeln!(
            out,
            r#"{{"id":"hop-{site}","class":"rfs","name":"hop {site}-{east}","depends_on":["{site}~{east}-a","{site}~{east}-b"],"rule":"all"}}"#
        )?;
        for m in 0..3 {
            writeln!(
                out,
                r#"{{"id":"{site}~{east}-m{m}","class":"link","depends_on":["{site}-pe0/1/{p}","{east}-pe1/1/{p}"]}}"#,
                p = 2 + m
            )?;
        }
        writeln!(
            out,
            r#"{{"id":"lag-{site}","class":"rfs","name":"bundle {site}-{east}","depends_on":["{site}~{east}-m0","{site}~{east}-m1","{site}~{east}-m2"],"rule":{{"quorum":2}}}}"#
        )?;
        cis += 7;
        relations += 2 * 2 + 2 + 3 * 2 + 3;
    }

    // The site's protected path to its ring's hub: both ways round, either will do. The
    // hub's own path is its pair of routers.
    if position == 0 || !links {
        writeln!(out, r#"{{"id":"path-{site}","class":"rfs","depends_on":["{site}-pe0","{site}-pe1"],"rule":"all"}}"#)?;
        cis += 1;
        relations += 2;
    } else {
        let hops = |range: std::ops::Range<usize>| {
            range.map(|h| format!("\"hop-{}\"", site_id(ring, h))).collect::<Vec<_>>().join(",")
        };
        let (east, west) = (hops(position..size), hops(0..position));
        writeln!(out, r#"{{"id":"lsp-{site}-e","class":"rfs","depends_on":[{east}]}}"#)?;
        writeln!(out, r#"{{"id":"lsp-{site}-w","class":"rfs","depends_on":[{west}]}}"#)?;
        writeln!(
            out,
            r#"{{"id":"path-{site}","class":"rfs","depends_on":["lsp-{site}-e","lsp-{site}-w"],"rule":"all"}}"#
        )?;
        cis += 3;
        relations += size + 2;
    }

    // The sites a VPN from here spans: this one and the next ones, round all the sites.
    let here = ring * RING_SITES + position;
    let spanned: Vec<String> =
        (1..span).map(|k| (here + k) % sites).map(|g| site_id(g / RING_SITES, g % RING_SITES)).collect();
    for d in 0..DEVICES {
        for c in ACCESS_CARDS {
            for p in 0..PORTS {
                let customer = rng.below(customers);
                let kind = rng.below(4);
                let mut depends_on = format!(r#""{site}-pe{d}/{c}/{p}","path-{site}""#);
                let mut rule = "";
                if matches!(kind, 1 | 2) && !spanned.is_empty() {
                    for other in &spanned {
                        depends_on.push_str(&format!(r#","{other}-pe{d}/{c}/{p}","path-{other}""#));
                    }
                    rule = r#","rule":"degrade""#;
                    relations += 2 * spanned.len();
                }
                writeln!(
                    out,
                    r#"{{"id":"svc-{n}","class":"cfs","name":"{kind} {n}","customer":"cust-{customer}","depends_on":[{depends_on}]{rule}}}"#,
                    n = *service,
                    kind = ["Internet", "L2VPN", "L3VPN", "Voice"][kind],
                )?;
                *service += 1;
            }
        }
    }
    let access = DEVICES * ACCESS_CARDS.len() * PORTS;
    cis += access;
    relations += access * 3;
    shape.services += access;
    if links && position.is_multiple_of(4) {
        let customer = rng.below(customers);
        writeln!(
            out,
            r#"{{"id":"svc-{n}","class":"cfs","name":"Wholesale {n}","customer":"cust-{customer}","depends_on":["lag-{site}"],"rule":"degrade"}}"#,
            n = *service,
        )?;
        *service += 1;
        cis += 1;
        relations += 2;
        shape.services += 1;
    }
    debug_assert_eq!(cis, site_cost(position, links));
    shape.cis += cis;
    shape.relations += relations;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::topology::CiClass;

    fn network(cis: usize, seed: u64) -> (String, Shape) {
        spanning(cis, seed, 1)
    }

    fn spanning(cis: usize, seed: u64, vpn_sites: usize) -> (String, Shape) {
        let mut out = Vec::new();
        let shape = write_network(cis, seed, vpn_sites, &mut out, |_| {}).unwrap();
        (String::from_utf8(out).unwrap(), shape)
    }

    #[test]
    fn exact_size_valid_and_seeded() {
        for (cis, vpn_sites) in [(MIN_CIS, 1), (1_000, 1), (12_345, 1), (MIN_CIS, 6), (12_345, 6)] {
            let (text, shape) = spanning(cis, 3, vpn_sites);
            let topology = crate::topology_file::parse(&text, "generated").expect("a valid network");
            assert_eq!((topology.len(), shape.cis), (cis, cis));
            let relations: usize = topology.iter().map(|(i, _)| topology.dependencies(i).len()).sum::<usize>()
                + topology.iter().filter(|(_, ci)| ci.customer.is_some()).count();
            assert_eq!(relations, shape.relations, "{cis} CIs");
            let services = topology.iter().filter(|(_, ci)| ci.class == CiClass::Cfs).count();
            assert_eq!(services, shape.services);
        }
        assert_eq!(network(5_000, 9).0, network(5_000, 9).0, "same seed, same bytes");
        assert_eq!(spanning(5_000, 9, 6).0, spanning(5_000, 9, 6).0);
        assert_ne!(network(5_000, 9).0, network(5_000, 10).0);
        assert!(matches!(write_network(10, 1, 1, &mut Vec::new(), |_| {}), Err(CarrierError::TooSmall(10))));
    }

    #[test]
    fn vpns_spanning_six_sites_make_three_relations_per_ci() {
        let (text, shape) = spanning(50_000, 1, 6);
        let (_, local) = network(50_000, 1);
        assert_eq!((shape.cis, shape.services), (local.cis, local.services), "the same CIs, more relations");
        let per_ci = shape.relations as f64 / shape.cis as f64;
        assert!((2.8..3.2).contains(&per_ci), "{per_ci} relations per CI");
        let topology = crate::topology_file::parse(&text, "generated").unwrap();
        let (vpn, ci) = topology.iter().find(|(_, ci)| ci.name.contains("VPN")).expect("VPNs");
        // Its access port and path at each of six sites; a failure at one degrades it.
        let site = |id: &str| {
            let id = id.strip_prefix("path-").unwrap_or(id);
            id.split('-').take(2).collect::<Vec<_>>().join("-")
        };
        let sites: std::collections::BTreeSet<String> =
            topology.dependencies(vpn).iter().map(|&d| site(&topology.ci(d).id)).collect();
        assert_eq!(
            (topology.dependencies(vpn).len(), sites.len(), ci.rule),
            (12, 6, crate::model::topology::Rule::Degrade)
        );
    }

    #[test]
    fn redundancy_holds_until_both_ways_fail() {
        use crate::correlate::alarm_stage::ResourceUpdate;
        use crate::correlate::impact::ImpactStage;
        use crate::model::state::State;
        let (text, _) = network(2_000, 1);
        let topology = std::sync::Arc::new(crate::topology_file::parse(&text, "generated").unwrap());
        let mut impact = ImpactStage::new(topology.clone());
        let down = |resource: &str| ResourceUpdate {
            resource: resource.into(),
            own_state: State::Down,
            alarms: Default::default(),
            ci: None,
        };
        let path = topology.lookup("path-g0-s3").unwrap();
        // One fibre of a diverse pair: the hop degrades, the path stays up.
        impact.apply(down("g0-s3~g0-s4-a"), &mut Default::default());
        assert_eq!(impact.state(topology.lookup("hop-g0-s3").unwrap()).effective, State::Degraded);
        // The whole eastward hop: the westward path still carries the site.
        impact.apply(down("g0-s3~g0-s4-b"), &mut Default::default());
        assert_eq!(impact.state(path).effective, State::Degraded);
        // And westward too: the site is cut off, its services down.
        impact.apply(down("g0-s1~g0-s2-a"), &mut Default::default());
        impact.apply(down("g0-s1~g0-s2-b"), &mut Default::default());
        assert_eq!(impact.state(path).effective, State::Down);
        let service =
            topology.iter().find(|(i, ci)| ci.class == CiClass::Cfs && topology.dependencies(*i).contains(&path));
        assert_eq!(impact.state(service.unwrap().0).effective, State::Down);
    }
}
