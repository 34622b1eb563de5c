//! Gold Lambda: "silver table T committed" messages (or S3 events on `silver/<table>/_delta_log/`)
//! → every gold view reading T brought up to date: only the groups the silver changes touched are
//! recomputed and MERGEd, exactly once. Thin: parse, call the shared crate, answer with SQS partial
//! batch failures.

use std::sync::Arc;

use lakehouse::handler::{GoldHandler, Windows};
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
        GoldHandler::from_config(config)
            .await
            .with_windows(Windows::from_env()),
    );
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let handler = handler.clone();
        async move { handler.handle(&event.payload).await.map_err(Error::from) }
    }))
    .await
}
