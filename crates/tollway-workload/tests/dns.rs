//! In-process tests: the DNS server on 127.0.0.1:0, asked by the client; and the server
//! following a real file store.

#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tollway_state::{ClusterConfig, FileStore, registry};
use tollway_workload::dns::{
    DigFormat, DnsError, QueryOptions, RecordType, ResponseCode, ServiceEntry, SharedZone, TTL,
    Transport, Zone, follow_store, load_zone, query, query_with, serve_dns,
};

const T: Duration = Duration::from_secs(2);

/// A server on 127.0.0.1 (UDP and TCP on the same port), on a runtime of its own thread
/// that lives as long as the test process.
fn start(zone: SharedZone) -> SocketAddr {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = udp.local_addr().unwrap();
    let tcp = std::net::TcpListener::bind(addr).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(serve_dns(udp, Some(tcp), zone)).unwrap();
    });
    addr
}

fn zone() -> Zone {
    let mut z = Zone::new(3);
    z.add_service(
        "kube-system",
        "kube-dns",
        ServiceEntry::cluster_ip(Ipv4Addr::new(10, 96, 0, 10)),
    );
    z.add_service(
        "default",
        "big",
        ServiceEntry {
            headless: true,
            addresses: (1..=120).map(|i| Ipv4Addr::new(10, 244, 0, i)).collect(),
        },
    );
    z.add_namespace("default");
    z
}

