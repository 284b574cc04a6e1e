//! Incident filters shared by `Subscribe` and `ListIncidents`.

use crate::model::incident::Incident;
use crate::proto::{self, v1};

#[derive(Clone, Debug, Default)]
pub struct IncidentFilter {
    pub states: Vec<i32>,
    pub priorities: Vec<i32>,
    pub service: String,
    pub customer: String,
}

impl IncidentFilter {
    pub fn matches(&self, incident: &Incident) -> bool {
        (self.states.is_empty() || self.states.contains(&(proto::incident_state_to_proto(incident.state) as i32)))
            && (self.priorities.is_empty() || self.priorities.contains(&i32::from(incident.priority.0)))
            && (self.service.is_empty() || incident.services.iter().any(|s| *s.id == *self.service))
            && (self.customer.is_empty() || incident.customers.iter().any(|c| *c.id == *self.customer))
    }
}

impl From<&v1::SubscribeIncidentsRequest> for IncidentFilter {
    fn from(r: &v1::SubscribeIncidentsRequest) -> Self {
        IncidentFilter {
            states: r.states.clone(),
            priorities: r.priorities.clone(),
            service: r.service.clone(),
            customer: r.customer.clone(),
        }
    }
}

impl From<&v1::ListIncidentsRequest> for IncidentFilter {
    fn from(r: &v1::ListIncidentsRequest) -> Self {
        IncidentFilter {
            states: r.states.clone(),
            priorities: r.priorities.clone(),
            service: r.service.clone(),
            customer: r.customer.clone(),
        }
    }
}
