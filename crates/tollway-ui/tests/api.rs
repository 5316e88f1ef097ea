//! The HTTP API over a real socket: the page, /api/flows (filters and 4xx), /api/namespaces,
//! /healthz.

mod common;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{PAYMENTS_FLOWS, Server};

async fn get(server: &Server, target: &str, method: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let request = format!("{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let raw = String::from_utf8(raw).expect("utf-8 answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("header end");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, head.to_owned(), body.to_owned())
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).expect("JSON body")
}

#[tokio::test]
async fn serves_the_page_and_the_api() {
    let server = Server::start().await;

    let (status, head, body) = get(&server, "/?namespace=payments", "GET").await;
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/html")
    );
    assert!(body.contains("<svg id=\"map\""));
    for external in ["src=\"", "href=\"", "<link", "@import", "url(http"] {
        assert!(
            !body.contains(external),
            "the page must be self-contained: {external}"
        );
    }

    let (status, _, body) = get(&server, "/healthz", "GET").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    let (status, _, body) = get(&server, "/api/flows", "GET").await;
    assert_eq!(status, 200);
    let all = json(&body);
    assert_eq!(all["flows"].as_array().map(Vec::len), Some(10));
    assert_eq!(all["unreachable_nodes"], serde_json::json!(["node-3"]));

    let (status, _, body) = get(&server, "/api/flows?namespace=payments&limit=1000", "GET").await;
    assert_eq!(status, 200);
    assert_eq!(
        json(&body)["flows"].as_array().map(Vec::len),
        Some(PAYMENTS_FLOWS)
    );

    // Inclusive since, compared as instants: 10:00:02Z, 10:00:02.5Z, 10:00:03Z.
    let (status, _, body) = get(
        &server,
        "/api/flows?namespace=payments&since=2026-12-01T10%3A00%3A02Z",
        "GET",
    )
    .await;
    assert_eq!(status, 200);
    let times: Vec<String> = json(&body)["flows"]
        .as_array()
        .expect("flows")
        .iter()
        .map(|f| f["time"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        times,
        [
            "2026-12-01T10:00:02Z",
            "2026-12-01T10:00:02.5Z",
            "2026-12-01T10:00:03Z"
        ]
    );

    let (status, _, body) = get(&server, "/api/flows?limit=2", "GET").await;
    assert_eq!(status, 200);
    let flows = json(&body)["flows"].clone();
    assert_eq!(flows.as_array().map(Vec::len), Some(2));
    assert_eq!(
        flows[1]["time"], "2026-12-01T10:00:03.5Z",
        "newest, oldest first"
    );

    let (status, _, body) = get(&server, "/api/namespaces", "GET").await;
    assert_eq!(status, 200);
    assert_eq!(
        json(&body)["namespaces"],
        serde_json::json!(["billing", "kube-system", "payments"])
    );

    for (target, needle) in [
        ("/api/flows?limit=0", "limit"),
        ("/api/flows?limit=abc", "limit"),
        ("/api/flows?since=yesterday", "RFC 3339"),
        ("/api/flows?namespace=Not_Valid", "namespace"),
        ("/api/flows?verdict=DROPPED", "unknown parameter"),
        ("/api/flows?limit=1&limit=2", "more than once"),
    ] {
        let (status, _, body) = get(&server, target, "GET").await;
        assert_eq!(status, 400, "{target}: {body}");
        let message = json(&body)["error"].as_str().unwrap_or_default().to_owned();
        assert!(message.contains(needle), "{target}: {message}");
    }

    let (status, _, _) = get(&server, "/nope", "GET").await;
    assert_eq!(status, 404);
    let (status, head, _) = get(&server, "/api/flows", "POST").await;
    assert_eq!(status, 405);
    assert!(head.to_ascii_lowercase().contains("allow: get, head"));

    // Live: a pushed flow shows up for a poll with since.
    server.feed.push(common::flow(
        "2026-12-01T10:00:09Z",
        "node-1",
        (
            common::pod("payments", "web-frontend", "web-frontend-6d9f-abcde", 12345),
            "10.244.1.5",
        ),
        (
            common::pod("payments", "checkout", "checkout-7c4b-xyz12", 23456),
            "10.244.2.7",
        ),
        &common::tcp(43299, 8080),
        "FORWARDED",
        false,
        None,
    ));
    let (_, _, body) = get(
        &server,
        "/api/flows?namespace=payments&since=2026-12-01T10:00:03.000000001Z",
        "GET",
    )
    .await;
    assert_eq!(json(&body)["flows"].as_array().map(Vec::len), Some(1));

    server.stop().await;
}
