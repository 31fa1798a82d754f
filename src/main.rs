//! The `tickrelay` binary: load the settings (flags > env > `--config` file > defaults),
//! start the relay, wait for Ctrl-C or SIGTERM (reloading on SIGHUP), drain, exit 0.
//!
//! A start-up error is one line on stderr, `tickrelay: <error>`, and exit code 2: no
//! backtrace, whatever `RUST_BACKTRACE` says.

use std::ffi::OsString;
use std::io::IsTerminal as _;
use std::process::ExitCode;

use anyhow::Context as _;
use tickrelay::Relay;
use tickrelay::config::settings::Settings;
use tickrelay::config::{Config, LogFormat, Reloadable};
use tickrelay::shared::Shared;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Registry, reload};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(settings) = e.downcast_ref::<tickrelay::config::settings::SettingsError>()
                && settings.is_display()
                && let tickrelay::config::settings::SettingsError::Args(clap) = settings
            {
                // --help and --version: clap's own text, exit 0.
                let _ = clap.print();
                return ExitCode::SUCCESS;
            }
            // The chain on one line (Debug would add a backtrace); a cause whose text the
            // message already quotes is not repeated.
            let mut line = e.to_string();
            for cause in e.chain().skip(1) {
                let cause = cause.to_string();
                if !line.contains(&cause) {
                    line = format!("{line}: {cause}");
                }
            }
            eprintln!("tickrelay: {}", line.replace('\n', " "));
            ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let settings = Settings::load(args.iter().cloned(), std::env::vars())?;
    if settings.cli.print_config {
        print!("{}", settings.to_toml());
        return Ok(());
    }
    let config = settings.config().clone();
    let log = Log::init(&config)?;

    // Signal handlers first: a SIGHUP that arrives once the banner is out must reload,
    // not kill the process with the default disposition.
    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal runtime")?;
    let mut handlers = {
        let _runtime = signals.enter();
        Signals::install()?
    };

    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    // Starting can wait long (a standby sequencer waits for the lease as long as it takes):
    // a stop signal meanwhile ends the process, which serves nobody yet.
    let (started_tx, started) = tokio::sync::oneshot::channel();
    let starting = {
        let config = config.clone();
        std::thread::Builder::new()
            .name("start".into())
            .spawn(move || {
                let relay = Relay::start(config);
                let _ = started_tx.send(());
                relay
            })
            .context("starting the start-up thread")?
    };
    let stopped_early = signals.block_on(async {
        tokio::pin!(started);
        loop {
            tokio::select! {
                _ = &mut started => return false,
                signal = handlers.next() => if signal == Signal::Stop { return true },
            }
        }
    });
    if stopped_early {
        tracing::info!("stop requested while starting: exiting");
        return Ok(());
    }
    let relay = starting
        .join()
        .map_err(|_| anyhow::anyhow!("the start-up thread panicked"))??;
    println!("tickrelay {} listening", env!("CARGO_PKG_VERSION"));
    println!(
        "  WebSocket: ws://{}/ws?symbols=BTC-USD,ETH-USD",
        relay.http_addr
    );
    println!(
        "  dashboard: http://{}/   stats: http://{}/stats",
        relay.http_addr, relay.http_addr
    );
    if config.scale.role == tickrelay::config::Role::Edge {
        println!("  ingest:    none (an edge follows the stream on NATS)");
    } else {
        println!(
            "  ingest:    NDJSON tcp://{}   protobuf tcp://{}",
            relay.ingest_addr, relay.ingest_protobuf_addr
        );
    }
    if config.demo {
        println!(
            "  demo market: {} symbols at {} ticks/s",
            config.demo_symbols, config.demo_rate
        );
    }

    let mut running = settings;
    // Until a stop signal, or until the relay stops itself (a sequencer that lost its
    // lease): then the process exits with an error, for a supervisor to restart it.
    let by_itself = signals.block_on(async {
        loop {
            tokio::select! {
                signal = handlers.next() => match signal {
                    Signal::Reload => running = reload(&args, running, &log, &relay.shared),
                    Signal::Stop => return false,
                },
                () = relay.shared.shutdown.wait() => return true,
            }
        }
    });
    tracing::info!("shutdown requested: closing clients with 1001");
    relay.shutdown();
    relay.join();
    tracing::info!("tickrelay stopped");
    if by_itself {
        anyhow::bail!("the relay stopped itself: see the error logged before");
    }
    Ok(())
}

/// SIGHUP: loads the settings again (same flags, the environment and file as they are now)
/// and applies what can change live ([`Reloadable`]: the log filter, `--max-connections`,
/// `--max-control-rate` for sessions opened from now on). Every other changed setting is
/// named in a warning and keeps its running value until a restart. A configuration that
/// does not load or validate changes nothing.
fn reload(args: &[OsString], running: Settings, log: &Log, shared: &Shared) -> Settings {
    let fresh = match Settings::load(args.iter().cloned(), std::env::vars()) {
        Ok(fresh) => fresh,
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: configuration not reloaded, keeping the running one");
            return running;
        }
    };
    if let Err(e) = fresh.config().validate() {
        tracing::error!(error = %e, "SIGHUP: configuration not reloaded, keeping the running one");
        return running;
    }
    if let Err(e) = log.set(&fresh.config().log) {
        tracing::error!(error = %e, "SIGHUP: bad --log filter, keeping the running one");
        return running;
    }
    shared.live.apply(fresh.config());
    let (before, after) = (running.values(), fresh.values());
    let ignored: Vec<&str> = after
        .iter()
        .filter(|(key, value)| !Reloadable::is(key) && before.get(*key) != Some(*value))
        .map(|(key, _)| *key)
        .collect();
    if !ignored.is_empty() {
        tracing::warn!(settings = ?ignored, "SIGHUP: these changed but apply only after a restart");
    }
    let config = fresh.config();
    tracing::info!(
        log = %config.log,
        max_connections = config.max_connections,
        max_control_rate = config.max_control_rate,
        "SIGHUP: configuration reloaded"
    );
    // Keep the running values of what did not apply, so the next diff is against them.
    let mut kept = running;
    for setting in Reloadable::ALL {
        setting.copy(config, &mut kept.cli.config);
        kept.adopt(&fresh, setting.key());
    }
    kept
}

/// The tracing subscriber, with a handle to swap its filter.
struct Log {
    filter: reload::Handle<EnvFilter, Registry>,
}

impl Log {
    fn init(config: &Config) -> anyhow::Result<Self> {
        let filter =
            EnvFilter::try_new(&config.log).with_context(|| format!("--log {}", config.log))?;
        let (filter, handle) = reload::Layer::new(filter);
        let text = (config.log_format == LogFormat::Text).then(|| {
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // Escape codes only for a person at a terminal, never into a file or journal.
                .with_ansi(std::io::stderr().is_terminal())
        });
        let json = (config.log_format == LogFormat::Json).then(|| {
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(std::io::stderr)
        });
        tracing_subscriber::registry()
            .with(filter)
            .with(text)
            .with(json)
            .try_init()
            .context("installing the logger")?;
        Ok(Self { filter: handle })
    }

    fn set(&self, filter: &str) -> anyhow::Result<()> {
        let filter = EnvFilter::try_new(filter).with_context(|| format!("--log {filter}"))?;
        self.filter
            .reload(filter)
            .context("swapping the log filter")
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Signal {
    Stop,
    Reload,
}

struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        Ok(Self {
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            hup: signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.int.recv() => Signal::Stop,
            _ = self.term.recv() => Signal::Stop,
            _ = self.hup.recv() => Signal::Reload,
        }
    }
}
