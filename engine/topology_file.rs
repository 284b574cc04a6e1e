//! The topology file: JSON Lines, one CI record per line (the same record the topology
//! topic carries). Blank lines and lines starting with `#` are skipped, so a hand-written
//! network can carry comments. Errors name the line.

use crate::model::topology::{CiRecord, Topology, TopologyError};
use std::io::BufRead;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum TopologyFileError {
    #[error("cannot read topology file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("topology file {path}, line {line}: {source}")]
    Record { path: String, line: usize, source: serde_json::Error },
    #[error("topology file {path}: {source}")]
    Invalid { path: String, source: TopologyError },
}

/// Reads and validates a topology file.
pub fn load(path: &Path) -> Result<Topology, TopologyFileError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| TopologyFileError::Io { path: name.clone(), source })?;
    let records = read_records(std::io::BufReader::with_capacity(1 << 20, file), &name)?;
    Topology::from_records(records).map_err(|source| TopologyFileError::Invalid { path: name, source })
}

/// Parses topology text already in memory (e.g. the sample network built into the binary).
pub fn parse(text: &str, name: &str) -> Result<Topology, TopologyFileError> {
    let records = read_records(text.as_bytes(), name)?;
    Topology::from_records(records).map_err(|source| TopologyFileError::Invalid { path: name.to_owned(), source })
}

/// Reads a file's CI records without validating them as a whole topology (a batch of
/// changes to a live one need not be one).
pub fn read(path: &Path) -> Result<Vec<CiRecord>, TopologyFileError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| TopologyFileError::Io { path: name.clone(), source })?;
    read_records(std::io::BufReader::new(file), &name)
}

fn read_records(reader: impl BufRead, name: &str) -> Result<Vec<CiRecord>, TopologyFileError> {
    let mut records = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|source| TopologyFileError::Io { path: name.to_owned(), source })?;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let record = serde_json::from_str(trimmed).map_err(|source| TopologyFileError::Record {
            path: name.to_owned(),
            line: i + 1,
            source,
        })?;
        records.push(record);
    }
    Ok(records)
}
