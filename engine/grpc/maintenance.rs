//! `faultline.v1.MaintenanceService`: maintenance windows created, listed, extended, ended
//! and cancelled by operators, and the impacts active windows suppress. A created window is
//! answered with the change assessment (what failing its CIs would do now), and every
//! change of a window is committed before its answer goes out.

use super::status::{MAX_NAME_BYTES, required};
use crate::correlate::Correlator;
use crate::correlate::maintenance::{MaintenanceError, WindowState};
use crate::proto::{self, v1};
use crate::runtime::EngineHandle;
use tonic::{Request, Response, Status};

pub struct MaintenanceApi {
    handle: EngineHandle,
}

impl MaintenanceApi {
    pub fn new(handle: EngineHandle) -> MaintenanceApi {
        MaintenanceApi { handle }
    }
}

impl From<MaintenanceError> for Status {
    fn from(error: MaintenanceError) -> Status {
        match error {
            MaintenanceError::Invalid(_) => Status::invalid_argument(error.to_string()),
            MaintenanceError::NotFound(_) => Status::not_found(error.to_string()),
            MaintenanceError::Exists(..) => Status::already_exists(error.to_string()),
            MaintenanceError::State(..) => Status::failed_precondition(error.to_string()),
        }
    }
}

fn window(correlator: &Correlator, change: &str) -> Result<v1::MaintenanceWindow, Status> {
    let window = correlator.maintenance().get(change).ok_or_else(|| MaintenanceError::NotFound(change.to_owned()))?;
    Ok(proto::window_to_proto(window))
}

fn name(field: &str, value: &str) -> Result<String, Status> {
    if value.len() > MAX_NAME_BYTES {
        return Err(Status::invalid_argument(format!("`{field}` is longer than {MAX_NAME_BYTES} bytes")));
    }
    Ok(value.to_owned())
}

#[tonic::async_trait]
impl super::server::maintenance_service_server::MaintenanceService for MaintenanceApi {
    async fn create_maintenance_window(
        &self,
        request: Request<v1::CreateMaintenanceWindowRequest>,
    ) -> Result<Response<v1::CreateMaintenanceWindowResponse>, Status> {
        let asked = request.into_inner().window.ok_or_else(|| Status::invalid_argument("`window` is required"))?;
        let spec = proto::window_spec_from_proto(&asked).map_err(Status::invalid_argument)?;
        name("created_by", &spec.by)?;
        let answer = self
            .handle
            .call(move |ctx| {
                let change = spec.change.clone();
                let cis = spec.cis.clone();
                let mut out = Vec::new();
                let created = ctx.correlator.create_window(spec, false, ctx.now, &mut out);
                ctx.publish_all(&out);
                created?;
                // What the works would take down, on the live state: the change assessment.
                let assessment = super::what_if(ctx.correlator, &cis)?;
                Ok::<_, Status>(v1::CreateMaintenanceWindowResponse {
                    window: Some(window(ctx.correlator, &change)?),
                    assessment: Some(assessment),
                })
            })
            .await??;
        Ok(Response::new(answer))
    }

    async fn list_maintenance_windows(
        &self,
        request: Request<v1::ListMaintenanceWindowsRequest>,
    ) -> Result<Response<v1::ListMaintenanceWindowsResponse>, Status> {
        let states = request.into_inner().states;
        let windows = self
            .handle
            .call(move |ctx| {
                let windows = ctx
                    .correlator
                    .maintenance()
                    .iter()
                    .map(proto::window_to_proto)
                    .filter(|w| states.is_empty() || states.contains(&w.state))
                    .collect();
                v1::ListMaintenanceWindowsResponse { windows }
            })
            .await?;
        Ok(Response::new(windows))
    }

