//! `faultline topology`: the live topology of a running engine over gRPC. `apply` puts a
//! topology file's CIs to it as one batch, after showing what differs from what it has;
//! `get` shows one CI with its state and what explains it.

use crate::model::topology::CiRecord;
use crate::proto::{self, v1};
use crate::topology_file;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use v1::topology_service_client::TopologyServiceClient;

#[derive(Debug, thiserror::Error)]
pub enum TopologyCliError {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: tonic::transport::Error },
    #[error("{0}")]
    File(#[from] topology_file::TopologyFileError),
    #[error("the engine refused: {}", .0.message())]
    Status(#[from] tonic::Status),
}

async fn connect(addr: &str) -> Result<TopologyServiceClient<tonic::transport::Channel>, TopologyCliError> {
    let client = TopologyServiceClient::connect(addr.to_owned())
        .await
        .map_err(|source| TopologyCliError::Connect { addr: addr.to_owned(), source })?;
    // A whole topology's worth of CIs comes back in pages well past the 4 MiB default.
    Ok(client.max_decoding_message_size(64 * 1024 * 1024))
}

/// Every CI the engine has, as records, by id; and the topology version.
async fn live(
    client: &mut TopologyServiceClient<tonic::transport::Channel>,
) -> Result<(BTreeMap<String, CiRecord>, u64), TopologyCliError> {
    let mut cis = BTreeMap::new();
    let mut token = String::new();
    loop {
        let request = v1::ListCisRequest { page_token: token, page_size: 10_000, ..Default::default() };
        let page = client.list_cis(request).await?.into_inner();
        let version = page.topology_version;
        for ci in page.cis {
            if let Ok(record) = proto::record_from_proto(ci) {
                cis.insert(record.id.clone(), record);
            }
        }
        if page.next_page_token.is_empty() {
            return Ok((cis, version));
        }
        token = page.next_page_token;
    }
}

/// What a file changes in the live topology: CIs added, changed (with the fields that
/// differ), and, with `prune`, deleted (live CIs the file does not have).
#[derive(Debug, Default, PartialEq)]
pub struct Diff {
    pub added: Vec<CiRecord>,
    pub changed: Vec<(CiRecord, Vec<&'static str>)>,
    pub deleted: Vec<String>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.deleted.is_empty()
    }
}

/// The fields of two records of one CI that differ.
fn differing(a: &CiRecord, b: &CiRecord) -> Vec<&'static str> {
    let mut fields = Vec::new();
    let name = |r: &CiRecord| if r.name.is_empty() { r.id.clone() } else { r.name.clone() };
    let incidents = |r: &CiRecord| r.incidents.unwrap_or(r.class == crate::model::topology::CiClass::Cfs);
    let deps = |r: &CiRecord| {
        let mut deps = r.depends_on.clone();
        deps.sort();
        deps.dedup();
        deps
    };
    for (field, same) in [
        ("class", a.class == b.class),
        ("name", name(a) == name(b)),
        ("depends_on", deps(a) == deps(b)),
        ("rule", a.rule == b.rule),
        ("customer", a.customer == b.customer),
        ("sla", a.sla == b.sla),
        ("incidents", incidents(a) == incidents(b)),
        ("attributes", a.attributes == b.attributes),
    ] {
        if !same {
            fields.push(field);
        }
    }
    fields
}

/// What `file` changes in `live`.
pub fn diff(live: &BTreeMap<String, CiRecord>, file: &[CiRecord], prune: bool) -> Diff {
    let mut diff = Diff::default();
    for record in file {
        match live.get(&record.id) {
            None => diff.added.push(record.clone()),
            Some(current) => {
                let fields = differing(current, record);
                if !fields.is_empty() {
                    diff.changed.push((record.clone(), fields));
                }
            }
        }
    }
    if prune {
        let wanted: std::collections::BTreeSet<&str> = file.iter().map(|r| r.id.as_str()).collect();
        diff.deleted = live.keys().filter(|id| !wanted.contains(id.as_str())).cloned().collect();
    }
    diff
}

/// `faultline topology apply FILE`: shows what the file changes, then (unless `dry_run`)
/// applies it as one batch and says what the engine did.
pub async fn apply<W: Write>(
    addr: &str,
    file: &Path,
    prune: bool,
    dry_run: bool,
    mut out: W,
) -> Result<(), TopologyCliError> {
    let records = topology_file::read(file)?;
    let mut client = connect(addr).await?;
    let (live, version) = live(&mut client).await?;
    let diff = diff(&live, &records, prune);
    for record in &diff.added {
        let _ = writeln!(out, "+ {} ({})", record.id, class_name(record));
    }
    for (record, fields) in &diff.changed {
        let _ = writeln!(out, "~ {} ({})", record.id, fields.join(", "));
    }
    for id in &diff.deleted {
        let _ = writeln!(out, "- {id}");
    }
    let counts =
        format!("{} to add, {} to change, {} to delete", diff.added.len(), diff.changed.len(), diff.deleted.len());
    if diff.is_empty() {
        let _ = writeln!(out, "nothing to change (topology version {version})");
        return Ok(());
    }
    if dry_run {
        let _ = writeln!(out, "{counts}; not applied (--dry-run), topology version {version}");
        return Ok(());
    }
    let upserts = diff.added.iter().chain(diff.changed.iter().map(|(r, _)| r));
    let mut changes: Vec<v1::CiChange> = upserts
        .map(|r| v1::CiChange { change: Some(v1::ci_change::Change::Upsert(proto::record_to_proto(r))) })
        .collect();
    changes
        .extend(diff.deleted.iter().map(|id| v1::CiChange { change: Some(v1::ci_change::Change::Delete(id.clone())) }));
    let applied = client.apply_topology_changes(v1::ApplyTopologyChangesRequest { changes }).await?.into_inner();
    let _ = writeln!(
        out,
        "applied: {} added, {} changed, {} deleted; topology version {}",
        applied.added.len(),
        applied.changed.len(),
        applied.deleted.len(),
        applied.version
    );
    Ok(())
}

