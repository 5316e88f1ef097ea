//! Shared by the chart tests: rendering, strict validation against the
//! Kubernetes OpenAPI types (k8s-openapi), and CRD schema checks.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde_json::Value as Json;
use tollway_deploy::{Chart, Document, RenderError, RenderOptions, Rendered, chart_dir};

/// The seed's `helm install cilium` flags, in Tollway's names.
pub const SEED_SETS: &[&str] = &[
    "kubeProxyReplacement=true",
    "k8sServiceHost=api.payments-cluster.internal",
    "k8sServicePort=6443",
    "flows.enabled=true",
    "flows.relay.enabled=true",
    "flows.ui.enabled=true",
];

pub fn chart() -> Chart {
    Chart::load(&chart_dir()).unwrap()
}

pub fn try_render(sets: &[&str]) -> Result<Rendered, RenderError> {
    chart().render(&RenderOptions::new("tollway", "kube-system").with_set(sets.iter().copied()))
}

pub fn render(sets: &[&str]) -> Rendered {
    try_render(sets).unwrap_or_else(|e| panic!("render with {sets:?}: {e}"))
}

pub fn docs(sets: &[&str]) -> Vec<Json> {
    render(sets)
        .documents()
        .unwrap()
        .into_iter()
        .map(|d| d.value)
        .collect()
}

/// The object of a kind and name.
pub fn find<'a>(docs: &'a [Json], kind: &str, name: &str) -> Option<&'a Json> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

pub fn get<'a>(docs: &'a [Json], kind: &str, name: &str) -> &'a Json {
    find(docs, kind, name).unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

/// Deserialize `value` into `T` and fail on any field `T` does not have
/// (k8s-openapi ignores unknown fields; serde_ignored reports them) or any
/// type mismatch (with its path, from serde_path_to_error).
pub fn strict<T: DeserializeOwned>(value: &Json) -> Result<T, String> {
    let mut ignored = Vec::new();
    // serde_ignored writes `?` for each Option on the way.
    let mut note = |path: serde_ignored::Path<'_>| ignored.push(path.to_string().replace(".?", ""));
    let de = serde_ignored::Deserializer::new(value.clone(), &mut note);
    let result: Result<T, _> = serde_path_to_error::deserialize(de);
    match result {
        Err(e) => Err(format!("{}: {}", e.path(), e.inner())),
        Ok(_) if !ignored.is_empty() => Err(format!("unknown fields: {}", ignored.join(", "))),
        Ok(t) => Ok(t),
    }
}

/// Validate one rendered object against its Kubernetes type.
pub fn validate_typed(doc: &Json) -> Result<(), String> {
    use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
    use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api = doc["apiVersion"].as_str().unwrap_or_default();
    let kind = doc["kind"].as_str().unwrap_or_default();
    match (api, kind) {
        ("v1", "ConfigMap") => strict::<ConfigMap>(doc).map(drop),
        ("v1", "Service") => strict::<Service>(doc).map(drop),
        ("v1", "ServiceAccount") => strict::<ServiceAccount>(doc).map(drop),
        ("apps/v1", "DaemonSet") => strict::<DaemonSet>(doc).map(drop),
        ("apps/v1", "Deployment") => strict::<Deployment>(doc).map(drop),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => strict::<ClusterRole>(doc).map(drop),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            strict::<ClusterRoleBinding>(doc).map(drop)
        }
        ("rbac.authorization.k8s.io/v1", "Role") => strict::<Role>(doc).map(drop),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => strict::<RoleBinding>(doc).map(drop),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
            strict::<CustomResourceDefinition>(doc).map(drop)
        }
        _ => Err(format!(
            "{api} {kind}: not a kind these tests validate (add it to validate_typed)"
        )),
    }
}

pub fn describe(d: &Document) -> String {
    format!("{} ({} document {})", d.describe(), d.source, d.index)
}

/// The pod specs of every workload: (workload name, pod spec).
pub fn pod_specs(docs: &[Json]) -> Vec<(String, &Json)> {
    docs.iter()
        .filter(|d| matches!(d["kind"].as_str(), Some("DaemonSet" | "Deployment")))
        .map(|d| {
            (
                format!(
                    "{} {}",
                    d["kind"].as_str().unwrap(),
                    d["metadata"]["name"].as_str().unwrap()
                ),
                &d["spec"]["template"]["spec"],
            )
        })
        .collect()
}

