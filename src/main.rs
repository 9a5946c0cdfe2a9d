//! Wires the service: logging, config, build, run until a signal.

use std::io::BufRead;
use std::process::ExitCode;

use flashsale::{App, Config, app, ids::SaleId, shutdown, telemetry};
use tokio_util::sync::CancellationToken;

/// mimalloc: glibc malloc took a fifth of the server's CPU on the purchase
/// path (perf, 2026-11-24), mostly small short-lived allocations.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: flashsale [serve] | create-admin [--email EMAIL] [--name NAME] | reconcile [SALE_ID]
  create-admin reads the password from ADMIN_PASSWORD or, when unset, from the first line of stdin.";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_json);
    let result = match args.first().map(String::as_str) {
        None | Some("serve") => serve(config).await,
        Some("create-admin") => create_admin(config, &args[1..]).await,
        Some("reconcile") => reconcile(config, args.get(1)).await,
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        Some(other) => {
            eprintln!("unknown command `{other}`\n{USAGE}");
            Ok(ExitCode::from(2))
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "fatal");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    let app = App::build(config).await?;
    tracing::info!(addr = %app.local_addr(), "flashsale listening");
    let stop = CancellationToken::new();
    let signal_stop = stop.clone();
    tokio::spawn(async move {
        shutdown::signal().await;
        signal_stop.cancel();
    });
    app.run_until_stopped(stop).await;
    Ok(ExitCode::SUCCESS)
}

async fn create_admin(config: Config, args: &[String]) -> anyhow::Result<ExitCode> {
    let mut email = config.auth.admin_email.clone();
    let mut name = config.auth.admin_name.clone();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--email" => email = it.next().cloned(),
            "--name" => name = it.next().cloned().unwrap_or(name),
            other => anyhow::bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    let email =
        email.ok_or_else(|| anyhow::anyhow!("ADMIN_EMAIL: give --email or set ADMIN_EMAIL"))?;
    let password = match &config.auth.admin_password {
        Some(p) => p.expose().to_owned(),
        None => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    let state = app::state_for_command(config).await?;
    let outcome = app::ensure_admin(&state, &email, &password, &name).await?;
    println!("admin {email}: {outcome}");
    Ok(ExitCode::SUCCESS)
}

async fn reconcile(config: Config, sale: Option<&String>) -> anyhow::Result<ExitCode> {
    let state = app::state_for_command(config).await?;
    let reports = match sale {
        Some(s) => {
            let id = SaleId::parse(s).map_err(|_| anyhow::anyhow!("`{s}` is not a sale id"))?;
            vec![state.reconciler.sale(id).await?]
        }
        None => state.reconciler.all().await?,
    };
    println!("{}", serde_json::to_string_pretty(&reports)?);
    let consistent = reports.iter().all(|r| r.consistent);
    Ok(if consistent {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
