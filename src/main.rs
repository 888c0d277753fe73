//! The `runway` binary: everything lives in the library; see `runway::cli`.

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("RUNWAY_LOG"))
        .with_writer(std::io::stderr)
        .init();
    runway::cli::main()
}
