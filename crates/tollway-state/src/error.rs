use std::path::PathBuf;

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file of the store could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The store file is not valid (hand-edited or truncated).
    #[error("store file {path} is corrupt: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// A stored object no longer decodes.
    #[error("store file {path}: object {index}: {source}")]
    BadObject {
        /// The file.
        path: PathBuf,
        /// Position in the file.
        index: usize,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
}

impl StateError {
    pub(crate) fn io(action: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        StateError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}
