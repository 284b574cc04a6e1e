//! An incident's impacted services and their customers, kept with the lists the incident
//! publishes. A storm moves a few services of a large incident at a time: the counts, the
//! customers' worst impact and the published lists follow each change, so that keeping an
//! incident of a thousand services current costs what changed, not a thousand services.

use crate::model::incident::{ImpactedCustomer, ImpactedService, Incident};
use crate::model::state::State;
use crate::model::topology::{CiIdx, SlaTier, Topology};
use std::sync::Arc;

/// One customer of the impacted services: how many of its services are in each state.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Customer {
    ci: CiIdx,
    sla: Option<SlaTier>,
    /// Services by state: up, degraded, down.
    services: [u32; 3],
}

impl Customer {
    fn worst(&self) -> State {
        match self.services {
            [_, _, down] if down > 0 => State::Down,
            [_, degraded, _] if degraded > 0 => State::Degraded,
            _ => State::Up,
        }
    }
}

fn slot(state: State) -> usize {
    match state {
        State::Up => 0,
        State::Degraded => 1,
        State::Down => 2,
    }
}

/// An impacted service: its current state, and its customer as the topology gives it (kept
/// here, so that a change of state needs no look-up in the topology, a cache miss on a large
/// network).
#[derive(Clone, Copy, Debug)]
struct Service {
    ci: CiIdx,
    state: State,
    customer: Option<CiIdx>,
    /// The service's own tier, else its customer's.
    sla: Option<SlaTier>,
}

/// The slot of a tier in [`Impacted::tiers`].
fn tier_slot(sla: Option<SlaTier>) -> usize {
    match sla {
        None => 0,
        Some(SlaTier::Bronze) => 1,
        Some(SlaTier::Silver) => 2,
        Some(SlaTier::Gold) => 3,
    }
}

#[derive(Clone, Debug, Default)]
pub(super) struct Impacted {
    /// Every service the incident has impacted, by CI, with its current state (`Up` once
    /// restored: a service stays listed until the incident closes).
    services: Vec<Service>,
    /// Their customers, by CI.
    customers: Vec<Customer>,
    /// Services by state: up, degraded, down.
    by_state: [usize; 3],
    /// Services not up, by their tier: none, bronze, silver, gold.
    tiers: [usize; 4],
    /// Services without a customer, by state: each counts as a party of its own.
    loose: [usize; 3],
    /// Services whose state moved since the lists were last published, each with whether
    /// it was newly impacted (not listed yet) and its customer.
    pending: Vec<(CiIdx, bool, Option<CiIdx>)>,
    /// Whether the published lists are those of `services` but for `pending`; false for an
    /// incident taken back from a changelog, whose lists are rebuilt once in full.
    published: bool,
}

impl Impacted {
    pub(super) fn new() -> Impacted {
        Impacted { published: true, ..Impacted::default() }
    }

    /// Services and states as a changelog recorded them; the lists are rebuilt at the
    /// first publication.
    pub(super) fn restore(services: impl IntoIterator<Item = (CiIdx, State)>, topology: &Topology) -> Impacted {
        let mut impacted = Impacted::default();
        for (ci, state) in services {
            impacted.set(ci, state, topology);
        }
        impacted.pending.clear();
        impacted
    }

    pub(super) fn get(&self, service: CiIdx) -> Option<State> {
        self.services.binary_search_by_key(&service, |s| s.ci).ok().map(|at| self.services[at].state)
    }