    async fn get_maintenance_window(
        &self,
        request: Request<v1::GetMaintenanceWindowRequest>,
    ) -> Result<Response<v1::MaintenanceWindow>, Status> {
        let change = required("change", &request.get_ref().change)?.to_owned();
        let window = self.handle.call(move |ctx| window(ctx.correlator, &change)).await??;
        Ok(Response::new(window))
    }

    async fn extend_maintenance_window(
        &self,
        request: Request<v1::ExtendMaintenanceWindowRequest>,
    ) -> Result<Response<v1::MaintenanceWindow>, Status> {
        let request = request.into_inner();
        let change = required("change", &request.change)?.to_owned();
        let end = request
            .end_time
            .as_ref()
            .map(proto::millis)
            .ok_or_else(|| Status::invalid_argument("`end_time` is required"))?;
        let window = self
            .handle
            .call(move |ctx| {
                let mut out = Vec::new();
                let extended = ctx.correlator.extend_window(&change, end, ctx.now, &mut out);
                ctx.publish_all(&out);
                extended?;
                window(ctx.correlator, &change)
            })
            .await??;
        Ok(Response::new(window))
    }

    async fn end_maintenance_window(
        &self,
        request: Request<v1::EndMaintenanceWindowRequest>,
    ) -> Result<Response<v1::MaintenanceWindow>, Status> {
        let request = request.into_inner();
        self.finish(request.change, request.by, false).await
    }

    async fn cancel_maintenance_window(
        &self,
        request: Request<v1::CancelMaintenanceWindowRequest>,
    ) -> Result<Response<v1::MaintenanceWindow>, Status> {
        let request = request.into_inner();
        self.finish(request.change, request.by, true).await
    }

    async fn list_suppressed_impacts(
        &self,
        _request: Request<v1::ListSuppressedImpactsRequest>,
    ) -> Result<Response<v1::ListSuppressedImpactsResponse>, Status> {
        let impacts = self
            .handle
            .call(|ctx| {
                let correlator = &*ctx.correlator;
                let topology = correlator.topology();
                let impact = correlator.impact();
                let maintenance = correlator.maintenance();
                let impacts = correlator
                    .suppressed()
                    .map(|service| {
                        let ci = topology.ci(service);
                        let roots = impact.roots(service);
                        let mut changes: Vec<String> =
                            roots.iter().flat_map(|r| maintenance.covering(r)).map(|c| c.to_string()).collect();
                        changes.sort();
                        changes.dedup();
                        v1::SuppressedImpact {
                            service_id: ci.id.to_string(),
                            name: ci.name.to_string(),
                            state: proto::state_to_proto(impact.state(service).effective) as i32,
                            customer_id: ci.customer.map(|c| topology.ci(c).id.to_string()).unwrap_or_default(),
                            root_causes: roots.iter().map(|r| topology.ci(r).id.to_string()).collect(),
                            changes,
                        }
                    })
                    .collect();
                v1::ListSuppressedImpactsResponse { impacts }
            })
            .await?;
        Ok(Response::new(impacts))
    }
}

impl MaintenanceApi {
    async fn finish(
        &self,
        change: String,
        by: String,
        cancel: bool,
    ) -> Result<Response<v1::MaintenanceWindow>, Status> {
        required("change", &change)?;
        let by = name("by", &by)?;
        let window = self
            .handle
            .call(move |ctx| {
                let mut out = Vec::new();
                let finished = ctx.correlator.finish_window(&change, cancel, &by, ctx.now, &mut out);
                ctx.publish_all(&out);
                finished?;
                window(ctx.correlator, &change)
            })
            .await??;
        Ok(Response::new(window))
    }
}

/// The windows covering a CI that are active, for its status.
pub fn covering(correlator: &Correlator, ci: crate::model::topology::CiIdx) -> Vec<String> {
    let maintenance = correlator.maintenance();
    maintenance
        .covering(ci)
        .iter()
        .filter(|c| maintenance.get(c).is_some_and(|w| w.state == WindowState::Active))
        .map(|c| c.to_string())
        .collect()
}
