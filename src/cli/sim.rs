//! `runway sim`: the bundled simulated target (the school platform of seed 000) that the
//! shipped go-live, health-check and rollback playbooks run against. See docs/sim.md.

use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser as _};

use super::{db, exit};
use crate::playbook::duration::Duration;
use crate::sim::{self, Environment, Fault, InitOptions, Sim};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: SimCommand,
}

#[derive(Debug, clap::Subcommand)]
enum SimCommand {
    /// Create a sim directory: shims in DIR/bin, the server package in DIR/server, backups,
    /// state; print the environment and params of a run against it.
    Init(InitArgs),
    /// Serve the platform's HTTP endpoints (/health/golive..., the admin API, /webhook).
    Serve(ServeArgs),
    /// Run a simulated program (`pnpm SCRIPT`, `redis-cli`, `systemctl`, `git`): what the
    /// shims in DIR/bin call.
    Exec(ExecArgs),
    /// Switch a fault on or off, also while a run goes on; without arguments, list them.
    Fault(FaultArgs),
    /// Print the environment and params of a run against the sim.
    Env(EnvArgs),
    /// Stop the sim's server (whoever started it).
    Stop(DirArg),
}

fn fault_parser() -> impl clap::builder::TypedValueParser<Value = Fault> {
    PossibleValuesParser::new(Fault::ALL.map(Fault::name)).map(|s| {
        s.parse::<Fault>()
            .expect("only fault names are possible values")
    })
}

fn duration_parser(text: &str) -> Result<Duration, String> {
    Duration::parse(text)
}

#[derive(Debug, clap::Args)]
struct InitArgs {
    /// The directory to create (e.g. `.runway/sim`).
    dir: PathBuf,
    /// The server's port on 127.0.0.1; 0 picks a free one now.
    #[arg(long, default_value_t = 3000)]
    port: u16,
    /// The platform's PostgreSQL database (created if missing): the playbooks' sql steps and
    /// the tenant scripts use it. Without it only the HTTP side works.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Drop and recreate that database first.
    #[arg(long, requires = "database_url")]
    fresh_database: bool,
    /// A fault switched on from the start. Repeat for more.
    #[arg(long = "fault", value_name = "FAULT", value_parser = fault_parser())]
    faults: Vec<Fault>,
    /// The delay of the slow-endpoint fault.
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = duration_parser)]
    slow_delay: Duration,
    /// How long a red flag stays raised after its trigger clears (the seed: 5 minutes).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = duration_parser)]
    alert_ttl: Duration,
    /// Replace DIR if it is a sim already (its server is stopped).
    #[arg(long)]
    force: bool,
    /// Print only `export K=V` lines, for `eval "$(runway sim init ... --env)"`.
    #[arg(long)]
    env: bool,
}

#[derive(Debug, clap::Args)]
struct DirArg {
    /// The sim directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    dir: DirArg,
    /// Listen here instead of the port in sim.json.
    #[arg(long)]
    port: Option<u16>,
}

#[derive(Debug, clap::Args)]
struct ExecArgs {
    #[command(flatten)]
    dir: DirArg,
    /// pnpm, redis-cli, systemctl or git.
    program: String,
    /// Its arguments, as given to the shim.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Switch {
    On,
    Off,
}

