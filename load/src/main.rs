//! flashsale-load: drives the flashsale HTTP service on this machine with a
//! closed or an open (coordinated-omission-corrected) load model, reports
//! throughput, latency percentiles and outcomes, and checks the sale's
//! invariants afterwards; `ws` measures WebSocket watchers (connections held,
//! memory per connection, purchase-to-stockUpdate delay). See `load/README.md`.

mod args;
mod cpu;
mod driver;
mod flood;
mod http;
mod purchase;
mod report;
mod stats;
mod token;
mod util;
mod ws;

use std::process::ExitCode;

use args::Command;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let cmd = match args::parse(&argv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("flashsale-load: {e}\n(run `flashsale-load --help` for usage)");
            return ExitCode::from(2);
        }
    };
    let threads = match &cmd {
        Command::Help => {
            print!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Command::Purchase(c, _) | Command::Get(c, _) => c.threads,
        Command::Ws(w) => w.threads,
        Command::Flood(f) => f.threads,
    };
    let job = &cmd;
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(t) = threads {
        rt.worker_threads(t);
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("flashsale-load: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = rt.block_on(async {
        match job {
            Command::Purchase(c, p) => purchase::run(c, p).await,
            Command::Get(c, path) => purchase::run_get(c, path).await,
            Command::Ws(w) => ws::run(w).await,
            Command::Flood(f) => flood::run(f).await,
            Command::Help => Ok(true),
        }
    });
    // Do not wait for connection tasks still parked on keep-alive sockets.
    rt.shutdown_background();
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("flashsale-load: {e}");
            ExitCode::from(2)
        }
    }
}
