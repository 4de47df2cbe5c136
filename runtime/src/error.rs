//! The one error type of dynlab. Every variant names the operation that failed, what it received and
//! what it expected, so a message read alone says what to change.

use std::fmt;

/// Result alias used by every fallible dynlab function.
pub type Result<T> = std::result::Result<T, Error>;

/// Every failure of a dynlab operation: which operation, what it got and what it expected.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// Shapes that do not fit the operation.
    Shape {
        /// The operation that failed.
        op: &'static str,
        /// The shapes it received.
        got: String,
        /// The shapes it takes.
        expected: String,
    },
    /// An axis outside `-rank..rank`.
    Axis {
        /// The operation that failed.
        op: &'static str,
        /// The axis given.
        axis: isize,
        /// The rank of the tensor it was given for.
        rank: usize,
    },
    /// An element type the operation does not take.
    DType {
        /// The operation that failed.
        op: &'static str,
        /// The element types it received.
        got: String,
        /// The element types it takes.
        expected: String,
    },
    /// An argument value out of its domain (an index, a probability, a range).
    Value {
        /// The operation that failed.
        op: &'static str,
        /// The values it received.
        got: String,
        /// The values it takes.
        expected: String,
    },
    /// Tensors on different devices, or a device that cannot be used.
    Device {
        /// The operation that failed.
        op: &'static str,
        /// What is wrong with the device.
        message: String,
    },
    /// A requested device that is not available, with what to install or set.
    NoDevice {
        /// The device name asked for.
        requested: String,
        /// Why it is unavailable and what to install or set.
        help: String,
    },
    /// A buffer or launch larger than the device allows.
    DeviceLimit {
        /// The operation that asked for it.
        op: &'static str,
        /// What was asked for.
        requested: String,
        /// The device's limit.
        limit: String,
        /// The device.
        device: String,
    },
    /// An error reported by the compute backend.
    Backend {
        /// The operation that failed.
        op: &'static str,
        /// The backend's message.
        message: String,
    },
    /// NaN/Inf or another numerical failure detected at run time.
    Numerical {
        /// The operation that failed.
        op: &'static str,
        /// What was detected.
        message: String,
    },
    /// A file that could not be read or written.
    Io {
        /// The operation that failed.
        op: &'static str,
        /// The file.
        path: String,
        /// The I/O or format error.
        message: String,
    },
    /// A configuration (file or command-line override) that does not describe a valid run.
    Config {
        /// Where it came from: a file, a key or a `--set` override.
        source: String,
        /// What is invalid.
        message: String,
    },
    /// An error raised inside a module of a model, with the module's path (`convnet.fc1`).
    InModule {
        /// The module's path.
        path: String,
        /// The error the module raised.
        error: Box<Error>,
    },
}

impl Error {
    /// An [`Error::Shape`] for `op`.
    pub fn shape(op: &'static str, got: impl Into<String>, expected: impl Into<String>) -> Self {
        Error::Shape {
            op,
            got: got.into(),
            expected: expected.into(),
        }
    }

    /// An [`Error::Value`] for `op`.
    pub fn value(op: &'static str, got: impl Into<String>, expected: impl Into<String>) -> Self {
        Error::Value {
            op,
            got: got.into(),
            expected: expected.into(),
        }
    }

    pub(crate) fn dtype(
        op: &'static str,
        got: impl fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        Error::DType {
            op,
            got: got.to_string(),
            expected: expected.into(),
        }
    }
}

impl Error {
    /// An [`Error::Io`] from a failed file operation.
    pub fn io(op: &'static str, path: impl AsRef<std::path::Path>, e: impl fmt::Display) -> Self {
        Error::Io {
            op,
            path: path.as_ref().display().to_string(),
            message: e.to_string(),
        }
    }

    /// This error as raised inside the module at `path`. An error that already names a module keeps
    /// the innermost (most precise) path.
    pub fn in_module(self, path: impl Into<String>) -> Self {
        match self {
            Error::InModule { .. } => self,
            error => Error::InModule {
                path: path.into(),
                error: Box::new(error),
            },
        }
    }

    /// The error without module context (what the failing op reported).
    pub fn root_cause(&self) -> &Error {
        match self {
            Error::InModule { error, .. } => error.root_cause(),
            error => error,
        }
    }

    /// An [`Error::Config`] about `source` (a file, a key or a `--set` override).
    pub fn config(source: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            source: source.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Shape { op, got, expected } => {
                write!(f, "{op}: shape mismatch: got {got}, expected {expected}")
            }
            Error::Axis { op, axis, rank } => {
                let lo = -(*rank as isize);
                write!(
                    f,
                    "{op}: axis {axis} is out of range for a tensor of rank {rank}, expected an axis in {lo}..{rank}"
                )
            }
            Error::DType { op, got, expected } => {
                write!(f, "{op}: unsupported dtype {got}, expected {expected}")
            }
            Error::Value { op, got, expected } => {
                write!(f, "{op}: invalid value: got {got}, expected {expected}")
            }
            Error::Device { op, message } => write!(f, "{op}: device error: {message}"),
            Error::NoDevice { requested, help } => {
                write!(f, "device `{requested}` is not available: {help}")
            }
            Error::DeviceLimit {
                op,
                requested,
                limit,
                device,
            } => write!(
                f,
                "{op}: device limit: {requested} exceeds {limit} on {device}; use smaller batches or shapes, or a device with larger limits"
            ),
            Error::Backend { op, message } => write!(f, "{op}: backend error: {message}"),
            Error::Numerical { op, message } => write!(f, "{op}: numerical error: {message}"),
            Error::Io { op, path, message } => write!(f, "{op}: {path}: {message}"),
            Error::Config { source, message } => write!(f, "config {source}: {message}"),
            Error::InModule { path, error } => write!(f, "{path}: {error}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::InModule { error, .. } => Some(error.as_ref()),
            _ => None,
        }
    }
}
