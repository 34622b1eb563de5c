//! Logging setup shared by the functions and the CLI: JSON lines on Lambda (CloudWatch-friendly),
//! compact text elsewhere, always on stderr. `RUST_LOG` wins; otherwise the caller's default filter.

use tracing_subscriber::EnvFilter;

/// What a Lambda function logs by default: its steps at info, dependencies at warn. The delta kernel's
/// "no files in log segment" error on opening a table that does not exist yet is noise, so it is off.
pub const FUNCTION_DEFAULT: &str =
    "warn,buoyant_kernel=off,lakehouse=info,bronze=info,silver=info,gold=info";

/// Installs the subscriber with `default` unless `RUST_LOG` is set. Calling it again does nothing.
pub fn init(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let on_lambda = std::env::var("AWS_LAMBDA_FUNCTION_NAME").is_ok();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Ignore "already set": tests and the CLI may call this more than once.
    let _ = if on_lambda {
        builder.json().without_time().try_init()
    } else {
        // Colours only on a terminal: a log redirected to a file stays plain text.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        builder.compact().with_ansi(ansi).try_init()
    };
}

pub mod emf;
