//! `faultline.v1.TopologyService`: a CI's live state with its root causes explained hop by
//! hop, and the services and customers a resource currently takes down or degrades.

use super::status::required;
use crate::correlate::Correlator;
use crate::model::state::State;
use crate::model::topology::{CiIdx, Topology};
use crate::proto::{self, v1};
use crate::runtime::EngineHandle;
use std::collections::BTreeMap;
use tonic::{Request, Response, Status};

pub struct TopologyApi {
    handle: EngineHandle,
}

impl TopologyApi {
    pub fn new(handle: EngineHandle) -> TopologyApi {
        TopologyApi { handle }
    }
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
}

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
        incidents: ci.incidents,
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
                }
            })
            .collect(),
        customers: customers
            .iter()
            .map(|(&c, &state)| {
                let ci = topology.ci(c);
                v1::ImpactedCustomer {
                    customer_id: ci.id.to_string(),
                    name: ci.name.to_string(),
                    sla_tier: proto::sla_to_proto(ci.sla) as i32,
                    impact: proto::state_to_proto(state) as i32,
                }
            })
            .collect(),
    })
}
