//! The broker conformance suite on SQLite: always runs, one database file
//! per test (kept under cargo's per-target temp dir, removed by `cargo
//! clean`).

use surge_queue::broker::BrokerConfig;
use surge_queue::broker::sqlite::SqliteBroker;

async fn fresh() -> Option<SqliteBroker> {
    let dir = tempfile::Builder::new()
        .prefix("queue-conformance-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir")
        .keep();
    let url = format!("sqlite://{}", dir.join("queue.db").display());
    let broker = SqliteBroker::connect(&url, &BrokerConfig::default())
        .await
        .expect("connect");
    Some(broker)
}

surge_queue::conformance_tests!(fresh);
