//! In-process tests: a server on 127.0.0.1:0 probed by the probe client.

// `allow-unwrap-in-tests` covers #[test] functions only, not the helpers below.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

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
    };
    let server = Server::bind(args).await.unwrap();
    assert_eq!(server.pod_name(), POD);
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
