//! The `faultline` binary: parses arguments and configuration, sets up tracing, and calls
//! into the library. Everything testable lives there.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use faultline::cli::{bench, demo, generate, maintenance, soak, topology, watch};
use faultline::config::{AlarmFormat, Config, Overrides};
use faultline::generate::scenario::Kind;
use faultline::proto::v1;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Faultline correlates resource alarms from network elements against a service dependency
/// graph, finds the impact on customer services, and opens and resolves incidents by itself.
#[derive(Parser)]
#[command(name = "faultline", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the engine: consume alarms from Kafka, publish incidents to Kafka and gRPC.
    Run {
        /// Configuration file (TOML); overrides the built-in defaults of config/default.toml.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Kafka bootstrap servers; none starts the embedded in-process cluster.
        #[arg(long, value_name = "HOST:PORT,...")]
        brokers: Option<String>,
        /// Topology file (JSON Lines, one CI per line).
        #[arg(long, value_name = "FILE")]
        topology: Option<PathBuf>,
        /// Address the gRPC API listens on [default: 127.0.0.1:50051].
        #[arg(long, value_name = "ADDR")]
        grpc_addr: Option<SocketAddr>,
        /// Address of the Prometheus endpoint, GET /metrics [default: 127.0.0.1:9464].
        #[arg(long, value_name = "ADDR")]
        metrics_addr: Option<SocketAddr>,
        /// Format of the alarm input topics.
        #[arg(long, value_enum)]
        alarm_format: Option<FormatArg>,
        /// Seconds allowed for an orderly shutdown on SIGTERM or Ctrl-C.
        #[arg(long, default_value_t = 30, value_name = "SECONDS")]
        shutdown_grace: u64,
    },
    /// Print the configuration `run` would use (built-in defaults, then the file, then
    /// FAULTLINE__ environment variables), checked, as TOML; errors name the key.
    Config {
        /// Configuration file (TOML).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Run the engine on the embedded Kafka cluster with the sample network and play a
    /// scripted alarm storm into it, printing incident changes as they happen.
    Demo {
        /// Exit on its own after this many seconds (otherwise run until Ctrl-C).
        #[arg(long, value_name = "SECONDS")]
        duration: Option<u64>,
        /// Address the gRPC API listens on.
        #[arg(long, default_value = "127.0.0.1:50051", value_name = "ADDR")]
        grpc_addr: SocketAddr,
        /// Address of the Prometheus endpoint, GET /metrics.
        #[arg(long, default_value = "127.0.0.1:9464", value_name = "ADDR")]
        metrics_addr: SocketAddr,
    },
    /// Subscribe to a running engine and print incident changes live.
    Watch {
        /// gRPC address of the engine.
        #[arg(long, default_value = "http://127.0.0.1:50051", value_name = "URL")]
        addr: String,
        /// Only incidents in these states (repeatable).
        #[arg(long, value_enum)]
        state: Vec<StateArg>,
        /// Only incidents of these priorities, 1 to 5 (repeatable).
        #[arg(long, value_parser = clap::value_parser!(i32).range(1..=5))]
        priority: Vec<i32>,
        /// Only incidents impacting this service id.
        #[arg(long, value_name = "ID")]
        service: Option<String>,
        /// Only incidents impacting this customer id.
        #[arg(long, value_name = "ID")]
        customer: Option<String>,
        /// Print the current incidents and exit.
        #[arg(long)]
        once: bool,
    },
    /// End-to-end load against a Kafka cluster: throughput against raw consumption, then
    /// latency to gRPC subscribers at a fixed offered rate, then (with `--overload`) twice the
    /// throughput and the recovery. With `--soak 28d`, no Kafka: weeks of stream time through
    /// the correlation core, sampling memory and the core's structures.
    Bench(bench::BenchOptions),
    /// Generate synthetic carrier networks and alarm storms.
    #[command(subcommand)]
    Generate(GenerateCommand),
    /// The live topology of a running engine: apply a file's CIs to it, show a CI.
    #[command(subcommand)]
    Topology(TopologyCommand),
    /// Maintenance windows of a running engine: planned works that page no one.
    #[command(subcommand)]
    Maintenance(MaintenanceCommand),
    /// What failing these CIs would do to services and customers, on top of the live
    /// state of a running engine; changes nothing.
    WhatIf {
        /// CI ids to fail.
        #[arg(required = true)]
        cis: Vec<String>,
        /// gRPC address of the engine.
        #[arg(long, default_value = "http://127.0.0.1:50051", value_name = "URL")]
        addr: String,
    },
}