    /// Sets a service's state; returns the previous one (`None` when newly impacted).
    pub(super) fn set(&mut self, service: CiIdx, state: State, topology: &Topology) -> Option<State> {
        let (previous, customer, sla) = match self.services.binary_search_by_key(&service, |s| s.ci) {
            Ok(at) => {
                let listed = &mut self.services[at];
                (Some(std::mem::replace(&mut listed.state, state)), listed.customer, listed.sla)
            }
            Err(at) => {
                let ci = topology.ci(service);
                let (customer, sla) = (ci.customer, ci.sla);
                self.services.insert(at, Service { ci: service, state, customer, sla });
                (None, customer, sla)
            }
        };
        if previous == Some(state) {
            return previous;
        }
        if let Some(previous) = previous {
            self.by_state[slot(previous)] -= 1;
            if !previous.is_up() {
                self.tiers[tier_slot(sla)] -= 1;
            }
            if customer.is_none() {
                self.loose[slot(previous)] -= 1;
            }
        }
        self.by_state[slot(state)] += 1;
        if !state.is_up() {
            self.tiers[tier_slot(sla)] += 1;
        }
        if customer.is_none() {
            self.loose[slot(state)] += 1;
        }
        if let Some(customer) = customer {
            let at = match self.customers.binary_search_by_key(&customer, |c| c.ci) {
                Ok(at) => at,
                Err(at) => {
                    let sla = topology.ci(customer).sla;
                    self.customers.insert(at, Customer { ci: customer, sla, services: [0; 3] });
                    at
                }
            };
            let counts = &mut self.customers[at].services;
            if let Some(previous) = previous {
                counts[slot(previous)] -= 1;
            }
            counts[slot(state)] += 1;
        }
        self.pending.push((service, previous.is_none(), customer));
        previous
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (CiIdx, State)> + '_ {
        self.services.iter().map(|s| (s.ci, s.state))
    }

    /// Every CI this names: its services, their customers, and those pending publication.
    pub(super) fn cis(&self) -> impl Iterator<Item = CiIdx> + '_ {
        let services = self.services.iter().flat_map(|s| std::iter::once(s.ci).chain(s.customer));
        let customers = self.customers.iter().map(|c| c.ci);
        let pending = self.pending.iter().flat_map(|&(ci, _, customer)| std::iter::once(ci).chain(customer));
        services.chain(customers).chain(pending)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// Services currently down and degraded.
    pub(super) fn counts(&self) -> (usize, usize) {
        (self.by_state[slot(State::Down)], self.by_state[slot(State::Degraded)])
    }

    /// The services and customers lists rebuilt in full.
    fn lists(&self, topology: &Topology) -> (Vec<ImpactedService>, Vec<ImpactedCustomer>) {
        let services = self.services.iter().map(|s| listed(s.ci, s.state, topology)).collect();
        let customers = self.customers.iter().map(|c| listed_customer(c, topology)).collect();
        (services, customers)
    }

    /// What the priority is assessed from: the best tier among the services not up (a
    /// service's own, else its customer's), and the parties with a service down (customers,
    /// and each service without a customer).
    pub(super) fn priority_inputs(&self) -> (Option<SlaTier>, usize) {
        let best =
            (1..4).rev().find(|&t| self.tiers[t] > 0).map(|t| [SlaTier::Bronze, SlaTier::Silver, SlaTier::Gold][t - 1]);
        let customers_down = self.customers.iter().filter(|c| c.worst() == State::Down).count();
        (best, customers_down + self.loose[slot(State::Down)])
    }

