//! `kubectl get`-style output for `tollway get` and `tollway apply`:
//! tables (`-o wide`, `-A`, `--show-labels`), `-o json`, `-o yaml` and
//! `-o name`.

pub mod age;
mod columns;
mod pod;
mod structured;
mod table;

#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use tollway_api::{Kind, Object, ObjectKey};

/// How `tollway get` prints objects (`-o`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// The default table.
    #[default]
    Table,
    /// The table with extra columns (`-o wide`).
    Wide,
    /// JSON (`-o json`).
    Json,
    /// YAML (`-o yaml`).
    Yaml,
    /// `kind/name` lines (`-o name`).
    Name,
}

/// The `-o` values accepted, in kubectl's order.
const FORMATS: &str = "json,name,wide,yaml";

impl FromStr for OutputFormat {
    type Err = PrintError;

    /// `wide`, `json`, `yaml` or `name`; anything else is an error naming the
    /// choices (as kubectl's "unable to match a printer" does).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "wide" => Ok(OutputFormat::Wide),
            "json" => Ok(OutputFormat::Json),
            "yaml" => Ok(OutputFormat::Yaml),
            "name" => Ok(OutputFormat::Name),
            _ => Err(PrintError::UnknownFormat {
                format: s.to_string(),
            }),
        }
    }
}

/// What and how to print.
#[derive(Debug, Clone, PartialEq)]
pub struct PrintOptions {
    /// The output format.
    pub format: OutputFormat,
    /// `-A`: a NAMESPACE column leads tables of namespaced kinds.
    pub all_namespaces: bool,
    /// `--show-labels`: a LABELS column ends tables.
    pub show_labels: bool,
    /// The time ages are measured against.
    pub now: Timestamp,
    /// A NAME was asked for: JSON and YAML print the bare object, not a List.
    pub single: bool,
    /// The namespace listed, named by the "No resources found in NS
    /// namespace." message (ignored with `all_namespaces` and for
    /// cluster-scoped kinds).
    pub namespace: Option<String>,
}

/// Printing failed.
#[derive(Debug)]
pub enum PrintError {
    /// `-o` named a format that does not exist.
    UnknownFormat {
        /// The format as given.
        format: String,
    },
    /// An object could not be turned into JSON.
    Json {
        /// The serializer's error.
        source: serde_json::Error,
    },
    /// An object could not be turned into YAML.
    Yaml {
        /// The serializer's error.
        source: serde_saphyr::SerializeError,
    },
}

impl fmt::Display for PrintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrintError::UnknownFormat { format } => write!(
                f,
                "unable to match a printer suitable for the output format {format:?}, \
                 allowed formats are: {FORMATS}"
            ),
            PrintError::Json { source } => write!(f, "cannot print objects as JSON: {source}"),
            PrintError::Yaml { source } => write!(f, "cannot print objects as YAML: {source}"),
        }
    }
}

impl std::error::Error for PrintError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PrintError::UnknownFormat { .. } => None,
            PrintError::Json { source } => Some(source),
            PrintError::Yaml { source } => Some(source),
        }
    }
}

/// Render `objects` (all of `kind`, in the order given) as `kubectl get` does.
///
/// The text ends with a newline. Tables (and `-o name`) of no objects are
/// the line `No resources found in NS namespace.` (or `No resources found`),
/// which kubectl prints on stderr: callers that keep stdout clean check
/// `objects.is_empty()` and print [`no_resources_message`] there. JSON and
/// YAML of no objects are an empty `List`, as with kubectl.
pub fn render(kind: Kind, objects: &[&Object], opts: &PrintOptions) -> Result<String, PrintError> {
    match opts.format {
        OutputFormat::Table | OutputFormat::Wide | OutputFormat::Name if objects.is_empty() => {
            Ok(format!("{}\n", no_resources_message(kind, opts)))
        }
        OutputFormat::Table => Ok(render_table(kind, objects, opts, false)),
        OutputFormat::Wide => Ok(render_table(kind, objects, opts, true)),
        OutputFormat::Json => structured::json(objects, opts.single),
        OutputFormat::Yaml => structured::yaml(objects, opts.single),
        OutputFormat::Name => Ok(structured::names(objects)),
    }
}

/// kubectl's message for an empty listing, without a newline:
/// `No resources found in payments namespace.`, or `No resources found` for
/// cluster-scoped kinds, `-A`, or when no namespace is given.
pub fn no_resources_message(kind: Kind, opts: &PrintOptions) -> String {
    match &opts.namespace {
        Some(ns) if kind.namespaced() && !opts.all_namespaces => {
            format!("No resources found in {ns} namespace.")
        }
        _ => "No resources found".to_string(),
    }
}

/// The resource name `-o name` and `kubectl apply` use for a kind: `pod`,
/// `service`, `deployment.apps`, `namespace`, `serviceaccount`, `node`,
/// `endpointslice.discovery.k8s.io`, `networkpolicy.networking.k8s.io`,
/// `ciliumnetworkpolicy.cilium.io`,
/// `ciliumclusterwidenetworkpolicy.cilium.io`.
pub fn resource_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Namespace => "namespace",
        Kind::ServiceAccount => "serviceaccount",
        Kind::Node => "node",
        Kind::Service => "service",
        Kind::EndpointSlice => "endpointslice.discovery.k8s.io",
        Kind::Deployment => "deployment.apps",
        Kind::Pod => "pod",
        Kind::NetworkPolicy => "networkpolicy.networking.k8s.io",
        Kind::CiliumNetworkPolicy => "ciliumnetworkpolicy.cilium.io",
        Kind::CiliumClusterwideNetworkPolicy => "ciliumclusterwidenetworkpolicy.cilium.io",
        Kind::CiliumIdentity => "ciliumidentity.cilium.io",
    }
}

/// One line of `kubectl apply`'s report, without a newline:
/// `deployment.apps/checkout-api configured`. `action` is `created`,
/// `configured`, `unchanged` or `deleted`.
pub fn describe_apply(key: &ObjectKey, action: &str) -> String {
    format!("{}/{} {action}", resource_name(key.kind), key.name)
}

/// The table of `objects`; objects of another kind than `kind` are skipped.
fn render_table(kind: Kind, objects: &[&Object], opts: &PrintOptions, wide: bool) -> String {
    let with_namespace = opts.all_namespaces && kind.namespaced();
    let mut header: Vec<String> = Vec::new();
    if with_namespace {
        header.push("NAMESPACE".to_string());
    }
    header.extend(columns::headers(kind, wide).into_iter().map(str::to_string));
    if opts.show_labels {
        header.push("LABELS".to_string());
    }
    let mut rows = vec![header];
    for object in objects.iter().filter(|o| o.kind() == kind) {
        let meta = object.meta();
        let mut row = Vec::new();
        if with_namespace {
            row.push(meta.namespace_or_default().to_string());
        }
        row.extend(columns::cells(object, wide, opts.now));
        if opts.show_labels {
            row.push(columns::format_labels(&meta.labels));
        }
        rows.push(row);
    }
    table::layout(&rows)
}
