//! `loadtest`: drive tickrelay with many WebSocket clients and a paced publisher.
//!
//! ```text
//! loadtest steady --spawn target/release/tickrelay --clients 1000 --symbols 100 \
//!     --symbols-per-client 10 --rate 2000 --duration 20s --report-json target/perf/steady.json
//! loadtest summarize target/perf/steady.json --out /tmp/REPORT.md
//! ```
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use loadtest::reference::{self, ServeArgs};
use loadtest::report::{self, RunReport};
use loadtest::scenario::{
    self, BooksArgs, CompareArgs, Mode, RampArgs, RunArgs, SlowArgs, SoakArgs, StuckArgs, TiersArgs,
};

/// Load-test harness for the tickrelay WebSocket relay.
#[derive(Debug, Parser)]
#[command(name = "loadtest", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publish a fixed rate for a fixed time; latency, loss and CPU per delivery.
    Steady(RunArgs),
    /// Raise the rate each step (×--step-factor) until p99 exceeds a bound or a tick is lost.
    Ramp {
        #[command(flatten)]
        run: RunArgs,
        #[command(flatten)]
        ramp: RampArgs,
    },
    /// Many idle clients: relay memory per connection and handshake rate.
    Crowd(RunArgs),
    /// A fraction of clients stop reading; the others' latency, the relay's memory.
    Slow {
        #[command(flatten)]
        run: RunArgs,
        #[command(flatten)]
        slow: SlowArgs,
    },
    /// The same load against floor, naive and the relay in one invocation; ratios per step.
    Compare {
        #[command(flatten)]
        run: RunArgs,
        #[command(flatten)]
        ramp: RampArgs,
        #[command(flatten)]
        compare: CompareArgs,
    },
    /// Healthy clients alone, then beside clients that stop reading; their p99 ratio.
    Stuck {
        #[command(flatten)]
        run: RunArgs,
        #[command(flatten)]
        stuck: StuckArgs,
    },
    /// Raw clients alone, then beside clients on a rate tier (`SYM@1s`): the raw p99 and
    /// loss both ways, the tier frames' continuity, the relay CPU per tier client.
    Tiers {
        #[command(flatten)]
        run: RunArgs,
        #[command(flatten)]
        tiers: TiersArgs,
    },
    /// Clients on order books (depth N and full) under book updates, then the same clients
    /// on ticks at the same rate: deliveries/s, p99, relay CPU per delivery, memory per book.
    Books {
        #[command(flatten)]
        run: RunArgs,
        #[command(flatten)]
        books: BooksArgs,
    },
    /// Steady ticks to healthy clients for --duration while others come and go; the relay's
    /// memory, fds, sessions and the healthy p99 every --sample-every, and their slopes.
    Soak {
        #[command(flatten)]
        run: RunArgs,
        #[command(flatten)]
        soak: SoakArgs,
    },
    /// Serve as the floor reference server (forwards ingest lines as pre-built frames).
    ServeFloor(ServeArgs),
    /// Serve as the naive reference server (tokio-tungstenite, one broadcast channel).
    ServeNaive(ServeArgs),
    /// Turn JSON reports into a Markdown report.
    Summarize {
        /// JSON reports written with --report-json.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Write the Markdown here (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Link this image (relative to the Markdown) under the ramp section.
        #[arg(long)]
        svg_link: Option<String>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadtest: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    // Placeholders for the modes that do not take these options.
    let (no_ramp, no_slow) = (RampArgs::unused(), SlowArgs::unused());
    let (mode, args, ramp, slow) = match &cli.command {
        Command::Steady(run) => (Mode::Steady, run, &no_ramp, &no_slow),
        Command::Crowd(run) => (Mode::Crowd, run, &no_ramp, &no_slow),
        Command::Ramp { run, ramp } => (Mode::Ramp, run, ramp, &no_slow),
        Command::Slow { run, slow } => (Mode::Slow, run, &no_ramp, slow),
        Command::Summarize {
            files,
            out,
            svg_link,
        } => return summarize(files, out.as_deref(), svg_link.as_deref()),
        Command::Compare { run, ramp, compare } => return compare_servers(run, ramp, compare),
        Command::Stuck { run, stuck } => return stuck_beside_healthy(run, stuck),
        Command::Soak { run, soak } => return soak_run(run, soak),
        Command::Tiers { run, tiers } => return tiers_pair(run, tiers),
        Command::Books { run, books } => return books_pair(run, books),
        Command::ServeFloor(serve) => {
            return reference::serve_floor(serve).map(|()| ExitCode::SUCCESS);
        }
        Command::ServeNaive(serve) => {
            return reference::serve_naive(serve).map(|()| ExitCode::SUCCESS);
        }
    };
    let report = scenario::run(mode, args, ramp, slow)?;
    println!("{}", report.table());
    if let Some(path) = &args.report_json {
        report.write_json(path)?;
        eprintln!("loadtest: wrote {}", path.display());
    }
    if let Some(path) = &args.svg {
        report::ramp_svg(&report, path)?;
        eprintln!("loadtest: wrote {}", path.display());
    }
    Ok(if args.assert_clean && !report.clean {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn compare_servers(args: &RunArgs, ramp: &RampArgs, cmp: &CompareArgs) -> Result<ExitCode> {
    let several = cmp.rounds > 1;
    let rounds = scenario::compare(args, ramp, cmp, |n, reports| {
        if several {
            println!("\n#### round {n} of {}", cmp.rounds);
        }
        for (report, &server) in reports.iter().zip(&cmp.servers) {
            println!("{}", report.table());
            if let Some(path) = &args.report_json {
                let path = scenario::suffixed(path, scenario::round_tag(cmp, n).as_deref(), server);
                report.write_json(&path)?;
                eprintln!("loadtest: wrote {}", path.display());
            }
        }
        println!("{}", report::ratio_table(reports));
        Ok(())
    })?;
    if several {
        let orders: Vec<String> = (1..=cmp.rounds)
            .map(|n| {
                let order = scenario::round_order(&cmp.servers, n);
                order.iter().map(|s| s.name()).collect::<Vec<_>>().join(",")
            })
            .collect();
        println!("{}", report::rounds_table(&rounds, &orders));
    }
    let targets = report::targets_table(&rounds);
    if !targets.is_empty() {
        println!("{targets}");
    }
    let unclean = rounds.iter().flatten().any(|r| !r.clean);
    Ok(if args.assert_clean && unclean {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn stuck_beside_healthy(args: &RunArgs, stuck: &StuckArgs) -> Result<ExitCode> {
    let pairs = scenario::stuck(args, stuck, |half, report| {
        println!("{}", report.table());
        if let Some(path) = &args.report_json {
            let path = scenario::half_file(path, half);
            report.write_json(&path)?;
            eprintln!("loadtest: wrote {}", path.display());
        }
        Ok(())
    })?;
    for pair in &pairs {
        println!("{}", report::stuck_table(&pair.alone, &pair.beside));
    }
    if pairs.len() > 1 {
        let rounds: Vec<(&RunReport, &RunReport)> =
            pairs.iter().map(|p| (&p.alone, &p.beside)).collect();
        println!("{}", report::stuck_rounds_table(&rounds));
    }
    let unclean = pairs.iter().any(|p| !p.alone.clean || !p.beside.clean);
    Ok(if args.assert_clean && unclean {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn tiers_pair(args: &RunArgs, tiers: &TiersArgs) -> Result<ExitCode> {
    let pair = scenario::tiers(args, tiers, |half, report| print_half(args, half, report))?;
    println!("{}", report::tiers_table(&pair.alone, &pair.beside));
    Ok(exit(args, pair.alone.clean && pair.beside.clean))
}

fn books_pair(args: &RunArgs, books: &BooksArgs) -> Result<ExitCode> {
    let pair = scenario::books(args, books, |half, report| print_half(args, half, report))?;
    println!("{}", report::books_table(&pair.books, &pair.ticks));
    Ok(exit(args, pair.books.clean && pair.ticks.clean))
}

/// Prints one half's table and writes its JSON (`x.json` → `x-HALF.json`).
fn print_half(args: &RunArgs, half: &str, report: &RunReport) -> Result<()> {
    println!("{}", report.table());
    if let Some(path) = &args.report_json {
        let path = scenario::half_file(path, half);
        report.write_json(&path)?;
        eprintln!("loadtest: wrote {}", path.display());
    }
    Ok(())
}

/// Exit 1 with --assert-clean when a run was not clean.
fn exit(args: &RunArgs, clean: bool) -> ExitCode {
    if args.assert_clean && !clean {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn soak_run(args: &RunArgs, soak: &SoakArgs) -> Result<ExitCode> {
    let report = scenario::soak(args, soak)?;
    println!("{}", report.summary());
    if let Some(path) = &args.report_json {
        report.write_json(path)?;
        eprintln!("loadtest: wrote {}", path.display());
    }
    if let Some(path) = &args.svg {
        report::soak_svg(&report, path)?;
        eprintln!("loadtest: wrote {}", path.display());
    }
    Ok(if args.assert_clean && !report.clean {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn summarize(files: &[PathBuf], out: Option<&Path>, svg: Option<&str>) -> Result<ExitCode> {
    let reports = files
        .iter()
        .map(|f| Ok((report::link_from(out, f), RunReport::read_json(f)?)))
        .collect::<Result<Vec<_>>>()?;
    let md = report::summarize(&reports, svg);
    match out {
        Some(path) => std::fs::write(path, md)?,
        None => print!("{md}"),
    }
    Ok(ExitCode::SUCCESS)
}
