//! Configuration: embedded defaults (`config/default.toml`) < a file < `FAULTLINE__`
//! environment variables < command-line flags. Typed, unknown keys rejected, cross-field
//! checks at load; every error names its key, and all of it happens before any port is bound.

use crate::correlate::alarm_stage::{AlarmPolicy, MaxAges};
use crate::correlate::incidents::IncidentPolicy;
use crate::correlate::priority::PriorityPolicy;
use crate::correlate::{CorrelatorConfig, FeedPolicy};
use crate::model::EpochMillis;
use crate::model::state::Effect;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub grpc: GrpcConfig,
    pub metrics: MetricsConfig,
    pub topology: TopologyConfig,
    pub correlation: CorrelationConfig,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlarmFormat {
    Protobuf,
    Json,
    /// ONAP VES 7.x fault and 3GPP stndDefined events, single or `eventList` batches.
    Ves,
}

/// Encoding of the incident snapshots on the incidents topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IncidentFormat {
    /// `faultline.v1.Incident`.
    Protobuf,
    /// The same fields as JSON, for tools such as kcat.
    Json,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputTopic {
    #[serde(deserialize_with = "text")]
    pub topic: String,
    pub format: AlarmFormat,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    #[serde(deserialize_with = "text")]
    pub brokers: String,
    #[serde(deserialize_with = "text")]
    pub group_id: String,
    pub inputs: Vec<InputTopic>,
    #[serde(deserialize_with = "text")]
    pub incidents_topic: String,
    pub incidents_format: IncidentFormat,
    #[serde(deserialize_with = "text")]
    pub dead_letter_topic: String,
    /// The compacted state changelog, written in each transaction and read back at start.
    #[serde(deserialize_with = "text")]
    pub state_topic: String,
    /// The CMDB's compacted topic of CI records (key: CI id; a tombstone deletes); empty:
    /// none, the topology file is the whole topology.
    #[serde(deserialize_with = "text")]
    pub topology_topic: String,
    /// Maintenance windows from change management (key: change reference; a tombstone
    /// cancels); empty: none, windows come over gRPC alone.
    #[serde(deserialize_with = "text")]
    pub changes_topic: String,
    /// Unique per running instance: names its transactional producer and its static group
    /// membership, so a restarted instance fences its predecessor and takes over at once.
    #[serde(deserialize_with = "text")]
    pub instance_id: String,
    /// How long a transaction gathers batches before it commits.
    pub commit_interval_ms: u64,
    /// How long the start may take to read the state changelog back.
    pub restore_timeout_secs: u64,
    pub max_message_bytes: usize,
    /// The largest record the engine writes (dead letters, incident snapshots, changelog
    /// records): the transactional producer's `message.max.bytes` follows it, and the
    /// topics it writes must take it.
    pub max_record_bytes: usize,
    /// Event times further ahead of their Kafka record's timestamp are clamped to it.
    pub max_event_time_ahead_secs: u64,
    pub partitions: i32,
    pub max_batch: usize,
    #[serde(default, deserialize_with = "text_map")]
    pub properties: BTreeMap<String, String>,
}

/// Below this, an incident snapshot trimmed to its summary might not fit.
const MIN_RECORD_BYTES: usize = 65_536;

/// What librdkafka counts beyond key, value and headers when it checks a record's size.
const RECORD_FRAMING: usize = 1024;

impl KafkaConfig {
    pub fn embedded(&self) -> bool {
        self.brokers.trim().is_empty()
    }

    /// The changes topic, if one is configured.
    pub fn changes_topic(&self) -> Option<&str> {
        Some(self.changes_topic.trim()).filter(|t| !t.is_empty())
    }

    /// The topology feed's topic, if one is configured.
    pub fn topology_topic(&self) -> Option<&str> {
        Some(self.topology_topic.trim()).filter(|t| !t.is_empty())
    }

