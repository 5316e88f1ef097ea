//! A fake kube-apiserver for the tests: it serves the recorded responses
//! of `tests/fixtures/` in the API's wire format (lists with
//! `metadata.resourceVersion` and continue tokens, chunked watch streams of
//! JSON lines with bookmarks, `Status` errors), keeps a history of events
//! so that a watch can resume from a resource version, and can be made to
//! misbehave as a real one does: compacted history (410 on resume), an
//! expired continue token (HTTP 410 on a list page), a restart (every
//! connection drops, the port refuses, then it comes back), conflicts on
//! create (409), failing lists of one collection (any status). It also
//! takes writes as the API server does: merge patches
//! (`application/merge-patch+json`, with `metadata.resourceVersion` as a
//! precondition: 409 Conflict on a mismatch) and deletes (with
//! `preconditions.resourceVersion`: 409 on a mismatch), 404 on a missing
//! object; writes can be held back to make races overlap.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio::task::AbortHandle;

type Body = BoxBody<Bytes, Infallible>;

/// The fixtures' directory (this module is also used by tollway-agent's
/// tests, hence the path through the crates' directory).
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tollway-kube/tests/fixtures")
}

fn read(rel: &str) -> String {
    let p = fixtures().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The events of a `watch/*.jsonl` fixture.
pub fn events(rel: &str) -> Vec<Value> {
    read(rel)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// One served collection.
#[derive(Debug, Clone)]
pub struct Resource {
    /// `/api/v1/pods`.
    pub path: String,
    /// `v1`.
    pub api_version: String,
    /// `Pod`.
    pub kind: String,
    /// Built-in kinds' list items carry no apiVersion/kind; custom
    /// resources' do.
    pub builtin: bool,
    /// False: 404, as for a CRD that is not installed.
    pub served: bool,
    /// Objects by `namespace/name` (or `name`).
    pub objects: BTreeMap<String, Value>,
}

fn object_key(o: &Value) -> String {
    let m = &o["metadata"];
    let name = m["name"].as_str().unwrap_or_default();
    match m["namespace"].as_str() {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

fn rv_of(o: &Value) -> u64 {
    o["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Logged {
    /// GET, POST.
    pub method: String,
    /// The path.
    pub path: String,
    /// Query parameters.
    pub query: BTreeMap<String, String>,
    /// Status answered.
    pub status: u16,
    /// When the answer was ready.
    pub at: SystemTime,
}

impl Logged {
    /// A watch request.
    pub fn is_watch(&self) -> bool {
        matches!(
            self.query.get("watch").map(String::as_str),
            Some("1" | "true")
        )
    }
}

struct HistoryEvent {
    rv: u64,
    path: String,
    line: Bytes,
}

struct Stream {
    path: String,
    tx: UnboundedSender<Bytes>,
}

#[derive(Default)]
struct State {
    rv: u64,
    resources: Vec<Resource>,
    history: Vec<HistoryEvent>,
    /// A watch from a version older than this gets 410.
    compacted: u64,
    streams: Vec<Stream>,
    log: Vec<Logged>,
    page_size: Option<usize>,
    expire_next_continue: bool,
    list_delay: Duration,
    /// PATCH or DELETE → how long it is held before it is applied.
    write_delays: BTreeMap<String, Duration>,
    /// Collection path → the status its lists and watches answer.
    failing: BTreeMap<String, u16>,
    uid: u64,
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut s = serde_json::to_string(&json!({"type": kind, "object": object})).unwrap();
    s.push('\n');
    Bytes::from(s)
}

impl State {
    fn load() -> State {
        let mut st = State::default();
        let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures().join("lists"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files {
            let plural = f.file_stem().unwrap().to_str().unwrap().to_string();
            let list: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
            let api_version = list["apiVersion"].as_str().unwrap().to_string();
            let kind = list["kind"]
                .as_str()
                .unwrap()
                .strip_suffix("List")
                .unwrap()
                .to_string();
            let (path, builtin) = match api_version.rsplit_once('/') {
                None => (format!("/api/{api_version}/{plural}"), true),
                Some((group, _)) => (
                    format!("/apis/{api_version}/{plural}"),
                    group.ends_with(".k8s.io"),
                ),
            };
            st.rv = st.rv.max(rv_of(&list));
            let mut objects = BTreeMap::new();
            for item in list["items"].as_array().unwrap() {
                let mut o = item.clone();
                o["apiVersion"] = json!(api_version);
                o["kind"] = json!(kind);
                objects.insert(object_key(&o), o);
            }
            st.resources.push(Resource {
                path,
                api_version,
                kind,
                builtin,
                served: true,
                objects,
            });
        }
        st
    }

    fn resource_of(&self, api_version: &str, kind: &str) -> Option<usize> {
        self.resources
            .iter()
            .position(|r| r.api_version == api_version && r.kind == kind)
    }

    /// Apply a watch event to the state; record it and send it to the
    /// open watches of its collection.
    fn apply(&mut self, event: &Value, record: bool) -> u64 {
        let kind = event["type"].as_str().unwrap();
        let mut object = event["object"].clone();
        let r = self
            .resource_of(
                object["apiVersion"].as_str().unwrap(),
                object["kind"].as_str().unwrap(),
            )
            .expect("a served kind");
        if kind == "BOOKMARK" {
            object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
            let l = line("BOOKMARK", &object);
            let path = self.resources[r].path.clone();
            self.streams
                .retain(|s| s.path != path || s.tx.send(l.clone()).is_ok());
            return self.rv;
        }
        self.rv = (self.rv + 1).max(rv_of(&object));
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let key = object_key(&object);
        match kind {
            "ADDED" | "MODIFIED" => {
                self.resources[r].objects.insert(key, object.clone());
            }
            "DELETED" => {
                self.resources[r].objects.remove(&key);
            }
            other => panic!("cannot play {other}"),
        }
        let l = line(kind, &object);
        let path = self.resources[r].path.clone();
        if record {
            self.history.push(HistoryEvent {
                rv: self.rv,
                path: path.clone(),
                line: l.clone(),
            });
            self.streams
                .retain(|s| s.path != path || s.tx.send(l.clone()).is_ok());
        }
        self.rv
    }
}

struct Serving {
    accept: AbortHandle,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
}

/// The fake API server. It runs on its own runtime, so that tests can be
/// plain (blocking) functions.
pub struct FakeApi {
    rt: tokio::runtime::Runtime,
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
    serving: Mutex<Option<Serving>>,
}

fn status_body(rel: &str, name: &str) -> Value {
    serde_json::from_str(&read(rel).replace("NAME", name)).unwrap()
}

/// RFC 7386: `patch` merged into `target` (null removes a member).
fn merge_patch(target: &mut Value, patch: &Value) {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let t = target.as_object_mut().unwrap();
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

fn respond(status: StatusCode, v: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(v).unwrap())).boxed())
        .unwrap()
}

fn parse_query(q: Option<&str>) -> BTreeMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.replace("%2F", "/").replace("%3D", "="))
        })
        .collect()
}