#[test]
fn the_server_answers_a_nxdomain_nodata_and_refused() {
    let server = start(SharedZone::new(zone()));

    let a = query(
        server,
        "kube-dns.kube-system.svc.cluster.local",
        RecordType::A,
        T,
    )
    .unwrap();
    assert_eq!(a.rcode, ResponseCode::NoError);
    assert!(a.authoritative);
    assert!(!a.truncated);
    assert_eq!(a.transport, Transport::Udp);
    assert_eq!(a.name, "kube-dns.kube-system.svc.cluster.local.");
    assert_eq!(a.ipv4(), [Ipv4Addr::new(10, 96, 0, 10)]);
    assert_eq!(a.ttls(), [TTL]);
    assert_eq!(a.answers[0].rtype, "A");
    assert_eq!(a.answers[0].data, "10.96.0.10");

    // The short form.
    let a = query(server, "kube-dns.kube-system.svc.", RecordType::A, T).unwrap();
    assert_eq!(a.ipv4(), [Ipv4Addr::new(10, 96, 0, 10)]);

    let nx = query(
        server,
        "nope.kube-system.svc.cluster.local",
        RecordType::A,
        T,
    )
    .unwrap();
    assert_eq!(nx.rcode, ResponseCode::NXDomain);
    assert!(nx.authoritative);
    assert!(nx.answers.is_empty());
    assert_eq!(nx.authority.len(), 1);
    assert_eq!(nx.authority[0].rtype, "SOA");
    assert_eq!(nx.authority[0].name, "cluster.local.");

    let aaaa = query(
        server,
        "kube-dns.kube-system.svc.cluster.local",
        RecordType::AAAA,
        T,
    )
    .unwrap();
    assert_eq!(aaaa.rcode, ResponseCode::NoError);
    assert!(aaaa.answers.is_empty() && aaaa.addresses.is_empty());
    assert_eq!(aaaa.authority[0].rtype, "SOA");

    let out = query(server, "example.com", RecordType::A, T).unwrap();
    assert_eq!(out.rcode, ResponseCode::Refused);
    assert!(!out.authoritative);
    assert!(out.answers.is_empty());

    // Over TCP.
    let tcp = query_with(
        server,
        "kube-dns.kube-system.svc.cluster.local",
        RecordType::A,
        QueryOptions {
            timeout: T,
            tcp: true,
        },
    )
    .unwrap();
    assert_eq!(tcp.transport, Transport::Tcp);
    assert_eq!(tcp.ipv4(), [Ipv4Addr::new(10, 96, 0, 10)]);

    // Too large for UDP: truncated, then asked again over TCP.
    let big = query(server, "big.default.svc.cluster.local", RecordType::A, T).unwrap();
    assert_eq!(big.transport, Transport::Tcp);
    assert!(!big.truncated);
    assert_eq!(big.addresses.len(), 120);

    // What `tollway workload dig` prints.
    let text = query(
        server,
        "kube-dns.kube-system.svc.cluster.local",
        RecordType::A,
        T,
    )
    .unwrap()
    .render(DigFormat::Text)
    .unwrap();
    assert!(text.contains("NOERROR, flags: qr aa;"), "{text}");
    assert!(
        text.contains("\nkube-dns.kube-system.svc.cluster.local.\t30\tIN\tA\t10.96.0.10"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&nx.render(DigFormat::Json).unwrap()).unwrap();
    assert_eq!(json["rcode"], "NXDOMAIN");
    assert_eq!(json["qtype"], "A");
    assert_eq!(json["transport"], "udp");
    assert_eq!(json["authority"][0]["type"], "SOA");
}

#[test]
fn a_replaced_zone_is_served_at_once() {
    let shared = SharedZone::new(Zone::new(1));
    let server = start(shared.clone());
    let name = "kube-dns.kube-system.svc.cluster.local";
    assert_eq!(
        query(server, name, RecordType::A, T).unwrap().rcode,
        ResponseCode::NXDomain
    );
    shared.replace(zone());
    assert_eq!(
        query(server, name, RecordType::A, T).unwrap().ipv4(),
        [Ipv4Addr::new(10, 96, 0, 10)]
    );
}

#[test]
fn no_answer_is_a_timeout_and_a_closed_port_is_refused() {
    // A socket that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let started = Instant::now();
    let err = query(
        addr,
        "a.b.svc.cluster.local",
        RecordType::A,
        Duration::from_millis(300),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            DnsError::Timeout {
                timeout_ms: 300,
                ..
            }
        ),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(silent);
    // Nothing bound there any more: ICMP port unreachable.
    let err = query(addr, "a.b.svc.cluster.local", RecordType::A, T).unwrap_err();
    assert!(
        matches!(&err, DnsError::Io { source, .. } if source.kind() == std::io::ErrorKind::ConnectionRefused),
        "{err}"
    );
    let err = query(addr, "a..b", RecordType::A, T).unwrap_err();
    assert!(matches!(err, DnsError::InvalidName { .. }), "{err}");
}

fn apply(store: &FileStore, yaml: &str) {
    let docs = tollway_api::parse_documents("test.yaml", yaml).unwrap();
    let batch = tollway_api::decode_all(&docs).unwrap();
    registry::apply(store, batch, &ClusterConfig::default()).unwrap();
}

#[test]
fn the_server_follows_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    registry::bootstrap(&store).unwrap();
    apply(
        &store,
        "apiVersion: v1\nkind: Service\nmetadata: {name: kube-dns, namespace: kube-system}\nspec:\n  clusterIP: 10.96.0.10\n  selector: {k8s-app: kube-dns}\n  ports:\n  - {name: dns, port: 53, protocol: UDP}\n  - {name: dns-tcp, port: 53, protocol: TCP}\n",
    );
    let (version, initial) = load_zone(&store).unwrap();
    assert!(initial.service("kube-system", "kube-dns").is_some());
    let shared = SharedZone::new(initial);
    let server = start(shared.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let follower = {
        let (shared, stop) = (shared.clone(), Arc::clone(&stop));
        let store = FileStore::open(dir.path()).unwrap();
        std::thread::spawn(move || {
            follow_store(
                &store,
                &shared,
                Some(version),
                Duration::from_millis(20),
                &stop,
            );
        })
    };
    let a = query(
        server,
        "kube-dns.kube-system.svc.cluster.local",
        RecordType::A,
        T,
    )
    .unwrap();
    assert_eq!(a.ipv4(), [Ipv4Addr::new(10, 96, 0, 10)]);
    let web = "web.default.svc.cluster.local";
    assert_eq!(
        query(server, web, RecordType::A, T).unwrap().rcode,
        ResponseCode::NXDomain
    );

    // A new Service gets an allocated cluster IP, and its name within a poll or two.
    apply(
        &store,
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports:\n  - {port: 80}\n",
    );
    let snap = tollway_state::StateSource::snapshot(&store).unwrap();
    let vip: Ipv4Addr = snap
        .services()
        .find(|s| s.metadata.name == "web")
        .and_then(|s| s.spec.cluster_ip.as_deref()?.parse().ok())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let a = query(server, web, RecordType::A, T).unwrap();
        if a.rcode == ResponseCode::NoError {
            assert_eq!(a.ipv4(), [vip]);
            break;
        }
        assert!(Instant::now() < deadline, "web never appeared: {a:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The SOA serial follows the store's version.
    let soa = query(server, "cluster.local", RecordType::SOA, T).unwrap();
    let serial: u64 = soa.answers[0]
        .data
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(serial, snap.resource_version);

    stop.store(true, Ordering::Relaxed);
    follower.join().unwrap();
}
