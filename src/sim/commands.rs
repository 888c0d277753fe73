//! The simulated programs behind the shims in `DIR/bin`: `pnpm` and the server package's
//! scripts, `redis-cli`, `systemctl` and `git`. Each prints what its real counterpart would
//! and returns its exit code.

use super::dotenv::DotEnv;
use super::import::{self, Entity};
use super::init::SHIMS;
use super::state::{Tenant, TenantStatus};
use super::tenant::{self, Probes};
use super::{Error, Fault, Sim, code, git, golive_check, server, service, usage};

/// Runs `program args...` as the sim's stand-in for it.
pub async fn exec(sim: &Sim, program: &str, args: &[String]) -> Result<u8, Error> {
    match program {
        "pnpm" => pnpm(sim, args).await,
        "redis-cli" => redis_cli(sim, args),
        "systemctl" => systemctl(sim, args),
        "git" => git::git(sim, args),
        other => Err(Error::Invalid(format!(
            "`{other}` is not simulated; the sim has {}",
            SHIMS.join(", ")
        ))),
    }
}

async fn pnpm(sim: &Sim, args: &[String]) -> Result<u8, Error> {
    let (script, rest) = match args {
        [run, script, rest @ ..] if run == "run" => (script.as_str(), rest),
        [script, rest @ ..] => (script.as_str(), rest),
        [] => {
            eprintln!("Usage: pnpm [command] [flags]");
            return Ok(code::USAGE);
        }
    };
    match script {
        "dev" => {
            println!("> school-server@1.5.0 dev {}", sim.server_dir().display());
            server::serve(sim.clone(), None).await
        }
        "install" | "i" => {
            println!("Lockfile is up to date, resolution step is skipped");
            println!("Already up to date");
            Ok(code::OK)
        }
        "build" => {
            let state = sim.load()?;
            println!("> school-server@1.5.0 build\n> tsc -p .");
            if let Some(r) = state.head_release() {
                println!(
                    "built {} ({})",
                    r.tag.as_deref().unwrap_or("untagged"),
                    &r.sha[..7]
                );
            }
            Ok(code::OK)
        }
        "provision:tenant" => provision(sim, rest).await,
        "tenant:preflight" => preflight(sim, rest).await,
        "tenant:import" => import(sim, rest).await,
        "tenant:isolate" => set_status(sim, rest, TenantStatus::Isolated),
        "tenant:reactivate" => set_status(sim, rest, TenantStatus::Active),
        "simulate:usage" => usage::simulate(sim).await,
        "golive:check" => golive_check::check(sim).await,
        other => {
            eprintln!(" ERR_PNPM_NO_SCRIPT  Missing script: {other}");
            Ok(code::FAILED)
        }
    }
}

/// The one positional argument a tenant script takes.
fn slug_arg<'a>(args: &'a [String], usage: &str) -> Result<&'a str, Error> {
    match args {
        [slug] => Ok(slug),
        _ => Err(Error::Invalid(format!("usage: {usage}"))),
    }
}

async fn provision(sim: &Sim, args: &[String]) -> Result<u8, Error> {
    let slug = slug_arg(args, "pnpm provision:tenant <schoolSlug>")?;
    let schema = tenant::schema_of(slug)?;
    let state = sim.load()?;
    let url = state.database_url.as_deref().ok_or(Error::NoDatabase)?;
    let env = DotEnv::read(&sim.env_file());
    let others = state.tenants.keys().filter(|s| s.as_str() != slug).count() as u64;
    if env.pilot_mode() && others >= env.max_schools() {
        eprintln!(
            "schoolCountGuard: {others} school(s) exist and MAX_SCHOOLS={} in pilot mode; {slug} was not created",
            env.max_schools()
        );
        return Ok(code::FAILED);
    }
    let complete = !state.has(Fault::FailingPreflight);
    let mut conn = tenant::connect(url).await?;
    let done = tenant::provision(&mut conn, slug, &schema, complete).await?;
    sim.update(|s| {
        s.tenants.entry(slug.to_owned()).or_insert(Tenant {
            schema: schema.clone(),
            status: TenantStatus::Active,
        });
    })?;
    println!(
        "Provisioned tenant {slug}: schema {schema}, {} tables",
        done.tables
    );
    if done.roles_seeded {
        println!("  roles: {}", tenant::ROLES.join(", "));
    } else {
        println!("  warning: the RBAC seed step did not complete (no roles)");
    }
    if done.admin_ready {
        println!("  bootstrap admin: {}", tenant::bootstrap_admin(slug));
    } else {
        println!(
            "  warning: bootstrap admin {} has no password hash and is inactive",
            tenant::bootstrap_admin(slug)
        );
    }
    Ok(code::OK)
}