async fn handle(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query());
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let mut logged = Logged {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        status: 200,
        at: SystemTime::now(),
    };
    let delay = state
        .lock()
        .unwrap()
        .write_delays
        .get(method.as_str())
        .copied();
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let resp = route(&state, &method, &path, &query, &content_type, &body).await;
    logged.status = resp.status().as_u16();
    logged.at = SystemTime::now();
    state.lock().unwrap().log.push(logged);
    resp
}

async fn route(
    state: &Arc<Mutex<State>>,
    method: &Method,
    path: &str,
    query: &BTreeMap<String, String>,
    content_type: &str,
    body: &Bytes,
) -> Response<Body> {
    if path == "/version" {
        let v: Value = serde_json::from_str(&read("version.json")).unwrap();
        return respond(StatusCode::OK, &v);
    }
    let not_found = || {
        respond(
            StatusCode::NOT_FOUND,
            &status_body("status/not-found.json", ""),
        )
    };
    let (index, item) = {
        let st = state.lock().unwrap();
        let found = st
            .resources
            .iter()
            .position(|r| r.path == path)
            .map(|i| (i, None))
            .or_else(|| {
                st.resources
                    .iter()
                    .position(|r| path.starts_with(&format!("{}/", r.path)))
                    .map(|i| (i, Some(path[st.resources[i].path.len() + 1..].to_string())))
            });
        match found {
            Some((i, item)) if st.resources[i].served => (i, item),
            _ => return not_found(),
        }
    };
    let watch = matches!(query.get("watch").map(String::as_str), Some("1" | "true"));
    if item.is_none() && *method == Method::GET {
        let st = state.lock().unwrap();
        if let Some(&code) = st.failing.get(path) {
            return respond(
                StatusCode::from_u16(code).unwrap(),
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Failure", "message": "injected failure", "code": code}),
            );
        }
    }
    match (method, item, watch) {
        (&Method::GET, None, true) => watch_response(state, index, query),
        (&Method::GET, None, false) => list_response(state, index, query).await,
        (&Method::GET, Some(name), _) => {
            let st = state.lock().unwrap();
            match st.resources[index].objects.get(&name) {
                Some(o) => respond(StatusCode::OK, o),
                None => not_found(),
            }
        }
        (&Method::POST, None, _) => {
            let Ok(mut o) = serde_json::from_slice::<Value>(body) else {
                return respond(
                    StatusCode::BAD_REQUEST,
                    &json!({"kind": "Status", "code": 400}),
                );
            };
            let mut st = state.lock().unwrap();
            let key = object_key(&o);
            if st.resources[index].objects.contains_key(&key) {
                return respond(
                    StatusCode::CONFLICT,
                    &status_body("status/already-exists.json", &key),
                );
            }
            st.uid += 1;
            o["metadata"]["uid"] = json!(format!("00000000-0000-4000-8000-{:012}", st.uid));
            o["metadata"]["creationTimestamp"] = json!("2024-11-02T13:00:00Z");
            o["metadata"]["generation"] = json!(1);
            let rv = st.apply(&json!({"type": "ADDED", "object": o}), true);
            let created = st.resources[index].objects[&key].clone();
            drop(st);
            let _ = rv;
            respond(StatusCode::CREATED, &created)
        }
        (&Method::PATCH, Some(name), _) => {
            if content_type != "application/merge-patch+json" {
                return respond(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    &json!({"kind": "Status", "code": 415, "message": content_type}),
                );
            }
            let Ok(patch) = serde_json::from_slice::<Value>(body) else {
                return respond(
                    StatusCode::BAD_REQUEST,
                    &json!({"kind": "Status", "code": 400}),
                );
            };
            let mut st = state.lock().unwrap();
            let Some(current) = st.resources[index].objects.get(&name).cloned() else {
                return not_found();
            };
            // A resourceVersion in the patch is a precondition.
            if let Some(rv) = patch["metadata"]["resourceVersion"].as_str()
                && Some(rv) != current["metadata"]["resourceVersion"].as_str()
            {
                return respond(
                    StatusCode::CONFLICT,
                    &status_body("status/conflict.json", &name),
                );
            }
            let mut patched = current;
            merge_patch(&mut patched, &patch);
            st.apply(&json!({"type": "MODIFIED", "object": patched}), true);
            let key = object_key(&patched);
            let now = st.resources[index].objects[&key].clone();
            respond(StatusCode::OK, &now)
        }
        (&Method::DELETE, Some(name), _) => {
            let options: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let mut st = state.lock().unwrap();
            let Some(current) = st.resources[index].objects.get(&name).cloned() else {
                return not_found();
            };
            let have = current["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("");
            if let Some(rv) = options["preconditions"]["resourceVersion"].as_str()
                && rv != have
            {
                let mut s = status_body("status/precondition-failed.json", &name);
                s["message"] = json!(
                    s["message"]
                        .as_str()
                        .unwrap()
                        .replace("WANT", rv)
                        .replace("HAVE", have)
                );
                return respond(StatusCode::CONFLICT, &s);
            }
            st.apply(&json!({"type": "DELETED", "object": current}), true);
            respond(StatusCode::OK, &current)
        }
        _ => respond(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"kind": "Status", "code": 405}),
        ),
    }
}

