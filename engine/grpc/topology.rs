//! `faultline.v1.TopologyService`: a CI's live state with its root causes explained hop by
//! hop, the services and customers a resource currently takes down or degrades, and the
//! topology itself: listed a page at a time, changed by batches applied all or nothing.

use super::status::required;
use crate::correlate::Correlator;
use crate::model::state::State;
use crate::model::topology::{CiChange, CiIdx, SlaTier, Topology, TopologyError};
use crate::proto::{self, v1};
use crate::runtime::EngineHandle;
use prost::Message as _;
use std::collections::BTreeMap;
use tonic::{Request, Response, Status};

pub struct TopologyApi {
    handle: EngineHandle,
    max_ci_record_bytes: usize,
}

impl TopologyApi {
    pub fn new(handle: EngineHandle, max_ci_record_bytes: usize) -> TopologyApi {
        TopologyApi { handle, max_ci_record_bytes }
    }
}

/// The most one CI's record may take, with changelog records of `max_record_bytes`: what
/// the topology topic takes of one record (`kafka.max_message_bytes`' default, 512 KiB),
/// and always room enough to fit a state changelog record with its key.
pub fn max_ci_record_bytes(max_record_bytes: usize) -> usize {
    (512 * 1024).min(max_record_bytes.saturating_sub(4 * 1024))
}

#[tonic::async_trait]
impl super::server::topology_service_server::TopologyService for TopologyApi {
    async fn get_ci(&self, request: Request<v1::GetCiRequest>) -> Result<Response<v1::CiStatus>, Status> {
        let id = required("id", &request.get_ref().id)?.to_owned();
        let status = self.handle.call(move |ctx| ci_status(ctx.correlator, &id)).await??;
        Ok(Response::new(status))
    }

    async fn get_impact(
        &self,
        request: Request<v1::GetImpactRequest>,
    ) -> Result<Response<v1::GetImpactResponse>, Status> {
        let id = required("resource", &request.get_ref().resource)?.to_owned();
        let impact = self.handle.call(move |ctx| impact_of(ctx.correlator, &id)).await??;
        Ok(Response::new(impact))
    }

    async fn apply_topology_changes(
        &self,
        request: Request<v1::ApplyTopologyChangesRequest>,
    ) -> Result<Response<v1::ApplyTopologyChangesResponse>, Status> {
        let changes = request.into_inner().changes;
        let max = self.max_ci_record_bytes;
        if changes.is_empty() {
            return Err(Status::invalid_argument("`changes` is empty"));
        }
        let batch = changes
            .into_iter()
            .enumerate()
            .map(|(at, change)| match change.change {
                Some(v1::ci_change::Change::Upsert(ci)) if ci.encoded_len() > max => Err(format!(
                    "CI `{}`: its record takes {} bytes, over the {max} a CI may take",
                    ci.id,
                    ci.encoded_len()
                )),
                Some(v1::ci_change::Change::Upsert(ci)) => proto::record_from_proto(ci).map(CiChange::Upsert),
                Some(v1::ci_change::Change::Delete(id)) => Ok(CiChange::Delete(id)),
                None => Err(format!("change {at} is neither an upsert nor a delete")),
            })
            .collect::<Result<Vec<CiChange>, String>>()
            .map_err(Status::invalid_argument)?;
        let applied = self
            .handle
            .call(move |ctx| {
                let mut out = Vec::new();
                let result = ctx.correlator.apply_topology(batch, ctx.now, &mut out);
                // Timers the clock fired, and the incidents the batch moved.
                ctx.publish_all(&out);
                let applied = result.map_err(|error| match error {
                    // The batch is well formed; the topology is not in a state to take it.
                    TopologyError::StillDependedOn { .. } | TopologyError::StillCustomerOf { .. } => {
                        Status::failed_precondition(error.to_string())
                    }
                    _ => Status::invalid_argument(error.to_string()),
                })?;
                let topology = ctx.correlator.topology();
                let ids = |list: &[CiIdx]| list.iter().map(|&i| topology.ci(i).id.to_string()).collect();
                Ok::<_, Status>(v1::ApplyTopologyChangesResponse {
                    version: applied.version,
                    added: ids(&applied.added),
                    changed: ids(&applied.changed),
                    deleted: ids(&applied.deleted),
                })
            })
            .await??;
        Ok(Response::new(applied))
    }