/// The schema of a school: as provisioned, else as it would be.
fn schema_for(sim: &Sim, slug: &str) -> Result<String, Error> {
    match sim.load()?.tenants.get(slug) {
        Some(t) => Ok(t.schema.clone()),
        None => tenant::schema_of(slug),
    }
}

async fn telemetry(port: u16) -> Result<String, String> {
    let client = super::load::client(std::time::Duration::from_secs(5));
    let response = client
        .get(format!("http://127.0.0.1:{port}/health/golive"))
        .send()
        .await
        .map_err(|_| format!("the dashboard on port {port} does not answer"))?;
    let bytes = response.bytes().await.map_err(|e| e.to_string())?;
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|j| {
            j["overall"]
                .as_str()
                .map(|o| format!("dashboard answers, overall {o}"))
        })
        .ok_or_else(|| "the dashboard answered without an overall".into())
}

async fn preflight(sim: &Sim, args: &[String]) -> Result<u8, Error> {
    let slug = slug_arg(args, "pnpm tenant:preflight <schoolSlug>")?;
    let schema = schema_for(sim, slug)?;
    let state = sim.load()?;
    let probes = Probes {
        telemetry: telemetry(state.port).await,
        redis_ok: !state.has(Fault::RedisDown),
        pilot_mode: DotEnv::read(&sim.env_file()).pilot_mode(),
    };
    let checks = match &state.database_url {
        Some(url) => {
            let mut conn = tenant::connect(url).await?;
            tenant::preflight(Some(&mut conn), &schema, &probes).await?
        }
        None => tenant::preflight(None, &schema, &probes).await?,
    };
    println!("Tenant preflight: {slug} (schema {schema})");
    for c in &checks {
        let mark = match (c.ok, c.critical) {
            (true, _) => "PASS",
            (false, true) => "FAIL",
            (false, false) => "WARN",
        };
        println!("  [{mark}] {:<20} {:<36} {}", c.name, c.what, c.detail);
    }
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| c.critical && !c.ok)
        .map(|c| c.name)
        .collect();
    let passed = checks.iter().filter(|c| c.ok).count();
    if failed.is_empty() {
        println!(
            "Activation ALLOWED ({passed}/{} checks passed)",
            checks.len()
        );
        Ok(code::OK)
    } else {
        println!("Activation BLOCKED: {} failed", failed.join(", "));
        Ok(code::FAILED)
    }
}