async fn list_response(
    state: &Arc<Mutex<State>>,
    index: usize,
    query: &BTreeMap<String, String>,
) -> Response<Body> {
    let (resp, delay) = {
        let mut st = state.lock().unwrap();
        let delay = st.list_delay;
        let cont = query.get("continue").filter(|c| !c.is_empty()).cloned();
        if cont.is_some() && st.expire_next_continue {
            st.expire_next_continue = false;
            return respond(
                StatusCode::GONE,
                &status_body("status/continue-expired.json", ""),
            );
        }
        // Tokens are `<list resource version>-<offset>`.
        let (list_rv, offset) = match &cont {
            Some(c) => {
                let (rv, off) = c.split_once('-').unwrap();
                (rv.to_string(), off.parse::<usize>().unwrap())
            }
            None => (st.rv.to_string(), 0),
        };
        let limit = query.get("limit").and_then(|l| l.parse::<usize>().ok());
        let page = match (limit, st.page_size) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let r = &st.resources[index];
        let all: Vec<Value> = r
            .objects
            .values()
            .map(|o| {
                let mut o = o.clone();
                if r.builtin {
                    let m = o.as_object_mut().unwrap();
                    m.remove("apiVersion");
                    m.remove("kind");
                }
                o
            })
            .collect();
        let end = page.map_or(all.len(), |p| (offset + p).min(all.len()));
        let items = &all[offset.min(all.len())..end];
        let mut metadata = json!({"resourceVersion": list_rv});
        if end < all.len() {
            metadata["continue"] = json!(format!("{list_rv}-{end}"));
            metadata["remainingItemCount"] = json!(all.len() - end);
        }
        (
            respond(
                StatusCode::OK,
                &json!({
                    "kind": format!("{}List", r.kind),
                    "apiVersion": r.api_version,
                    "metadata": metadata,
                    "items": items,
                }),
            ),
            delay,
        )
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    resp
}

fn watch_response(
    state: &Arc<Mutex<State>>,
    index: usize,
    query: &BTreeMap<String, String>,
) -> Response<Body> {
    let (tx, mut rx) = unbounded_channel::<Bytes>();
    {
        let mut st = state.lock().unwrap();
        let r = &st.resources[index];
        let path = r.path.clone();
        let from = query
            .get("resourceVersion")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(st.rv);
        if from < st.compacted {
            // As the API server does: 200, one ERROR event, end of stream.
            let mut ev = events("watch/expired.jsonl").remove(0);
            ev["object"]["message"] = json!(format!(
                "too old resource version: {from} ({})",
                st.compacted
            ));
            let mut s = serde_json::to_string(&ev).unwrap();
            s.push('\n');
            let _ = tx.send(Bytes::from(s));
            drop(tx);
        } else {
            for h in st.history.iter().filter(|h| h.rv > from && h.path == path) {
                let _ = tx.send(h.line.clone());
            }
            if matches!(
                query.get("allowWatchBookmarks").map(String::as_str),
                Some("true")
            ) {
                let bm = json!({"kind": r.kind, "apiVersion": r.api_version,
                    "metadata": {"resourceVersion": st.rv.to_string(), "creationTimestamp": null}});
                let _ = tx.send(line("BOOKMARK", &bm));
            }
            st.streams.push(Stream { path, tx });
        }
    }
    let stream =
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b)))));
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap()
}