    /// The transactional producer's `message.max.bytes`: the largest record plus framing.
    pub fn producer_message_max_bytes(&self) -> usize {
        self.max_record_bytes + RECORD_FRAMING
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcConfig {
    pub addr: SocketAddr,
    pub subscriber_buffer: usize,
    /// Live-stream subscribers served at once; one more is refused with RESOURCE_EXHAUSTED.
    pub max_subscribers: usize,
    /// Closed incidents kept in the history's index (the most recently closed).
    pub history_max_incidents: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    pub addr: SocketAddr,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologyConfig {
    pub file: PathBuf,
    /// Topology feed changes held at most while they wait for another CI's change.
    pub max_held: usize,
    /// How long (stream time) a feed change is held at most.
    pub max_held_secs: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorrelationConfig {
    pub hold_down_secs: u64,
    pub reopen_window_secs: u64,
    pub tick_millis: u64,
    pub idle_clock_millis: u64,
    /// Stream time never runs further ahead of the wall clock than this, whatever a
    /// record's timestamp says.
    pub max_clock_skew_millis: u64,
    /// How long (stream time) a clear is remembered, so that an older raise arriving after
    /// it (a clear before its raise, a resent raise) does not stay active.
    pub clear_memory_secs: u64,
    /// Resources the topology does not know that may hold active alarms; a raise on one
    /// more is dropped and counted.
    pub max_unmapped_resources: usize,
    pub timeline_limit: usize,
    /// Notes an incident takes; one more is refused.
    pub max_notes: usize,
    /// Root causes an incident names; the others are counted.
    pub incident_max_roots: usize,
    /// Entries each of an incident's alarm lists holds; the others are counted.
    pub incident_max_alarms: usize,
    #[serde(default)]
    pub alarm_effects: BTreeMap<String, Effect>,
    /// Per source system (`*`: any other), seconds an active alarm may go unrepeated before
    /// it is cleared. Empty: no ageing.
    #[serde(default)]
    pub alarm_max_age_secs: BTreeMap<String, u64>,
    pub priority: PriorityPolicy,
}

/// Values given on the command line; `None` keeps the layered value.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub brokers: Option<String>,
    pub topology: Option<PathBuf>,
    pub grpc_addr: Option<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    pub alarm_format: Option<AlarmFormat>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Layer(Box<figment::Error>),
    #[error("configuration key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
}

impl From<Box<figment::Error>> for ConfigError {
    fn from(error: Box<figment::Error>) -> Self {
        ConfigError::Layer(error)
    }
}

impl Config {
    /// Loads and checks the layered configuration.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::MissingFile(file.to_owned()));
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment.merge(environment());
        let mut config: Config = figment.extract().map_err(Box::new)?;
        config.apply(overrides);
        config.validate()?;
        Ok(config)
    }

    /// The embedded defaults alone, with overrides (for tests and the demo).
    pub fn defaults(overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut config: Config = Figment::from(Toml::string(DEFAULT_TOML)).extract().map_err(Box::new)?;
        config.apply(overrides);
        config.validate()?;
        Ok(config)
    }

    fn apply(&mut self, overrides: &Overrides) {
        if let Some(brokers) = &overrides.brokers {
            self.kafka.brokers.clone_from(brokers);
        }
        if let Some(topology) = &overrides.topology {
            self.topology.file.clone_from(topology);
        }
        if let Some(addr) = overrides.grpc_addr {
            self.grpc.addr = addr;
        }
        if let Some(addr) = overrides.metrics_addr {
            self.metrics.addr = addr;
        }
        if let Some(format) = overrides.alarm_format {
            for input in &mut self.kafka.inputs {
                input.format = format;
            }
        }
    }

    /// The configuration as TOML, every key with its value (`faultline config`).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot show the configuration: {e}\n"))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| Err(ConfigError::Invalid { key, message: message.to_owned() });
        if self.kafka.inputs.is_empty() {
            return invalid("kafka.inputs", "at least one input topic is needed");
        }
        if self.kafka.inputs.iter().any(|i| i.topic.trim().is_empty()) {
            return invalid("kafka.inputs.topic", "topic names must not be empty");
        }
        if self.kafka.group_id.trim().is_empty() {
            return invalid("kafka.group_id", "must not be empty");
        }
        if self.kafka.incidents_topic.trim().is_empty() {
            return invalid("kafka.incidents_topic", "must not be empty");
        }
        if self.kafka.dead_letter_topic.trim().is_empty() {
            return invalid("kafka.dead_letter_topic", "must not be empty");
        }
        if self.kafka.state_topic.trim().is_empty() {
            return invalid("kafka.state_topic", "must not be empty");
        }
        let mut topics: Vec<&str> = self.kafka.inputs.iter().map(|i| i.topic.as_str()).collect();
        topics.extend([&*self.kafka.incidents_topic, &*self.kafka.dead_letter_topic, &*self.kafka.state_topic]);
        let distinct: std::collections::BTreeSet<&str> = topics.iter().copied().collect();
        if distinct.len() != topics.len() {
            return invalid("kafka.state_topic", "input, incidents, dead-letter and state topics must all differ");
        }
        if self.kafka.topology_topic().is_some_and(|t| distinct.contains(t)) {
            return invalid(
                "kafka.topology_topic",
                "must differ from the input, incidents, dead-letter and state topics",
            );
        }
        if self.topology.max_held == 0 {
            return invalid("topology.max_held", "must be positive");
        }
        if self.topology.file.as_os_str().is_empty() && self.kafka.topology_topic().is_none() {
            return invalid(
                "topology.file",
                "must name a topology file when no kafka.topology_topic is configured (the file is then the whole topology)",
            );
        }
        if self.kafka.instance_id.trim().is_empty() {
            return invalid("kafka.instance_id", "must not be empty");
        }
        if self.kafka.commit_interval_ms == 0 {
            return invalid("kafka.commit_interval_ms", "must be positive");
        }
        if self.kafka.restore_timeout_secs == 0 {
            return invalid("kafka.restore_timeout_secs", "must be positive");
        }
        if self.kafka.max_message_bytes == 0 {
            return invalid("kafka.max_message_bytes", "must be positive");
        }
        if self.kafka.max_record_bytes < MIN_RECORD_BYTES {
            return invalid("kafka.max_record_bytes", &format!("must be at least {MIN_RECORD_BYTES}"));
        }
        if self.kafka.max_message_bytes >= self.kafka.max_record_bytes {
            return invalid(
                "kafka.max_message_bytes",
                &format!(
                    "the input limit ({}) must be below kafka.max_record_bytes ({}), the largest record the engine \
                     writes, so that a refused message is dead-lettered whole",
                    self.kafka.max_message_bytes, self.kafka.max_record_bytes
                ),
            );
        }
        if let Some(value) = self.kafka.properties.get("message.max.bytes") {
            let needed = self.kafka.producer_message_max_bytes();
            if !value.parse::<usize>().is_ok_and(|v| v >= needed) {
                return invalid(
                    "kafka.properties",
                    &format!(
                        "`message.max.bytes` = {value} is below what kafka.max_record_bytes ({}) needs ({needed}); \
                         leave it unset, the engine sets it",
                        self.kafka.max_record_bytes
                    ),
                );
            }
        }
        if self.kafka.partitions < 1 {
            return invalid("kafka.partitions", "must be at least 1");
        }
        if self.kafka.max_batch == 0 {
            return invalid("kafka.max_batch", "must be positive");
        }
        if self.grpc.subscriber_buffer == 0 {
            return invalid("grpc.subscriber_buffer", "must be positive");
        }
        if self.grpc.max_subscribers == 0 {
            return invalid("grpc.max_subscribers", "must be positive");
        }
        if self.grpc.history_max_incidents == 0 {
            return invalid("grpc.history_max_incidents", "must be positive");
        }
        if self.correlation.tick_millis == 0 {
            return invalid("correlation.tick_millis", "must be positive");
        }
        if self.correlation.max_notes == 0 || self.correlation.max_notes > 10_000 {
            return invalid("correlation.max_notes", "must be between 1 and 10000");
        }
        if !(1..=100_000).contains(&self.correlation.incident_max_roots) {
            return invalid("correlation.incident_max_roots", "must be between 1 and 100000");
        }
        if !(1..=100_000).contains(&self.correlation.incident_max_alarms) {
            return invalid("correlation.incident_max_alarms", "must be between 1 and 100000");
        }
        if self.correlation.timeline_limit < 2 {
            return invalid("correlation.timeline_limit", "must be at least 2");
        }
        if let Err(message) = self.correlation.priority.validate() {
            return invalid("correlation.priority.matrix", &message);
        }
        Ok(())
    }

    pub fn correlator(&self) -> CorrelatorConfig {
        let c = &self.correlation;
        CorrelatorConfig {
            alarms: {
                let mut policy = AlarmPolicy::new(c.alarm_effects.clone());
                policy.clear_memory_ms = (c.clear_memory_secs as i64).saturating_mul(1000);
                policy.max_unmapped_resources = c.max_unmapped_resources;
                policy.max_age = MaxAges::new(
                    c.alarm_max_age_secs
                        .iter()
                        .map(|(source, &secs)| (source.clone(), (secs as i64).saturating_mul(1000))),
                );
                policy
            },
            incidents: IncidentPolicy {
                hold_down_ms: (c.hold_down_secs * 1000) as i64,
                reopen_window_ms: (c.reopen_window_secs * 1000) as i64,
                priority: c.priority.clone(),
                timeline_limit: c.timeline_limit,
                max_notes: c.max_notes,
                max_roots: c.incident_max_roots,
                max_alarms: c.incident_max_alarms,
            },
            feed: FeedPolicy {
                max_held: self.topology.max_held,
                max_held_ms: (self.topology.max_held_secs as EpochMillis).saturating_mul(1000),
            },
        }
    }

    /// The figment layer a test or the demo can merge to change single keys.
    pub fn with(self, key: &str, value: impl Serialize) -> Result<Config, ConfigError> {
        let config: Config = Figment::from(Serialized::defaults(self))
            .merge(Serialized::default(key, value))
            .extract()
            .map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }
}

/// The `FAULTLINE__` environment layer: `FAULTLINE__KAFKA__INSTANCE_ID=2` sets
/// `kafka.instance_id`. Section and key names are matched case-insensitively; below the
/// map whose keys are alarm types (`correlation.alarm_effects`), keys keep their case.
/// librdkafka property names have dots, which no environment variable name can carry:
/// `FAULTLINE__KAFKA__PROPERTIES__SASL_MECHANISM` sets `sasl.mechanism` (see [`text_map`]).
fn environment() -> Env {
    // `lowercase` last: each `map` turns it back on.
    Env::prefixed("FAULTLINE__").map(|key| environment_key(key.as_str()).into()).lowercase(false)
}

fn environment_key(key: &str) -> String {
    let mut path: Vec<String> = Vec::new();
    for part in key.split("__") {
        let parent = path.join(".");
        path.push(match parent.as_str() {
            "correlation.alarm_effects" | "correlation.alarm_max_age_secs" => part.to_owned(),
            "kafka.properties" => part.to_ascii_lowercase(),
            _ => part.to_ascii_lowercase(),
        });
    }
    path.join(".")
}

/// A string field that also takes what an environment variable's value parses as: a number
/// (`FAULTLINE__KAFKA__INSTANCE_ID=2`) or a boolean is taken as written.
fn text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(Text::deserialize(deserializer)?.0)
}

