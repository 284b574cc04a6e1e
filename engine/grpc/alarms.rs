//! `faultline.v1.AlarmService`: an element manager's alarm list sent by an operator or a
//! mediation system, applied like one arriving on an input topic.

use crate::clock::wall_clock;
use crate::decode;
use crate::model::EpochMillis;
use crate::proto::v1;
use crate::runtime::EngineHandle;
use tonic::{Request, Response, Status};

pub struct AlarmApi {
    handle: EngineHandle,
}

impl AlarmApi {
    pub fn new(handle: EngineHandle) -> AlarmApi {
        AlarmApi { handle }
    }
}

#[tonic::async_trait]
impl super::server::alarm_service_server::AlarmService for AlarmApi {
    async fn resync(&self, request: Request<v1::AlarmResync>) -> Result<Response<v1::AlarmResyncResult>, Status> {
        let mut listed = Vec::new();
        let resync = decode::alarm_list(request.into_inner(), wall_clock(), &mut listed)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let outcome = self
            .handle
            .call(move |ctx| {
                let mut changes = Vec::new();
                // Applied at stream time, which a call must not move (a backlog may be
                // catching up behind it); the wall clock only before any input.
                let now = match ctx.correlator.clock() {
                    EpochMillis::MIN => ctx.now,
                    clock => clock,
                };
                let outcome = ctx.correlator.resync(&resync, &listed, now, &mut changes);
                for change in &changes {
                    ctx.publish(change);
                }
                outcome
            })
            .await?;
        Ok(Response::new(v1::AlarmResyncResult { listed: outcome.listed, cleared: outcome.cleared }))
    }
}