    /// Brings the incident's services and customers lists up to date; true when they moved.
    pub(super) fn publish(&mut self, incident: &mut Arc<Incident>, topology: &Topology) -> bool {
        if !self.published {
            self.published = true;
            self.pending.clear();
            let (services, customers) = self.lists(topology);
            let moved = incident.services != services || incident.customers != customers;
            if moved {
                let writable = Arc::make_mut(incident);
                writable.services = services;
                writable.customers = customers;
            }
            return moved;
        }
        if self.pending.is_empty() {
            return false;
        }
        let mut pending = std::mem::take(&mut self.pending);
        pending.sort_unstable_by_key(|&(ci, _, _)| ci);
        pending.dedup_by(|later, earlier| {
            let same = later.0 == earlier.0;
            earlier.1 |= same && later.1;
            same
        });
        let mut moved = false;
        if pending.iter().any(|&(_, new, _)| new) {
            // New services join the list: one merge of the list with them, as inserting
            // each would move the rest of the list every time.
            let writable = Arc::make_mut(incident);
            let mut listed_before = std::mem::take(&mut writable.services).into_iter();
            let mut pending = pending.iter().peekable();
            writable.services = self
                .services
                .iter()
                .map(|s| match pending.next_if(|&&(ci, _, _)| ci == s.ci) {
                    Some(&(_, true, _)) => listed(s.ci, s.state, topology),
                    _ => {
                        let mut entry = listed_before.next().expect("every service but the new ones is listed");
                        entry.impact = s.state;
                        entry
                    }
                })
                .collect();
            moved = true;
        } else {
            for &(service, _, _) in &pending {
                let at = self.services.binary_search_by_key(&service, |s| s.ci).expect("a pending service is listed");
                let state = self.services[at].state;
                if incident.services[at].impact != state {
                    Arc::make_mut(incident).services[at].impact = state;
                    moved = true;
                }
            }
        }
        if incident.customers.len() != self.customers.len() {
            // Likewise for new customers: the listed ones keep their entries, in order.
            let writable = Arc::make_mut(incident);
            let mut listed_before = std::mem::take(&mut writable.customers).into_iter().peekable();
            writable.customers = self
                .customers
                .iter()
                .map(|customer| match listed_before.next_if(|listed| listed.id == topology.ci(customer.ci).id) {
                    Some(mut entry) => {
                        entry.impact = customer.worst();
                        entry
                    }
                    None => listed_customer(customer, topology),
                })
                .collect();
            moved = true;
        } else {
            let mut customers: Vec<CiIdx> = pending.iter().filter_map(|&(_, _, customer)| customer).collect();
            customers.sort_unstable();
            customers.dedup();
            for customer in customers {
                let at = self.customers.binary_search_by_key(&customer, |c| c.ci).expect("a listed service's customer");
                let worst = self.customers[at].worst();
                if incident.customers[at].impact != worst {
                    Arc::make_mut(incident).customers[at].impact = worst;
                    moved = true;
                }
            }
        }
        pending.clear();
        self.pending = pending;
        moved
    }

    /// Checks the counts, the customers and (once published) the incident's lists against
    /// a recomputation from the services alone. For tests; `Err` names the first difference.
    pub(super) fn check(&self, incident: &Incident, topology: &Topology) -> Result<(), String> {
        let mut fresh = Impacted::new();
        for s in &self.services {
            if s.customer != topology.ci(s.ci).customer {
                return Err(format!("service {} kept with customer {:?}", s.ci, s.customer));
            }
            fresh.set(s.ci, s.state, topology);
        }
        if fresh.by_state != self.by_state {
            return Err(format!("counts {:?}, expected {:?}", self.counts(), fresh.counts()));
        }
        if fresh.customers != self.customers {
            return Err(format!("customers {:?}, expected {:?}", self.customers, fresh.customers));
        }
        if self.published && self.pending.is_empty() {
            let (services, customers) = self.lists(topology);
            if incident.services != services {
                return Err(format!("services listed {:?}, expected {services:?}", incident.services));
            }
            if incident.customers != customers {
                return Err(format!("customers listed {:?}, expected {customers:?}", incident.customers));
            }
        }
        Ok(())
    }
}

fn listed(service: CiIdx, impact: State, topology: &Topology) -> ImpactedService {
    let ci = topology.ci(service);
    ImpactedService {
        id: ci.id.clone(),
        name: ci.name.clone(),
        impact,
        customer: ci.customer.map(|c| topology.ci(c).id.clone()),
    }
}

