//! How tasks travel to and from Redis: submissions flattened into script
//! arguments, task hashes decoded into records. Ids are stored as 32 lower
//! hex digits (UUIDv7, so they sort by time), timestamps as integer
//! microseconds since the Unix epoch, JSON payloads verbatim.

use ::redis::{ScriptInvocation, Value};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::BrokerError;
use crate::model::{NewTask, TaskRecord, TaskState};

/// The fields of a task hash, in the order `FIELDS` of `lua/prelude.lua`
/// lists them (scripts return them in this order).
pub(super) const FIELDS: [&str; 21] = [
    "kind",
    "args",
    "queue",
    "prio",
    "state",
    "attempts",
    "max_retries",
    "run_at",
    "unique",
    "group",
    "options",
    "worker",
    "epoch",
    "cancel",
    "progress",
    "result",
    "error",
    "created_at",
    "started_at",
    "finished_at",
    "expires_at",
];

/// An id as stored: 32 lower hex digits.
pub(super) fn hex(id: Uuid) -> String {
    id.simple().to_string()
}

/// A timestamp as stored: microseconds since the Unix epoch.
pub(super) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// Appends `t` as the 10 arguments `enqueue` of `lua/prelude.lua` reads:
/// id, kind, args, queue, priority, run_at, max_retries, unique key, group,
/// options (`""` for none).
pub(super) fn push_new_task(
    inv: &mut ScriptInvocation<'_>,
    t: &NewTask,
) -> Result<(), BrokerError> {
    inv.arg(hex(t.id))
        .arg(&t.kind)
        .arg(serde_json::to_vec(&t.args)?)
        .arg(&t.queue)
        .arg(t.priority)
        .arg(micros(t.run_at))
        .arg(t.max_retries)
        .arg(t.unique_key.as_deref().unwrap_or(""))
        .arg(t.group_id.map(hex).unwrap_or_default())
        .arg(serde_json::to_vec(&t.options)?);
    Ok(())
}