async fn import(sim: &Sim, args: &[String]) -> Result<u8, Error> {
    let validate_only = args.iter().any(|a| a == "--validate-only");
    let positional: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let [slug, entity, file] = positional.as_slice() else {
        return Err(Error::Invalid(
            "usage: pnpm tenant:import <schoolSlug> <students|teachers|classes|subjects> <file.csv> [--validate-only]"
                .into(),
        ));
    };
    let entity: Entity = entity.parse()?;
    let schema = schema_for(sim, slug)?;
    let state = sim.load()?;
    let url = state.database_url.as_deref().ok_or(Error::NoDatabase)?;
    let text = std::fs::read_to_string(file.as_str()).map_err(Error::io(file.as_str()))?;
    let env = DotEnv::read(&sim.env_file());
    // The pilot guard (enforceImportLimits) is a no-op outside pilot mode, as in the seed.
    let max_rows = env.pilot_mode().then(|| {
        std::env::var("PILOT_MAX_IMPORT_ROWS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| env.max_import_rows())
    });
    let mut conn = tenant::connect(url).await?;
    let report = import::validate(&mut conn, &schema, entity, &text, max_rows).await?;
    let mut result = serde_json::json!({
        "school": slug,
        "entity": entity.name(),
        "file": file,
        "validationReport": report.json(),
    });
    if validate_only || !report.can_proceed() {
        if !validate_only {
            result["imported"] = false.into();
        }
        println!("{result}");
        for e in &report.errors {
            eprintln!("  {e}");
        }
        return Ok(if report.can_proceed() {
            code::OK
        } else {
            code::FAILED
        });
    }
    match import::import(&mut conn, &schema, entity, file, &report).await {
        Ok((inserted, updated)) => {
            result["rolledBack"] = false.into();
            result["inserted"] = inserted.into();
            result["updated"] = updated.into();
            println!("{result}");
            Ok(code::OK)
        }
        Err(e) => {
            result["rolledBack"] = true.into();
            result["error"] = e.to_string().into();
            println!("{result}");
            Ok(code::FAILED)
        }
    }
}

fn set_status(sim: &Sim, args: &[String], status: TenantStatus) -> Result<u8, Error> {
    let verb = match status {
        TenantStatus::Isolated => "tenant:isolate",
        TenantStatus::Active => "tenant:reactivate",
    };
    let slug = slug_arg(args, &format!("pnpm {verb} <schoolSlug>"))?;
    let found = sim.update(|s| match s.tenants.get_mut(slug) {
        Some(t) => {
            t.status = status;
            true
        }
        None => false,
    })?;
    if !found {
        eprintln!("no tenant {slug}: nothing to change");
        return Ok(code::FAILED);
    }
    match status {
        TenantStatus::Isolated => {
            println!(
                "Tenant {slug} isolated: its users see the offline notice; other schools are unaffected"
            )
        }
        TenantStatus::Active => println!("Tenant {slug} reactivated"),
    }
    Ok(code::OK)
}

/// Options of redis-cli that take a value.
const REDIS_VALUED: [&str; 7] = ["-u", "-h", "-p", "-a", "-n", "--user", "--pass"];

fn redis_cli(sim: &Sim, args: &[String]) -> Result<u8, Error> {
    let state = sim.load()?;
    let mut url = None;
    let mut rest = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if REDIS_VALUED.contains(&a) {
            if a == "-u" {
                url = args.get(i + 1).cloned();
            }
            i += 2;
        } else if a.starts_with('-') {
            i += 1;
        } else {
            rest.push(a);
            i += 1;
        }
    }
    let target = url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .map(|u| {
            format!(
                "{}:{}",
                u.host_str().unwrap_or("127.0.0.1"),
                u.port().unwrap_or(6379)
            )
        })
        .unwrap_or_else(|| "127.0.0.1:6379".into());
    let Some((command, _)) = rest.split_first() else {
        eprintln!("runway sim: redis-cli needs a command (interactive mode is not simulated)");
        return Ok(code::USAGE);
    };
    if state.has(Fault::RedisDown) {
        eprintln!("Could not connect to Redis at {target}: Connection refused");
        return Ok(code::FAILED);
    }
    match command.to_ascii_uppercase().as_str() {
        "PING" => println!("PONG"),
        "FLUSHDB" | "FLUSHALL" => {
            sim.update(|s| s.cache_flushes += 1)?;
            println!("OK");
        }
        "INFO" => println!("# Server\r\nredis_version:7.2.0-runway-sim\r\n"),
        other => {
            println!("(error) ERR unknown command '{other}'");
            return Ok(code::FAILED);
        }
    }
    Ok(code::OK)
}

fn systemctl(sim: &Sim, args: &[String]) -> Result<u8, Error> {
    let words: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let (verb, unit) = match words.as_slice() {
        [verb, unit] => (*verb, *unit),
        _ => {
            eprintln!("runway sim: usage: systemctl start|stop|restart|is-active|status UNIT");
            return Ok(code::USAGE);
        }
    };
    let state = sim.load()?;
    let name = unit.strip_suffix(".service").unwrap_or(unit);
    if name != state.service_unit {
        if verb == "is-active" {
            println!("inactive");
            return Ok(3);
        }
        eprintln!("Failed to {verb} {name}.service: Unit {name}.service not found.");
        return Ok(5);
    }
    match verb {
        "start" => {
            service::start(sim)?;
        }
        "stop" => {
            service::stop(sim)?;
        }
        "restart" | "reload-or-restart" | "try-restart" => {
            service::stop(sim)?;
            service::start(sim)?;
        }
        "is-active" => {
            return Ok(if service::running(&state).is_some() {
                println!("active");
                code::OK
            } else {
                println!("inactive");
                3
            });
        }
        "status" => {
            return Ok(match service::running(&state) {
                Some(pid) => {
                    println!("● {name}.service - School platform (runway sim)");
                    println!("     Active: active (running)");
                    println!("   Main PID: {pid}");
                    code::OK
                }
                None => {
                    println!("○ {name}.service - School platform (runway sim)");
                    println!("     Active: inactive (dead)");
                    3
                }
            });
        }
        other => {
            eprintln!("runway sim: `systemctl {other}` is not simulated");
            return Ok(code::USAGE);
        }
    }
    Ok(code::OK)
}
