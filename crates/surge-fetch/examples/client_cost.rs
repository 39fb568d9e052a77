//! Evidence for the choice of HTTP client: N GETs of one URL at concurrency C
//! with reqwest or with hyper-util's pooled client, nothing else. Run it
//! under `valgrind --tool=callgrind` (instructions per request) or time it:
//!
//! ```sh
//! cargo run --release -p surge-fetch --example client_cost -- hyper http://127.0.0.1:8080/ 20000 100
//! ```

use std::sync::Arc;
use std::time::Instant;

use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (which, url, n, c) = (
        args[1].clone(),
        args[2].clone(),
        args[3].parse::<usize>().unwrap(),
        args[4].parse::<usize>().unwrap(),
    );
    let sem = Arc::new(Semaphore::new(c));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    match which.as_str() {
        "reqwest" => {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(c)
                .build()
                .unwrap();
            for _ in 0..n {
                let permit = Arc::clone(&sem).acquire_owned().await.unwrap();
                let (client, url) = (client.clone(), url.clone());
                tasks.spawn(async move {
                    let r = client.get(&url).send().await.unwrap();
                    let status = r.status().as_u16();
                    let _ = r.bytes().await.unwrap();
                    drop(permit);
                    status
                });
                while tasks.try_join_next().is_some() {}
            }
        }
        _ => {
            let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(c)
                .build_http();
            let uri: http::Uri = url.parse().unwrap();
            for _ in 0..n {
                let permit = Arc::clone(&sem).acquire_owned().await.unwrap();
                let (client, uri) = (client.clone(), uri.clone());
                tasks.spawn(async move {
                    let r = client.get(uri).await.unwrap();
                    let status = r.status().as_u16();
                    let _ = r.into_body().collect().await.unwrap();
                    drop(permit);
                    status
                });
                while tasks.try_join_next().is_some() {}
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{which}: {n} requests in {secs:.2}s = {:.0} req/s",
        n as f64 / secs
    );
}
