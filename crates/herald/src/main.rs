//! The `herald` command: parses the command line, sets up logging, runs one subcommand, and
//! turns its error into a message on stderr and an exit code (2: the input was refused, 1: the
//! command failed, e.g. Redis is unreachable).

/// `println!` for command output: a closed stdout (`herald … | head`) ends the command quietly
/// instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            panic!("writing to stdout: {e}");
        }
    }};
}

mod cli;
mod commands;
mod declarations;
mod failure;
mod settings;

use std::process::ExitCode;

/// mimalloc instead of the system allocator: a delivery allocates and frees many small
/// buffers (request, headers, Redis replies), and glibc's malloc was a sixth of a busy
/// worker's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herald: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let redis_url = cli.global.redis_url.clone();
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald: {}", commands::redact(&message(&e), &redis_url));
            ExitCode::from(failure::exit_code(&e))
        }
    }
}

/// `RUST_LOG` filters (default `info`); `HERALD_LOG_FORMAT=json` writes one JSON object per
/// line. Logs go to stderr; stdout is for command output.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if std::env::var("HERALD_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

/// The error and its causes on one line, leaving out causes that repeat what was already said.
fn message(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}