#[derive(Subcommand)]
enum MaintenanceCommand {
    /// Create a window; shows what its works would take down.
    Create {
        /// The change reference (CHG0012345): the window's identity.
        change: String,
        /// CIs under maintenance (repeat the flag for more).
        #[arg(long = "ci", required = true, value_name = "CI")]
        cis: Vec<String>,
        /// Cover what depends on the CIs too.
        #[arg(long)]
        dependents: bool,
        /// `now`, `+30m` (from now), or an RFC 3339 time.
        #[arg(long, default_value = "now", value_parser = maintenance::parse_time)]
        start: i64,
        /// `+2h` (from now), or an RFC 3339 time.
        #[arg(long, value_parser = maintenance::parse_time)]
        end: i64,
        #[arg(long, default_value = "")]
        reason: String,
        /// Who asks for it.
        #[arg(long, default_value = "")]
        by: String,
        #[arg(long, default_value = "http://127.0.0.1:50051", value_name = "URL")]
        addr: String,
    },
    /// List the windows (finished ones too, the latest).
    List {
        #[arg(long, default_value = "http://127.0.0.1:50051", value_name = "URL")]
        addr: String,
    },
    /// Show a window.
    Get {
        change: String,
        #[arg(long, default_value = "http://127.0.0.1:50051", value_name = "URL")]
        addr: String,
    },
    /// Move a window's end.
    Extend {
        change: String,
        /// `+2h` (from now), or an RFC 3339 time.
        #[arg(long, value_parser = maintenance::parse_time)]
        end: i64,
        #[arg(long, default_value = "")]
        by: String,
        #[arg(long, default_value = "http://127.0.0.1:50051", value_name = "URL")]
        addr: String,
    },
    /// End an active window now: what it kept quiet and still fails opens its incident.
    End {
        change: String,
        #[arg(long, default_value = "")]
        by: String,
        #[arg(long, default_value = "http://127.0.0.1:50051", value_name = "URL")]
        addr: String,
    },
    /// Call a window off.
    Cancel {
        change: String,
        #[arg(long, default_value = "")]
        by: String,
        #[arg(long, default_value = "http://127.0.0.1:50051", value_name = "URL")]
        addr: String,
    },
    /// The impacts active windows keep from opening incidents.
    Suppressed {
        #[arg(long, default_value = "http://127.0.0.1:50051", value_name = "URL")]
        addr: String,
    },
}

#[derive(Subcommand)]
enum TopologyCommand {
    /// Show what a topology file (JSON Lines) changes in the engine's live topology, then
    /// apply it as one batch: all of it or, when the engine refuses it, none.
    Apply {
        /// CIs to put (added, or replacing those with their ids).
        file: PathBuf,
        /// Also delete the live CIs the file does not have.
        #[arg(long)]
        prune: bool,
        /// Show what would change; apply nothing.
        #[arg(long)]
        dry_run: bool,
        /// gRPC address of the engine.
        #[arg(long, default_value = "http://127.0.0.1:50051", value_name = "URL")]
        addr: String,
    },
    /// Show a CI: its record, state, active alarms, and the root causes that explain it.
    Get {
        /// CI id.
        id: String,
        /// gRPC address of the engine.
        #[arg(long, default_value = "http://127.0.0.1:50051", value_name = "URL")]
        addr: String,
    },
}

