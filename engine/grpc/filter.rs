//! Incident filters shared by `Subscribe` and `ListIncidents`.

use crate::proto::v1;

#[derive(Clone, Debug, Default)]
pub struct IncidentFilter {
    pub states: Vec<i32>,
    pub priorities: Vec<i32>,
    pub service: String,
    pub customer: String,
}

impl IncidentFilter {
    pub fn matches(&self, incident: &v1::Incident) -> bool {
        (self.states.is_empty() || self.states.contains(&incident.state))
            && (self.priorities.is_empty() || self.priorities.contains(&incident.priority))
            && (self.service.is_empty() || incident.impacted_services.iter().any(|s| s.service_id == self.service))
            && (self.customer.is_empty() || incident.impacted_customers.iter().any(|c| c.customer_id == self.customer))
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
