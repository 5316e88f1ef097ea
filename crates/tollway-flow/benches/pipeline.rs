//! The agent's flow pipeline: decode + store (+ metrics) per event, and
//! store queries with filters.
//!
//! `cargo bench -p tollway-flow --bench pipeline -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tollway_abi::{
    Event, TW_EV_DROP, TW_EV_F_ALLOWED, TW_EV_F_EGRESS, TW_EV_F_INGRESS, TW_EV_F_NEW,
    TW_EV_F_REPLY, TW_EV_POLICY_VERDICT, TW_EV_TRACE,
};
use tollway_flow::args::{ObserveArgs, filters_from_argv};
use tollway_flow::decode::{Clock, Decoder, EndpointInfo, ServiceRef, StaticResolver};
use tollway_flow::model::Workload;
use tollway_flow::print::{PrintOptions, compact};
use tollway_flow::{FlowMetrics, FlowStore};

const ENDPOINTS: u32 = 1000;
const NAMESPACES: [&str; 4] = ["payments", "shop", "auth", "default"];

fn pod_ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 1, (i / 250) as u8, (i % 250 + 1) as u8)
}

fn resolver() -> StaticResolver {
    let mut r = StaticResolver::new();
    for i in 0..ENDPOINTS {
        let ns = NAMESPACES[(i % 4) as usize];
        let app = format!("app-{}", i % 50);
        r.add_endpoint(EndpointInfo {
            id: i + 1,
            identity: 256 + i % 50,
            ip: Some(pod_ip(i)),
            namespace: ns.to_string(),
            pod_name: format!("{app}-7c4b9d-{i:05}"),
            labels: vec![
                format!("k8s:app={app}"),
                format!("k8s:io.kubernetes.pod.namespace={ns}"),
            ],
            workloads: vec![Workload {
                name: app,
                kind: "Deployment".to_string(),
            }],
            ..EndpointInfo::default()
        });
    }
    for s in 0..50u16 {
        r.add_service(
            Ipv4Addr::new(10, 96, 0, s as u8 + 1),
            80,
            6,
            s + 1,
            ServiceRef {
                name: format!("svc-{s}"),
                namespace: NAMESPACES[usize::from(s % 4)].to_string(),
            },
        );
    }
    r
}

/// A mix like the datapath's at medium aggregation: mostly traces (some
/// replies, some DNATed), some policy verdicts and drops.
fn events(n: u32) -> Vec<Event> {
    let be = |ip: Ipv4Addr| u32::from_ne_bytes(ip.octets());
    (0..n)
        .map(|i| {
            let s = (i * 7919) % ENDPOINTS;
            let d = (i * 104_729 + 13) % ENDPOINTS;
            let (ev_type, subtype, mut flags) = match i % 10 {
                0 => (TW_EV_DROP, 133, TW_EV_F_INGRESS),
                1 => (
                    TW_EV_POLICY_VERDICT,
                    0,
                    TW_EV_F_INGRESS | TW_EV_F_ALLOWED | TW_EV_F_NEW,
                ),
                2..=5 => (TW_EV_TRACE, 0, TW_EV_F_INGRESS),
                _ => (TW_EV_TRACE, 3, TW_EV_F_EGRESS),
            };
            if i % 3 == 0 {
                flags |= TW_EV_F_REPLY;
            }
            let dnat = i % 4 == 0;
            Event {
                ts: 1_000_000_000 + u64::from(i) * 1000,
                ev_type,
                subtype,
                proto: 6,
                tcp_flags: if i % 5 == 0 { 0x02 } else { 0x10 },
                ifindex: 3,
                saddr: be(pod_ip(s)),
                daddr: be(pod_ip(d)),
                sport: (30000 + (i % 20000) as u16).to_be(),
                dport: 8080u16.to_be(),
                src_id: 256 + s % 50,
                dst_id: 256 + d % 50,
                orig_addr: if dnat {
                    be(Ipv4Addr::new(10, 96, 0, (i % 50) as u8 + 1))
                } else {
                    0
                },
                orig_port: if dnat { 80u16.to_be() } else { 0 },
                flags,
                match_type: 2,
                len: 60,
                ..Event::default()
            }
        })
        .collect()
}

fn decode_and_store(c: &mut Criterion) {
    let r = resolver();
    let evs = events(4096);
    let decoder = Decoder::new(Clock::new(
        jiff::Timestamp::from_second(1_733_047_200).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
        0,
    ));
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("decode", |b| {
        b.iter(|| {
            let ev = &evs[i % evs.len()];
            i += 1;
            black_box(decoder.decode(ev, &[], &r, "node-1"))
        })
    });
    let store = FlowStore::default();
    g.bench_function("decode_store", |b| {
        b.iter(|| {
            let ev = &evs[i % evs.len()];
            i += 1;
            if let Some(f) = decoder.decode(ev, &[], &r, "node-1") {
                store.push(f);
            }
        })
    });
    let metrics = FlowMetrics::new("node-1");
    g.bench_function("decode_metrics_store", |b| {
        b.iter(|| {
            let ev = &evs[i % evs.len()];
            i += 1;
            if let Some(f) = decoder.decode(ev, &[], &r, "node-1") {
                metrics.record(&f);
                store.push(f);
            }
        })
    });
    g.finish();
}

fn query(c: &mut Criterion) {
    let r = resolver();
    let decoder = Decoder::default();
    let store = FlowStore::default();
    for ev in events(4095) {
        if let Some(f) = decoder.decode(&ev, &[], &r, "node-1") {
            store.push(f);
        }
    }
    let now = jiff::Timestamp::UNIX_EPOCH;
    let request = |argv: &[&str], all: bool| {
        let filters = match filters_from_argv(argv, &[]) {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        };
        let args = ObserveArgs {
            filters,
            all,
            ..ObserveArgs::default()
        };
        match args.to_request(now).map(|r| r.compile()) {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => panic!("{e}"),
            Err(e) => panic!("{e}"),
        }
    };
    let last20 = request(&[], false);
    let pod_drops = request(&["--pod", "payments/app-1", "--verdict", "DROPPED"], true);
    let labels = request(
        &[
            "--namespace",
            "shop",
            "--to-label",
            "app in (app-3, app-7)",
            "--not",
            "--protocol",
            "udp",
        ],
        true,
    );
    let mut g = c.benchmark_group("query_4095");
    g.throughput(Throughput::Elements(4095));
    g.bench_function("last_20_no_filter", |b| {
        b.iter(|| black_box(store.query_compiled(&last20)))
    });
    g.bench_function("pod_and_verdict_all", |b| {
        b.iter(|| black_box(store.query_compiled(&pod_drops)))
    });
    g.bench_function("namespace_label_not_all", |b| {
        b.iter(|| black_box(store.query_compiled(&labels)))
    });
    g.finish();

    let flows = store.query_compiled(&last20);
    let opts = PrintOptions::default();
    let mut g = c.benchmark_group("print");
    g.throughput(Throughput::Elements(flows.len() as u64));
    g.bench_function("compact_20", |b| {
        b.iter(|| {
            for f in &flows {
                black_box(compact(f, &opts));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, decode_and_store, query);
criterion_main!(benches);
