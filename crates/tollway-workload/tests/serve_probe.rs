//! In-process tests: a server on 127.0.0.1:0 probed by the probe client.

// `allow-unwrap-in-tests` covers #[test] functions only, not the helpers below.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tollway_workload::{
    AttemptResult, BoundAddrs, OutputFormat, ProbeArgs, ProbeReport, ServeArgs, Server, Summary,
    WorkloadError, probe,
};

const POD: &str = "web-frontend-abc";
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

struct Running {
    addrs: BoundAddrs,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

async fn start(http: usize, tcp: usize, udp: usize) -> Running {
    let args = ServeArgs {
        http: vec![0; http],
        tcp: vec![0; tcp],
        udp: vec![0; udp],
        name: Some(POD.into()),
        bind: LOCALHOST,
        ..ServeArgs::default()
    };
    start_with(args, None).await
}

/// Starts a server for `args` (bound to 127.0.0.1), with another grace period if given.
async fn start_with(args: ServeArgs, grace: Option<Duration>) -> Running {
    let args = ServeArgs {
        bind: LOCALHOST,
        ..args
    };
    let name = args.name.clone();
    let mut server = Server::bind(args).await.unwrap();
    if let Some(name) = name {
        assert_eq!(server.pod_name(), name);
    }
    if let Some(grace) = grace {
        server = server.with_grace_period(grace);
    }
    let addrs = server.local_addrs();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    Running { addrs, stop, task }
}

async fn probe_with(target: String, tweak: impl FnOnce(&mut ProbeArgs)) -> ProbeReport {
    let mut args = ProbeArgs::new(target);
    tweak(&mut args);
    probe(args).await.unwrap()
}

fn echo_json(report: &ProbeReport, i: usize) -> Value {
    serde_json::from_str(&report.attempts[i].body).unwrap()
}

/// Bounds raw socket I/O so that a broken server fails the test instead of hanging it.
async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(3), fut)
        .await
        .unwrap_or_else(|_| panic!("{what} took more than 3s"))
}

/// A port on 127.0.0.1 with nothing listening (TCP and, most likely, UDP).
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn hostname_is_the_pod_name() {
    let s = start(1, 0, 0).await;
    let report = probe_with(format!("http://{}/hostname", s.addrs.http[0]), |_| {}).await;
    assert!(report.success(), "{report:?}");
    assert_eq!(report.summary, Summary { ok: 1, failed: 0 });
    let a = &report.attempts[0];
    assert_eq!(a.result, AttemptResult::Ok);
    assert_eq!(a.status, Some(200));
    assert_eq!(a.body, POD);
    assert_eq!(a.error, None);
    assert_eq!(a.remote_addr, Some(s.addrs.http[0]));
    let headers = a.headers.as_ref().unwrap();
    assert_eq!(headers["x-pod-name"], POD);
    assert!(headers["content-type"].starts_with("text/plain"));
}

#[tokio::test]
async fn echo_reports_the_request() {
    let s = start(1, 0, 0).await;
    let addr = s.addrs.http[0];
    let report = probe_with(format!("http://{addr}/echo?a=1&b=two"), |a| {
        a.method = "POST".into();
        a.headers = vec!["X-Test: one".into(), "x-test:two".into()];
        a.data = Some("hello body".into());
    })
    .await;
    assert!(report.success(), "{report:?}");
    let attempt = &report.attempts[0];
    assert_eq!(attempt.headers.as_ref().unwrap()["x-pod-name"], POD);
    assert!(attempt.headers.as_ref().unwrap()["content-type"].starts_with("application/json"));
    let echo = echo_json(&report, 0);
    assert_eq!(echo["pod"], POD);
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/echo");
    assert_eq!(echo["query"], "a=1&b=two");
    assert_eq!(echo["headers"]["x-test"], "one, two");
    assert_eq!(echo["headers"]["host"], addr.to_string());
    assert_eq!(echo["headers"]["content-length"], "10");
    assert_eq!(echo["body"], "hello body");
    assert_eq!(echo["protocol"], "HTTP/1.1");
    let local = attempt.local_addr.unwrap();
    assert_eq!(echo["client"], local.to_string());
    assert!(echo.get("attempt").is_none());

    // Any other path and method also echoes, with an empty query.
    let report = probe_with(format!("http://{addr}/some/where"), |a| {
        a.method = "DELETE".into();
    })
    .await;
    assert!(report.success());
    let echo = echo_json(&report, 0);
    assert_eq!(
        (echo["method"].as_str(), echo["path"].as_str()),
        (Some("DELETE"), Some("/some/where"))
    );
    assert_eq!(echo["query"], "");
    assert_eq!(echo["body"], "");
}

