//! Task kinds by name: what a worker can run and what a submission may name.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;
use surge_core::ErrorCategory;

use crate::model::TaskError;
use crate::task::{KindSettings, Task, TaskContext};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A registered kind with its payload type erased.
pub(crate) trait ErasedTask: Send + Sync {
    fn run(&self, ctx: TaskContext, args: Value) -> BoxFuture<Result<Value, TaskError>>;
    fn validate(&self, args: &Value) -> Result<(), String>;
}

struct Typed<T>(Arc<T>);

impl<T: Task> ErasedTask for Typed<T> {
    fn run(&self, ctx: TaskContext, args: Value) -> BoxFuture<Result<Value, TaskError>> {
        let task = Arc::clone(&self.0);
        Box::pin(async move {
            let args: T::Args = serde_json::from_value(args).map_err(|e| {
                TaskError::new(
                    ErrorCategory::Validation,
                    format!("bad args for {}: {e}", T::KIND),
                )
            })?;
            let output = task.run(ctx, args).await?;
            serde_json::to_value(output).map_err(|e| {
                TaskError::new(
                    ErrorCategory::System,
                    format!("result of {} is not JSON: {e}", T::KIND),
                )
            })
        })
    }

    fn validate(&self, args: &Value) -> Result<(), String> {
        T::Args::deserialize(args)
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

use serde::Deserialize as _;

/// A kind as registered.
#[derive(Clone)]
pub(crate) struct Kind {
    pub(crate) settings: KindSettings,
    pub(crate) handler: Arc<dyn ErasedTask>,
}

/// Why a submission was refused before reaching the broker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KindError {
    /// No kind of that name is registered.
    #[error("unknown task kind {kind:?} (known: {known})")]
    Unknown {
        /// The name given.
        kind: String,
        /// The registered names, comma-separated.
        known: String,
    },
    /// The args do not fit the kind's payload type.
    #[error("bad args for {kind}: {message}")]
    BadArgs {
        /// The kind.
        kind: String,
        /// What serde said.
        message: String,
    },
}

/// The registered task kinds.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<String, Kind>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.kinds.keys()).finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// A registry holding the built-in kinds (`noop`, `sleep`, `process`).
    pub fn with_builtins() -> Registry {
        let mut registry = Registry::new();
        crate::builtin::register(&mut registry);
        registry
    }

    /// Registers `task` under [`Task::KIND`], replacing any kind of that name.
    pub fn register<T: Task>(&mut self, task: T) -> &mut Self {
        let settings = task.settings();
        self.register_with(task, settings)
    }

    /// Registers `task` with `settings` instead of its own.
    pub fn register_with<T: Task>(&mut self, task: T, settings: KindSettings) -> &mut Self {
        self.kinds.insert(
            T::KIND.to_owned(),
            Kind {
                settings,
                handler: Arc::new(Typed(Arc::new(task))),
            },
        );
        self
    }

    /// The registered names, sorted.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }

    /// The settings of `kind`.
    pub fn settings(&self, kind: &str) -> Option<&KindSettings> {
        self.kinds.get(kind).map(|k| &k.settings)
    }

    pub(crate) fn get(&self, kind: &str) -> Option<&Kind> {
        self.kinds.get(kind)
    }

    /// Checks that `kind` is registered and `args` fit its payload type.
    ///
    /// # Errors
    /// [`KindError`] naming what is wrong.
    pub fn validate(&self, kind: &str, args: &Value) -> Result<&KindSettings, KindError> {
        let Some(k) = self.kinds.get(kind) else {
            return Err(KindError::Unknown {
                kind: kind.to_owned(),
                known: self.kinds().collect::<Vec<_>>().join(", "),
            });
        };
        k.handler
            .validate(args)
            .map_err(|message| KindError::BadArgs {
                kind: kind.to_owned(),
                message,
            })?;
        Ok(&k.settings)
    }
}
