//! Root tests of the built `tollway-cni` binary, run the way kubelet's
//! runtime runs a CNI plugin: a clean environment with the `CNI_*`
//! variables, the configuration on stdin, inside the node's namespace
//! (here a namespace the test made to play the node: nothing touches the
//! machine's root namespace). Checks what the kernel has, not just what the
//! plugin says.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::{Netns, Node, result_ip, run_plugin};
use serde_json::{Value, json};

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn host_veth(result: &Value) -> String {
    result["interfaces"][0]["name"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn add_check_del_for_real() {
    let node = Node::new("acd", "10.251.0.0/24");
    let pod = Netns::new("acd_pod");
    let conf = node.conf("1.1.0", json!({}));
    let id = "0b6c7e3e-1111-4a3c-9b1e-000000000001";

    let res = node.add(id, &pod, &conf);
    // The result JSON, as the spec shapes it.
    assert_eq!(res["cniVersion"], "1.1.0");
    let ifs = res["interfaces"].as_array().unwrap();
    assert_eq!(ifs.len(), 2, "{res}");
    let host = host_veth(&res);
    assert!(host.starts_with("lxc") && host.len() == 14, "{host}");
    assert!(
        ifs[0].get("sandbox").is_none(),
        "the host veth is not in a sandbox"
    );
    assert_eq!(ifs[1]["name"], "eth0");
    assert_eq!(ifs[1]["sandbox"], pod.path());
    assert_eq!(ifs[1]["mtu"], 1500);
    let ip = result_ip(&res);
    assert_eq!(ip, "10.251.0.2", "lowest free address after the node's .1");
    assert_eq!(res["ips"][0]["address"], format!("{ip}/32"));
    assert_eq!(res["ips"][0]["gateway"], "169.254.1.1");
    assert_eq!(res["ips"][0]["interface"], 1);
    assert!(
        res["ips"][0].get("version").is_none(),
        "1.x has no ip version"
    );
    assert_eq!(
        res["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}])
    );
    assert_eq!(res["dns"]["nameservers"], json!(["10.96.0.10"]));

    // The kernel agrees: the pod side.
    let link = pod.ip_json(&["-d", "link", "show", "dev", "eth0"]);
    assert_eq!(link[0]["address"], ifs[1]["mac"]);
    assert_eq!(link[0]["linkinfo"]["info_kind"], "veth");
    assert!(
        link[0]["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "UP")
    );
    let addrs = pod.ip(&["-4", "addr", "show", "dev", "eth0"]);
    assert!(addrs.contains(&format!("inet {ip}/32 ")), "{addrs}");
    let routes = pod.ip(&["-4", "route", "show"]);
    assert!(
        routes.contains("default via 169.254.1.1 dev eth0"),
        "{routes}"
    );
    assert!(
        routes.contains("169.254.1.1 dev eth0 scope link"),
        "{routes}"
    );
    let neigh = pod.ip(&["neigh", "show", "dev", "eth0"]);
    let host_mac = ifs[0]["mac"].as_str().unwrap();
    assert!(
        neigh.contains(&format!("169.254.1.1 lladdr {host_mac} PERMANENT")),
        "{neigh}"
    );
    // The node side.
    let hlink = node.ns.ip_json(&["link", "show", "dev", &host]);
    assert_eq!(hlink[0]["address"], host_mac);
    let nroutes = node.ns.ip(&["-4", "route", "show"]);
    assert!(
        nroutes.contains(&format!("{ip} dev {host} scope link")),
        "{nroutes}"
    );
    // The endpoint record for the agent.
    let rec_path = node.endpoints_dir().join(format!("{id}.json"));
    let rec: Value = serde_json::from_str(&std::fs::read_to_string(&rec_path).unwrap()).unwrap();
    assert_eq!(rec["containerID"], id);
    assert_eq!(rec["netns"], pod.path());
    assert_eq!(rec["ifname"], "eth0");
    assert_eq!(rec["hostIfname"], host);
    assert_eq!(rec["hostIfindex"], hlink[0]["ifindex"]);
    assert_eq!(rec["ip"], ip);
    assert_eq!(rec["podNamespace"], "default");
    assert_eq!(rec["podName"], "web");
    // The allocation.
    assert_eq!(
        std::fs::read_to_string(node.data_dir().join(&ip)).unwrap(),
        format!("{id}\neth0\n")
    );

    // CHECK with the ADD's result, as a runtime passes it.
    let mut with_prev = conf.clone();
    with_prev["prevResult"] = res.clone();
    node.cmd("CHECK", id, Some(&pod.path()), &with_prev).ok();
    // A prevResult that disagrees fails CHECK.
    let mut wrong = with_prev.clone();
    wrong["prevResult"]["ips"][0]["address"] = json!("10.251.0.99/32");
    let r = node.cmd("CHECK", id, Some(&pod.path()), &wrong);
    assert_eq!(r.err_code(), 103, "{}", r.stdout);
    // Break the pod's default route: CHECK says so.
    pod.ip(&["route", "del", "default"]);
    let r = node.cmd("CHECK", id, Some(&pod.path()), &with_prev);
    assert_eq!(r.err_code(), 103);
    assert!(
        r.stdout
            .contains("no route 0.0.0.0/0 via 169.254.1.1 dev eth0"),
        "{}",
        r.stdout
    );

    // ADD again (a retried ADD): same address, network whole again.
    let again = node.add(id, &pod, &conf);
    assert_eq!(result_ip(&again), ip);
    assert_eq!(host_veth(&again), host);
    with_prev["prevResult"] = again.clone();
    node.cmd("CHECK", id, Some(&pod.path()), &with_prev).ok();

    // DEL, twice.
    for _ in 0..2 {
        let out = node.cmd("DEL", id, Some(&pod.path()), &with_prev).ok();
        assert_eq!(out, Value::Null, "DEL prints nothing");
    }
    assert!(
        pod.ip(&["link", "show"])
            .lines()
            .all(|l| !l.contains("eth0"))
    );
    assert!(!node.ns.ip(&["link", "show"]).contains(&host));
    assert!(!node.ns.ip(&["-4", "route", "show"]).contains(&ip));
    assert!(!node.data_dir().join(&ip).exists());
    assert!(!rec_path.exists());
    // CHECK of what is gone: unknown container.
    assert_eq!(
        node.cmd("CHECK", id, Some(&pod.path()), &with_prev)
            .err_code(),
        3
    );
    // DEL of a container never added, without and with a netns.
    node.cmd("DEL", "never-added", None, &conf).ok();
    node.cmd("DEL", "never-added", Some(&pod.path()), &conf)
        .ok();

    // DEL after the runtime removed the netns already.
    let pod2 = Netns::new("acd_pod2");
    let r2 = node.add("second", &pod2, &conf);
    assert_eq!(result_ip(&r2), ip, "the freed address is handed out again");
    let gone_path = pod2.path();
    drop(pod2);
    node.cmd("DEL", "second", Some(&gone_path), &conf).ok();
    assert!(!node.ns.ip(&["link", "show"]).contains(&host_veth(&r2)));
    assert!(!node.data_dir().join(&ip).exists());
    // ADD into a namespace that does not exist: unknown container.
    assert_eq!(
        node.cmd("ADD", "third", Some(&gone_path), &conf).err_code(),
        3
    );
}

/// Listen in `server`'s namespace, connect from `client`'s, exchange a line.
fn tcp_exchange(client: &Netns, server: &Netns, server_ip: &str) {
    let listener = server.run_in(|| TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap());
    let port = listener.local_addr().unwrap().port();
    let accept = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        s.write_all(b"pong!").unwrap();
        (peer, buf)
    });
    let addr: SocketAddr = format!("{server_ip}:{port}").parse().unwrap();
    let reply = client.run_in(|| {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"ping!").unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        buf
    });
    let (peer, got) = accept.join().unwrap();
    assert_eq!(&got, b"ping!");
    assert_eq!(&reply, b"pong!");
    peer.ip().to_string();
}

#[test]
fn two_pods_talk_through_the_node() {
    let node = Node::new("talk", "10.252.0.0/24");
    let a = Netns::new("talk_a");
    let b = Netns::new("talk_b");
    let conf = node.conf("1.0.0", json!({"mtu": 1400}));
    let ra = node.add("pod-a", &a, &conf);
    let rb = node.add("pod-b", &b, &conf);
    let (ia, ib) = (result_ip(&ra), result_ip(&rb));
    assert_ne!(ia, ib);
    // MTU on both ends.
    assert_eq!(a.ip_json(&["link", "show", "dev", "eth0"])[0]["mtu"], 1400);
    assert_eq!(
        node.ns.ip_json(&["link", "show", "dev", &host_veth(&ra)])[0]["mtu"],
        1400
    );
    assert!(
        ra["interfaces"][1].get("mtu").is_none(),
        "1.0.0 results have no mtu"
    );
    // Both ways, through the node's routing.
    tcp_exchange(&a, &b, &ib);
    tcp_exchange(&b, &a, &ia);
    // The node has no address in the pod CIDR and no bridge: it routed.
    let naddr = node.ns.ip(&["-4", "addr", "show"]);
    assert!(!naddr.contains("10.252."), "{naddr}");
    for (id, ns) in [("pod-a", &a), ("pod-b", &b)] {
        node.cmd("DEL", id, Some(&ns.path()), &conf).ok();
    }
}

#[test]
fn concurrent_adds_get_distinct_addresses_and_gc_removes_the_rest() {
    const N: usize = 20;
    let node = Node::new("many", "10.253.0.0/24");
    let pods: Vec<Netns> = (0..N).map(|i| Netns::new(&format!("many_{i}"))).collect();
    let conf = node.conf("1.1.0", json!({}));
    let results: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (node, conf) = (&node, &conf);
                s.spawn(move || node.add(&format!("ctr-{i}"), p, conf))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ips: BTreeSet<String> = results.iter().map(result_ip).collect();
    assert_eq!(ips.len(), N, "{ips:?}");
    let veths: BTreeSet<String> = results.iter().map(host_veth).collect();
    assert_eq!(veths.len(), N);
    let links = node.ns.ip(&["link", "show"]);
    for v in &veths {
        assert!(links.contains(v.as_str()), "{v} missing");
    }
    assert_eq!(std::fs::read_dir(node.endpoints_dir()).unwrap().count(), N);
    // Every pod reaches the first one.
    let first_ip = result_ip(&results[0]);
    tcp_exchange(&pods[N - 1], &pods[0], &first_ip);

    // GC keeps the first half.
    let valid: Vec<Value> = (0..N / 2)
        .map(|i| json!({"containerID": format!("ctr-{i}"), "ifname": "eth0"}))
        .collect();
    let mut gc_conf = conf.clone();
    gc_conf["cni.dev/valid-attachments"] = json!(valid);
    let gc = node.plugin(
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", "/opt/cni/bin")],
        gc_conf.to_string().as_bytes(),
    );
    assert_eq!(gc.ok(), Value::Null);
    let links = node.ns.ip(&["link", "show"]);
    let addrs: Vec<String> = std::fs::read_dir(node.data_dir())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.parse::<Ipv4Addr>().is_ok())
        .collect();
    assert_eq!(addrs.len(), N / 2, "{addrs:?}");
    for (i, r) in results.iter().enumerate() {
        let kept = i < N / 2;
        assert_eq!(links.contains(&host_veth(r)), kept, "veth of ctr-{i}");
        assert_eq!(addrs.contains(&result_ip(r)), kept, "address of ctr-{i}");
        assert_eq!(
            node.endpoints_dir().join(format!("ctr-{i}.json")).exists(),
            kept,
            "record of ctr-{i}"
        );
        if kept {
            let mut c = conf.clone();
            c["prevResult"] = r.clone();
            node.cmd("CHECK", &format!("ctr-{i}"), Some(&pods[i].path()), &c)
                .ok();
        }
    }
    // The collected pods lost their interface with their host veth.
    assert!(!pods[N - 1].ip(&["link", "show"]).contains("eth0"));
    // A second GC is a no-op; then DEL the rest in parallel.
    node.plugin(
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", "/opt/cni/bin")],
        gc_conf.to_string().as_bytes(),
    )
    .ok();
    std::thread::scope(|s| {
        for (i, p) in pods.iter().enumerate() {
            let (node, conf) = (&node, &conf);
            s.spawn(move || {
                node.cmd("DEL", &format!("ctr-{i}"), Some(&p.path()), conf)
                    .ok()
            });
        }
    });
    assert_eq!(std::fs::read_dir(node.endpoints_dir()).unwrap().count(), 0);
    assert!(!node.ns.ip(&["link", "show"]).contains("lxc"));
}

