//! Logging setup shared by the functions and the CLI: JSON lines on Lambda (CloudWatch-friendly),
//! compact text elsewhere; `RUST_LOG` filters (default: our crates at info, dependencies at warn).

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,buoyant_kernel=off,lakehouse=info,bronze=info"));
    let on_lambda = std::env::var("AWS_LAMBDA_FUNCTION_NAME").is_ok();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Ignore "already set": tests and the CLI may call this more than once.
    let _ = if on_lambda {
        builder.json().without_time().try_init()
    } else {
        builder.compact().try_init()
    };
}
