//! The page in Debian's headless Chromium: the service map's nodes and edges (with their
//! colours), the flow table, the unreachable-node banner, and a screenshot saved to
//! `target/test-artifacts/ui-service-map.png`.
//!
//! Needs `/usr/bin/chromium` (`apt-get install -y chromium`): without it the test fails.

mod common;

use std::path::PathBuf;

use tollway_ui::browser::{self, Element};

use common::{PAYMENTS_FLOWS, Server};

const GREEN: &str = "#16a34a";
const RED: &str = "#dc2626";

fn render(url: &str) -> String {
    browser::render_dom(url).unwrap_or_else(|e| panic!("{e}"))
}

fn artifacts_dir() -> PathBuf {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if PathBuf::from(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };
    target.join("test-artifacts")
}

/// The edge `<g>` from `from` to `to`, and the stroke colours of the paths drawn in it.
fn edge(all: &[Element], from: &str, to: &str) -> Option<(Element, Vec<String>)> {
    let at = all.iter().position(|e| {
        e.has_class("edge") && e.attr("data-from") == Some(from) && e.attr("data-to") == Some(to)
    })?;
    let strokes = all[at + 1..]
        .iter()
        .take_while(|e| !e.has_class("edge"))
        .filter(|e| e.tag == "path" && e.has_class("edge-line"))
        .filter_map(|e| e.attr("stroke").map(str::to_owned))
        .collect();
    Some((all[at].clone(), strokes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_map_renders_in_chromium() {
    let server = Server::start().await;
    let url = server.url("/?namespace=payments");

    let dom = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || render(&url))
            .await
            .expect("chromium task")
    };
    let all = browser::elements(&dom);

    let body = browser::body(&dom).expect("a <body> in the dumped DOM");
    assert_eq!(
        body.attr("data-ready"),
        Some("1"),
        "the page never finished its first render; DOM:\n{dom}"
    );
    assert_eq!(
        body.attr("data-flows"),
        Some(PAYMENTS_FLOWS.to_string().as_str())
    );

    let mut nodes: Vec<&str> = all
        .iter()
        .filter(|e| e.has_class("node"))
        .filter_map(|e| e.attr("data-workload"))
        .collect();
    nodes.sort_unstable();
    assert_eq!(
        nodes,
        [
            "kube-system/coredns",
            "payments/batch-reporter",
            "payments/checkout",
            "payments/ledger",
            "payments/web-frontend",
            "world",
        ]
    );

    let (g, strokes) = edge(&all, "payments/web-frontend", "payments/checkout")
        .expect("an edge web-frontend → checkout");
    assert_eq!(g.attr("data-verdict"), Some("forwarded"));
    assert_eq!(g.attr("data-color"), Some(GREEN));
    assert_eq!(g.attr("data-ports"), Some("8080/TCP"));
    assert_eq!(strokes, [GREEN]);
    assert_eq!(
        g.attr("data-forwarded"),
        Some("3"),
        "the reply is drawn on the request's edge"
    );

    let (g, strokes) = edge(&all, "payments/batch-reporter", "payments/checkout")
        .expect("an edge batch-reporter → checkout");
    assert_eq!(g.attr("data-verdict"), Some("dropped"));
    assert_eq!(g.attr("data-color"), Some(RED));
    assert_eq!(strokes, [RED]);
    assert_eq!(g.attr("data-dropped"), Some("2"));

    let (g, strokes) =
        edge(&all, "world", "payments/web-frontend").expect("an edge world → web-frontend");
    assert_eq!(g.attr("data-verdict"), Some("forwarded"));
    assert_eq!(strokes, [GREEN]);

    let (g, strokes) = edge(&all, "payments/web-frontend", "payments/ledger")
        .expect("an edge web-frontend → ledger");
    assert_eq!(g.attr("data-verdict"), Some("mixed"));
    assert_eq!(strokes, [GREEN, RED]);

    let (g, _) = edge(&all, "payments/web-frontend", "kube-system/coredns")
        .expect("an edge web-frontend → coredns");
    assert_eq!(g.attr("data-ports"), Some("53/UDP"));

    assert!(
        edge(&all, "payments/checkout", "payments/web-frontend").is_none(),
        "no reverse edge for the reply"
    );
    assert_eq!(all.iter().filter(|e| e.has_class("edge")).count(), 5);

    // The table: one row per flow, with the dropped ones and their reason.
    let rows: Vec<&Element> = all
        .iter()
        .filter(|e| e.tag == "tr" && e.has_class("flow"))
        .collect();
    assert_eq!(rows.len(), PAYMENTS_FLOWS);
    assert_eq!(
        rows[0].attr("data-time"),
        Some("2026-12-01T10:00:03Z"),
        "newest first"
    );
    let dropped: Vec<&&Element> = rows
        .iter()
        .filter(|r| r.attr("data-verdict") == Some("DROPPED"))
        .collect();
    assert_eq!(dropped.len(), 3);
    assert!(
        dropped
            .iter()
            .filter(|r| r.attr("data-source") == Some("payments/batch-reporter"))
            .all(|r| r.attr("data-drop-reason") == Some("POLICY_DENIED")
                && r.attr("data-destination") == Some("payments/checkout")
                && r.attr("data-port") == Some("8080/TCP"))
    );
    assert!(rows.iter().any(|r| r.attr("data-source") == Some("world")));
    assert!(
        dom.contains("DNS query kube-dns.kube-system.svc.cluster.local. A"),
        "the L7 column shows the DNS query"
    );

    let warning = all
        .iter()
        .find(|e| e.attr("id") == Some("warning"))
        .expect("the warning banner");
    assert_eq!(warning.attr("data-unreachable"), Some("node-3"));
    assert!(warning.attr("hidden").is_none(), "the banner is shown");

    // Without ?namespace=: the dropdown lists the namespaces and the map shows them all.
    let dom_all = {
        let url = server.url("/");
        tokio::task::spawn_blocking(move || render(&url))
            .await
            .expect("chromium task")
    };
    let all_elements = browser::elements(&dom_all);
    let options: Vec<&str> = all_elements
        .iter()
        .filter(|e| e.tag == "option")
        .filter_map(|e| e.attr("value"))
        .collect();
    assert_eq!(options, ["", "billing", "kube-system", "payments"]);
    assert!(
        all_elements
            .iter()
            .any(|e| e.has_class("node") && e.attr("data-workload") == Some("billing/invoicer"))
    );

    // The screenshot, for a person to look at.
    let dir = artifacts_dir();
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    let path = dir.join("ui-service-map.png");
    {
        let path = path.clone();
        tokio::task::spawn_blocking(move || browser::screenshot(&url, &path))
            .await
            .expect("chromium task")
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let path = path.canonicalize().unwrap_or(path);
    println!("service map screenshot: {}", path.display());

    server.stop().await;
}
