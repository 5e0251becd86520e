//! The library's error type. Bad input names its file, line and field.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A malformed or invalid record, model or coefficient.
    #[error("{}:{line}: {field}: {message}", path.display())]
    Input {
        path: PathBuf,
        line: usize,
        field: String,
        message: String,
    },
    /// A file whose layout cannot serve: a missing or mistyped column, say.
    #[error("{}: {field}: {message}", path.display())]
    Schema {
        path: PathBuf,
        field: String,
        message: String,
    },
    /// A file with nothing to read.
    #[error("{}: {message}", path.display())]
    EmptyInput { path: PathBuf, message: String },
    /// An I/O failure; its message is part of this error's own (not a separate source),
    /// so chains print it once.
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A prior model that cannot serve the requested training.
    #[error("prior for entity {entity:?}: {message}")]
    PriorMismatch { entity: String, message: String },
    /// A model store that cannot be opened, read or written.
    #[error("{}: {message}", path.display())]
    Store { path: PathBuf, message: String },
    /// Inconsistent settings.
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Eval(#[from] crate::eval::EvalError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn input(
        path: impl Into<PathBuf>,
        line: usize,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Input {
            path: path.into(),
            line,
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error,
        }
    }
}