#[derive(Subcommand)]
enum GenerateCommand {
    /// A carrier network of exactly N CIs in the topology file format (JSON Lines).
    Topology {
        /// CIs to generate (from 200 up to tens of millions).
        #[arg(long, value_name = "N")]
        cis: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Sites each L2VPN and L3VPN service spans (1: each stays at its site). 6 gives
        /// about three relations per CI.
        #[arg(long, value_name = "K", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
        vpn_sites: u16,
        /// Topology file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// An alarm storm over a topology, to a file (JSON Lines) or a Kafka topic.
    Alarms {
        /// Topology file the storm plays on.
        #[arg(long, value_name = "FILE")]
        topology: PathBuf,
        #[arg(long, value_parser = clap::value_parser!(Kind))]
        scenario: Kind,
        /// Notifications per second: the pace into a topic, the event-time spacing in a file.
        #[arg(long, value_name = "PER_SECOND")]
        rate: f64,
        /// How long the storm lasts, e.g. `60s`, `10m`.
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Duration,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// File to write (one JSON alarm per line).
        #[arg(long, value_name = "FILE", conflicts_with = "topic", required_unless_present = "topic")]
        out: Option<PathBuf>,
        /// Kafka topic to produce to (keyed by resource); needs --brokers.
        #[arg(long, requires = "brokers")]
        topic: Option<String>,
        #[arg(long, value_name = "HOST:PORT,...")]
        brokers: Option<String>,
        /// Event time of the first alarm in a file (RFC 3339).
        #[arg(long, default_value = "2026-01-01T00:00:00Z", value_parser = humantime::parse_rfc3339)]
        start: std::time::SystemTime,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Protobuf,
    Json,
    /// ONAP VES 7.x fault and 3GPP stndDefined events.
    Ves,
}

#[derive(Clone, Copy, ValueEnum)]
enum StateArg {
    Open,
    Acknowledged,
    Resolved,
    Closed,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Run { .. } => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal; log collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(anyhow::Error::from).and_then(
            |runtime| {
                let result = runtime.block_on(dispatch(cli.command));
                // A thread still blocked on unreachable brokers after the shutdown deadline is
                // not waited for: the process exits, and the next start consumes again what
                // was not committed.
                runtime.shutdown_timeout(Duration::from_millis(500));
                result
            },
        );
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("faultline: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run { config, brokers, topology, grpc_addr, metrics_addr, alarm_format, shutdown_grace } => {
            let overrides = Overrides {
                brokers,
                topology,
                grpc_addr,
                metrics_addr,
                alarm_format: alarm_format.map(|f| match f {
                    FormatArg::Protobuf => AlarmFormat::Protobuf,
                    FormatArg::Json => AlarmFormat::Json,
                    FormatArg::Ves => AlarmFormat::Ves,
                }),
            };
            let config = Config::load(config.as_deref(), &overrides)?;
            faultline::runtime::run(config, shutdown_signal(), Duration::from_secs(shutdown_grace)).await?;
            Ok(())
        }
        Command::Config { config } => {
            print!("{}", Config::load(config.as_deref(), &Overrides::default())?.to_toml());
            Ok(())
        }
        Command::Demo { duration, grpc_addr, metrics_addr } => {
            let options = demo::DemoOptions { duration: duration.map(Duration::from_secs), grpc_addr, metrics_addr };
            demo::run(options, shutdown_signal()).await?;
            Ok(())
        }
        Command::Watch { addr, state, priority, service, customer, once } => {
            let states = state
                .into_iter()
                .map(|s| match s {
                    StateArg::Open => v1::IncidentState::Open,
                    StateArg::Acknowledged => v1::IncidentState::Acknowledged,
                    StateArg::Resolved => v1::IncidentState::Resolved,
                    StateArg::Closed => v1::IncidentState::Closed,
                } as i32)
                .collect();
            let request = v1::SubscribeIncidentsRequest {
                states,
                priorities: priority,
                service: service.unwrap_or_default(),
                customer: customer.unwrap_or_default(),
                ..Default::default()
            };
            let options = watch::WatchOptions { addr, request, once };
            let shutdown = shutdown_signal();
            tokio::select! {
                result = watch::watch(options, std::io::stdout()) => result.context("watch")?,
                _ = shutdown.cancelled() => {},
            }
            Ok(())
        }
        Command::Bench(options) => {
            if let Some(soak) = soak::SoakOptions::from_bench(&options) {
                tokio::task::spawn_blocking(move || soak::run(&soak, &mut std::io::stdout().lock())).await??;
                return Ok(());
            }
            anyhow::ensure!(
                options.warmup < options.duration || options.rate == 0.0,
                "--warmup must be shorter than --duration"
            );
            bench::run(&options).await?;
            Ok(())
        }
        Command::Topology(TopologyCommand::Apply { file, prune, dry_run, addr }) => {
            topology::apply(&addr, &file, prune, dry_run, std::io::stdout()).await?;
            Ok(())
        }
        Command::Maintenance(command) => {
            let out = std::io::stdout();
            match command {
                MaintenanceCommand::Create { change, cis, dependents, start, end, reason, by, addr } => {
                    let asked = maintenance::Create { change, cis, dependents, start, end, reason, by };
                    maintenance::create(&addr, asked, out).await?
                }
                MaintenanceCommand::List { addr } => maintenance::list(&addr, out).await?,
                MaintenanceCommand::Get { change, addr } => maintenance::get(&addr, &change, out).await?,
                MaintenanceCommand::Extend { change, end, by, addr } => {
                    maintenance::extend(&addr, &change, end, &by, out).await?
                }
                MaintenanceCommand::End { change, by, addr } => {
                    maintenance::finish(&addr, &change, &by, false, out).await?
                }
                MaintenanceCommand::Cancel { change, by, addr } => {
                    maintenance::finish(&addr, &change, &by, true, out).await?
                }
                MaintenanceCommand::Suppressed { addr } => maintenance::suppressed(&addr, out).await?,
            }
            Ok(())
        }
        Command::WhatIf { cis, addr } => {
            topology::what_if(&addr, cis, std::io::stdout()).await?;
            Ok(())
        }
        Command::Topology(TopologyCommand::Get { id, addr }) => {
            topology::get(&addr, &id, std::io::stdout()).await?;
            Ok(())
        }
        Command::Generate(GenerateCommand::Topology { cis, seed, vpn_sites, out }) => {
            tokio::task::spawn_blocking(move || generate::topology(cis, seed, vpn_sites.into(), &out)).await??;
            Ok(())
        }
        Command::Generate(GenerateCommand::Alarms {
            topology,
            scenario,
            rate,
            duration,
            seed,
            out,
            topic,
            brokers,
            start,
        }) => {
            anyhow::ensure!(rate > 0.0 && rate.is_finite(), "--rate must be a positive number of alarms per second");
            let start = start.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
            tokio::task::spawn_blocking(move || {
                let options = generate::AlarmOptions { topology: &topology, scenario, rate, duration, seed, start };
                let kafka = Config::defaults(&Overrides::default())?.kafka;
                let sink = match (&out, &topic, &brokers) {
                    (Some(path), _, _) => generate::Sink::File(path),
                    (None, Some(topic), Some(brokers)) => generate::Sink::Topic { brokers, topic, kafka: &kafka },
                    _ => anyhow::bail!("give --out FILE, or --topic with --brokers"),
                };
                generate::alarms(&options, sink)
            })
            .await??;
            Ok(())
        }
    }
}

/// Cancelled on Ctrl-C or SIGTERM.
fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    cancel.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        cancel.cancel();
    });
    token
}
