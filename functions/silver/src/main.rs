//! Silver Lambda: "bronze table T committed" messages (or S3 events on `bronze/<table>/_delta_log/`)
//! → one exactly-once CDC MERGE into `silver/<table>`, announced to gold's queue. Thin: parse, call
//! the shared crate, answer with SQS partial batch failures.

use std::sync::Arc;

use lakehouse::handler::{SilverHandler, Windows};
use lakehouse::telemetry;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init(telemetry::FUNCTION_DEFAULT);
    // Metrics as EMF lines on stdout: CloudWatch Logs extracts them.
    telemetry::emf::install(|line| println!("{line}"));
    let config = lakehouse::handler::config_from_env().await?;
    let handler = Arc::new(
        SilverHandler::from_config(config)
            .await
            .with_windows(Windows::from_env()),
    );
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let handler = handler.clone();
        async move { handler.handle(&event.payload).await.map_err(Error::from) }
    }))
    .await
}