impl FakeApi {
    /// A server holding the fixtures' lists, listening on 127.0.0.1.
    pub fn start() -> FakeApi {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let api = FakeApi {
            rt,
            state: Arc::new(Mutex::new(State::load())),
            addr,
            serving: Mutex::new(None),
        };
        api.serve(listener);
        api
    }

    fn serve(&self, listener: TcpListener) {
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let state = self.state.clone();
        let c = conns.clone();
        let accept = self.rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                let h = tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(state, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
                c.lock().unwrap().push(h.abort_handle());
            }
        });
        *self.serving.lock().unwrap() = Some(Serving {
            accept: accept.abort_handle(),
            conns,
        });
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube configuration for this server.
    pub fn config(&self) -> kube::Config {
        kube::Config::new(self.url().parse().unwrap())
    }

    /// A kubeconfig file's text for this server.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
            self.url()
        )
    }

    /// Crash: every connection drops and the port refuses connections.
    /// The state (the "etcd") stays.
    pub fn stop(&self) {
        if let Some(s) = self.serving.lock().unwrap().take() {
            s.accept.abort();
            for c in s.conns.lock().unwrap().drain(..) {
                c.abort();
            }
        }
        self.state.lock().unwrap().streams.clear();
        // Let the aborted tasks close their sockets.
        std::thread::sleep(Duration::from_millis(50));
    }

    /// Come back on the same port.
    pub fn restart(&self) {
        let listener = self.rt.block_on(TcpListener::bind(self.addr)).unwrap();
        self.serve(listener);
    }

    /// Play a `watch/*.jsonl` fixture: each event changes the state and
    /// goes to the open watches (and into the history).
    pub fn play(&self, rel: &str) -> u64 {
        let mut st = self.state.lock().unwrap();
        let mut rv = st.rv;
        for e in events(rel) {
            rv = st.apply(&e, true);
        }
        rv
    }

    /// Apply a fixture while the history is compacted: every open watch
    /// ends, the events change the state but are not in the history, and a
    /// watch resuming from before gets 410 Expired.
    pub fn play_compacted(&self, rel: &str) {
        let mut st = self.state.lock().unwrap();
        st.streams.clear();
        for e in events(rel) {
            st.apply(&e, false);
        }
        st.compacted = st.rv;
        st.history.clear();
    }

    /// Apply a fixture without anyone seeing it now (the server is down):
    /// recorded in the history, delivered when a watch resumes.
    pub fn play_offline(&self, rel: &str) {
        let mut st = self.state.lock().unwrap();
        st.streams.clear();
        for e in events(rel) {
            st.apply(&e, true);
        }
    }

    /// End every open watch gracefully (as the server's watch timeout
    /// does).
    pub fn end_watches(&self) {
        self.state.lock().unwrap().streams.clear();
    }

    /// Serve at most `n` objects per list page.
    pub fn set_page_size(&self, n: usize) {
        self.state.lock().unwrap().page_size = Some(n);
    }

    /// The next list page asked for with a continue token gets HTTP 410.
    pub fn expire_next_continue(&self) {
        self.state.lock().unwrap().expire_next_continue = true;
    }

    /// Hold every list answer back this long (to make races overlap).
    pub fn set_list_delay(&self, d: Duration) {
        self.state.lock().unwrap().list_delay = d;
    }

    /// Hold every request of `method` (`PATCH`, `DELETE`) back this long
    /// before applying it (to order racing writes).
    pub fn set_write_delay(&self, method: &str, d: Duration) {
        self.state
            .lock()
            .unwrap()
            .write_delays
            .insert(method.to_string(), d);
    }

    /// Answer every list and watch of collection `path` with HTTP `code`
    /// (None: serve it again).
    pub fn fail_lists(&self, path: &str, code: Option<u16>) {
        let mut st = self.state.lock().unwrap();
        match code {
            Some(c) => st.failing.insert(path.to_string(), c),
            None => st.failing.remove(path),
        };
    }

    /// Write an object as a controller would (`ADDED`, `MODIFIED`,
    /// `DELETED`; it carries its apiVersion and kind): the state changes
    /// and the open watches see it. Returns the new resource version.
    pub fn write(&self, event: &str, object: Value) -> u64 {
        self.state
            .lock()
            .unwrap()
            .apply(&json!({"type": event, "object": object}), true)
    }

    /// One object of a collection, by `name` (or `namespace/name`).
    pub fn object(&self, path: &str, key: &str) -> Option<Value> {
        let st = self.state.lock().unwrap();
        st.resources
            .iter()
            .find(|r| r.path == path)
            .and_then(|r| r.objects.get(key).cloned())
    }

    /// Stop serving a collection (404, as a CRD not installed).
    pub fn unserve(&self, path: &str) {
        let mut st = self.state.lock().unwrap();
        if let Some(r) = st.resources.iter_mut().find(|r| r.path == path) {
            r.served = false;
        }
    }

    /// Serve it again.
    pub fn serve_again(&self, path: &str) {
        let mut st = self.state.lock().unwrap();
        if let Some(r) = st.resources.iter_mut().find(|r| r.path == path) {
            r.served = true;
        }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    /// Every object the server holds, with apiVersion and kind, by path.
    pub fn objects(&self) -> BTreeMap<String, Vec<Value>> {
        self.state
            .lock()
            .unwrap()
            .resources
            .iter()
            .filter(|r| r.served)
            .map(|r| (r.path.clone(), r.objects.values().cloned().collect()))
            .collect()
    }

    /// The objects of one collection.
    pub fn objects_of(&self, path: &str) -> Vec<Value> {
        self.objects().remove(path).unwrap_or_default()
    }

    /// The current resource version.
    pub fn resource_version(&self) -> u64 {
        self.state.lock().unwrap().rv
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stop();
    }
}