/// `kafka.properties`: values as [`text`]; in names, `_` stands for `.` (librdkafka's
/// settable properties have no `_` in their names, and environment variables no `.`).
fn text_map<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error> {
    let map = BTreeMap::<String, Text>::deserialize(deserializer)?;
    Ok(map.into_iter().map(|(key, value)| (key.replace('_', "."), value.0)).collect())
}

struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Text, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Scalar {
            String(String),
            Unsigned(u64),
            Signed(i64),
            Float(f64),
            Bool(bool),
        }
        let text = match Scalar::deserialize(deserializer)
            .map_err(|_| serde::de::Error::custom("expected a string (or a number or boolean, taken as written)"))?
        {
            Scalar::String(s) => s,
            Scalar::Unsigned(n) => n.to_string(),
            Scalar::Signed(n) => n.to_string(),
            Scalar::Float(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
        };
        Ok(Text(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load_and_errors_name_the_key() {
        let config = Config::defaults(&Overrides::default()).unwrap();
        assert!(config.kafka.embedded());
        assert_eq!(config.grpc.addr.port(), 50051);

        let err = config.clone().with("correlation.priority.matrix", [[1, 2, 3], [2, 3, 4], [3, 4, 9]]).unwrap_err();
        assert!(err.to_string().contains("correlation.priority.matrix"), "{err}");

        let err = config.with("grpc.addr", "not-an-address").unwrap_err();
        assert!(err.to_string().contains("grpc.addr"), "{err}");
    }

    #[test]
    fn environment_names_map_to_keys_as_a_user_writes_them() {
        assert_eq!(environment_key("KAFKA__INSTANCE_ID"), "kafka.instance_id");
        assert_eq!(environment_key("CORRELATION__PRIORITY__MANY_CUSTOMERS"), "correlation.priority.many_customers");
        assert_eq!(environment_key("CORRELATION__ALARM_EFFECTS__LOS"), "correlation.alarm_effects.LOS");
        assert_eq!(environment_key("KAFKA__PROPERTIES__SASL_MECHANISM"), "kafka.properties.sasl_mechanism");
    }

    #[test]
    fn string_keys_take_numbers_as_written() {
        let config = Config::defaults(&Overrides::default()).unwrap();
        let config = config.with("kafka.instance_id", 2).unwrap().with("kafka.group_id", 7.5).unwrap();
        assert_eq!((config.kafka.instance_id.as_str(), config.kafka.group_id.as_str()), ("2", "7.5"));
        let err = config.with("kafka.instance_id", [1, 2]).unwrap_err();
        assert!(err.to_string().contains("instance_id"), "{err}");
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "[kafka]\nbrokerz = \"x\"\n").unwrap();
        let err = Config::load(Some(&file), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("brokerz"), "{err}");
    }
}