#[test]
fn version_status_and_error_codes_from_the_binary() {
    let node = Node::new("codes", "10.254.0.0/24");
    let conf = node.conf("1.1.0", json!({}));
    let stdin = conf.to_string();

    // VERSION.
    let v = node
        .plugin(&[("CNI_COMMAND", "VERSION")], br#"{"cniVersion":"1.1.0"}"#)
        .ok();
    assert_eq!(v["cniVersion"], "1.1.0");
    let list: Vec<&str> = v["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for want in ["0.4.0", "1.0.0", "1.1.0"] {
        assert!(list.contains(&want), "{list:?}");
    }

    // STATUS: ready; not ready with an unwritable store, a missing agent
    // socket, an exhausted range.
    assert_eq!(
        node.plugin(&[("CNI_COMMAND", "STATUS")], stdin.as_bytes())
            .ok(),
        Value::Null
    );
    let file = node.dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let bad_dir = node.conf("1.1.0", json!({"dataDir": file.join("ipam")}));
    let r = node.plugin(&[("CNI_COMMAND", "STATUS")], bad_dir.to_string().as_bytes());
    assert_eq!(r.err_code(), 50, "{}", r.stdout);
    let sock = node.conf(
        "1.1.0",
        json!({"agentSocket": node.dir.path().join("agent.sock")}),
    );
    let r = node.plugin(&[("CNI_COMMAND", "STATUS")], sock.to_string().as_bytes());
    assert_eq!(r.err_code(), 50);
    assert!(r.stdout.contains("agent"), "{}", r.stdout);
    let tiny = node.conf(
        "1.1.0",
        json!({"podCIDR": "10.254.1.0/30", "dataDir": node.dir.path().join("tiny")}),
    );
    let pod = Netns::new("codes_pod");
    node.add("only-one", &pod, &tiny);
    let r = node.plugin(&[("CNI_COMMAND", "STATUS")], tiny.to_string().as_bytes());
    assert_eq!(r.err_code(), 50);
    let pod2 = Netns::new("codes_pod2");
    let r = node.cmd("ADD", "one-too-many", Some(&pod2.path()), &tiny);
    assert_eq!(r.err_code(), 101, "range exhausted: {}", r.stdout);
    assert!(
        pod2.ip(&["link", "show"])
            .lines()
            .all(|l| !l.contains("eth0")),
        "nothing left behind"
    );
    node.cmd("DEL", "only-one", Some(&pod.path()), &tiny).ok();

    // CNI_IFNAME already taken in the pod by something else: 102, and no
    // address kept.
    pod2.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "theirs1",
    ]);
    let r = node.cmd("ADD", "taken", Some(&pod2.path()), &conf);
    assert_eq!(r.err_code(), 102, "{}", r.stdout);
    assert!(!node.data_dir().join("10.254.0.2").exists());
    assert!(
        pod2.ip(&["link", "show"]).contains("theirs1"),
        "theirs is untouched"
    );

    // The well-known codes.
    let add_env = |netns: &str| {
        vec![
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c-1"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin"),
            ("CNI_NETNS", netns),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect::<Vec<_>>()
    };
    let p = pod.path();
    let run = |env: &[(&str, String)], stdin: &[u8]| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        node.plugin(&env, stdin)
    };
    let mut bad_version = conf.clone();
    bad_version["cniVersion"] = json!("0.2.0");
    let mut unsupported = conf.clone();
    unsupported["bridge"] = json!("cni0");
    let mut invalid = conf.clone();
    invalid["podCIDR"] = json!("10.254.0.0/99");
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, Vec<u8>, u64);
    let cases: Vec<Case> = vec![
        (
            "version",
            add_env(&p),
            bad_version.to_string().into_bytes(),
            1,
        ),
        (
            "unsupported field",
            add_env(&p),
            unsupported.to_string().into_bytes(),
            2,
        ),
        (
            "no such netns",
            add_env("/var/run/netns/twcni-nope"),
            stdin.clone().into_bytes(),
            3,
        ),
        (
            "no CNI_CONTAINERID",
            add_env(&p)
                .into_iter()
                .filter(|(k, _)| *k != "CNI_CONTAINERID")
                .collect(),
            stdin.clone().into_bytes(),
            4,
        ),
        (
            "bad CNI_IFNAME",
            add_env(&p)
                .into_iter()
                .map(|(k, v)| {
                    if k == "CNI_IFNAME" {
                        (k, "way-too-long-ifname".into())
                    } else {
                        (k, v)
                    }
                })
                .collect(),
            stdin.clone().into_bytes(),
            4,
        ),
        ("no CNI_COMMAND", vec![], stdin.clone().into_bytes(), 4),
        ("not JSON", add_env(&p), b"cniVersion: 1.1.0".to_vec(), 6),
        (
            "invalid config",
            add_env(&p),
            invalid.to_string().into_bytes(),
            7,
        ),
    ];
    for (what, env, input, code) in cases {
        let r = run(&env, &input);
        assert_eq!(r.err_code(), code, "{what}: {}", r.stdout);
        assert!(
            r.stderr.contains("tollway-cni"),
            "{what}: errors are logged to stderr too"
        );
    }
    assert!(
        !node.data_dir().join("10.254.0.2").exists(),
        "no failed ADD kept an address"
    );
}

