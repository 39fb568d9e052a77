//! `surge serve`: open the database, listen, serve, shut down gracefully.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;
use std::sync::Arc;

use surge_queue::{Broker, Client, PublishRetry};
use surge_server::{AppState, Queue, router};
use surge_store::Database;
use tokio::net::TcpListener;

use crate::config::ServeSettings;
use crate::{logging, queue};

pub(crate) async fn run(settings: ServeSettings) -> anyhow::Result<()> {
    logging::init(settings.log_format, settings.log_level.as_deref())?;
    raise_fd_limit();

    let db = Database::connect(&settings.database_url, &settings.pool)
        .await
        .context("cannot open the database")?;
    // The broker waits as long as the database for a connection or lock
    // (--db-acquire-timeout), so that an unavailable broker is a prompt 503
    // like an unavailable database.
    let broker = queue::connect(
        &settings.broker_url,
        settings.pool.max_connections,
        Some(settings.pool.acquire_timeout),
    )
    .await?;
    let registry = Arc::new(crate::kinds::registry(
        settings.kinds,
        &settings.broker_url,
    )?);
    // A submission retries an unavailable broker a few times, not the six
    // times of a background publisher: each try may wait the acquire
    // timeout, and together they must end well within the request timeout
    // so that the client gets 503 broker_unavailable, not 503 timeout.
    let client =
        Client::new(broker.clone(), Arc::clone(&registry)).with_publish_retry(PublishRetry {
            attempts: 3,
            first: Duration::from_millis(50),
            max: Duration::from_millis(500),
        });
    let listener =
        listen(settings.bind).with_context(|| format!("cannot listen on {}", settings.bind))?;
    let addr = listener.local_addr()?;
    // The embedded workers are built first so that /stats can show their
    // slots; they report to the state's task metrics and start below.
    let worker = settings.worker.clone().map(|config| {
        queue::worker(
            broker.clone(),
            &settings.broker_url,
            Arc::clone(&registry),
            config,
            Arc::new(surge_queue::worker::NoObserver),
        )
    });
    let mut queue_state = Queue::new(client);
    if let Some(worker) = &worker {
        queue_state = queue_state.with_worker_slots(worker.slots());
    }
    let mut state = AppState::new(db.clone(), queue_state);
    if surge_crawl::crawls::is_broker_url(&settings.broker_url) {
        // `/crawls` reads the crawls the broker's workers write.
        let namespace = queue::broker_config(1, None).namespace;
        let crawls = surge_crawl::crawls::Crawls::connect(&settings.broker_url, &namespace)
            .await
            .context("cannot open the crawls on the broker")?;
        state = state.with_crawls(surge_server::CrawlApi::new(
            crawls,
            settings.kinds.fetch_allow_private,
        ));
    }
    // The dashboard's time series and runtime-lag probe (ends with the state).
    state.spawn_sampler();
    let metrics = Arc::clone(&state.metrics);
    let app = router(state, &settings.server);

    // One shutdown signal for the HTTP server and the embedded workers.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let workers = worker.map(|worker| {
        tracing::info!(
            slots = worker.slots().size(),
            queues = ?worker.slots().queues(),
            backend = broker.backend(),
            "embedded workers starting"
        );
        tokio::spawn(worker.with_observer(metrics.tasks()).run(stopped()))
    });

    tracing::info!(
        %addr,
        backend = db.backend().as_str(),
        pool_size = settings.pool.max_connections,
        max_in_flight = settings.server.max_in_flight,
        request_timeout_s = settings.server.request_timeout.as_secs_f64(),
        "surge serve started"
    );
    if settings.server.api_token.is_none() {
        if addr.ip().is_loopback() {
            tracing::warn!(
                "no API token configured: the API is open, so surge listens on loopback only"
            );
        } else {
            tracing::warn!(%addr, "no API token configured and --allow-unauthenticated given: the API is open to anyone who can reach {addr}");
        }
    }
    // The one line on stdout: scripts and tests read the address from it.
    let mut out = std::io::stdout().lock();
    writeln!(out, "surge listening on http://{addr}")?;
    out.flush()?;
    drop(out);

    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel();
    let server = axum::serve(
        listener.tap_io(|tcp| {
            // Small JSON answers: send them now rather than waiting on Nagle.
            let _ = tcp.set_nodelay(true);
        }),
        app.into_make_service(),
    )
    .with_graceful_shutdown(async move {
        let signal = shutdown_signal().await;
        tracing::info!(
            signal,
            grace_s = settings.shutdown_grace.as_secs_f64(),
            "shutting down: no new connections, waiting for in-flight requests and running tasks"
        );
        stop_tx.send_replace(true);
        let _ = signalled_tx.send(());
    });

    let grace = settings.shutdown_grace;
    tokio::select! {
        served = server.into_future() => served.context("server error")?,
        () = async {
            if signalled_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => {
            tracing::warn!(grace_s = grace.as_secs_f64(), "grace period over: dropping the requests still running");
        }
    }
    if let Some(workers) = workers {
        // The workers have their own grace period (the same length) and
        // hand back what still runs after it.
        match workers.await {
            Ok(Ok(report)) => {
                tracing::info!(handed_back = report.handed_back, "embedded workers stopped")
            }
            Ok(Err(e)) => tracing::error!(error = %e, "embedded workers failed"),
            Err(e) => tracing::error!(error = %e, "embedded workers panicked"),
        }
    }
    db.close().await;
    tracing::info!("surge serve stopped");
    Ok(())
}

/// Binds with a deep accept backlog: thousands of clients connecting at
/// once (a load test, a reconnect storm) would otherwise overflow tokio's
/// default of 1024 and wait out SYN retransmits (1 s, 3 s, …). The kernel
/// caps it at `net.core.somaxconn`.
fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(8192)
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM, naming which.
pub(crate) async fn shutdown_signal() -> &'static str {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => "SIGINT",
        () = term => "SIGTERM",
    }
}

/// Lets the server hold as many connections as the hard limit allows (the
/// soft limit is often 1024, far below what one process can serve).
fn raise_fd_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
}
