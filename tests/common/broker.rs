//! A real Apache Kafka broker for the tests: a single-node KRaft broker started from the
//! official jars, resolved from Maven Central with `mvn` (tests/kafka-broker/pom.xml) into
//! the local Maven repository and a classpath cached under ~/.cache/faultline, on free
//! loopback ports. `FAULTLINE_TEST_KAFKA=host:port` uses an existing broker instead.
//!
//! A watchdog shell kills the broker if the test process dies, so no JVM outlives a run.

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct KafkaBroker {
    bootstrap: String,
    /// None for an external broker (FAULTLINE_TEST_KAFKA).
    process: Option<BrokerProcess>,
}

struct BrokerProcess {
    classpath: String,
    dir: tempfile::TempDir,
    java: Option<Child>,
    watchdog: Option<Child>,
}

impl KafkaBroker {
    /// The broker named by FAULTLINE_TEST_KAFKA, or a new one on free ports.
    pub fn start() -> KafkaBroker {
        if let Ok(bootstrap) = std::env::var("FAULTLINE_TEST_KAFKA") {
            let broker = KafkaBroker { bootstrap, process: None };
            broker.wait_ready(Duration::from_secs(30));
            return broker;
        }
        KafkaBroker::start_own()
    }

    /// Always a broker of this test's own, for tests that stop and pause it.
    pub fn start_own() -> KafkaBroker {
        let classpath = classpath();
        let dir = tempfile::Builder::new().prefix("faultline-kafka-").tempdir().unwrap();
        let (port, controller) = (free_port(), free_port());
        // The broker's session with its own controller outlasts the fault tests' 8-second
        // freeze: frozen together, the controller would otherwise fence the broker on waking
        // (its 9-second default) and leave partitions without a leader for a while.
        let config = format!(
            "process.roles=broker,controller\nnode.id=1\ncontroller.quorum.voters=1@127.0.0.1:{controller}\n\
             listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{port}\ncontroller.listener.names=CONTROLLER\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\nlog.dirs={data}\n\
             offsets.topic.replication.factor=1\ntransaction.state.log.replication.factor=1\n\
             transaction.state.log.min.isr=1\ngroup.initial.rebalance.delay.ms=0\nnum.partitions=4\n\
             log.cleaner.backoff.ms=1000\nbroker.session.timeout.ms=30000\n",
            data = dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("server.properties"), config).unwrap();
        let log4j = format!(
            "rootLogger.level=WARN\nrootLogger.appenderRef.file.ref=file\nappender.file.type=File\n\
             appender.file.name=file\nappender.file.fileName={}\nappender.file.layout.type=PatternLayout\n\
             appender.file.layout.pattern=%d %p %c - %m%n\n",
            dir.path().join("broker.log").display()
        );
        std::fs::write(dir.path().join("log4j2.properties"), log4j).unwrap();
        let mut process = BrokerProcess { classpath, dir, java: None, watchdog: None };
        process.java_tool("kafka.tools.StorageTool", &["format", "-t", &cluster_id(), "-c", "server.properties"]);
        process.launch();
        let broker = KafkaBroker { bootstrap: format!("127.0.0.1:{port}"), process: Some(process) };
        broker.wait_ready(Duration::from_secs(90));
        broker
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Kills the broker (as a crash would); `restart` brings it back with its data.
    pub fn stop(&mut self) {
        self.process.as_mut().expect("an own broker").kill();
    }

    pub fn restart(&mut self) {
        self.process.as_mut().expect("an own broker").launch();
        self.wait_ready(Duration::from_secs(90));
    }

    /// SIGSTOP: the broker hangs, connections stay open.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.process.as_ref().and_then(|p| p.java.as_ref()).expect("a running own broker").id();
        Command::new("kill").args([signal, &pid.to_string()]).status().unwrap();
    }

    fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let client: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &self.bootstrap).create().unwrap();
        loop {
            if let Ok(metadata) = client.fetch_metadata(None, Duration::from_secs(2))
                && !metadata.brokers().is_empty()
            {
                return;
            }
            if let Some(process) = &self.process {
                process.check_alive();
            }
            assert!(Instant::now() < deadline, "Kafka broker at {} not ready after {timeout:?}", self.bootstrap);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl BrokerProcess {
    fn java_tool(&self, main: &str, args: &[&str]) {
        let output = Command::new("java")
            .current_dir(self.dir.path())
            .arg("-cp")
            .arg(&self.classpath)
            .arg("-Dlog4j2.configurationFile=log4j2.properties")
            .arg(main)
            .args(args)
            .output()
            .expect("java runs");
        assert!(output.status.success(), "{main} failed: {}", String::from_utf8_lossy(&output.stderr));
    }

    fn launch(&mut self) {
        let stdout = std::fs::File::create(self.dir.path().join("stdout.log")).unwrap();
        let java = Command::new("java")
            .current_dir(self.dir.path())
            .args(["-Xms256m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp"])
            .arg(&self.classpath)
            .arg("-Dlog4j2.configurationFile=log4j2.properties")
            .args(["kafka.Kafka", "server.properties"])
            .stdin(Stdio::null())
            .stdout(stdout.try_clone().unwrap())
            .stderr(stdout)
            .spawn()
            .expect("java starts");
        let script = format!(
            "while kill -0 {parent} 2>/dev/null && kill -0 {java} 2>/dev/null; do sleep 1; done; kill -9 {java} 2>/dev/null",
            parent = std::process::id(),
            java = java.id()
        );
        let watchdog = Command::new("sh").args(["-c", &script]).stdin(Stdio::null()).spawn().unwrap();
        self.java = Some(java);
        self.watchdog = Some(watchdog);
    }

    fn check_alive(&self) {
        let pid = self.java.as_ref().map(|j| j.id());
        if let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let log = std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default();
            panic!("the Kafka broker exited:\n{log}");
        }
    }

    fn kill(&mut self) {
        for child in [self.java.take(), self.watchdog.take()].into_iter().flatten() {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A KRaft cluster id: 16 bytes, URL-safe base64 without padding.
fn cluster_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        ^ u64::from(std::process::id());
    let mut x = seed | 1;
    let mut bytes = [0u8; 16];
    for b in &mut bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut out = String::new();
    for &b in &bytes {
        bits = (bits << 8) | u32::from(b);
        nbits += 8;
        while nbits >= 6 {
            nbits -= 6;
            out.push(ALPHABET[((bits >> nbits) & 63) as usize] as char);
        }
    }
    if nbits > 0 {
        out.push(ALPHABET[((bits << (6 - nbits)) & 63) as usize] as char);
    }
    // The storage tool would read an id starting with `-` as an option.
    if out.starts_with('-') {
        out.replace_range(..1, "A");
    }
    out
}

fn require(tool: &str, args: &[&str], what: &str) -> String {
    match Command::new(tool).args(args).output() {
        Ok(output) if output.status.success() => {
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
        }
        _ => panic!(
            "the real-Kafka tests need {what}, and `{tool}` is not available. Install it \
             (Debian: apt-get install -y openjdk-17-jre-headless maven), or set \
             FAULTLINE_TEST_KAFKA=host:port to use an existing broker."
        ),
    }
}

/// The broker's classpath, resolved once with Maven and cached outside the repository;
/// tests of one binary run in parallel threads, so the first resolves and the rest wait.
fn classpath() -> String {
    static CLASSPATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CLASSPATH.get_or_init(resolve_classpath).clone()
}

fn resolve_classpath() -> String {
    let version = require("java", &["-version"], "Java 17 or newer");
    let major: u32 =
        version.split('"').nth(1).and_then(|v| v.split('.').next()).and_then(|m| m.parse().ok()).unwrap_or(0);
    assert!(major >= 17, "the real-Kafka tests need Java 17 or newer, found: {version}");
    let pom = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/kafka-broker/pom.xml");
    let pom_text = std::fs::read(&pom).unwrap();
    let hash = pom_text.iter().fold(0xcbf29ce484222325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3));
    let home = std::env::var("HOME").unwrap_or_else(|_| "/tmp".into());
    let cache = PathBuf::from(home).join(".cache/faultline").join(format!("kafka-broker-{hash:016x}"));
    let file = cache.join("classpath.txt");
    if let Ok(cached) = std::fs::read_to_string(&file)
        && cached.split(':').all(|jar| Path::new(jar).exists())
    {
        return cached.trim().to_owned();
    }
    require("mvn", &["-v"], "Maven");
    std::fs::create_dir_all(&cache).unwrap();
    // Resolve into a temporary file first so that parallel test binaries never read half a file.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let partial = cache.join(format!("classpath.{}.{nanos}.tmp", std::process::id()));
    let output = Command::new("mvn")
        .args(["-q", "-B", "-f"])
        .arg(&pom)
        .arg("dependency:build-classpath")
        .arg(format!("-Dmdep.outputFile={}", partial.display()))
        .output()
        .expect("mvn runs");
    assert!(
        output.status.success(),
        "resolving the Kafka broker with Maven failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::rename(&partial, &file).unwrap();
    std::fs::read_to_string(&file).unwrap().trim().to_owned()
}