/// The elements of an array reply.
pub(super) fn array(v: Value) -> Result<Vec<Value>, BrokerError> {
    match v {
        Value::Array(items) | Value::Set(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(BrokerError::Data(format!(
            "expected an array, got {other:?}"
        ))),
    }
}

/// The bytes of a string reply; `None` for nil (a missing field).
pub(super) fn bytes(v: &Value) -> Result<Option<&[u8]>, BrokerError> {
    match v {
        Value::Nil => Ok(None),
        Value::BulkString(b) => Ok(Some(b)),
        Value::SimpleString(s) => Ok(Some(s.as_bytes())),
        other => Err(BrokerError::Data(format!(
            "expected a string, got {other:?}"
        ))),
    }
}

/// The text of a string reply; `None` for nil.
pub(super) fn text(v: &Value) -> Result<Option<&str>, BrokerError> {
    bytes(v)?
        .map(|b| std::str::from_utf8(b).map_err(|e| BrokerError::Data(e.to_string())))
        .transpose()
}

/// An integer reply (a Lua number) or a string holding one.
pub(super) fn int(v: &Value) -> Result<i64, BrokerError> {
    match v {
        Value::Int(n) => Ok(*n),
        other => parse(text(other)?, "an integer"),
    }
}

/// An id reply.
pub(super) fn id(v: &Value) -> Result<Uuid, BrokerError> {
    let b = bytes(v)?.ok_or_else(|| BrokerError::Data("missing id".to_owned()))?;
    Uuid::try_parse_ascii(b).map_err(|e| BrokerError::Data(format!("bad id: {e}")))
}

/// A timestamp from integer microseconds.
pub(super) fn time_from_micros(us: i64) -> Result<DateTime<Utc>, BrokerError> {
    DateTime::from_timestamp_micros(us)
        .ok_or_else(|| BrokerError::Data(format!("timestamp out of range: {us}")))
}

fn parse<T: std::str::FromStr>(s: Option<&str>, what: &str) -> Result<T, BrokerError> {
    let s = s.ok_or_else(|| BrokerError::Data(format!("missing {what}")))?;
    s.parse()
        .map_err(|_| BrokerError::Data(format!("expected {what}, got {s:?}")))
}

fn opt_time(v: &Value) -> Result<Option<DateTime<Utc>>, BrokerError> {
    text(v)?
        .map(|s| time_from_micros(parse(Some(s), "a timestamp")?))
        .transpose()
}

fn opt_json<T: DeserializeOwned>(v: &Value) -> Result<Option<T>, BrokerError> {
    Ok(bytes(v)?.map(serde_json::from_slice).transpose()?)
}

fn opt_id(v: &Value) -> Result<Option<Uuid>, BrokerError> {
    match v {
        Value::Nil => Ok(None),
        v => id(v).map(Some),
    }
}

/// Decodes the `FIELDS` of task `id`; `None` when the task does not exist
/// (every field nil).
pub(super) fn record(id: Uuid, f: &[Value]) -> Result<Option<TaskRecord>, BrokerError> {
    let [
        kind,
        args,
        queue,
        prio,
        state,
        attempts,
        max_retries,
        run_at,
        unique,
        group,
        options,
        worker,
        epoch,
        cancel,
        progress,
        result,
        error,
        created_at,
        started_at,
        finished_at,
        expires_at,
    ] = f
    else {
        return Err(BrokerError::Data(format!(
            "task {id}: expected {} fields, got {}",
            FIELDS.len(),
            f.len()
        )));
    };
    let Some(state) = text(state)? else {
        return Ok(None);
    };
    let decode = || -> Result<TaskRecord, BrokerError> {
        let required = |v: &Value, what: &str| -> Result<DateTime<Utc>, BrokerError> {
            opt_time(v)?.ok_or_else(|| BrokerError::Data(format!("missing {what}")))
        };
        Ok(TaskRecord {
            id,
            kind: parse(text(kind)?, "a kind")?,
            args: opt_json(args)?.unwrap_or_default(),
            queue: parse(text(queue)?, "a queue")?,
            priority: parse(text(prio)?, "a priority")?,
            state: TaskState::parse(state)
                .ok_or_else(|| BrokerError::Data(format!("unknown state {state:?}")))?,
            attempts: parse(text(attempts)?, "attempts")?,
            max_retries: parse(text(max_retries)?, "max_retries")?,
            run_at: required(run_at, "run_at")?,
            unique_key: text(unique)?.map(str::to_owned),
            group_id: opt_id(group)?,
            options: opt_json(options)?.unwrap_or_default(),
            worker_id: opt_id(worker)?,
            epoch: parse(text(epoch)?, "an epoch")?,
            cancel_requested: text(cancel)? == Some("1"),
            progress: opt_json(progress)?,
            result: opt_json(result)?,
            error: opt_json(error)?,
            created_at: required(created_at, "created_at")?,
            started_at: opt_time(started_at)?,
            finished_at: opt_time(finished_at)?,
            expires_at: opt_time(expires_at)?,
        })
    };
    decode().map(Some).map_err(|e| match e {
        BrokerError::Data(m) => BrokerError::Data(format!("task {id}: {m}")),
        other => other,
    })
}

/// Decodes a script's flat list of tasks: per task its id, then its
/// `FIELDS`.
pub(super) fn records(values: &[Value]) -> Result<Vec<TaskRecord>, BrokerError> {
    let width = FIELDS.len() + 1;
    if !values.len().is_multiple_of(width) {
        return Err(BrokerError::Data(format!(
            "a task list of {} values is not a multiple of {width}",
            values.len()
        )));
    }
    let mut out = Vec::with_capacity(values.len() / width);
    for chunk in values.chunks_exact(width) {
        let id = id(&chunk[0])?;
        if let Some(r) = record(id, &chunk[1..])? {
            out.push(r);
        }
    }
    Ok(out)
}
