//! The one writer: every write of this process goes through one task that
//! owns one connection and commits whatever is queued in one transaction.
//!
//! Callers send an operation and wait for its answer. The writer takes the
//! first queued operation and everything queued behind it (up to
//! [`MAX_BATCH`]), runs them in one `BEGIN IMMEDIATE` transaction, each in
//! its own savepoint (so one failing operation does not undo the others),
//! commits once and then answers every caller. Writers of this process
//! therefore never contend for SQLite's lock ("database is locked"), and a
//! burst of small writes costs one commit. Another process on the same file
//! competes for the lock through `busy_timeout`; when that runs out the
//! whole batch answers [`BrokerError::Unavailable`].

use std::sync::Arc;

use futures_util::future::BoxFuture;
use sqlx::SqliteConnection;
use tokio::sync::{mpsc, oneshot};

use super::signals::Signals;
use crate::BrokerError;

/// Most operations committed in one transaction: bounds how long one commit
/// holds the lock and how long its first caller waits.
const MAX_BATCH: usize = 256;

/// Operations waiting for the writer; senders wait when it is full.
const QUEUE: usize = 4 * MAX_BATCH;

/// What an operation runs against: the writer's connection, inside the
/// batch's transaction.
pub(super) struct Tx {
    /// The writer's connection.
    pub(super) conn: SqliteConnection,
    /// Queues on which this batch made a task ready (waiters are woken after
    /// the commit).
    pub(super) ready: Vec<String>,
}

impl Tx {
    /// Marks a task of `queue` ready: its waiters are woken after the commit.
    pub(super) fn wake(&mut self, queue: &str) {
        if !self.ready.iter().any(|q| q == queue) {
            self.ready.push(queue.to_owned());
        }
    }
}

/// A write operation: runs against [`Tx`] and leaves a result.
pub(super) type Op<'t, T> = BoxFuture<'t, Result<T, BrokerError>>;

/// Sends an operation's result (or its batch's commit error) to its caller.
type Reply = Box<dyn FnOnce(Option<&BrokerError>) + Send>;

/// A queued operation with its caller's answer channel.
trait Job: Send {
    /// Runs the operation; says whether it succeeded and how to answer.
    fn run(self: Box<Self>, tx: &mut Tx) -> BoxFuture<'_, (bool, Reply)>;
    /// Answers `e` without running (the batch could not start).
    fn fail(self: Box<Self>, e: &BrokerError);
}

struct Queued<T, F> {
    op: F,
    answer: oneshot::Sender<Result<T, BrokerError>>,
}

impl<T, F> Job for Queued<T, F>
where
    T: Send + 'static,
    F: for<'t> FnOnce(&'t mut Tx) -> Op<'t, T> + Send + 'static,
{
    fn run(self: Box<Self>, tx: &mut Tx) -> BoxFuture<'_, (bool, Reply)> {
        let Queued { op, answer } = *self;
        Box::pin(async move {
            let result = op(tx).await;
            let ok = result.is_ok();
            let reply: Reply = Box::new(move |commit| {
                let _ = answer.send(match commit {
                    None => result,
                    Some(e) => Err(same_kind(e)),
                });
            });
            (ok, reply)
        })
    }

    fn fail(self: Box<Self>, e: &BrokerError) {
        let _ = self.answer.send(Err(same_kind(e)));
    }
}

/// The handle callers send operations through.
#[derive(Clone)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

impl Writer {
    /// Starts the writer task on `conn`; it stops when every handle is gone.
    pub(super) fn spawn(conn: SqliteConnection, signals: Arc<Signals>) -> Writer {
        let (jobs, queued) = mpsc::channel(QUEUE);
        let tx = Tx {
            conn,
            ready: Vec::new(),
        };
        tokio::spawn(run(tx, queued, signals));
        Writer { jobs }
    }

    /// Runs `op` in the next batch and returns its result once committed.
    pub(super) async fn write<T, F>(&self, op: F) -> Result<T, BrokerError>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t mut Tx) -> Op<'t, T> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let stopped = || BrokerError::unavailable("the SQLite writer has stopped");
        self.jobs
            .send(Box::new(Queued { op, answer }))
            .await
            .map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }
}

/// A copy of a batch-wide error for each of its callers.
fn same_kind(e: &BrokerError) -> BrokerError {
    match e {
        BrokerError::Unavailable {
            message,
            retry_after,
        } => BrokerError::Unavailable {
            message: message.clone(),
            retry_after: *retry_after,
        },
        other => BrokerError::Backend(other.to_string()),
    }
}

async fn run(mut tx: Tx, mut queued: mpsc::Receiver<Box<dyn Job>>, signals: Arc<Signals>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queued.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH
            && let Ok(next) = queued.try_recv()
        {
            batch.push(next);
        }
        tx.ready.clear();
        let mut replies = Vec::with_capacity(batch.len());
        let commit = run_batch(&mut tx, &mut batch, &mut replies).await;
        if commit.is_ok() && !tx.ready.is_empty() {
            signals.ready(&tx.ready);
        }
        let failed = commit.err();
        for reply in replies {
            reply(failed.as_ref());
        }
        if let Some(e) = &failed {
            for job in batch.drain(..) {
                job.fail(e);
            }
        }
    }
}

