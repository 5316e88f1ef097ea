//! `-o json`, `-o yaml` and `-o name`.

use serde_json::{Value, json};
use tollway_api::Object;

use super::{PrintError, resource_name};

/// The bare object when `single` and there is exactly one, else kubectl's
/// `List` (`apiVersion: v1`, `items`, `kind: List`, empty `resourceVersion`).
fn document(objects: &[&Object], single: bool) -> Result<Value, serde_json::Error> {
    if let ([object], true) = (objects, single) {
        return serde_json::to_value(object);
    }
    let items = objects
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({
        "apiVersion": "v1",
        "items": items,
        "kind": "List",
        "metadata": { "resourceVersion": "" },
    }))
}

/// Pretty JSON (2-space indent, keys in order), ending with a newline.
pub(super) fn json(objects: &[&Object], single: bool) -> Result<String, PrintError> {
    let doc = document(objects, single).map_err(|source| PrintError::Json { source })?;
    let mut text =
        serde_json::to_string_pretty(&doc).map_err(|source| PrintError::Json { source })?;
    text.push('\n');
    Ok(text)
}

/// YAML of the same document, ending with a newline.
pub(super) fn yaml(objects: &[&Object], single: bool) -> Result<String, PrintError> {
    let doc = document(objects, single).map_err(|source| PrintError::Json { source })?;
    let mut text = serde_saphyr::to_string(&doc).map_err(|source| PrintError::Yaml { source })?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// One `resource/name` line per object.
pub(super) fn names(objects: &[&Object]) -> String {
    objects
        .iter()
        .map(|o| format!("{}/{}\n", resource_name(o.kind()), o.meta().name))
        .collect()
}