#[tokio::test]
async fn status_path_sets_the_status() {
    let s = start(1, 0, 0).await;
    let addr = s.addrs.http[0];
    let report = probe_with(format!("http://{addr}/status/503"), |_| {}).await;
    let a = &report.attempts[0];
    assert_eq!(a.result, AttemptResult::Ok, "transport-level ok");
    assert_eq!(a.status, Some(503));
    assert_eq!(a.error, None);
    assert!(!report.success());
    assert_eq!(report.summary, Summary { ok: 0, failed: 1 });
    assert_eq!(echo_json(&report, 0)["path"], "/status/503");
    assert_eq!(a.headers.as_ref().unwrap()["x-pod-name"], POD);

    for bad in ["42", "1000", "abc"] {
        let report = probe_with(format!("http://{addr}/status/{bad}"), |_| {}).await;
        let a = &report.attempts[0];
        assert_eq!(a.status, Some(400), "{bad}");
        assert!(a.body.contains("100..=999"), "{}", a.body);
        assert_eq!(a.headers.as_ref().unwrap()["x-pod-name"], POD);
    }
}

#[tokio::test]
async fn delay_delays_the_answer() {
    let s = start(1, 0, 0).await;
    let addr = s.addrs.http[0];
    let report = probe_with(format!("http://{addr}/hostname?delay=120"), |_| {}).await;
    assert!(report.success(), "{report:?}");
    assert_eq!(report.attempts[0].body, POD);
    assert!(report.attempts[0].latency_us >= 120_000, "{report:?}");

    let report = probe_with(format!("http://{addr}/echo?delay=soon"), |_| {}).await;
    let a = &report.attempts[0];
    assert_eq!(a.status, Some(400));
    assert!(a.body.contains("delay"), "{}", a.body);
}

#[tokio::test]
async fn response_code_until_succeed_after_per_uuid() {
    let s = start(1, 0, 0).await;
    let addr = s.addrs.http[0];
    let target = format!("http://{addr}/echo?responseCode=503&succeedAfter=2&uuid=retry-a");
    let report = probe_with(target.clone(), |a| a.count = 4).await;
    let statuses: Vec<_> = report.attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [Some(503), Some(503), Some(200), Some(200)]);
    let numbers: Vec<_> = (0..4)
        .map(|i| echo_json(&report, i)["attempt"].as_u64())
        .collect();
    assert_eq!(numbers, [Some(1), Some(2), Some(3), Some(4)]);
    assert_eq!(report.summary, Summary { ok: 2, failed: 2 });
    assert!(!report.success());

    // The same uuid stays succeeded; another uuid starts over.
    let again = probe_with(target, |_| {}).await;
    assert_eq!(again.attempts[0].status, Some(200));
    let other = format!("http://{addr}/echo?responseCode=500&succeedAfter=1&uuid=retry-b");
    let report = probe_with(other, |a| a.count = 2).await;
    let statuses: Vec<_> = report.attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [Some(500), Some(200)]);

    let missing = format!("http://{addr}/echo?responseCode=500&uuid=retry-c");
    let report = probe_with(missing, |_| {}).await;
    assert_eq!(report.attempts[0].status, Some(400));
    assert!(report.attempts[0].body.contains("succeedAfter"));
}

#[tokio::test]
async fn h2c_and_http1_share_the_port() {
    let s = start(1, 0, 0).await;
    let addr = s.addrs.http[0];
    let report = probe_with(format!("http://{addr}/echo?x=1"), |a| {
        a.http2 = true;
        a.headers = vec!["x-h2: yes".into()];
    })
    .await;
    assert!(report.success(), "{report:?}");
    let a = &report.attempts[0];
    assert_eq!(a.headers.as_ref().unwrap()["x-pod-name"], POD);
    let echo = echo_json(&report, 0);
    assert_eq!(echo["protocol"], "HTTP/2.0");
    assert_eq!(echo["path"], "/echo");
    assert_eq!(echo["query"], "x=1");
    assert_eq!(echo["headers"]["x-h2"], "yes");
    assert_eq!(echo["client"], a.local_addr.unwrap().to_string());

    let report = probe_with(format!("http://{addr}/hostname"), |a| a.http2 = true).await;
    assert_eq!(report.attempts[0].body, POD);

    let report = probe_with(format!("http://{addr}/echo"), |_| {}).await;
    assert_eq!(echo_json(&report, 0)["protocol"], "HTTP/1.1");
}