/// Runs the jobs of `batch` in one transaction, moving each job that ran to
/// a reply in `replies`; on an error of the transaction itself, the jobs
/// that did not run stay in `batch`.
async fn run_batch(
    tx: &mut Tx,
    batch: &mut Vec<Box<dyn Job>>,
    replies: &mut Vec<Reply>,
) -> Result<(), BrokerError> {
    exec(tx, "BEGIN IMMEDIATE").await?;
    let end = match run_jobs(tx, batch, replies).await {
        Ok(true) => exec(tx, "COMMIT").await,
        // Nothing to keep: every job answers its own error.
        Ok(false) => {
            let _ = exec(tx, "ROLLBACK").await;
            return Ok(());
        }
        Err(e) => Err(e),
    };
    if end.is_err() {
        let _ = exec(tx, "ROLLBACK").await;
    }
    end
}

/// Runs every job, each in its own savepoint when there are several.
/// Returns whether any succeeded (something to commit).
async fn run_jobs(
    tx: &mut Tx,
    batch: &mut Vec<Box<dyn Job>>,
    replies: &mut Vec<Reply>,
) -> Result<bool, BrokerError> {
    // A lone job needs no savepoint: if it fails, the transaction is rolled
    // back.
    if batch.len() == 1
        && let Some(job) = batch.pop()
    {
        let (ok, reply) = job.run(tx).await;
        replies.push(reply);
        return Ok(ok);
    }
    let mut any_ok = false;
    let mut jobs = std::mem::take(batch).into_iter();
    while let Some(job) = jobs.next() {
        if let Err(e) = exec(tx, "SAVEPOINT op").await {
            batch.push(job);
            batch.extend(jobs);
            return Err(e);
        }
        let (ok, reply) = job.run(tx).await;
        replies.push(reply);
        any_ok |= ok;
        let mut end = Ok(());
        if !ok {
            end = exec(tx, "ROLLBACK TO op").await;
        }
        if end.is_ok() {
            end = exec(tx, "RELEASE op").await;
        }
        if let Err(e) = end {
            batch.extend(jobs);
            return Err(e);
        }
    }
    Ok(any_ok)
}

async fn exec(tx: &mut Tx, sql: &str) -> Result<(), BrokerError> {
    sqlx::query(sql).execute(&mut tx.conn).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::ConnectOptions;
    use sqlx::sqlite::SqliteConnectOptions;

    use super::*;

    async fn writer(dir: &tempfile::TempDir) -> (Writer, SqliteConnectOptions) {
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("w.db"))
            .create_if_missing(true);
        let mut conn = options.connect().await.expect("connect");
        sqlx::query("CREATE TABLE t (x INTEGER NOT NULL)")
            .execute(&mut conn)
            .await
            .expect("create");
        (Writer::spawn(conn, Arc::default()), options)
    }

    fn insert(tx: &mut Tx, x: i64) -> Op<'_, ()> {
        Box::pin(async move {
            sqlx::query("INSERT INTO t (x) VALUES (?1)")
                .bind(x)
                .execute(&mut tx.conn)
                .await?;
            Ok(())
        })
    }

    /// Inserts a row, then fails: the row must not survive.
    fn insert_then_fail(tx: &mut Tx) -> Op<'_, ()> {
        Box::pin(async move {
            insert(tx, -1).await?;
            sqlx::query("INSERT INTO missing (x) VALUES (1)")
                .execute(&mut tx.conn)
                .await?;
            Ok(())
        })
    }

    /// Holds the writer for `ms` (so that what is sent meanwhile forms one
    /// batch).
    fn hold(_tx: &mut Tx, ms: u64) -> Op<'_, ()> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(())
        })
    }

    async fn rows(options: &SqliteConnectOptions) -> Vec<i64> {
        let mut conn = options.connect().await.expect("connect");
        sqlx::query_scalar("SELECT x FROM t ORDER BY x")
            .fetch_all(&mut conn)
            .await
            .expect("select")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_op_loses_nothing_else_of_its_batch() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (w, options) = writer(&dir).await;
        let held = tokio::spawn({
            let w = w.clone();
            async move { w.write(|tx| hold(tx, 300)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut writes = Vec::new();
        for x in 0..10 {
            let w = w.clone();
            writes.push(tokio::spawn(async move {
                if x == 5 {
                    w.write(insert_then_fail).await
                } else {
                    w.write(move |tx| insert(tx, x)).await
                }
            }));
        }
        held.await.expect("join").expect("hold");
        for (x, h) in writes.into_iter().enumerate() {
            let got = h.await.expect("join");
            assert_eq!(got.is_err(), x == 5, "op {x}: {got:?}");
        }
        assert_eq!(rows(&options).await, vec![0, 1, 2, 3, 4, 6, 7, 8, 9]);
    }

    #[tokio::test]
    async fn a_lone_failing_op_is_rolled_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (w, options) = writer(&dir).await;
        assert!(w.write(insert_then_fail).await.is_err());
        w.write(|tx| insert(tx, 7)).await.expect("insert");
        assert_eq!(rows(&options).await, vec![7]);
    }
}
