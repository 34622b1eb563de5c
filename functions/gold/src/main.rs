//! Gold Lambda: "silver table T committed" messages (or S3 events on `silver/<table>/_delta_log/`)
//! → every gold view reading T brought up to date: only the groups the silver changes touched are
//! recomputed and MERGEd, exactly once. Thin: parse, call the shared crate, answer with SQS partial
//! batch failures.

use std::sync::Arc;

use lakehouse::gold::GoldWriter;
use lakehouse::{handler, telemetry, PipelineConfig};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = Arc::new(PipelineConfig::from_env().await?);
    let writer = Arc::new(GoldWriter::new(config.clone()));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let (writer, config) = (writer.clone(), config.clone());
        async move {
            handler::handle_gold_payload(&writer, &config, &event.payload)
                .await
                .map_err(Error::from)
        }
    }))
    .await
}