/// The reference `ptp` + `host-local` plugins (Debian's
/// containernetworking-plugins) and ours, with the same configuration
/// shape: the results have the same structure.
#[test]
fn result_has_the_shape_of_the_reference_ptp_plugin() {
    let ptp = "/usr/lib/cni/ptp";
    assert!(
        std::path::Path::new(ptp).exists()
            && std::path::Path::new("/usr/lib/cni/host-local").exists(),
        "the reference plugins are missing: apt-get install -y containernetworking-plugins"
    );
    let node = Node::new("ref", "10.255.0.0/24");
    let theirs_pod = Netns::new("ref_theirs");
    let ours_pod = Netns::new("ref_ours");
    let dns = json!({"nameservers": ["10.96.0.10"]});
    let theirs_conf = json!({
        "cniVersion": "1.0.0", "name": "ref", "type": "ptp",
        "ipam": {"type": "host-local", "subnet": "10.255.1.0/24",
                 "dataDir": node.dir.path().join("host-local"),
                 "routes": [{"dst": "0.0.0.0/0"}]},
        "dns": dns,
    });
    let ours_conf = node.conf("1.0.0", json!({"dns": dns}));
    let env = |pod: &Netns| -> Vec<(String, String)> {
        vec![
            ("CNI_COMMAND".into(), "ADD".into()),
            ("CNI_CONTAINERID".into(), "ref-1".into()),
            ("CNI_IFNAME".into(), "eth0".into()),
            ("CNI_NETNS".into(), pod.path()),
            ("CNI_PATH".into(), "/usr/lib/cni".into()),
        ]
    };
    let run = |bin: &str, pod: &Netns, conf: &Value, command: &str| {
        let mut e = env(pod);
        e[0].1 = command.into();
        let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_plugin(bin, Some(&node.ns.name), &e, conf.to_string().as_bytes())
    };
    let theirs = run(ptp, &theirs_pod, &theirs_conf, "ADD").ok();
    let ours = run(common::BIN, &ours_pod, &ours_conf, "ADD").ok();
    assert_eq!(
        keys(&theirs),
        keys(&ours),
        "top level:\n{theirs:#}\n{ours:#}"
    );
    assert_eq!(theirs["cniVersion"], ours["cniVersion"]);
    let (ti, oi) = (
        theirs["interfaces"].as_array().unwrap(),
        ours["interfaces"].as_array().unwrap(),
    );
    assert_eq!(ti.len(), oi.len());
    for (t, o) in ti.iter().zip(oi) {
        assert_eq!(keys(t), keys(o), "interface:\n{t}\n{o}");
    }
    assert_eq!(theirs["ips"].as_array().unwrap().len(), 1);
    assert_eq!(keys(&theirs["ips"][0]), keys(&ours["ips"][0]));
    assert_eq!(theirs["ips"][0]["interface"], ours["ips"][0]["interface"]);
    assert_eq!(theirs["dns"], ours["dns"]);
    for r in ours["routes"].as_array().unwrap() {
        assert!(keys(r).is_subset(&["dst".to_string(), "gw".to_string()].into()));
    }
    // Both answer VERSION with 1.0.0 among their versions, and their error
    // JSON has the same code for the same missing variable.
    for bin in [ptp, common::BIN] {
        let v = run_plugin(
            bin,
            None,
            &[("CNI_COMMAND", "VERSION")],
            br#"{"cniVersion":"1.0.0"}"#,
        )
        .ok();
        assert!(
            v["supportedVersions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x == "1.0.0")
        );
        let r = run_plugin(
            bin,
            Some(&node.ns.name),
            &[("CNI_COMMAND", "ADD"), ("CNI_PATH", "/usr/lib/cni")],
            theirs_conf.to_string().as_bytes(),
        );
        assert_eq!(r.err_code(), 4, "{bin}: {}", r.stdout);
    }
    run(ptp, &theirs_pod, &theirs_conf, "DEL").ok();
    run(common::BIN, &ours_pod, &ours_conf, "DEL").ok();
}