fn listed_customer(customer: &Customer, topology: &Topology) -> ImpactedCustomer {
    let ci = topology.ci(customer.ci);
    ImpactedCustomer { id: ci.id.clone(), name: ci.name.clone(), sla: customer.sla, impact: customer.worst() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::incident::IncidentId;
    use crate::model::topology::{CiClass, CiRecord, Rule};

    fn network() -> Topology {
        let ci = |id: &str, class, customer: Option<&str>, sla| CiRecord {
            id: id.into(),
            class,
            name: format!("{id} name"),
            depends_on: Vec::new(),
            rule: Rule::Any,
            customer: customer.map(str::to_owned),
            sla,
            incidents: None,
            attributes: Default::default(),
        };
        let mut records = vec![
            ci("cust-a", CiClass::Customer, None, Some(SlaTier::Gold)),
            ci("cust-b", CiClass::Customer, None, Some(SlaTier::Bronze)),
            ci("rfs", CiClass::Rfs, None, None),
        ];
        for i in 0..6 {
            let customer = if i % 2 == 0 { "cust-a" } else { "cust-b" };
            records.push(ci(&format!("svc-{i}"), CiClass::Cfs, Some(customer), None));
        }
        Topology::from_records(records).expect("a valid network")
    }

    fn incident() -> Arc<Incident> {
        Arc::new(Incident::new(IncidentId(1), 0))
    }

    #[test]
    fn lists_follow_each_change_as_a_rebuild_would_give_them() {
        let topology = network();
        let idx = |id: &str| topology.lookup(id).expect("known");
        let mut impacted = Impacted::new();
        let mut incident = incident();
        // Batches as storms bring them: services out of order, new ones between listed
        // ones, a customer first seen through a later service, a state set back.
        let batches: [&[(&str, State)]; 4] = [
            // Two new customers, the later one first seen through the earlier service.
            &[("svc-3", State::Down), ("svc-1", State::Degraded), ("svc-2", State::Down)],
            &[("svc-0", State::Down), ("rfs", State::Down), ("svc-5", State::Degraded)],
            &[("svc-3", State::Up), ("svc-0", State::Degraded), ("svc-0", State::Down), ("svc-4", State::Up)],
            &[("svc-1", State::Up), ("svc-5", State::Up), ("svc-0", State::Up), ("svc-4", State::Up)],
        ];
        for batch in batches {
            for &(service, state) in batch {
                impacted.set(idx(service), state, &topology);
            }
            assert!(impacted.publish(&mut incident, &topology), "every batch moves a list");
            impacted.check(&incident, &topology).expect("lists as a rebuild gives them");
        }
        let services: Vec<_> = incident.services.iter().map(|s| (&*s.id, s.impact)).collect();
        assert_eq!(
            services,
            [
                ("rfs", State::Down),
                ("svc-0", State::Up),
                ("svc-1", State::Up),
                ("svc-2", State::Down),
                ("svc-3", State::Up),
                ("svc-4", State::Up),
                ("svc-5", State::Up)
            ]
        );
        let customers: Vec<_> = incident.customers.iter().map(|c| (&*c.id, c.impact, c.sla)).collect();
        assert_eq!(
            customers,
            [("cust-a", State::Down, Some(SlaTier::Gold)), ("cust-b", State::Up, Some(SlaTier::Bronze))]
        );
        assert_eq!(impacted.counts(), (2, 0), "rfs and svc-2 are still down");
        assert!(!impacted.publish(&mut incident, &topology), "nothing moved since");

        // Taken back from a changelog: the first publication rebuilds the lists in full.
        let mut restored = Impacted::restore(impacted.iter(), &topology);
        let mut emptied = incident.clone();
        Arc::make_mut(&mut emptied).services.clear();
        Arc::make_mut(&mut emptied).customers.clear();
        assert!(restored.publish(&mut emptied, &topology));
        assert_eq!((&emptied.services, &emptied.customers), (&incident.services, &incident.customers));
        assert!(!restored.publish(&mut incident.clone(), &topology), "as published before");
    }
}