#[derive(Debug, clap::Args)]
struct FaultArgs {
    #[command(flatten)]
    dir: DirArg,
    #[arg(value_name = "FAULT", value_parser = fault_parser(), requires = "switch")]
    fault: Option<Fault>,
    #[arg(value_enum)]
    switch: Option<Switch>,
    /// With slow-endpoint: the delay of each response.
    #[arg(long, value_name = "DURATION", value_parser = duration_parser)]
    delay: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum EnvFormat {
    /// For people: the environment, the params, what to do next.
    Human,
    /// `export K=V` lines for `eval`.
    Shell,
    /// `key=value` lines, one `-p` of the go-live playbook each.
    Params,
}

#[derive(Debug, clap::Args)]
struct EnvArgs {
    #[command(flatten)]
    dir: DirArg,
    #[arg(long, value_enum, default_value_t = EnvFormat::Human)]
    format: EnvFormat,
}

pub fn run(args: &Args) -> anyhow::Result<u8> {
    match &args.command {
        SimCommand::Init(a) => init(a),
        SimCommand::Serve(a) => {
            let sim = Sim::open(&a.dir.dir)?;
            Ok(db::runtime()?.block_on(sim::serve(sim, a.port))?)
        }
        SimCommand::Exec(a) => {
            let sim = Sim::open(&a.dir.dir)?;
            Ok(db::runtime()?.block_on(sim::exec(&sim, &a.program, &a.args))?)
        }
        SimCommand::Fault(a) => fault(a),
        SimCommand::Env(a) => {
            let sim = Sim::open(&a.dir.dir)?;
            let environment = Environment::of(&sim, &sim.load()?);
            print!("{}", render(&sim, &environment, a.format));
            Ok(exit::OK)
        }
        SimCommand::Stop(a) => {
            let sim = Sim::open(&a.dir)?;
            match sim::stop(&sim)? {
                Some(pid) => println!("stopped the server (pid {pid})"),
                None => println!("no server was running"),
            }
            Ok(exit::OK)
        }
    }
}

fn init(a: &InitArgs) -> anyhow::Result<u8> {
    let options = InitOptions {
        dir: a.dir.clone(),
        port: a.port,
        database_url: a.database_url.clone(),
        fresh_database: a.fresh_database,
        faults: a.faults.clone(),
        slow_delay: a.slow_delay.as_std(),
        alert_ttl: a.alert_ttl.as_std(),
        force: a.force,
    };
    let done = db::runtime()?.block_on(sim::init(options))?;
    for w in &done.warnings {
        eprintln!("warning: {w}");
    }
    let format = if a.env {
        EnvFormat::Shell
    } else {
        EnvFormat::Human
    };
    print!("{}", render(&done.sim, &done.environment, format));
    Ok(exit::OK)
}

fn render(sim: &Sim, environment: &Environment, format: EnvFormat) -> String {
    match format {
        EnvFormat::Shell => environment.shell(),
        EnvFormat::Params => environment.params_lines(),
        EnvFormat::Human => {
            let dir = sim.dir().display();
            let mut out = format!(
                "sim in {dir}\n\nEnvironment of the run (eval \"$(runway sim env --dir {dir} --format shell)\"):\n"
            );
            for line in environment.shell().lines() {
                out.push_str(&format!("  {line}\n"));
            }
            out.push_str("\nParams of workflows/go-live.yaml:\n ");
            for (k, v) in &environment.params {
                out.push_str(&format!(" -p {k}={v}"));
            }
            out.push_str(&format!(
                "\n\nThe server: `runway sim serve --dir {dir}` (or the go-live step start-server runs `pnpm dev`).\n\
                 Faults: `runway sim fault --dir {dir} red-flag on` (list: `runway sim fault --dir {dir}`).\n"
            ));
            out
        }
    }
}

fn fault(a: &FaultArgs) -> anyhow::Result<u8> {
    let sim = Sim::open(&a.dir.dir)?;
    if let (Some(fault), Some(switch)) = (a.fault, a.switch) {
        let delay = a.delay;
        sim.update(|s| {
            match switch {
                Switch::On => s.faults.insert(fault),
                Switch::Off => s.faults.remove(&fault),
            };
            if let Some(d) = delay {
                s.slow_delay_ms = d.as_std().as_millis() as u64;
            }
        })?;
    }
    let state = sim.load()?;
    for f in Fault::ALL {
        let mark = if state.has(f) { "on " } else { "off" };
        let extra = if f == Fault::SlowEndpoint {
            format!(" (delay {}ms)", state.slow_delay_ms)
        } else {
            String::new()
        };
        println!("{mark} {:<18} {}{extra}", f.name(), f.describe());
    }
    Ok(exit::OK)
}
