//! `faultline maintenance`: maintenance windows of a running engine over gRPC. `create`
//! answers with what the works would take down; `list`, `get`, `extend`, `end`, `cancel`;
//! `suppressed` lists the impacts active windows keep from opening incidents.

use super::topology::{TopologyCliError, print_simulation, state};
use crate::clock::wall_clock;
use crate::model::EpochMillis;
use crate::proto::{self, v1};
use std::io::Write;
use v1::maintenance_service_client::MaintenanceServiceClient;

type Client = MaintenanceServiceClient<tonic::transport::Channel>;

async fn connect(addr: &str) -> Result<Client, TopologyCliError> {
    MaintenanceServiceClient::connect(addr.to_owned())
        .await
        .map_err(|source| TopologyCliError::Connect { addr: addr.to_owned(), source })
}

/// A time as the command line gives it: `now`, `+90m` (from now; humantime units), or an
/// RFC 3339 time.
pub fn parse_time(text: &str) -> Result<EpochMillis, String> {
    if text == "now" {
        return Ok(wall_clock());
    }
    if let Some(after) = text.strip_prefix('+') {
        let duration = humantime::parse_duration(after).map_err(|e| format!("`{text}`: {e}"))?;
        return Ok(wall_clock() + duration.as_millis() as EpochMillis);
    }
    crate::decode::parse_rfc3339(text).ok_or_else(|| format!("`{text}` is not `now`, `+DURATION` or an RFC 3339 time"))
}

fn time(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref().map_or_else(
        || "-".to_owned(),
        |t| {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(proto::millis(t).max(0) as u64);
            humantime::format_rfc3339_seconds(at).to_string()
        },
    )
}

fn window_state(state: i32) -> &'static str {
    match v1::MaintenanceState::try_from(state) {
        Ok(v1::MaintenanceState::Scheduled) => "scheduled",
        Ok(v1::MaintenanceState::Active) => "active",
        Ok(v1::MaintenanceState::Ended) => "ended",
        Ok(v1::MaintenanceState::Cancelled) => "cancelled",
        _ => "-",
    }
}

fn print_window(window: &v1::MaintenanceWindow, out: &mut impl Write) {
    let scope = if window.scope == v1::MaintenanceScope::Dependents as i32 { " and what depends on them" } else { "" };
    let _ = writeln!(
        out,
        "{} {:<9} {} -> {}  {}{scope}",
        window.change,
        window_state(window.state),
        time(&window.start_time),
        time(&window.end_time),
        window.ci_ids.join(", ")
    );
    if !window.reason.is_empty() {
        let _ = writeln!(out, "  reason: {}", window.reason);
    }
    let by = if window.finished_by.is_empty() { String::new() } else { format!(" by {}", window.finished_by) };
    if window.finished_time.is_some() {
        let _ = writeln!(out, "  {} at {}{by}", window_state(window.state), time(&window.finished_time));
    }
}

/// What `faultline maintenance create` asks for.
pub struct Create {
    pub change: String,
    pub cis: Vec<String>,
    pub dependents: bool,
    pub start: EpochMillis,
    pub end: EpochMillis,
    pub reason: String,
    pub by: String,
}

pub async fn create<W: Write>(addr: &str, asked: Create, mut out: W) -> Result<(), TopologyCliError> {
    let mut client = connect(addr).await?;
    let scope = if asked.dependents { v1::MaintenanceScope::Dependents } else { v1::MaintenanceScope::Ci };
    let window = v1::MaintenanceWindow {
        change: asked.change,
        reason: asked.reason,
        ci_ids: asked.cis,
        scope: scope as i32,
        start_time: Some(proto::timestamp(asked.start)),
        end_time: Some(proto::timestamp(asked.end)),
        created_by: asked.by,
        ..Default::default()
    };
    let answer = client
        .create_maintenance_window(v1::CreateMaintenanceWindowRequest { window: Some(window) })
        .await?
        .into_inner();
    if let Some(window) = &answer.window {
        print_window(window, &mut out);
    }
    if let Some(assessment) = &answer.assessment {
        print_simulation(assessment, &mut out);
    }
    Ok(())
}

pub async fn list<W: Write>(addr: &str, mut out: W) -> Result<(), TopologyCliError> {
    let mut client = connect(addr).await?;
    let list = client.list_maintenance_windows(v1::ListMaintenanceWindowsRequest::default()).await?.into_inner();
    if list.windows.is_empty() {
        let _ = writeln!(out, "no maintenance window");
    }
    for window in &list.windows {
        print_window(window, &mut out);
    }
    Ok(())
}

pub async fn get<W: Write>(addr: &str, change: &str, mut out: W) -> Result<(), TopologyCliError> {
    let mut client = connect(addr).await?;
    let request = v1::GetMaintenanceWindowRequest { change: change.to_owned() };
    print_window(&client.get_maintenance_window(request).await?.into_inner(), &mut out);
    Ok(())
}

pub async fn extend<W: Write>(
    addr: &str,
    change: &str,
    end: EpochMillis,
    by: &str,
    mut out: W,
) -> Result<(), TopologyCliError> {
    let mut client = connect(addr).await?;
    let request = v1::ExtendMaintenanceWindowRequest {
        change: change.to_owned(),
        end_time: Some(proto::timestamp(end)),
        by: by.to_owned(),
    };
    print_window(&client.extend_maintenance_window(request).await?.into_inner(), &mut out);
    Ok(())
}

/// Ends a window now, or cancels it (`cancel`).
pub async fn finish<W: Write>(
    addr: &str,
    change: &str,
    by: &str,
    cancel: bool,
    mut out: W,
) -> Result<(), TopologyCliError> {
    let mut client = connect(addr).await?;
    let (change, by) = (change.to_owned(), by.to_owned());
    let window = if cancel {
        client.cancel_maintenance_window(v1::CancelMaintenanceWindowRequest { change, by }).await?
    } else {
        client.end_maintenance_window(v1::EndMaintenanceWindowRequest { change, by }).await?
    };
    print_window(&window.into_inner(), &mut out);
    Ok(())
}

pub async fn suppressed<W: Write>(addr: &str, mut out: W) -> Result<(), TopologyCliError> {
    let mut client = connect(addr).await?;
    let list = client.list_suppressed_impacts(v1::ListSuppressedImpactsRequest {}).await?.into_inner();
    if list.impacts.is_empty() {
        let _ = writeln!(out, "no impact in maintenance");
    }
    for impact in &list.impacts {
        let _ = writeln!(
            out,
            "{:<9} {:<28} {:<16} root causes {} in {}",
            state(impact.state),
            impact.service_id,
            impact.customer_id,
            impact.root_causes.join(", "),
            impact.changes.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_now_relative_or_rfc3339() {
        let before = wall_clock();
        let later = parse_time("+90m").unwrap();
        assert!(later >= before + 90 * 60_000 && later < before + 91 * 60_000);
        assert_eq!(parse_time("2026-11-26T22:00:00Z").unwrap(), 1_795_730_400_000);
        assert!(parse_time("tomorrow").unwrap_err().contains("tomorrow"));
        assert!(parse_time("now").unwrap() >= before);
    }
}