#[tokio::test]
async fn tcp_greets_then_echoes() {
    let s = start(0, 1, 0).await;
    let addr = s.addrs.tcp[0];
    assert!(
        s.addrs.http.is_empty(),
        "a port flag disables the default HTTP port"
    );
    let report = probe_with(format!("tcp://{addr}"), |_| {}).await;
    assert!(report.success(), "{report:?}");
    let a = &report.attempts[0];
    assert_eq!(a.body, POD);
    assert_eq!((a.status, a.headers.as_ref()), (None, None));
    assert!(a.local_addr.is_some());

    let json: Value = serde_json::from_str(&report.render(OutputFormat::Json).unwrap()).unwrap();
    let attempt = json["attempts"][0].as_object().unwrap();
    assert_eq!(attempt["result"], "ok");
    assert_eq!(attempt["body"], POD);
    for absent in ["status", "headers", "error"] {
        assert!(!attempt.contains_key(absent), "{absent}");
    }

    let echoed = within("raw TCP echo", async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut greeting = vec![0u8; POD.len() + 1];
        stream.read_exact(&mut greeting).await.unwrap();
        assert_eq!(greeting, format!("{POD}\n").as_bytes());
        stream.write_all(b"ping\nsecond line").await.unwrap();
        stream.shutdown().await.unwrap();
        let mut echoed = Vec::new();
        stream.read_to_end(&mut echoed).await.unwrap();
        echoed
    })
    .await;
    assert_eq!(echoed, b"ping\nsecond line");
}

#[tokio::test]
async fn udp_answers_with_the_pod_name() {
    let s = start(0, 0, 1).await;
    let addr = s.addrs.udp[0];
    let report = probe_with(format!("udp://{addr}"), |a| {
        a.data = Some("hello".into());
        a.count = 2;
    })
    .await;
    assert!(report.success(), "{report:?}");
    for a in &report.attempts {
        assert_eq!(a.body, POD);
        assert_eq!(a.status, None);
    }
}

#[tokio::test]
async fn nothing_listening_is_refused() {
    let addr = closed_port().await;
    for target in [
        format!("http://{addr}/"),
        format!("tcp://{addr}"),
        format!("udp://{addr}"),
    ] {
        let report = probe_with(target.clone(), |a| a.timeout_ms = 1000).await;
        let a = &report.attempts[0];
        assert_eq!(a.result, AttemptResult::Refused, "{target}: {a:?}");
        assert!(a.error.is_some());
        assert!(!report.success());
        assert_eq!(report.summary, Summary { ok: 0, failed: 1 });
    }
}

#[tokio::test]
async fn no_answer_is_a_timeout() {
    // Connections complete in the backlog but nobody ever reads or answers.
    let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent_udp = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
    let udp_addr = silent_udp.local_addr().unwrap();
    for (target, http2) in [
        (format!("http://{addr}/"), false),
        (format!("http://{addr}/"), true),
        (format!("tcp://{addr}"), false),
        (format!("udp://{udp_addr}"), false),
    ] {
        let report = probe_with(target.clone(), |a| {
            a.timeout_ms = 150;
            a.http2 = http2;
        })
        .await;
        let a = &report.attempts[0];
        assert_eq!(
            a.result,
            AttemptResult::Timeout,
            "{target} http2={http2}: {a:?}"
        );
        assert!(a.error.as_deref().unwrap().contains("150ms"), "{a:?}");
        assert!(!report.success());
    }
    drop(listener);
}

#[tokio::test]
async fn closed_before_an_answer_is_a_reset() {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    for target in [format!("http://{addr}/"), format!("tcp://{addr}")] {
        let report = probe_with(target.clone(), |_| {}).await;
        let a = &report.attempts[0];
        assert_eq!(a.result, AttemptResult::Reset, "{target}: {a:?}");
    }
}

