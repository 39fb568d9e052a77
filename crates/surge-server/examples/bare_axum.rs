//! A bare one-route axum server: the near-limit reference for the web
//! benchmark (`bench/web.sh`).
//!
//! `GET /health` answers a small JSON object; there is no middleware, no
//! database, no logging. Whatever surge's `/health` costs beyond this is the
//! price of its middleware stack and health check.
//!
//! Usage: `bare_axum PORT` (binds 127.0.0.1:PORT; PORT 0 picks a free port).
//! Prints `bare_axum listening on http://IP:PORT` on stdout once listening.

use std::net::SocketAddr;

use axum::{Json, Router, routing::get};
use serde_json::{Value, json};

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = match std::env::args().nth(1) {
        Some(arg) => arg.parse().map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("PORT must be an integer 0..=65535, got {arg:?}: {e}"),
            )
        })?,
        None => {
            eprintln!("usage: bare_axum PORT");
            std::process::exit(2);
        }
    };
    let app = Router::new().route("/health", get(health));
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    println!("bare_axum listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
