//! kubectl-shaped commands on the lab's store: apply, delete, get, label,
//! scale, wait, logs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use tollway_api::{Kind, Object, ObjectKey, RawDocument, Selector, decode_all, parse_documents};
use tollway_state::registry::{self, DeleteOptions};
use tollway_state::{
    ApplyAction, DeleteOutcome, FileStore, Snapshot, StateError, StateSource, WriteError,
};

use crate::printers::{self, OutputFormat, PrintOptions};

fn store(lab: &str) -> Result<(tollway_lab::LabConfig, FileStore)> {
    Ok(tollway_lab::lab::open_store(lab)?)
}

/// Files named by `-f`: files, directories (their *.yaml, *.yml, *.json,
/// sorted) or `-` (stdin), as (display name, text).
pub(crate) fn read_inputs(args: &[String], recursive: bool) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for a in args {
        if a == "-" {
            let text = std::io::read_to_string(std::io::stdin()).context("reading stdin")?;
            out.push(("<stdin>".to_string(), text));
            continue;
        }
        let p = Path::new(a);
        if p.is_dir() {
            let mut files = Vec::new();
            collect_dir(p, recursive, &mut files)?;
            if files.is_empty() {
                bail!("{a}: no *.yaml, *.yml or *.json files in this directory");
            }
            for f in files {
                let text = std::fs::read_to_string(&f)
                    .with_context(|| format!("reading {}", f.display()))?;
                out.push((f.display().to_string(), text));
            }
        } else {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {a}"))?;
            out.push((a.clone(), text));
        }
    }
    Ok(out)
}

fn collect_dir(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading directory {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if recursive {
                collect_dir(&p, true, out)?;
            }
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            out.push(p);
        }
    }
    Ok(())
}

