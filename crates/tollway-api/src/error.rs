//! Errors and warnings about manifests, each naming file, document, object
//! and field.

use std::fmt;

/// The object an error is about: `Kind namespace/name` (or `Kind name` for
/// cluster-scoped kinds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// The manifest's `kind` as written.
    pub kind: String,
    /// `metadata.namespace`, if any.
    pub namespace: Option<String>,
    /// `metadata.name`, if any.
    pub name: Option<String>,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.name.as_deref().unwrap_or("<unnamed>");
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, name),
            None => write!(f, "{} {}", self.kind, name),
        }
    }
}

/// What is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The text is not valid YAML or JSON.
    Syntax {
        /// The parser's message.
        message: String,
    },
    /// The file holds no object at all.
    Empty,
    /// A kind that a later Tollway issue will support.
    NotSupportedYet {
        /// The kind as written.
        kind: String,
        /// The apiVersion as written.
        api_version: String,
    },
    /// A kind Tollway does not know at all.
    UnknownKind {
        /// The kind as written.
        kind: String,
        /// The apiVersion as written.
        api_version: String,
    },
    /// A field has a wrong type, a wrong value, or is missing.
    Field {
        /// Path of the field, like `spec.ports[0].port`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Syntax { message } => write!(f, "invalid YAML/JSON: {message}"),
            Problem::Empty => write!(f, "no objects found"),
            Problem::NotSupportedYet { kind, api_version } => {
                write!(f, "{kind} is not supported yet (apiVersion {api_version})")
            }
            Problem::UnknownKind { kind, api_version } => write!(
                f,
                "kind {kind:?} (apiVersion {api_version:?}) is not supported by Tollway"
            ),
            Problem::Field { field, reason } => write!(f, "{field}: {reason}"),
        }
    }
}

/// One error in one manifest.
///
/// Displayed as
/// `payments.yaml:14: document 2 (Service payments/checkout-api): spec.ports[0].port: must be 1-65535, got 70000`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    /// The file name as the user gave it (or `<stdin>`).
    pub file: String,
    /// 1-based index of the document in the file (non-empty documents).
    pub document: Option<usize>,
    /// 1-based line of the offending node, when known.
    pub line: Option<u64>,
    /// The object, when its kind is known.
    pub object: Option<ObjectRef>,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ":")?;
        if let Some(doc) = self.document {
            write!(f, " document {doc}")?;
        }
        if let Some(obj) = &self.object {
            write!(f, " ({obj})")?;
        }
        if self.document.is_some() || self.object.is_some() {
            write!(f, ":")?;
        }
        write!(f, " {}", self.problem)
    }
}

impl ManifestError {
    /// The field path, for field problems.
    pub fn field(&self) -> Option<&str> {
        match &self.problem {
            Problem::Field { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// Something accepted but worth telling: an unknown field that was ignored,
/// or a known Kubernetes field the lab does not act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The file name.
    pub file: String,
    /// 1-based document index.
    pub document: usize,
    /// 1-based line, when known.
    pub line: Option<u64>,
    /// The object.
    pub object: ObjectRef,
    /// Path of the field.
    pub field: String,
    /// What about it.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(
            f,
            ": document {} ({}): {}: {}",
            self.document, self.object, self.field, self.message
        )
    }
}
