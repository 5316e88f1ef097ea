//! A chart directory (Chart.yaml, values.yaml, templates/, crds/) and its
//! rendering, as `helm template` / `helm install` do it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::RenderError;
use crate::render::Renderer;
use crate::value::Value;
use crate::values::{apply_set, merge, parse_values_yaml};

/// A chart loaded from its directory.
#[derive(Debug, Clone)]
pub struct Chart {
    /// The chart's directory.
    pub dir: PathBuf,
    /// `Chart.yaml`, as read.
    pub metadata: serde_json::Value,
    /// The chart's default values.
    pub values: Value,
    /// `templates/*`: (file name, text), sorted by name.
    pub templates: Vec<(String, String)>,
    /// `crds/*.yaml`: (file name, text), sorted by name. Helm installs these
    /// as they are, before the templates, and never templates them.
    pub crds: Vec<(String, String)>,
}

/// The release a chart is rendered for.
#[derive(Debug, Clone)]
pub struct Release {
    /// `.Release.Name`.
    pub name: String,
    /// `.Release.Namespace`.
    pub namespace: String,
}

/// What to render with: a release and user values, in Helm's order (`-f`
/// files, then `--set`, then `--set-string`, each in the order given).
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// The release.
    pub release: Release,
    /// `-f` values files (already read): (name, YAML text).
    pub values_files: Vec<(String, String)>,
    /// `--set` expressions.
    pub set: Vec<String>,
    /// `--set-string` expressions.
    pub set_string: Vec<String>,
}

impl RenderOptions {
    /// `helm install NAME CHART --namespace NS` with no values.
    pub fn new(name: &str, namespace: &str) -> Self {
        RenderOptions {
            release: Release {
                name: name.to_string(),
                namespace: namespace.to_string(),
            },
            values_files: Vec::new(),
            set: Vec::new(),
            set_string: Vec::new(),
        }
    }

    /// Add `--set` expressions.
    pub fn with_set<I, S>(mut self, exprs: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.set.extend(exprs.into_iter().map(Into::into));
        self
    }
}

/// One rendered template file.
#[derive(Debug, Clone)]
pub struct RenderedFile {
    /// `<chart>/templates/<file>`, as Helm names it.
    pub name: String,
    /// Its text.
    pub content: String,
}

/// One YAML document of the output.
#[derive(Debug, Clone)]
pub struct Document {
    /// The file it came from.
    pub source: String,
    /// Its index in that file (from 0).
    pub index: usize,
    /// The object.
    pub value: serde_json::Value,
}

impl Document {
    /// `Kind namespace/name` (or `Kind name`), for messages.
    pub fn describe(&self) -> String {
        let kind = self.value["kind"].as_str().unwrap_or("?");
        let name = self.value["metadata"]["name"].as_str().unwrap_or("?");
        match self.value["metadata"]["namespace"].as_str() {
            Some(ns) => format!("{kind} {ns}/{name}"),
            None => format!("{kind} {name}"),
        }
    }
}

/// The result of rendering.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The merged values the templates saw.
    pub values: Value,
    /// Every template's output (helpers and NOTES.txt excluded).
    pub files: Vec<RenderedFile>,
    /// NOTES.txt, rendered.
    pub notes: Option<String>,
    /// The CRD files, unchanged.
    pub crds: Vec<RenderedFile>,
}

impl Chart {
    /// Load a chart directory.
    pub fn load(dir: &Path) -> Result<Chart, RenderError> {
        let read = |p: PathBuf| {
            std::fs::read_to_string(&p).map_err(|source| RenderError::Io { path: p, source })
        };
        let meta_text = read(dir.join("Chart.yaml"))?;
        let metadata: serde_json::Value =
            serde_saphyr::from_str(&meta_text).map_err(|e| RenderError::Yaml {
                what: "Chart.yaml".to_string(),
                message: e.to_string(),
            })?;
        for field in ["apiVersion", "name", "version"] {
            if !metadata[field].is_string() {
                return Err(RenderError::ChartField { field });
            }
        }
        let values = match dir.join("values.yaml") {
            p if p.exists() => parse_values_yaml("values.yaml", &read(p)?)?,
            _ => Value::Map(BTreeMap::new()),
        };
        let list = |sub: &str, exts: &[&str]| -> Result<Vec<(String, String)>, RenderError> {
            let d = dir.join(sub);
            if !d.exists() {
                return Ok(Vec::new());
            }
            let entries = std::fs::read_dir(&d).map_err(|source| RenderError::Io {
                path: d.clone(),
                source,
            })?;
            let mut out = Vec::new();
            for e in entries {
                let e = e.map_err(|source| RenderError::Io {
                    path: d.clone(),
                    source,
                })?;
                let name = e.file_name().to_string_lossy().into_owned();
                if e.path().is_file() && exts.iter().any(|x| name.ends_with(x)) {
                    out.push((name, read(e.path())?));
                }
            }
            out.sort();
            Ok(out)
        };
        Ok(Chart {
            dir: dir.to_path_buf(),
            templates: list("templates", &[".yaml", ".yml", ".tpl", ".txt"])?,
            crds: list("crds", &[".yaml", ".yml", ".json"])?,
            metadata,
            values,
        })
    }

    /// The chart's name.
    pub fn name(&self) -> &str {
        self.metadata["name"].as_str().unwrap_or_default()
    }

