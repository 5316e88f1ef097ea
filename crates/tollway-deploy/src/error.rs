//! Errors of loading and rendering a chart.

use std::path::PathBuf;

/// Why a chart did not load or render.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A YAML file (Chart.yaml, values, a CRD, a rendered document) is not
    /// valid YAML.
    #[error("{what}: {message}")]
    Yaml {
        /// Which file or document.
        what: String,
        /// The parser's message.
        message: String,
    },
    /// A template does not parse.
    #[error("{template}:{line}: parse error: {message}")]
    Parse {
        /// The template's name.
        template: String,
        /// Its line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A template failed while executing.
    #[error("{template}:{line}: {message}")]
    Exec {
        /// The template (or `define`) that failed.
        template: String,
        /// Its line.
        line: usize,
        /// What went wrong.
        message: String,
    },
    /// The chart refused the values (`fail`, `required`).
    #[error("{template}:{line}: {message}")]
    Fail {
        /// The template that refused.
        template: String,
        /// Its line.
        line: usize,
        /// The chart's message.
        message: String,
    },
    /// A `--set` expression does not parse.
    #[error("--set {expr:?}: {message}")]
    Set {
        /// The expression.
        expr: String,
        /// What is wrong.
        message: String,
    },
    /// Chart.yaml lacks a field.
    #[error("Chart.yaml: {field} is required")]
    ChartField {
        /// The missing field.
        field: &'static str,
    },
}