#[tokio::test]
async fn non_http_answer_is_an_http_error() {
    let s = start(0, 1, 0).await;
    let report = probe_with(format!("http://{}/", s.addrs.tcp[0]), |_| {}).await;
    let a = &report.attempts[0];
    assert_eq!(a.result, AttemptResult::HttpError, "{a:?}");
    assert!(a.error.is_some());
    assert_eq!(a.status, None);
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let s = start(1, 0, 0).await;
    let addr = s.addrs.http[0];
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
    // The server answers 100 Continue once the handler reads the body: it is in flight.
    let head = within("100 Continue", async {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8];
            stream.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        head
    })
    .await;
    assert!(
        head.starts_with(b"HTTP/1.1 100 Continue"),
        "{}",
        String::from_utf8_lossy(&head)
    );

    s.stop.send(()).unwrap();
    stream.write_all(b"hello").await.unwrap();
    // read_to_end returning (well before the 5 s grace period) proves the server closes
    // the connection right after answering.
    let response = within("the answer and close", async {
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        response
    })
    .await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(
        response.contains(&format!("x-pod-name: {POD}\r\n")),
        "{response}"
    );
    assert!(response.contains(r#""body":"hello""#), "{response}");

    within("run() after draining", s.task).await.unwrap();
    let err = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn shutdown_closes_every_listener() {
    let s = start(1, 1, 1).await;
    let report = probe_with(format!("tcp://{}", s.addrs.tcp[0]), |_| {}).await;
    assert!(report.success());
    s.stop.send(()).unwrap();
    within("run() when idle", s.task).await.unwrap();
    for target in [
        format!("http://{}/", s.addrs.http[0]),
        format!("tcp://{}", s.addrs.tcp[0]),
        format!("udp://{}", s.addrs.udp[0]),
    ] {
        let report = probe_with(target.clone(), |a| a.timeout_ms = 1000).await;
        assert_eq!(
            report.attempts[0].result,
            AttemptResult::Refused,
            "{target}"
        );
    }
}

#[tokio::test]
async fn bind_failure_names_the_address() {
    let taken = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let addr = taken.local_addr().unwrap();
    let args = ServeArgs {
        http: vec![addr.port()],
        name: Some(POD.into()),
        bind: LOCALHOST,
        ..ServeArgs::default()
    };
    match Server::bind(args).await {
        Err(err @ WorkloadError::Bind { .. }) => {
            let WorkloadError::Bind {
                protocol,
                addr: failed,
                ref source,
            } = err
            else {
                unreachable!()
            };
            assert_eq!((protocol, failed), ("http", addr));
            assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
            assert!(err.to_string().contains(&addr.to_string()), "{err}");
        }
        other => panic!("expected a bind error, got {other:?}"),
    }
}

#[tokio::test]
async fn invalid_probe_arguments_are_typed_errors() {
    let err = probe(ProbeArgs::new("localhost:80")).await.unwrap_err();
    assert!(matches!(err, WorkloadError::InvalidTarget { .. }), "{err}");
    assert!(err.to_string().contains("localhost:80"), "{err}");

    let mut args = ProbeArgs::new("http://127.0.0.1:1/");
    args.headers = vec!["no colon".into()];
    let err = probe(args).await.unwrap_err();
    assert!(matches!(err, WorkloadError::InvalidHeader { ref header, .. } if header == "no colon"));

    let mut args = ProbeArgs::new("http://127.0.0.1:1/");
    args.method = "GE T".into();
    let err = probe(args).await.unwrap_err();
    assert!(matches!(err, WorkloadError::InvalidMethod { ref method } if method == "GE T"));

    let mut args = ProbeArgs::new("http://127.0.0.1:1/");
    args.count = 0;
    let err = probe(args).await.unwrap_err();
    assert!(matches!(err, WorkloadError::InvalidCount { count: 0 }));
}

#[tokio::test]
async fn unresolvable_host_is_unreachable() {
    let report = probe_with("tcp://name.invalid:80".into(), |a| a.timeout_ms = 1000).await;
    let a = &report.attempts[0];
    assert!(
        matches!(
            a.result,
            AttemptResult::Unreachable | AttemptResult::Timeout
        ),
        "{a:?}"
    );
    assert!(!report.success());
}

/// A port that was free on 127.0.0.1 a moment ago, for `--local-port`.
async fn free_port() -> u16 {
    closed_port().await.port()
}

fn ports(report: &ProbeReport) -> Vec<u16> {
    report
        .attempts
        .iter()
        .map(|a| {
            a.local_addr
                .unwrap_or_else(|| panic!("no local_addr: {a:?}"))
                .port()
        })
        .collect()
}

#[tokio::test]
async fn shutdown_delay_keeps_serving_then_closes() {
    const DELAY: Duration = Duration::from_millis(400);
    let args = ServeArgs {
        http: vec![0],
        tcp: vec![0],
        udp: vec![0],
        name: Some(POD.into()),
        shutdown_delay_ms: 400,
        ..ServeArgs::default()
    };
    let s = start_with(args, None).await;
    let targets = [
        format!("http://{}/hostname", s.addrs.http[0]),
        format!("tcp://{}", s.addrs.tcp[0]),
        format!("udp://{}", s.addrs.udp[0]),
    ];
    let signalled = Instant::now();
    s.stop.send(()).unwrap();
    // The test runtime has one thread: this pause lets the server see the signal (and,
    // without a delay, close its listeners) before the probes below.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!s.task.is_finished(), "run() returned before the delay");
    for target in &targets {
        // New connections and datagrams, sent after the signal.
        let report = probe_with(target.clone(), |a| a.timeout_ms = 1000).await;
        assert!(report.success(), "{target} during the delay: {report:?}");
        assert_eq!(report.attempts[0].body, POD);
    }
    within("run() after the delay", s.task).await.unwrap();
    assert!(signalled.elapsed() >= DELAY, "{:?}", signalled.elapsed());
    for target in &targets {
        let report = probe_with(target.clone(), |a| a.timeout_ms = 1000).await;
        assert_eq!(
            report.attempts[0].result,
            AttemptResult::Refused,
            "{target}"
        );
    }
}

#[tokio::test]
async fn local_port_pins_the_source_port() {
    let s = start(1, 1, 1).await;
    let http = s.addrs.http[0];
    for http2 in [false, true] {
        let port = free_port().await;
        let report = probe_with(format!("http://{http}/echo"), |a| {
            a.local_port = Some(port);
            a.count = 3;
            a.http2 = http2;
        })
        .await;
        assert!(report.success(), "http2={http2}: {report:?}");
        assert_eq!(ports(&report), [port; 3], "http2={http2}");
        for (i, a) in report.attempts.iter().enumerate() {
            // What the server saw: the same source port on every attempt.
            let echo = echo_json(&report, i);
            assert_eq!(echo["client"], format!("127.0.0.1:{port}"), "http2={http2}");
            assert_eq!(a.remote_addr, Some(http));
        }
    }

    let port = free_port().await;
    for target in [
        format!("tcp://{}", s.addrs.tcp[0]),
        format!("udp://{}", s.addrs.udp[0]),
    ] {
        let report = probe_with(target.clone(), |a| {
            a.local_port = Some(port);
            a.count = 3;
        })
        .await;
        assert!(report.success(), "{target}: {report:?}");
        assert_eq!(ports(&report), [port; 3], "{target}");
        for a in &report.attempts {
            assert_eq!(a.body, POD);
            assert_eq!(a.remote_addr.unwrap().to_string(), target[6..], "{target}");
        }
    }
}

#[tokio::test]
async fn local_port_in_use_fails_the_attempt() {
    let taken = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await.unwrap();
    let port = taken.local_addr().unwrap().port();
    let s = start(0, 0, 1).await;
    let report = probe_with(format!("udp://{}", s.addrs.udp[0]), |a| {
        a.local_port = Some(port);
    })
    .await;
    let a = &report.attempts[0];
    assert_ne!(a.result, AttemptResult::Ok, "{a:?}");
    assert!(
        a.error
            .as_deref()
            .unwrap()
            .contains(&format!("local port {port}")),
        "{a:?}"
    );
}

#[tokio::test]
async fn reuse_udp_sends_every_datagram_from_one_socket() {
    // A stand-in server that records the source of every datagram.
    let responder = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
    let addr = responder.local_addr().unwrap();
    let recorder = tokio::spawn(async move {
        let mut peers = Vec::new();
        let mut buf = [0u8; 1500];
        for _ in 0..3 {
            let (_, peer) = responder.recv_from(&mut buf).await.unwrap();
            responder.send_to(b"recorder", peer).await.unwrap();
            peers.push(peer);
        }
        peers
    });
    let report = probe_with(format!("udp://{addr}"), |a| {
        a.reuse = true;
        a.count = 3;
    })
    .await;
    assert!(report.success(), "{report:?}");
    let peers = within("the recorder", recorder).await.unwrap();
    let local = report.attempts[0].local_addr.unwrap();
    assert_eq!(peers, [local; 3], "the server saw one client socket");
    for a in &report.attempts {
        assert_eq!(a.body, "recorder");
        assert_eq!(a.local_addr, Some(local));
        assert_eq!(a.remote_addr, Some(addr));
    }
    let json: Value = serde_json::from_str(&report.to_json().unwrap()).unwrap();
    assert_eq!(json["attempts"][2]["local_addr"], local.to_string());
    assert_eq!(json["attempts"][2]["remote_addr"], addr.to_string());
}

#[tokio::test]
async fn reuse_udp_survives_a_server_restart() {
    const INTERVAL: u64 = 300;
    let udp = |name: &str, port: u16| ServeArgs {
        udp: vec![port],
        name: Some(name.into()),
        ..ServeArgs::default()
    };
    let first = start_with(udp("pod-a", 0), None).await;
    let addr = first.addrs.udp[0];
    // Attempts at about 0, 300, 600, 900 and 1200 ms; the server is down from 450 to 750.
    let probe = tokio::spawn(probe_with(format!("udp://{addr}"), |a| {
        a.reuse = true;
        a.count = 5;
        a.interval_ms = INTERVAL;
        a.timeout_ms = 200;
    }));
    tokio::time::sleep(Duration::from_millis(INTERVAL * 3 / 2)).await;
    first.stop.send(()).unwrap();
    within("the first server's shutdown", first.task)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(INTERVAL)).await;
    let second = start_with(udp("pod-b", addr.port()), None).await;
    assert_eq!(second.addrs.udp[0], addr);

    let report = within("the probe", probe).await.unwrap();
    let summary: Vec<_> = report
        .attempts
        .iter()
        .map(|a| (a.result, a.body.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (AttemptResult::Ok, "pod-a"),
            (AttemptResult::Ok, "pod-a"),
            (AttemptResult::Refused, ""),
            (AttemptResult::Ok, "pod-b"),
            (AttemptResult::Ok, "pod-b"),
        ],
        "{report:?}"
    );
    let port = report.attempts[0].local_addr.unwrap().port();
    assert_eq!(ports(&report), [port; 5], "one socket throughout");
    assert!(report.attempts.iter().all(|a| a.remote_addr == Some(addr)));
    assert!(!report.success());
}

#[tokio::test]
async fn reuse_http_keeps_one_connection() {
    let s = start(1, 0, 0).await;
    let addr = s.addrs.http[0];
    for http2 in [false, true] {
        let report = probe_with(format!("http://{addr}/echo"), |a| {
            a.reuse = true;
            a.count = 3;
            a.http2 = http2;
        })
        .await;
        assert!(report.success(), "http2={http2}: {report:?}");
        let port = report.attempts[0].local_addr.unwrap().port();
        assert_eq!(ports(&report), [port; 3], "http2={http2}");
        for (i, a) in report.attempts.iter().enumerate() {
            let echo = echo_json(&report, i);
            assert_eq!(echo["client"], format!("127.0.0.1:{port}"), "http2={http2}");
            assert_eq!(a.remote_addr, Some(addr));
            assert!(!a.reconnected, "http2={http2}: {a:?}");
        }
        let json: Value = serde_json::from_str(&report.to_json().unwrap()).unwrap();
        assert!(json["attempts"][1].get("reconnected").is_none());
    }

    // Without --reuse every attempt has its own connection.
    let report = probe_with(format!("http://{addr}/echo"), |a| a.count = 2).await;
    let clients: Vec<_> = (0..2)
        .map(|i| echo_json(&report, i)["client"].clone())
        .collect();
    assert_ne!(clients[0], clients[1]);
}

#[tokio::test]
async fn reuse_http_reconnects_when_the_server_closes() {
    let s = start(1, 0, 0).await;
    let addr = s.addrs.http[0];
    // The server closes after each answer: every later attempt has to reconnect, here
    // from the same --local-port each time.
    let port = free_port().await;
    let report = probe_with(format!("http://{addr}/echo"), |a| {
        a.reuse = true;
        a.count = 3;
        a.local_port = Some(port);
        a.headers = vec!["connection: close".into()];
    })
    .await;
    assert!(report.success(), "{report:?}");
    let reconnected: Vec<_> = report.attempts.iter().map(|a| a.reconnected).collect();
    assert_eq!(reconnected, [false, true, true]);
    assert_eq!(ports(&report), [port; 3]);
    let json: Value = serde_json::from_str(&report.to_json().unwrap()).unwrap();
    assert_eq!(json["attempts"][1]["reconnected"], true);
    assert!(report.render_text().contains("2: ok 200 latency="));
    assert!(
        report
            .render_text()
            .lines()
            .nth(1)
            .unwrap()
            .contains(" reconnected")
    );

    let report = probe_with(format!("http://{addr}/echo"), |a| {
        a.reuse = true;
        a.count = 2;
        a.headers = vec!["connection: close".into()];
    })
    .await;
    assert!(report.success(), "{report:?}");
    let clients: Vec<_> = (0..2)
        .map(|i| echo_json(&report, i)["client"].clone())
        .collect();
    assert_ne!(clients[0], clients[1], "a new connection after the close");
}

#[tokio::test]
async fn reuse_tcp_sends_a_line_per_attempt() {
    let s = start(0, 1, 0).await;
    let addr = s.addrs.tcp[0];
    let report = probe_with(format!("tcp://{addr}"), |a| {
        a.reuse = true;
        a.count = 3;
    })
    .await;
    assert!(report.success(), "{report:?}");
    let bodies: Vec<_> = report.attempts.iter().map(|a| a.body.as_str()).collect();
    assert_eq!(bodies, [POD, "ping 1", "ping 2"]);
    let seqs: Vec<_> = report.attempts.iter().map(|a| a.seq).collect();
    assert_eq!(seqs, [None, Some(1), Some(2)]);
    let port = report.attempts[0].local_addr.unwrap().port();
    assert_eq!(ports(&report), [port; 3]);
    assert!(report.attempts.iter().all(|a| a.remote_addr == Some(addr)));
}

#[tokio::test]
async fn hold_exchanges_lines_on_one_connection() {
    let s = start(0, 1, 0).await;
    let addr = s.addrs.tcp[0];
    let started = Instant::now();
    let report = probe_with(format!("tcp://{addr}"), |a| {
        a.hold_ms = Some(500);
        a.interval_ms = 100;
    })
    .await;
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(report.success(), "{report:?}");
    assert_eq!(
        report.attempts.len(),
        1 + 5,
        "the greeting, then 500/100 exchanges"
    );
    assert_eq!(report.attempts[0].body, POD);
    assert_eq!(report.attempts[0].seq, None);
    for (k, a) in report.attempts.iter().enumerate().skip(1) {
        assert_eq!(a.body, format!("ping {k}"));
        assert_eq!(a.seq, Some(u32::try_from(k).unwrap()));
        assert_eq!(a.remote_addr, Some(addr));
    }
    let port = report.attempts[0].local_addr.unwrap().port();
    assert_eq!(ports(&report), [port; 6]);
    let json: Value = serde_json::from_str(&report.to_json().unwrap()).unwrap();
    assert_eq!(json["attempts"][3]["seq"], 3);
    assert_eq!(json["attempts"][3]["body"], "ping 3");
    assert!(json["attempts"][0].get("seq").is_none());
}

#[tokio::test]
async fn hold_fails_once_the_server_is_gone() {
    let args = ServeArgs {
        tcp: vec![0],
        name: Some(POD.into()),
        ..ServeArgs::default()
    };
    // A short grace period: the held connection is closed right after the shutdown.
    let s = start_with(args, Some(Duration::from_millis(10))).await;
    let addr = s.addrs.tcp[0];
    // Exchanges at about 200, 400, 600, 800 and 1000 ms; the server stops at 500.
    let probe = tokio::spawn(probe_with(format!("tcp://{addr}"), |a| {
        a.hold_ms = Some(1000);
        a.interval_ms = 200;
        a.timeout_ms = 150;
    }));
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.stop.send(()).unwrap();
    within("the server's shutdown", s.task).await.unwrap();
    let report = within("the probe", probe).await.unwrap();
    assert_eq!(report.attempts.len(), 6, "{report:?}");
    for a in &report.attempts[..3] {
        assert_eq!(
            a.result,
            AttemptResult::Ok,
            "before the shutdown: {report:?}"
        );
    }
    for a in &report.attempts[4..] {
        assert!(
            matches!(a.result, AttemptResult::Reset | AttemptResult::Timeout),
            "after the shutdown: {a:?}"
        );
        assert!(a.seq.is_some());
    }
    assert!(!report.success(), "the exit status is a failure");
    assert!(report.summary.failed >= 2);
}

#[tokio::test]
async fn hold_without_a_server_reports_the_connect() {
    let addr = closed_port().await;
    let report = probe_with(format!("tcp://{addr}"), |a| {
        a.hold_ms = Some(300);
    })
    .await;
    assert_eq!(report.attempts.len(), 1, "{report:?}");
    assert_eq!(report.attempts[0].result, AttemptResult::Refused);
    assert!(!report.success());
}

#[tokio::test]
async fn invalid_new_options_are_typed_errors() {
    let mut args = ProbeArgs::new("http://127.0.0.1:1/");
    args.hold_ms = Some(100);
    let err = probe(args).await.unwrap_err();
    assert!(
        matches!(
            err,
            WorkloadError::InvalidOption {
                option: "--hold-ms",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("tcp://"), "{err}");

    let mut args = ProbeArgs::new("tcp://127.0.0.1:1");
    args.hold_ms = Some(100);
    args.count = 2;
    let err = probe(args).await.unwrap_err();
    assert!(matches!(
        err,
        WorkloadError::InvalidOption {
            option: "--hold-ms",
            ..
        }
    ));

    let mut args = ProbeArgs::new("tcp://127.0.0.1:1");
    args.local_port = Some(0);
    let err = probe(args).await.unwrap_err();
    assert!(matches!(
        err,
        WorkloadError::InvalidOption {
            option: "--local-port",
            ..
        }
    ));
}

#[tokio::test]
async fn probe_many_reports_each_target_in_order_within_one_timeout() {
    use tollway_workload::{ProbeManyArgs, matrix};
    let server = tollway_workload::Server::bind(tollway_workload::ServeArgs {
        http: vec![0],
        tcp: vec![0],
        name: Some("many".into()),
        bind: "127.0.0.1".parse().unwrap(),
        ..tollway_workload::ServeArgs::default()
    })
    .await
    .unwrap();
    let addrs = server.local_addrs();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(server.run(async {
        let _ = stop_rx.await;
    }));
    // A listener that never answers: its probe times out.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let targets = vec![
        format!("http://{}/hostname", addrs.http[0]),
        format!("tcp://{}", addrs.tcp[0]),
        format!("http://{silent_addr}/"),
        format!("tcp://{closed}"),
    ];
    let started = std::time::Instant::now();
    let r = matrix::run(ProbeManyArgs {
        targets: targets.clone(),
        timeout_ms: 400,
        parallel: 16,
    })
    .await
    .unwrap();
    let took = started.elapsed();
    assert_eq!(r.reports.len(), 4);
    for (rep, t) in r.reports.iter().zip(&targets) {
        assert_eq!(&rep.target, t);
    }
    assert_eq!(r.reports[0].attempts[0].body, "many");
    assert!(r.reports[1].success());
    assert_eq!(
        r.reports[2].attempts[0].result,
        tollway_workload::AttemptResult::Timeout
    );
    assert_eq!(
        r.reports[3].attempts[0].result,
        tollway_workload::AttemptResult::Refused
    );
    assert!(!r.success());
    assert!(
        took < std::time::Duration::from_millis(1500),
        "concurrent, not sequential: {took:?}"
    );
    drop(silent);
    let _ = stop_tx.send(());
    let _ = handle.await;
}