    async fn list_cis(&self, request: Request<v1::ListCisRequest>) -> Result<Response<v1::ListCisResponse>, Status> {
        let request = request.into_inner();
        let class = match v1::CiClass::try_from(request.class) {
            Ok(v1::CiClass::Unspecified) => None,
            Ok(class) => Some(class as i32),
            Err(_) => return Err(Status::invalid_argument(format!("unknown class {}", request.class))),
        };
        let from: usize = match request.page_token.as_str() {
            "" => 0,
            token => token.strip_prefix("slot-").and_then(|n| n.parse().ok()).ok_or_else(|| {
                Status::invalid_argument(format!("`page_token` {token:?} is not one this engine gave"))
            })?,
        };
        let size = match request.page_size {
            0 => DEFAULT_PAGE,
            n => (n as usize).min(MAX_PAGE),
        };
        let page = self
            .handle
            .call(move |ctx| {
                let topology = ctx.correlator.topology();
                let mut cis = Vec::new();
                let mut next = from;
                // The scan of one call is bounded, so that a sparse filter never holds the
                // core for a whole large network: the token then says where to go on.
                let end = topology.slots().min(from.saturating_add(SCAN_PER_PAGE));
                while next < end && cis.len() < size {
                    let idx = next as CiIdx;
                    next += 1;
                    let ci = topology.ci(idx);
                    let wanted = ci.present
                        && class.is_none_or(|class| proto::class_to_proto(ci.class) as i32 == class)
                        && (request.name_prefix.is_empty()
                            || ci.id.starts_with(&request.name_prefix)
                            || ci.name.starts_with(&request.name_prefix))
                        && request.attributes.iter().all(|(k, v)| {
                            ci.attributes.as_ref().is_some_and(|attributes| attributes.get(k) == Some(v))
                        });
                    if wanted {
                        cis.push(proto::record_to_proto(&topology.record(idx)));
                    }
                }
                v1::ListCisResponse {
                    cis,
                    next_page_token: if next < topology.slots() { format!("slot-{next}") } else { String::new() },
                    topology_version: topology.version(),
                }
            })
            .await?;
        Ok(Response::new(page))
    }

    async fn simulate_impact(
        &self,
        request: Request<v1::SimulateImpactRequest>,
    ) -> Result<Response<v1::SimulateImpactResponse>, Status> {
        let fail = request.into_inner().fail;
        if fail.is_empty() {
            return Err(Status::invalid_argument("`fail` is empty: name the CIs to fail"));
        }
        let answer = self.handle.call(move |ctx| what_if(ctx.correlator, &fail)).await??;
        Ok(Response::new(answer))
    }

    async fn get_topology_version(
        &self,
        _request: Request<v1::GetTopologyVersionRequest>,
    ) -> Result<Response<v1::TopologyVersion>, Status> {
        let version = self
            .handle
            .call(|ctx| {
                let topology = ctx.correlator.topology();
                let held = ctx.correlator.held();
                let held_list = held
                    .oldest()
                    .take(HELD_SHOWN)
                    .map(|(id, change)| v1::HeldTopologyChange {
                        ci_id: id.to_string(),
                        delete: matches!(change.change, CiChange::Delete(_)),
                        waits_for: change.waits_for.clone(),
                        reason: change.reason.clone(),
                        since: Some(proto::timestamp(change.since)),
                        source: change.source.clone(),
                    })
                    .collect();
                v1::TopologyVersion {
                    version: topology.version(),
                    cis: topology.len() as u64,
                    held_changes: held.len() as u64,
                    held: held_list,
                }
            })
            .await?;
        Ok(Response::new(version))
    }
}