fn class_name(record: &CiRecord) -> String {
    serde_json::to_value(record.class).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

pub(crate) fn state(state: i32) -> &'static str {
    match v1::ServiceState::try_from(state) {
        Ok(v1::ServiceState::Down) => "down",
        Ok(v1::ServiceState::Degraded) => "degraded",
        _ => "up",
    }
}

/// `faultline topology get CI`: the CI, its state, and each root cause with its path.
pub async fn get<W: Write>(addr: &str, id: &str, mut out: W) -> Result<(), TopologyCliError> {
    let mut client = connect(addr).await?;
    let status = client.get_ci(v1::GetCiRequest { id: id.to_owned() }).await?.into_inner();
    let ci = status.ci.unwrap_or_default();
    let record = proto::record_from_proto(ci.clone()).ok();
    let _ = writeln!(out, "{}  {}", ci.id, ci.name);
    if let Some(record) = &record {
        let _ = writeln!(out, "  class        {}", class_name(record));
        let _ = writeln!(out, "  rule         {}", record.rule.describe());
        if let Some(customer) = &record.customer {
            let _ = writeln!(out, "  customer     {customer}");
        }
        if let Some(sla) = record.sla {
            let _ = writeln!(out, "  sla          {}", format!("{sla:?}").to_lowercase());
        }
    }
    let _ = writeln!(
        out,
        "  depends on   {}",
        if ci.depends_on.is_empty() { "-".into() } else { ci.depends_on.join(", ") }
    );
    for (key, value) in &ci.attributes {
        let _ = writeln!(out, "  {key:<12} {value}");
    }
    let _ = writeln!(out, "  state        {} (own alarms: {})", state(status.state), state(status.own_state));
    for alarm in &status.active_alarms {
        let severity = v1::Severity::try_from(alarm.severity).map(|s| s.as_str_name()).unwrap_or("?");
        let _ = writeln!(
            out,
            "  alarm        {} {} x{}",
            alarm.alarm_type,
            severity.trim_start_matches("SEVERITY_"),
            alarm.tally
        );
    }
    for root in &status.root_causes {
        let _ = writeln!(out, "  root cause   {}: {}", root.ci_id, root.explanation);
    }
    let _ = writeln!(out, "  topology version {}", status.topology_version);
    Ok(())
}

/// `faultline what-if CI…`: what failing those CIs would do, on top of the live state.
pub async fn what_if<W: Write>(addr: &str, cis: Vec<String>, mut out: W) -> Result<(), TopologyCliError> {
    let mut client = connect(addr).await?;
    let answer = client.simulate_impact(v1::SimulateImpactRequest { fail: cis }).await?.into_inner();
    print_simulation(&answer, &mut out);
    Ok(())
}

/// A simulation's answer, a line a service: its summary first.
pub(crate) fn print_simulation(answer: &v1::SimulateImpactResponse, out: &mut impl Write) {
    let _ = writeln!(out, "{}", answer.summary);
    let tier = |t: i32| match v1::SlaTier::try_from(t) {
        Ok(v1::SlaTier::Gold) => "gold",
        Ok(v1::SlaTier::Silver) => "silver",
        Ok(v1::SlaTier::Bronze) => "bronze",
        _ => "-",
    };
    for (label, services) in [("new", &answer.newly_impacted), ("worse", &answer.worsened)] {
        for s in services {
            let under = if s.incident_id.is_empty() { String::new() } else { format!(" (under {})", s.incident_id) };
            let _ = writeln!(
                out,
                "  {label:<6} {:<9} {:<28} {:<16} {}{under}",
                state(s.would_be),
                s.service_id,
                s.customer_id,
                tier(s.sla_tier)
            );
        }
    }
    if answer.new_incident_priority > 0 {
        let _ = writeln!(out, "  would open an incident of priority P{}", answer.new_incident_priority);
    }
    if !answer.escalated_incidents.is_empty() {
        let _ = writeln!(out, "  would worsen {}", answer.escalated_incidents.join(", "));
    }
    let _ = writeln!(out, "  topology version {}", answer.topology_version);
}