/// Every container of a pod spec, init containers first.
pub fn containers(spec: &Json) -> Vec<&Json> {
    let list = |k: &str| {
        spec[k]
            .as_array()
            .map(|a| a.iter().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let mut all = list("initContainers");
    all.extend(list("containers"));
    all
}

pub fn strings(v: &Json) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// A container's env as name → value (or `from:<source>` for valueFrom).
pub fn env(c: &Json) -> BTreeMap<String, Json> {
    c["env"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    let v = if e.get("value").is_some() {
                        e["value"].clone()
                    } else {
                        e["valueFrom"].clone()
                    };
                    (e["name"].as_str().unwrap().to_string(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

// ------------------------------------------------------------------ CRDs

/// A CRD's versions' openAPIV3Schemas: (version name, schema).
pub fn crd_schemas(crd: &Json) -> Vec<(String, Json)> {
    crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap().to_string(),
                v["schema"]["openAPIV3Schema"].clone(),
            )
        })
        .collect()
}

const VALUE_VALIDATIONS: &[&str] = &[
    "enum",
    "pattern",
    "maxLength",
    "minLength",
    "maximum",
    "minimum",
    "maxItems",
    "minItems",
    "required",
    "format",
    "multipleOf",
    "uniqueItems",
    "exclusiveMaximum",
    "exclusiveMinimum",
    "maxProperties",
    "minProperties",
    "properties",
    "items",
    "anyOf",
    "allOf",
    "oneOf",
    "not",
];

/// Kubernetes' rules for a structural schema (apiextensions
/// `ValidateStructural`), as far as these CRDs can break them:
/// - every node has a `type`, unless it is `x-kubernetes-int-or-string`
///   or `x-kubernetes-preserve-unknown-fields` (then it may be typeless);
/// - `properties` and `additionalProperties` are exclusive; an array has
///   one `items` schema; `required` names declared properties;
/// - inside `anyOf`/`allOf`/`oneOf`/`not` only value validations (no
///   `type`, `description`, `default`, `additionalProperties`, `nullable`,
///   `x-kubernetes-*`), except the `anyOf: [integer, string]` of an
///   int-or-string;
/// - the root's `metadata` says nothing but `type: object`.
pub fn structural_errors(schema: &Json) -> Vec<String> {
    let mut errs = Vec::new();
    node(schema, "", false, &mut errs);
    if let Some(m) = schema["properties"].get("metadata") {
        let keys: Vec<&String> = m
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        if m["type"] != "object" || keys.iter().any(|k| k.as_str() != "type") {
            errs.push(format!("metadata: only `type: object` is allowed, got {m}"));
        }
    }
    if schema["type"] != "object" {
        errs.push("the root must be `type: object`".to_string());
    }
    errs
}

fn node(s: &Json, path: &str, in_junctor: bool, errs: &mut Vec<String>) {
    let Some(o) = s.as_object() else {
        errs.push(format!("{path}: a schema must be an object"));
        return;
    };
    let flag = |k: &str| o.get(k).and_then(Json::as_bool).unwrap_or(false);
    let int_or_string = flag("x-kubernetes-int-or-string");
    let preserve = flag("x-kubernetes-preserve-unknown-fields");
    if in_junctor {
        for k in o.keys() {
            if !VALUE_VALIDATIONS.contains(&k.as_str()) {
                errs.push(format!(
                    "{path}: `{k}` is not allowed inside anyOf/allOf/oneOf/not"
                ));
            }
        }
    } else {
        match o.get("type").and_then(Json::as_str) {
            Some("object" | "array" | "string" | "integer" | "number" | "boolean") => {}
            Some(t) => errs.push(format!("{path}: unknown type {t:?}")),
            None if int_or_string || preserve => {}
            None => errs.push(format!("{path}: no type")),
        }
        if int_or_string && o.contains_key("type") {
            errs.push(format!("{path}: an int-or-string has no type"));
        }
    }
    if o.contains_key("properties") && o.contains_key("additionalProperties") {
        errs.push(format!(
            "{path}: properties and additionalProperties together"
        ));
    }
    if o.get("type").and_then(Json::as_str) == Some("array")
        && !o.get("items").is_some_and(Json::is_object)
    {
        errs.push(format!("{path}: an array needs one `items` schema"));
    }
    if let Some(req) = o.get("required") {
        let props = o.get("properties").and_then(Json::as_object);
        for r in req.as_array().into_iter().flatten() {
            let r = r.as_str().unwrap_or_default();
            if !props.is_some_and(|p| p.contains_key(r)) {
                errs.push(format!("{path}: required {r:?} is not a property"));
            }
        }
    }
    if let Some(t) = o.get("type").and_then(Json::as_str) {
        for v in o.get("enum").and_then(Json::as_array).into_iter().flatten() {
            let ok = match t {
                "string" => v.is_string(),
                "integer" => v.is_i64() || v.is_u64(),
                "number" => v.is_number(),
                "boolean" => v.is_boolean(),
                _ => true,
            };
            if !ok {
                errs.push(format!("{path}: enum value {v} is not a {t}"));
            }
        }
    }
    if let Some(props) = o.get("properties").and_then(Json::as_object) {
        for (k, v) in props {
            node(v, &format!("{path}.{k}"), in_junctor, errs);
        }
    }
    if let Some(items) = o.get("items") {
        node(items, &format!("{path}[]"), in_junctor, errs);
    }
    if let Some(ap) = o.get("additionalProperties")
        && ap.is_object()
    {
        node(ap, &format!("{path}.*"), in_junctor, errs);
    }
    for j in ["anyOf", "allOf", "oneOf"] {
        for (i, sub) in o
            .get(j)
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let int_or_string_branch = int_or_string
                && j == "anyOf"
                && sub.as_object().is_some_and(|b| b.len() == 1)
                && matches!(sub["type"].as_str(), Some("integer" | "string"));
            if !int_or_string_branch {
                node(sub, &format!("{path}.{j}[{i}]"), true, errs);
            }
        }
    }
    if let Some(n) = o.get("not") {
        node(n, &format!("{path}.not"), true, errs);
    }
}

/// Fields of `value` that the schema does not declare (the API server
/// prunes them, and `kubectl apply` — strict field validation — refuses
/// them).
pub fn unknown_fields(schema: &Json, value: &Json) -> Vec<String> {
    let mut out = Vec::new();
    walk_unknown(schema, value, "", &mut out);
    out
}

fn walk_unknown(s: &Json, v: &Json, path: &str, out: &mut Vec<String>) {
    if s["x-kubernetes-preserve-unknown-fields"] == true {
        return;
    }
    match v {
        Json::Object(o) => {
            let props = s["properties"].as_object();
            let extra = s.get("additionalProperties").filter(|a| a.is_object());
            for (k, val) in o {
                let child = format!("{path}.{k}");
                if path.is_empty() && k == "metadata" {
                    // ObjectMeta: the API server checks it, not the schema.
                    continue;
                }
                if let Some(ps) = props.and_then(|p| p.get(k)) {
                    walk_unknown(ps, val, &child, out);
                } else if let Some(ap) = extra {
                    walk_unknown(ap, val, &child, out);
                } else {
                    out.push(child.trim_start_matches('.').to_string());
                }
            }
        }
        Json::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                walk_unknown(&s["items"], item, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Validate a custom object against a CRD version's schema: the
/// schema's value validations (jsonschema, draft 4 as OpenAPI v3.0 is),
/// plus unknown fields.
pub fn validate_custom(schema: &Json, object: &Json) -> Result<(), String> {
    let validator = jsonschema::draft4::new(schema).map_err(|e| format!("schema: {e}"))?;
    let mut errs: Vec<String> = validator
        .iter_errors(object)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    errs.extend(
        unknown_fields(schema, object)
            .into_iter()
            .map(|f| format!("{f}: unknown field")),
    );
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("\n"))
    }
}

/// Every YAML document of a string (split on `---` lines).
pub fn yaml_docs(text: &str) -> Vec<Json> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines().chain(std::iter::once("---")) {
        if line.trim_end() == "---" {
            let blank = cur
                .lines()
                .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
            if !blank {
                let v: Json =
                    serde_saphyr::from_str(&cur).unwrap_or_else(|e| panic!("not YAML: {e}\n{cur}"));
                if !v.is_null() {
                    out.push(v);
                }
            }
            cur.clear();
        } else {
            cur.push_str(line);
            cur.push('\n');
        }
    }
    out
}