/// Held feed changes `GetTopologyVersion` lists, the oldest.
const HELD_SHOWN: usize = 100;

/// CIs a `ListCis` page holds unless asked otherwise, and at most.
const DEFAULT_PAGE: usize = 1_000;
const MAX_PAGE: usize = 10_000;
/// Slots one `ListCis` call looks at, at most.
const SCAN_PER_PAGE: usize = 200_000;

fn lookup(topology: &Topology, id: &str) -> Result<CiIdx, Status> {
    topology.lookup(id).ok_or_else(|| Status::not_found(format!("CI `{id}` is not in the topology")))
}

fn ci_to_proto(topology: &Topology, idx: CiIdx) -> v1::ConfigurationItem {
    let ci = topology.ci(idx);
    v1::ConfigurationItem {
        id: ci.id.to_string(),
        class: proto::class_to_proto(ci.class) as i32,
        name: ci.name.to_string(),
        depends_on: topology.dependencies(idx).iter().map(|&d| topology.ci(d).id.to_string()).collect(),
        rule: Some(proto::rule_to_proto(ci.rule)),
        customer: ci.customer.map(|c| topology.ci(c).id.to_string()).unwrap_or_default(),
        sla_tier: proto::sla_to_proto(ci.sla) as i32,
        incidents: Some(ci.incidents),
        attributes: ci.attributes().map(|(k, v)| (k.clone(), v.clone())).collect(),
    }
}

/// `GetCi`'s answer: a CI's live state with each root cause explained hop by hop.
pub fn ci_status(correlator: &Correlator, id: &str) -> Result<v1::CiStatus, Status> {
    let topology = correlator.topology();
    let idx = lookup(topology, id)?;
    let impact = correlator.impact();
    let state = impact.state(idx);
    let root_causes = impact
        .explain(idx)
        .into_iter()
        .map(|explanation| {
            let hops: Vec<String> = explanation
                .path
                .windows(2)
                .map(|pair| {
                    let (upper, lower) = (topology.ci(pair[0]), topology.ci(pair[1]));
                    format!(
                        "{} is {} because it depends on {} ({}, rule {})",
                        upper.id,
                        impact.state(pair[0]).effective.as_str(),
                        lower.id,
                        impact.state(pair[1]).effective.as_str(),
                        upper.rule.describe()
                    )
                })
                .collect();
            let root = topology.ci(explanation.root);
            let mut text = hops.join("; ");
            if !text.is_empty() {
                text.push_str("; ");
            }
            text.push_str(&format!("{} is {} by its own alarms", root.id, impact.state(explanation.root).own.as_str()));
            v1::RootCause {
                ci_id: root.id.to_string(),
                path: explanation.path.iter().map(|&p| topology.ci(p).id.to_string()).collect(),
                alarms: impact.state(explanation.root).alarms.iter().map(proto::alarm_ref_to_proto).collect(),
                explanation: text,
            }
        })
        .collect();
    Ok(v1::CiStatus {
        ci: Some(ci_to_proto(topology, idx)),
        state: proto::state_to_proto(state.effective) as i32,
        own_state: proto::state_to_proto(state.own) as i32,
        root_causes,
        // Live from the alarm stage, so tallies include the latest repeats.
        active_alarms: correlator.alarms().active_alarms(id).iter().map(proto::alarm_ref_to_proto).collect(),
        topology_version: topology.version(),
        maintenance: super::maintenance::covering(correlator, idx),
        suppressed: correlator.is_suppressed(idx),
    })
}

