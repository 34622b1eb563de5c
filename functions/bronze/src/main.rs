//! Bronze Lambda: S3 object-created events (direct, or via SQS/SNS/EventBridge) → `bronze/<table>`.
//! Thin by design: parse, call the shared crate, answer with SQS partial batch failures.

use std::sync::Arc;

use lakehouse::handler::{BronzeHandler, Windows};
use lakehouse::telemetry;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init(telemetry::FUNCTION_DEFAULT);
    // Metrics as EMF lines on stdout: CloudWatch Logs extracts them.
    telemetry::emf::install(|line| println!("{line}"));
    // Loaded once per cold start; a bad config fails the init phase with the table and field named.
    let config = lakehouse::handler::config_from_env().await?;
    let handler = Arc::new(
        BronzeHandler::from_config(config)
            .await?
            .with_windows(Windows::from_env()),
    );
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let handler = handler.clone();
        async move { handler.handle(&event.payload).await.map_err(Error::from) }
    }))
    .await
}