    /// The values after merging the options' files and `--set`s.
    pub fn merged_values(&self, opts: &RenderOptions) -> Result<Value, RenderError> {
        let mut user = Value::Map(BTreeMap::new());
        for (name, text) in &opts.values_files {
            merge(&mut user, parse_values_yaml(name, text)?);
        }
        for e in &opts.set {
            apply_set(&mut user, e, true)?;
        }
        for e in &opts.set_string {
            apply_set(&mut user, e, false)?;
        }
        let mut values = self.values.clone();
        merge(&mut values, user);
        Ok(values)
    }

    /// Render every template.
    pub fn render(&self, opts: &RenderOptions) -> Result<Rendered, RenderError> {
        let values = self.merged_values(opts)?;
        let mut renderer = Renderer::new();
        let chart = self.name().to_string();
        let mut parsed = Vec::new();
        for (file, text) in &self.templates {
            let name = format!("{chart}/templates/{file}");
            let t = renderer.parse(&name, text)?;
            parsed.push((file.clone(), name, t));
        }
        let mut files = Vec::new();
        let mut notes = None;
        for (file, name, t) in &parsed {
            if file.starts_with('_') {
                continue;
            }
            let data = self.root(&values, opts, name);
            let content = renderer.execute(t, &data)?;
            if file == "NOTES.txt" {
                notes = Some(content);
            } else {
                files.push(RenderedFile {
                    name: name.clone(),
                    content,
                });
            }
        }
        let crds = self
            .crds
            .iter()
            .map(|(f, text)| RenderedFile {
                name: format!("{chart}/crds/{f}"),
                content: text.clone(),
            })
            .collect();
        Ok(Rendered {
            values,
            files,
            notes,
            crds,
        })
    }

    /// The template data: `.Values`, `.Release`, `.Chart`, `.Template`.
    fn root(&self, values: &Value, opts: &RenderOptions, template: &str) -> Value {
        let s = |x: &str| Value::Str(x.to_string());
        let mut chart = BTreeMap::new();
        for (yaml_key, go_name) in [
            ("apiVersion", "APIVersion"),
            ("name", "Name"),
            ("version", "Version"),
            ("appVersion", "AppVersion"),
            ("description", "Description"),
            ("type", "Type"),
            ("kubeVersion", "KubeVersion"),
            ("home", "Home"),
            ("keywords", "Keywords"),
            ("annotations", "Annotations"),
        ] {
            if let Some(v) = self.metadata.get(yaml_key) {
                // Chart.yaml fields are strings in Go; keep numbers as text.
                let v = match v {
                    serde_json::Value::Number(n) => s(&n.to_string()),
                    v => Value::from_json_values(v),
                };
                chart.insert(go_name.to_string(), v);
            }
        }
        let release: BTreeMap<String, Value> = [
            ("Name", s(&opts.release.name)),
            ("Namespace", s(&opts.release.namespace)),
            ("Service", s("Helm")),
            ("Revision", Value::Int(1)),
            ("IsInstall", Value::Bool(true)),
            ("IsUpgrade", Value::Bool(false)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let base = template.rsplit_once('/').map_or("", |(b, _)| b);
        let tmpl: BTreeMap<String, Value> = [("Name", s(template)), ("BasePath", s(base))]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        Value::Map(
            [
                ("Values", values.clone()),
                ("Release", Value::Map(release)),
                ("Chart", Value::Map(chart)),
                ("Template", Value::Map(tmpl)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        )
    }
}

impl Rendered {
    /// Every non-empty YAML document of the templates (not the CRDs).
    pub fn documents(&self) -> Result<Vec<Document>, RenderError> {
        split_documents(&self.files)
    }

    /// Every CRD document.
    pub fn crd_documents(&self) -> Result<Vec<Document>, RenderError> {
        split_documents(&self.crds)
    }

    /// The output as `helm template` prints it (`--include-crds` puts the
    /// CRDs first).
    pub fn manifest(&self, include_crds: bool) -> String {
        let mut out = String::new();
        let files = if include_crds {
            self.crds
                .iter()
                .chain(self.files.iter())
                .collect::<Vec<_>>()
        } else {
            self.files.iter().collect()
        };
        for f in files {
            for doc in split_text(&f.content) {
                if is_blank(&doc) {
                    continue;
                }
                out.push_str("---\n# Source: ");
                out.push_str(&f.name);
                out.push('\n');
                out.push_str(doc.trim_matches('\n'));
                out.push('\n');
            }
        }
        out
    }
}

fn split_text(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        let t = line.trim_end();
        if t == "---" || t.starts_with("--- ") || t.starts_with("---#") {
            docs.push(String::new());
            continue;
        }
        if let Some(cur) = docs.last_mut() {
            cur.push_str(line);
            cur.push('\n');
        }
    }
    docs
}

fn is_blank(doc: &str) -> bool {
    doc.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#')
    })
}

fn split_documents(files: &[RenderedFile]) -> Result<Vec<Document>, RenderError> {
    let mut out = Vec::new();
    for f in files {
        for (index, doc) in split_text(&f.content).into_iter().enumerate() {
            if is_blank(&doc) {
                continue;
            }
            let value: serde_json::Value =
                serde_saphyr::from_str(&doc).map_err(|e| RenderError::Yaml {
                    what: format!("{} document {index}", f.name),
                    message: format!("{e}\n--- the document:\n{doc}"),
                })?;
            if value.is_null() {
                continue;
            }
            out.push(Document {
                source: f.name.clone(),
                index,
                value,
            });
        }
    }
    Ok(out)
}