/// `GetImpact`'s answer: the services and customers a resource currently takes down or
/// degrades.
pub fn impact_of(correlator: &Correlator, id: &str) -> Result<v1::GetImpactResponse, Status> {
    let topology = correlator.topology();
    let idx = lookup(topology, id)?;
    let impact = correlator.impact();
    let services = impact.impact_of(idx);
    let mut customers: BTreeMap<CiIdx, State> = BTreeMap::new();
    for &s in &services {
        if let Some(c) = topology.ci(s).customer {
            let worst = customers.entry(c).or_default();
            *worst = (*worst).max(impact.state(s).effective);
        }
    }
    Ok(v1::GetImpactResponse {
        resource: id.to_owned(),
        state: proto::state_to_proto(impact.state(idx).effective) as i32,
        services: services
            .iter()
            .map(|&s| {
                let ci = topology.ci(s);
                v1::ImpactedService {
                    service_id: ci.id.to_string(),
                    name: ci.name.to_string(),
                    impact: proto::state_to_proto(impact.state(s).effective) as i32,
                    customer_id: ci.customer.map(|c| topology.ci(c).id.to_string()).unwrap_or_default(),
                    in_maintenance: correlator.in_maintenance(s),
                }
            })
            .collect(),
        customers: customers.iter().map(|(&c, &state)| customer_to_proto(topology, c, state)).collect(),
        topology_version: topology.version(),
        maintenance: super::maintenance::covering(correlator, idx),
    })
}

/// `SimulateImpact`'s answer: what failing `fail` would do, on top of the live state.
pub fn what_if(correlator: &Correlator, fail: &[String]) -> Result<v1::SimulateImpactResponse, Status> {
    let topology = correlator.topology();
    let failed = fail.iter().map(|id| lookup(topology, id)).collect::<Result<Vec<CiIdx>, Status>>()?;
    let simulation = correlator.simulate(&failed);
    let service = |s: &crate::correlate::SimulatedService| {
        let ci = topology.ci(s.ci);
        v1::SimulatedService {
            service_id: ci.id.to_string(),
            name: ci.name.to_string(),
            now: proto::state_to_proto(s.now) as i32,
            would_be: proto::state_to_proto(s.would_be) as i32,
            customer_id: ci.customer.map(|c| topology.ci(c).id.to_string()).unwrap_or_default(),
            sla_tier: proto::sla_to_proto(ci.sla) as i32,
            incident_id: s.incident.map(|id| id.to_string()).unwrap_or_default(),
        }
    };
    let down = simulation.newly_impacted.iter().filter(|s| s.would_be == State::Down).count();
    let degraded = simulation.newly_impacted.len() - down;
    let tiers = |tier| {
        simulation.customers.iter().filter(|&&(c, state)| !state.is_up() && topology.ci(c).sla == Some(tier)).count()
    };
    let mut summary = format!(
        "this change would take down {down} service{} and degrade {degraded} more, of {} customer{}",
        if down == 1 { "" } else { "s" },
        simulation.customers.len(),
        if simulation.customers.len() == 1 { "" } else { "s" }
    );
    let (gold, silver) = (tiers(SlaTier::Gold), tiers(SlaTier::Silver));
    if gold + silver > 0 {
        summary.push_str(&format!(" ({gold} gold, {silver} silver)"));
    }
    if !simulation.worsened.is_empty() {
        summary.push_str(&format!("; {} service(s) already impacted would be worse", simulation.worsened.len()));
    }
    Ok(v1::SimulateImpactResponse {
        newly_impacted: simulation.newly_impacted.iter().map(service).collect(),
        worsened: simulation.worsened.iter().map(service).collect(),
        customers: simulation.customers.iter().map(|&(c, state)| customer_to_proto(topology, c, state)).collect(),
        worst_sla_tier: proto::sla_to_proto(simulation.worst_tier) as i32,
        new_incident_priority: simulation.new_incident_priority.map_or(0, |p| u32::from(p.0)),
        escalated_incidents: simulation.escalated.iter().map(|id| id.to_string()).collect(),
        summary,
        topology_version: topology.version(),
    })
}

/// A customer and the worst state of its services, as the topology answers list it.
fn customer_to_proto(topology: &Topology, customer: CiIdx, state: State) -> v1::ImpactedCustomer {
    let ci = topology.ci(customer);
    v1::ImpactedCustomer {
        customer_id: ci.id.to_string(),
        name: ci.name.to_string(),
        sla_tier: proto::sla_to_proto(ci.sla) as i32,
        impact: proto::state_to_proto(state) as i32,
    }
}
