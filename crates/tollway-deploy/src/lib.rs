//! Tollway's deployment artefacts, as code: a renderer for the Helm chart
//! in `deploy/helm/tollway` (Helm itself is not installable on the build
//! machines), so that tests can render the chart with the values a user
//! would give and check every object it produces.
//!
//! - [`render`]: the Go-template subset the chart uses (see its docs for
//!   what is and is not supported);
//! - [`values`]: `values.yaml`, `-f` and `--set` merging, as Helm does it;
//! - [`chart`]: loading a chart directory and rendering it into documents.
//!
//! No I/O beyond reading the chart's files.

pub mod chart;
pub mod error;
pub mod render;
pub mod value;
pub mod values;
pub mod yaml;

pub use chart::{Chart, Document, Release, RenderOptions, Rendered};
pub use error::RenderError;
pub use value::Value;

/// The chart's directory in this repository.
pub fn chart_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/helm/tollway")
}