pub(crate) fn parse_all(inputs: &[(String, String)]) -> Result<Vec<RawDocument>, Vec<String>> {
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    for (name, text) in inputs {
        match parse_documents(name, text) {
            Ok(mut d) => docs.append(&mut d),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if errors.is_empty() {
        Ok(docs)
    } else {
        Err(errors)
    }
}

pub(crate) fn fail_with(errors: Vec<String>, what: &str) -> Result<ExitCode> {
    for e in &errors {
        eprintln!("error: {e}");
    }
    eprintln!("{} error(s); {what}", errors.len());
    Ok(ExitCode::FAILURE)
}

/// `tollway apply`.
#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// Manifest file, directory, or - for stdin (repeatable).
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<String>,
    /// Recurse into directories.
    #[arg(short = 'R', long)]
    recursive: bool,
    /// Check everything (also against the cluster) without writing.
    #[arg(long)]
    dry_run: bool,
}

/// Apply manifests, all or nothing.
pub fn apply(lab: &str, args: ApplyArgs) -> Result<ExitCode> {
    let inputs = read_inputs(&args.files, args.recursive)?;
    apply_inputs(lab, &inputs, args.dry_run)
}

/// Apply manifest texts given as (name, text), all or nothing.
pub fn apply_inputs(lab: &str, inputs: &[(String, String)], dry_run: bool) -> Result<ExitCode> {
    let docs = match parse_all(inputs) {
        Ok(d) => d,
        Err(e) => return fail_with(e, "nothing was applied"),
    };
    let decoded = match decode_all(&docs) {
        Ok(d) => d,
        Err(e) => {
            return fail_with(
                e.iter().map(ToString::to_string).collect(),
                "nothing was applied",
            );
        }
    };
    for d in &decoded {
        for w in &d.warnings {
            eprintln!("Warning: {w}");
        }
    }
    let (cfg, store) = store(lab)?;
    match registry::apply_with(&store, decoded, &cfg.cluster, dry_run) {
        Ok(outcomes) => {
            let suffix = if dry_run { " (dry run)" } else { "" };
            for o in outcomes {
                let action = match o.action {
                    ApplyAction::Created => "created",
                    ApplyAction::Configured => "configured",
                    ApplyAction::Unchanged => "unchanged",
                };
                println!("{}{suffix}", printers::describe_apply(&o.key, action));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(WriteError::Invalid(errs)) => fail_with(
            errs.iter().map(ToString::to_string).collect(),
            "nothing was applied",
        ),
        Err(e) => Err(e.into()),
    }
}

/// Parse `KIND`, `KIND/NAME` or `KIND NAME...` into a kind and names.
fn kind_and_names(kind: &str, names: &[String]) -> Result<(Kind, Vec<String>)> {
    let (k, first) = match kind.split_once('/') {
        Some((k, n)) => (k, Some(n.to_string())),
        None => (kind, None),
    };
    let kind = Kind::from_cli(k).ok_or_else(|| {
        anyhow!("the server doesn't have a resource type {k:?} (known: pods, services, endpointslices, deployments, namespaces, serviceaccounts, nodes, networkpolicies, ciliumnetworkpolicies, ciliumclusterwidenetworkpolicies, ciliumidentities)")
    })?;
    let mut all: Vec<String> = first.into_iter().collect();
    for n in names {
        match n.split_once('/') {
            Some((k2, n2)) if Kind::from_cli(k2) == Some(kind) => all.push(n2.to_string()),
            _ => all.push(n.clone()),
        }
    }
    Ok((kind, all))
}

/// `tollway delete`.
#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Delete the objects of these manifests.
    #[arg(short = 'f', long = "filename")]
    files: Vec<String>,
    /// Kind (pod, svc, deploy, ns, sa, netpol, cnp, ccnp) or KIND/NAME.
    kind: Option<String>,
    /// Names.
    names: Vec<String>,
    /// Namespace.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// Seconds a pod gets between SIGTERM and SIGKILL.
    #[arg(long)]
    grace_period: Option<i64>,
    /// Remove pods from the store at once.
    #[arg(long)]
    force: bool,
    /// Don't wait for the objects to be gone.
    #[arg(long = "wait", default_value_t = true, action = clap::ArgAction::Set)]
    wait: bool,
    /// Give up waiting after this long (e.g. 60s, 2m).
    #[arg(long, default_value = "60s")]
    timeout: String,
    /// No error for objects that don't exist.
    #[arg(long)]
    ignore_not_found: bool,
}

/// Delete objects.
pub fn delete(lab: &str, args: DeleteArgs) -> Result<ExitCode> {
    let keys: Vec<ObjectKey> = if !args.files.is_empty() {
        let inputs = read_inputs(&args.files, false)?;
        let docs = match parse_all(&inputs) {
            Ok(d) => d,
            Err(e) => return fail_with(e, "nothing was deleted"),
        };
        let mut keys = Vec::new();
        let mut errors = Vec::new();
        for d in &docs {
            let kind_s = d.value.get("kind").and_then(|v| v.as_str()).unwrap_or("");
            let name = d.value.pointer("/metadata/name").and_then(|v| v.as_str());
            let ns = d
                .value
                .pointer("/metadata/namespace")
                .and_then(|v| v.as_str());
            match (Kind::from_kind_str(kind_s), name) {
                (Some(k), Some(n)) => keys.push(ObjectKey::new(k, ns, n)),
                (None, _) => errors.push(format!(
                    "{}: document {}: kind {kind_s:?} is not a kind Tollway stores",
                    d.file, d.index
                )),
                (_, None) => errors.push(format!(
                    "{}: document {}: metadata.name: required",
                    d.file, d.index
                )),
            }
        }
        if !errors.is_empty() {
            return fail_with(errors, "nothing was deleted");
        }
        keys
    } else {
        let Some(kind) = &args.kind else {
            bail!("give -f FILE, or KIND NAME...");
        };
        let (kind, names) = kind_and_names(kind, &args.names)?;
        if names.is_empty() {
            bail!("resource(s) were provided, but no name was specified");
        }
        names
            .iter()
            .map(|n| ObjectKey::new(kind, Some(&args.namespace), n))
            .collect()
    };
    let (_, store) = store(lab)?;
    let opts = DeleteOptions {
        grace_period_seconds: args.grace_period,
        force: args.force,
    };
    let outcomes = registry::delete(&store, &keys, opts)?;
    let mut code = ExitCode::SUCCESS;
    let mut waiting = Vec::new();
    for o in outcomes {
        match o {
            DeleteOutcome::Deleted(k) => {
                println!("{} \"{}\" deleted", printers::resource_name(k.kind), k.name)
            }
            DeleteOutcome::Terminating(k) => {
                println!("{} \"{}\" deleted", printers::resource_name(k.kind), k.name);
                waiting.push(k);
            }
            DeleteOutcome::NotFound(k) if !args.ignore_not_found => {
                eprintln!(
                    "Error from server (NotFound): {} \"{}\" not found",
                    k.kind.plural(),
                    k.name
                );
                code = ExitCode::FAILURE;
            }
            DeleteOutcome::NotFound(_) => {}
        }
    }
    if args.wait && !waiting.is_empty() {
        let timeout = parse_duration(&args.timeout)?;
        wait_until(&store, timeout, "deletion", |snap| {
            waiting.iter().all(|k| snap.get(k).is_none())
        })?;
    }
    Ok(code)
}

/// `30s`, `2m`, `500ms`, `1h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || anyhow!("invalid duration {s:?} (e.g. 30s, 2m, 500ms)");
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs_f64(secs))
}

