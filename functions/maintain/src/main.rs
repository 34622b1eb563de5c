//! Maintenance Lambda: on its EventBridge schedule (or a direct `{"table": "orders"}`), compaction,
//! checkpoints, log cleanup below every consumer's watermark, vacuum and expiry, each task its own
//! commit. Thin: parse, call the shared crate, answer with the run's report.

use std::sync::Arc;

use lakehouse::handler::MaintainHandler;
use lakehouse::telemetry;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init(telemetry::FUNCTION_DEFAULT);
    // Metrics as EMF lines on stdout: CloudWatch Logs extracts them.
    telemetry::emf::install(|line| println!("{line}"));
    let config = lakehouse::handler::config_from_env().await?;
    let handler = Arc::new(MaintainHandler::from_config(config));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let handler = handler.clone();
        async move { handler.handle(&event.payload).await.map_err(Error::from) }
    }))
    .await
}