fn wait_until(
    store: &FileStore,
    timeout: Duration,
    what: &str,
    mut done: impl FnMut(&Snapshot) -> bool,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = u64::MAX;
    loop {
        let v = store.version()?;
        if v != last {
            last = v;
            if done(&store.snapshot()?) {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `tollway get`.
#[derive(Args, Debug)]
pub struct GetArgs {
    /// Kind(s): pods, services, endpointslices, deployments, namespaces,
    /// serviceaccounts, nodes, networkpolicies, ciliumnetworkpolicies (cnp),
    /// ciliumclusterwidenetworkpolicies (ccnp), all; comma-separated; or
    /// KIND/NAME.
    kind: String,
    /// Names.
    names: Vec<String>,
    /// Namespace.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// All namespaces.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Output: wide, json, yaml, name.
    #[arg(short = 'o', long)]
    output: Option<String>,
    /// Label selector (app=x,tier!=db,env in (a,b)).
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Show labels as a last column.
    #[arg(long)]
    show_labels: bool,
}

/// Show objects.
pub fn get(lab: &str, args: GetArgs) -> Result<ExitCode> {
    let format: OutputFormat = match &args.output {
        Some(o) => o.parse()?,
        None => OutputFormat::Table,
    };
    let selector = args.selector.as_deref().map(Selector::parse).transpose()?;
    let kinds: Vec<String> = if args.kind == "all" {
        vec!["pods".into(), "services".into(), "deployments".into()]
    } else {
        args.kind.split(',').map(str::to_string).collect()
    };
    let (_, store) = store(lab)?;
    let snap = store.snapshot()?;
    let mut code = ExitCode::SUCCESS;
    let multi = kinds.len() > 1;
    for (i, k) in kinds.iter().enumerate() {
        let (kind, names) = kind_and_names(k, if i == 0 { &args.names } else { &[] })?;
        let ns = (kind.namespaced() && !args.all_namespaces).then_some(args.namespace.as_str());
        let mut objects: Vec<&Object> = Vec::new();
        if names.is_empty() {
            objects.extend(snap.list(kind, ns).filter(|o| {
                selector
                    .as_ref()
                    .is_none_or(|s| s.matches(&o.meta().labels))
            }));
        } else {
            for n in &names {
                match snap.get(&ObjectKey::new(kind, Some(&args.namespace), n)) {
                    Some(o) => objects.push(o),
                    None => {
                        eprintln!(
                            "Error from server (NotFound): {} \"{n}\" not found",
                            kind.plural()
                        );
                        code = ExitCode::FAILURE;
                    }
                }
            }
            if objects.is_empty() {
                continue;
            }
        }
        let opts = PrintOptions {
            format,
            all_namespaces: args.all_namespaces,
            show_labels: args.show_labels,
            now: jiff::Timestamp::now(),
            single: names.len() == 1 && !multi,
            namespace: ns.map(str::to_string),
        };
        if objects.is_empty() && matches!(format, OutputFormat::Table | OutputFormat::Wide) {
            if !multi {
                eprintln!("{}", printers::no_resources_message(kind, &opts).trim_end());
            }
            continue;
        }
        if multi && i > 0 && matches!(format, OutputFormat::Table | OutputFormat::Wide) {
            println!();
        }
        print!("{}", printers::render(kind, &objects, &opts)?);
    }
    Ok(code)
}

/// `tollway label`.
#[derive(Args, Debug)]
pub struct LabelArgs {
    /// Kind or KIND/NAME.
    kind: String,
    /// NAME (unless given as KIND/NAME), then key=value or key- terms.
    args: Vec<String>,
    /// Namespace.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// Allow changing an existing label's value.
    #[arg(long)]
    overwrite: bool,
}

/// Change labels.
pub fn label(lab: &str, args: LabelArgs) -> Result<ExitCode> {
    let (name_args, terms): (Vec<String>, Vec<String>) = args
        .args
        .iter()
        .cloned()
        .partition(|a| !a.contains('=') && !a.ends_with('-'));
    let (kind, names) = kind_and_names(&args.kind, &name_args)?;
    let [name] = names.as_slice() else {
        bail!("give exactly one object to label, got {names:?}");
    };
    if terms.is_empty() {
        bail!("at least one label update is required (key=value or key-)");
    }
    for t in &terms {
        let key = t
            .split_once('=')
            .map_or(t.trim_end_matches('-'), |(k, _)| k);
        tollway_api::names::qualified_name(key)
            .map_err(|r| anyhow!("invalid label key {key:?}: {r}"))?;
        if let Some((_, v)) = t.split_once('=') {
            tollway_api::names::label_value(v)
                .map_err(|r| anyhow!("invalid label value for {key:?}: {r}"))?;
        }
    }
    let (_, store) = store(lab)?;
    let key = ObjectKey::new(kind, Some(&args.namespace), name);
    let changed = store.update(|txn| {
        let mut obj = txn.get(&key).cloned().ok_or_else(|| {
            anyhow!(
                "Error from server (NotFound): {} \"{name}\" not found",
                kind.plural()
            )
        })?;
        let labels = &mut obj.meta_mut().labels;
        for t in &terms {
            if let Some((k, v)) = t.split_once('=') {
                if let Some(old) = labels.get(k)
                    && old != v
                    && !args.overwrite
                {
                    bail!("'{k}' already has a value ({old}), and --overwrite is false");
                }
                labels.insert(k.to_string(), v.to_string());
            } else {
                labels.remove(t.trim_end_matches('-'));
            }
        }
        Ok::<_, anyhow::Error>(txn.put(obj))
    })?;
    let what = if changed { "labeled" } else { "not labeled" };
    println!("{}/{name} {what}", printers::resource_name(kind));
    Ok(ExitCode::SUCCESS)
}

/// `tollway scale`.
#[derive(Args, Debug)]
pub struct ScaleArgs {
    /// deployment/NAME, or `deployment` followed by NAME.
    target: String,
    /// NAME when the target is only a kind.
    name: Option<String>,
    /// Replicas wanted.
    #[arg(long)]
    replicas: i64,
    /// Namespace.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
}

/// Scale a deployment.
pub fn scale(lab: &str, args: ScaleArgs) -> Result<ExitCode> {
    let (kind, names) = kind_and_names(&args.target, args.name.as_slice())?;
    if kind != Kind::Deployment {
        bail!("only deployments can be scaled, got {kind}");
    }
    let [name] = names.as_slice() else {
        bail!("give exactly one deployment");
    };
    if args.replicas < 0 {
        bail!("--replicas must be >= 0, got {}", args.replicas);
    }
    let (_, store) = store(lab)?;
    let key = ObjectKey::new(kind, Some(&args.namespace), name);
    store.update(|txn| {
        let Some(Object::Deployment(mut d)) = txn.get(&key).cloned() else {
            bail!("Error from server (NotFound): deployments \"{name}\" not found");
        };
        d.spec.replicas = Some(args.replicas);
        txn.put(Object::Deployment(d));
        Ok::<_, anyhow::Error>(())
    })?;
    println!("deployment.apps/{name} scaled");
    Ok(ExitCode::SUCCESS)
}

/// `tollway wait`.
#[derive(Args, Debug)]
pub struct WaitArgs {
    /// What to wait for: `condition=Ready` (pods), `condition=Available`
    /// (deployments), or `delete`.
    #[arg(long = "for")]
    for_: String,
    /// KIND, KIND/NAME, or KIND NAME.
    target: String,
    /// NAME.
    name: Option<String>,
    /// Namespace.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// Label selector.
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// All objects of the kind in the namespace.
    #[arg(long)]
    all: bool,
    /// Give up after this long.
    #[arg(long, default_value = "30s")]
    timeout: String,
}

fn condition_met(o: &Object, cond: &str) -> bool {
    match (o, cond) {
        (Object::Pod(p), "ready") => p.is_ready(),
        (Object::Deployment(d), "available") => d.status.as_ref().is_some_and(|s| {
            s.available_replicas >= d.replicas()
                && s.observed_generation >= d.metadata.generation.unwrap_or(1)
                && s.replicas == d.replicas()
        }),
        (Object::Node(n), "ready") => n.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        }),
        _ => false,
    }
}

/// Wait for a condition.
pub fn wait(lab: &str, args: WaitArgs) -> Result<ExitCode> {
    let (kind, names) = kind_and_names(&args.target, args.name.as_slice())?;
    let selector = args.selector.as_deref().map(Selector::parse).transpose()?;
    if names.is_empty() && selector.is_none() && !args.all {
        bail!("give a name, -l SELECTOR or --all");
    }
    let cond = match args.for_.as_str() {
        "delete" => None,
        f => Some(
            f.strip_prefix("condition=")
                .ok_or_else(|| anyhow!("--for must be condition=NAME or delete, got {f:?}"))?
                .to_ascii_lowercase(),
        ),
    };
    if let Some(c) = &cond {
        let known = matches!(
            (kind, c.as_str()),
            (Kind::Pod | Kind::Node, "ready") | (Kind::Deployment, "available")
        );
        if !known {
            bail!(
                "condition {c:?} is not known for {kind} (pods and nodes: Ready; deployments: Available)"
            );
        }
    }
    let timeout = parse_duration(&args.timeout)?;
    let (_, store) = store(lab)?;
    let ns = kind.namespaced().then_some(args.namespace.as_str());
    let matched = |snap: &Snapshot| -> Vec<ObjectKey> {
        if names.is_empty() {
            snap.list(kind, ns)
                .filter(|o| {
                    selector
                        .as_ref()
                        .is_none_or(|s| s.matches(&o.meta().labels))
                })
                .map(Object::key)
                .collect()
        } else {
            names.iter().map(|n| ObjectKey::new(kind, ns, n)).collect()
        }
    };
    let initial = matched(&store.snapshot()?);
    if initial.is_empty() && cond.is_some() {
        // kubectl fails at once: nothing to wait for.
        bail!("no matching resources found");
    }
    let result = wait_until(
        &store,
        timeout,
        &format!("{} on {kind}", args.for_),
        |snap| match &cond {
            None => initial.iter().all(|k| snap.get(k).is_none()),
            Some(c) => {
                let keys = if names.is_empty() {
                    matched(snap)
                } else {
                    initial.clone()
                };
                !keys.is_empty()
                    && keys
                        .iter()
                        .all(|k| snap.get(k).is_some_and(|o| condition_met(o, c)))
            }
        },
    );
    let snap = store.snapshot()?;
    let done_keys = if names.is_empty() && cond.is_some() {
        matched(&snap)
    } else {
        initial.clone()
    };
    match result {
        Ok(()) => {
            let what = if cond.is_some() {
                "condition met"
            } else {
                "deleted"
            };
            for k in done_keys {
                println!("{}/{} {what}", printers::resource_name(k.kind), k.name);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let pending: Vec<String> = done_keys
                .iter()
                .filter(|k| match &cond {
                    None => snap.get(k).is_some(),
                    Some(c) => !snap.get(k).is_some_and(|o| condition_met(o, c)),
                })
                .map(|k| k.name.clone())
                .collect();
            Err(e.context(format!("still waiting for: {}", pending.join(", "))))
        }
    }
}

/// `tollway logs`.
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// The pod (or pod/NAME).
    pod: String,
    /// Namespace.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// Container (default: the first).
    #[arg(short = 'c', long)]
    container: Option<String>,
    /// Keep printing new output until the pod is gone.
    #[arg(short = 'f', long)]
    follow: bool,
    /// Only the last N lines.
    #[arg(long)]
    tail: Option<usize>,
}

/// Print a container's output.
pub fn logs(lab: &str, args: LogsArgs) -> Result<ExitCode> {
    let name = args
        .pod
        .strip_prefix("pod/")
        .unwrap_or(&args.pod)
        .to_string();
    let (_, store) = store(lab)?;
    let snap = store.snapshot()?;
    let pod = snap
        .pod(&args.namespace, &name)
        .ok_or_else(|| anyhow!("Error from server (NotFound): pods \"{name}\" not found"))?;
    let container = match &args.container {
        Some(c) => {
            if !pod.spec.containers.iter().any(|x| &x.name == c) {
                let known: Vec<&str> = pod
                    .spec
                    .containers
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect();
                bail!(
                    "container {c} is not valid for pod {name}: choose one of [{}]",
                    known.join(" ")
                );
            }
            c.clone()
        }
        None => pod
            .spec
            .containers
            .first()
            .map(|c| c.name.clone())
            .unwrap_or_default(),
    };
    let uid = pod.metadata.uid.clone();
    let path = tollway_lab::LabPaths::new(lab).container_log(&args.namespace, &name, &container);
    let text = std::fs::read(&path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let shown: String = match args.tail {
        Some(n) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..]
                .iter()
                .map(|l| format!("{l}\n"))
                .collect()
        }
        None => text.into_owned(),
    };
    print!("{shown}");
    if args.follow {
        follow(&store, &path, &args.namespace, &name, uid)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn follow(store: &FileStore, path: &Path, ns: &str, name: &str, uid: Option<String>) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut pos = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        if let Ok(mut f) = std::fs::File::open(path) {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            if len > pos {
                f.seek(SeekFrom::Start(pos))?;
                let mut buf = Vec::new();
                f.read_to_end(&mut buf)?;
                std::io::stdout().write_all(&buf)?;
                std::io::stdout().flush()?;
                pos = len;
            }
        }
        let alive = store
            .snapshot()
            .map_err(|e: StateError| anyhow!(e))?
            .pod(ns, name)
            .is_some_and(|p| p.metadata.uid == uid);
        if !alive {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn kinds_and_names() {
        let (k, n) = kind_and_names("deploy/web", &[]).unwrap();
        assert_eq!((k, n), (Kind::Deployment, vec!["web".to_string()]));
        let (k, n) = kind_and_names("po", &["a".into(), "pod/b".into()]).unwrap();
        assert_eq!((k, n), (Kind::Pod, vec!["a".to_string(), "b".to_string()]));
        assert!(kind_and_names("gadgets", &[]).is_err());
    }
}
