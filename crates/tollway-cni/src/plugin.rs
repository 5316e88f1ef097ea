//! The six commands.

use std::collections::BTreeSet;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::Path;

use ipnet::Ipv4Net;
use serde_json::{Value, json};

use crate::config::{self, NetConf};
use crate::endpoint::{self, EndpointRecord, RECORD_VERSION};
use crate::env::{CniEnv, Command};
use crate::error::{CniError, Result};
use crate::ipam::Store;
use crate::link::{self, HostLink, Ns, host_link};
use crate::result::{CniResult, Interface, IpConfig};
use crate::version;

/// Run one command: `Ok(Some(json))` is printed, `Ok(None)` prints
/// nothing.
pub fn dispatch(get: &dyn Fn(&str) -> Option<String>, stdin: &[u8]) -> Result<Option<Value>> {
    let env = CniEnv::from_vars(get)?;
    if env.command == Command::Version {
        return Ok(Some(version_reply(stdin)?));
    }
    // The variables first (as the reference plugins do), then the version
    // (a configuration of another version may not parse), then the rest.
    match env.command {
        Command::Add | Command::Check => {
            env.require_container_id()?;
            env.require_netns()?;
            env.require_ifname()?;
            env.require_path()?;
        }
        Command::Del => {
            env.require_container_id()?;
            env.require_ifname()?;
            env.require_path()?;
        }
        Command::Gc => env.require_path()?,
        Command::Status | Command::Version => {}
    }
    if let Some(v) = config::peek_version(stdin) {
        version::check(&v, env.command)?;
    }
    let conf = NetConf::parse(stdin)?;
    version::check(&conf.cni_version, env.command)?;
    match env.command {
        Command::Add => add(&env, &conf).map(Some),
        Command::Del => del(&env, &conf).map(|()| None),
        Command::Check => check(&env, &conf).map(|()| None),
        Command::Status => status(&conf).map(|()| None),
        Command::Gc => gc(&env, &conf).map(|()| None),
        Command::Version => Ok(Some(version_reply(stdin)?)),
    }
}

/// VERSION: the versions the plugin speaks. stdin may be empty or carry
/// only `cniVersion`; an unsupported one is answered all the same (the
/// runtime is asking what to use).
fn version_reply(stdin: &[u8]) -> Result<Value> {
    let asked = if stdin.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let v: Value = serde_json::from_slice(stdin).map_err(|source| CniError::Decode {
            what: "the configuration on stdin",
            source,
        })?;
        v.get("cniVersion")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let reply_version = asked
        .filter(|v| version::SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| version::LATEST.to_string());
    Ok(json!({
        "cniVersion": reply_version,
        "supportedVersions": version::SUPPORTED_VERSIONS,
    }))
}

fn open_ns(container_id: &str, path: &Path) -> Result<File> {
    link::open_netns(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => CniError::UnknownContainer {
            container_id: container_id.to_string(),
            reason: format!("network namespace {} does not exist", path.display()),
        },
        _ => CniError::io("opening network namespace", path, e),
    })
}

struct Attach<'a> {
    env: &'a CniEnv,
    conf: &'a NetConf,
    id: &'a str,
    ifname: &'a str,
    netns_path: &'a Path,
    netns: File,
    host: HostLink,
    ip: Ipv4Addr,
}

/// ADD.
fn add(env: &CniEnv, conf: &NetConf) -> Result<Value> {
    env.require_path()?;
    let id = env.require_container_id()?;
    let ifname = env.require_ifname()?;
    let netns_path = env.require_netns()?;
    let netns = open_ns(id, netns_path)?;
    let store = Store::new(conf);
    let (ip, new) = store.allocate(id, ifname)?;
    let a = Attach {
        env,
        conf,
        id,
        ifname,
        netns_path,
        netns,
        host: host_link(id, ifname),
        ip,
    };
    match a.setup().and_then(|v| a.wait_for_agent().map(|()| v)) {
        Ok(v) => Ok(v),
        Err(e) => {
            // Leave nothing half-made; a retried ADD keeps its address.
            let _ = link::delete_link(Ns(None), &a.host.name);
            let _ = endpoint::remove(&endpoint::record_path(&conf.endpoints_dir(), id, ifname));
            if new {
                let _ = store.release(id, ifname);
            }
            Err(e)
        }
    }
}

impl Attach<'_> {
    /// With `agentWaitSeconds`: wait until the agent has programmed the
    /// endpoint (its marker names this veth's ifindex).
    fn wait_for_agent(&self) -> Result<()> {
        let wait = self.conf.agent_wait_seconds;
        if wait == 0 {
            return Ok(());
        }
        let record = endpoint::record_path(&self.conf.endpoints_dir(), self.id, self.ifname);
        let Some(info) = link::link(Ns(None), &self.host.name)? else {
            return Err(CniError::Command {
                command: format!("ip link show dev {}", self.host.name),
                stderr: "the interface vanished while waiting for the agent".into(),
            });
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait);
        loop {
            if endpoint::is_ready(&record, info.ifindex) {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(CniError::TryAgainLater {
                    what: format!(
                        "the Tollway agent (programming the endpoint of container {} on {})",
                        self.id, self.host.name
                    ),
                    seconds: wait,
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    fn setup(&self) -> Result<Value> {
        let (host_ns, cont_ns) = (Ns(None), Ns(Some(&self.netns)));
        let (h, ifname, ip, gw, mtu) = (
            self.host.name.as_str(),
            self.ifname,
            self.ip,
            self.conf.gateway,
            self.conf.mtu,
        );
        // A retried ADD (or a leftover of a crash): the old pair goes first.
        link::delete_link(host_ns, h)?;
        if link::link(cont_ns, ifname)?.is_some() {
            return Err(CniError::InterfaceExists {
                ifname: ifname.to_string(),
                netns: self.netns_path.display().to_string(),
            });
        }
        let mtu_s = mtu.to_string();
        let netns_arg = self.netns_path.to_string_lossy();
        link::ip(
            host_ns,
            &[
                "link",
                "add",
                h,
                "mtu",
                &mtu_s,
                "address",
                &self.host.mac,
                "type",
                "veth",
                "peer",
                "name",
                ifname,
                "mtu",
                &mtu_s,
                "netns",
                &netns_arg,
            ],
        )?;
        link::ip_batch(
            host_ns,
            &[
                format!("link set dev {h} up"),
                format!("route replace {ip}/32 dev {h} scope link"),
            ],
        )?;
        let mut lines = vec![
            format!("addr add {ip}/32 dev {ifname}"),
            format!("link set dev {ifname} up"),
            format!("route replace {gw}/32 dev {ifname} scope link"),
        ];
        for r in &self.conf.routes {
            match r.gw {
                None => lines.push(format!("route replace {} via {gw} dev {ifname}", r.dst)),
                Some(g) if g == gw => {
                    lines.push(format!("route replace {} via {gw} dev {ifname}", r.dst))
                }
                Some(g) => lines.push(format!(
                    "route replace {} via {g} dev {ifname} onlink",
                    r.dst
                )),
            }
        }
        lines.push(format!(
            "neigh replace {gw} lladdr {} dev {ifname} nud permanent",
            self.host.mac
        ));
        link::ip_batch(cont_ns, &lines)?;

        let vanished = |what: &str| CniError::Command {
            command: format!("ip link show dev {what}"),
            stderr: "the interface vanished right after it was made".into(),
        };
        let hinfo = link::link(host_ns, h)?.ok_or_else(|| vanished(h))?;
        let cinfo = link::link(cont_ns, ifname)?.ok_or_else(|| vanished(ifname))?;
        let netns_s = self.netns_path.display().to_string();
        let args = &self.env.args;
        endpoint::write(
            &self.conf.endpoints_dir(),
            &EndpointRecord {
                version: RECORD_VERSION,
                network: self.conf.name.clone(),
                container_id: self.id.to_string(),
                netns: netns_s.clone(),
                ifname: ifname.to_string(),
                container_mac: cinfo.mac.clone(),
                host_ifname: h.to_string(),
                host_ifindex: hinfo.ifindex,
                host_mac: hinfo.mac.clone(),
                ip,
                gateway: gw,
                mtu,
                pod_namespace: args.pod_namespace.clone(),
                pod_name: args.pod_name.clone(),
                pod_uid: args.pod_uid.clone(),
            },
        )?;
        let result = CniResult {
            interfaces: vec![
                Interface {
                    name: h.to_string(),
                    mac: hinfo.mac,
                    mtu: Some(hinfo.mtu),
                    sandbox: None,
                },
                Interface {
                    name: ifname.to_string(),
                    mac: cinfo.mac,
                    mtu: Some(cinfo.mtu),
                    sandbox: Some(netns_s),
                },
            ],
            ips: vec![IpConfig {
                address: Ipv4Net::from(ip),
                gateway: Some(gw),
                interface: Some(1),
            }],
            routes: self.conf.routes.clone(),
            dns: self.conf.dns.clone(),
        };
        Ok(result.to_json(&self.conf.cni_version))
    }
}

/// DEL: idempotent; a missing netns, veth, allocation or record is fine.
fn del(env: &CniEnv, conf: &NetConf) -> Result<()> {
    env.require_path()?;
    let id = env.require_container_id()?;
    let ifname = env.require_ifname()?;
    let host = host_link(id, ifname);
    // The veth pair goes as one, with the host route.
    link::delete_link(Ns(None), &host.name)?;
    Store::new(conf).release(id, ifname)?;
    endpoint::remove(&endpoint::record_path(&conf.endpoints_dir(), id, ifname))
}

/// CHECK: the interface, address, routes, neighbour, host veth and route,
/// allocation and record are as ADD made them (and as `prevResult` says).
fn check(env: &CniEnv, conf: &NetConf) -> Result<()> {
    env.require_path()?;
    let id = env.require_container_id()?;
    let ifname = env.require_ifname()?;
    let netns_path = env.require_netns()?;
    let ip = Store::new(conf)
        .find(id, ifname)?
        .ok_or_else(|| CniError::UnknownContainer {
            container_id: id.to_string(),
            reason: format!("no address is allocated to it for {ifname}"),
        })?;
    let netns = open_ns(id, netns_path)?;
    let (host_ns, cont_ns) = (Ns(None), Ns(Some(&netns)));
    let host = host_link(id, ifname);
    let gw = conf.gateway;
    let want = Ipv4Net::from(ip);
    let mut problems: Vec<String> = Vec::new();

    let cinfo = link::link(cont_ns, ifname)?;
    if let Some(prev) = conf.prev_result() {
        let idx = prev
            .interfaces
            .iter()
            .position(|i| i.name == ifname && i.sandbox.is_some());
        match idx {
            None => problems.push(format!("prevResult has no interface {ifname} in a sandbox")),
            Some(idx) => {
                let pi = &prev.interfaces[idx];
                if let (Some(pmac), Some(c)) = (&pi.mac, &cinfo)
                    && !pmac.eq_ignore_ascii_case(&c.mac)
                {
                    problems.push(format!(
                        "{ifname} has MAC {}, prevResult says {pmac}",
                        c.mac
                    ));
                }
                let paddrs: Vec<&str> = prev
                    .ips
                    .iter()
                    .filter(|p| p.interface == Some(idx))
                    .map(|p| p.address.as_str())
                    .collect();
                if !paddrs.contains(&want.to_string().as_str()) {
                    problems.push(format!(
                        "prevResult gives {ifname} {paddrs:?}, the allocation is {want}"
                    ));
                }
            }
        }
    }
    match &cinfo {
        None => problems.push(format!(
            "{ifname} does not exist in {}",
            netns_path.display()
        )),
        Some(c) => {
            if !c.up {
                problems.push(format!("{ifname} is down"));
            }
            if c.mtu != conf.mtu {
                problems.push(format!("{ifname} has MTU {}, want {}", c.mtu, conf.mtu));
            }
            if !link::addresses(cont_ns, ifname)?.contains(&want) {
                problems.push(format!("{ifname} does not have {want}"));
            }
            let routes = link::routes(cont_ns)?;
            for r in &conf.routes {
                let via = r.gw.unwrap_or(gw);
                if !routes
                    .iter()
                    .any(|x| x.dst == r.dst && x.gateway == Some(via) && x.dev == ifname)
                {
                    problems.push(format!("no route {} via {via} dev {ifname}", r.dst));
                }
            }
            match link::neighbour(cont_ns, ifname, gw)? {
                Some((mac, true)) if mac.eq_ignore_ascii_case(&host.mac) => {}
                other => problems.push(format!(
                    "gateway {gw} on {ifname} is {other:?}, want {} permanent",
                    host.mac
                )),
            }
        }
    }
    match link::link(host_ns, &host.name)? {
        None => problems.push(format!("host veth {} does not exist", host.name)),
        Some(h) => {
            if !h.up {
                problems.push(format!("host veth {} is down", host.name));
            }
            if !h.mac.eq_ignore_ascii_case(&host.mac) {
                problems.push(format!(
                    "host veth {} has MAC {}, want {}",
                    host.name, h.mac, host.mac
                ));
            }
            if !link::routes(host_ns)?
                .iter()
                .any(|r| r.dst == want && r.dev == host.name && r.gateway.is_none())
            {
                problems.push(format!("no host route {want} dev {}", host.name));
            }
        }
    }
    match endpoint::read(&endpoint::record_path(&conf.endpoints_dir(), id, ifname)) {
        Ok(Some(r)) if r.ip == ip && r.host_ifname == host.name => {}
        Ok(Some(r)) => problems.push(format!(
            "endpoint record says {} on {}, want {ip} on {}",
            r.ip, r.host_ifname, host.name
        )),
        Ok(None) => problems.push("no endpoint record".into()),
        Err(e) => problems.push(format!("endpoint record: {e}")),
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CniError::CheckFailed {
            container_id: id.to_string(),
            ifname: ifname.to_string(),
            problems: problems.join("; "),
        })
    }
}

/// GC: release the addresses, delete the host veths and remove the
/// records of every attachment not in `cni.dev/valid-attachments`. Goes on
/// past failures and reports the first at the end.
fn gc(env: &CniEnv, conf: &NetConf) -> Result<()> {
    env.require_path()?;
    let valid: BTreeSet<(String, String)> = conf
        .valid_attachments
        .as_ref()
        .ok_or_else(|| {
            CniError::config(
                "cni.dev/valid-attachments",
                "GC needs the list of valid attachments (an empty list removes everything)",
            )
        })?
        .iter()
        .map(|a| (a.container_id.clone(), a.ifname.clone()))
        .collect();
    let is_valid = |id: &str, ifname: &str| valid.contains(&(id.to_string(), ifname.to_string()));
    let mut first_error: Option<CniError> = None;
    let mut note = |r: Result<()>| {
        if let Err(e) = r
            && first_error.is_none()
        {
            first_error = Some(e);
        }
    };
    let dir = conf.endpoints_dir();
    match Store::new(conf).retain(|o| is_valid(&o.container_id, &o.ifname)) {
        Ok(released) => {
            for o in released.into_iter().filter_map(|(_, o)| o) {
                let host = host_link(&o.container_id, &o.ifname);
                note(link::delete_link(Ns(None), &host.name).map(|_| ()));
                note(endpoint::remove(&endpoint::record_path(
                    &dir,
                    &o.container_id,
                    &o.ifname,
                )));
            }
        }
        Err(e) => note(Err(e)),
    }
    match endpoint::read_all(&dir) {
        Ok(records) => {
            for (path, rec) in records {
                match rec {
                    Ok(r) if is_valid(&r.container_id, &r.ifname) => {}
                    Ok(r) => {
                        if r.host_ifname.starts_with("lxc") {
                            note(link::delete_link(Ns(None), &r.host_ifname).map(|_| ()));
                        }
                        note(endpoint::remove(&path));
                    }
                    // Records are written whole: one that does not decode
                    // is not ours to keep.
                    Err(_) => note(endpoint::remove(&path)),
                }
            }
        }
        Err(e) => note(Err(e)),
    }
    match first_error {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

/// STATUS: ready when the IPAM directory is writable and has a free
/// address, the endpoint directory can be made, iproute2 runs, and the
/// agent's socket (if configured) exists. Otherwise code 50.
fn status(conf: &NetConf) -> Result<()> {
    let not_ready = |reason: String| CniError::NotReady { reason };
    let store = Store::new(conf);
    store
        .probe_writable()
        .map_err(|e| not_ready(format!("the IPAM store cannot be written: {e}")))?;
    let free = store
        .free()
        .map_err(|e| not_ready(format!("the IPAM store cannot be read: {e}")))?;
    if free == 0 {
        return Err(not_ready(format!(
            "no free address in {}-{} of {}",
            conf.range_start, conf.range_end, conf.subnet
        )));
    }
    let dir = conf.endpoints_dir();
    std::fs::create_dir_all(&dir)
        .map_err(|e| not_ready(format!("cannot create {}: {e}", dir.display())))?;
    if let Some(sock) = &conf.agent_socket
        && !sock.exists()
    {
        return Err(not_ready(format!(
            "the agent's socket {} does not exist (is the agent running?)",
            sock.display()
        )));
    }
    link::ip(Ns(None), &["-V"]).map_err(|e| not_ready(format!("iproute2: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn run(env: &[(&str, &str)], stdin: &str) -> crate::Outcome {
        let m: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        crate::run(&move |k| m.get(k).cloned(), stdin.as_bytes())
    }

    fn code(o: &crate::Outcome) -> u64 {
        let v: Value = serde_json::from_str(&o.stdout).unwrap();
        assert_ne!(o.exit_code, 0);
        assert!(v["msg"].is_string() && v["cniVersion"].is_string(), "{v}");
        v["code"].as_u64().unwrap()
    }

    #[test]
    fn version_lists_supported_versions() {
        for stdin in ["", r#"{"cniVersion":"1.0.0"}"#, r#"{"cniVersion":"9.9.9"}"#] {
            let o = run(&[("CNI_COMMAND", "VERSION")], stdin);
            assert_eq!(o.exit_code, 0, "{}", o.stdout);
            let v: Value = serde_json::from_str(&o.stdout).unwrap();
            let list: Vec<&str> = v["supportedVersions"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            for want in ["0.4.0", "1.0.0", "1.1.0"] {
                assert!(list.contains(&want));
            }
            let expect = if stdin.contains("1.0.0") {
                "1.0.0"
            } else {
                "1.1.0"
            };
            assert_eq!(v["cniVersion"], expect);
        }
        assert_eq!(code(&run(&[("CNI_COMMAND", "VERSION")], "{")), 6);
    }

    #[test]
    fn error_codes_without_touching_the_system() {
        let dir = tempfile::tempdir().unwrap();
        let good = format!(
            r#"{{"cniVersion":"1.1.0","name":"t","type":"tollway-cni","podCIDR":"10.9.0.0/24","dataDir":"{0}/ipam","agentDir":"{0}/agent"}}"#,
            dir.path().display()
        );
        let add = |extra: &[(&'static str, &'static str)]| {
            let mut e = vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_NETNS", "/nonexistent/netns/x"),
                ("CNI_PATH", "/opt/cni/bin"),
            ];
            for (k, v) in extra {
                e.retain(|(k2, _)| k2 != k);
                e.push((k, v));
            }
            e
        };
        // 4: no command, bad command, missing variables.
        assert_eq!(code(&run(&[], &good)), 4);
        assert_eq!(code(&run(&[("CNI_COMMAND", "NOPE")], &good)), 4);
        assert_eq!(code(&run(&add(&[("CNI_CONTAINERID", "")]), &good)), 4);
        assert_eq!(code(&run(&add(&[("CNI_NETNS", "")]), &good)), 4);
        assert_eq!(code(&run(&add(&[("CNI_IFNAME", "")]), &good)), 4);
        let no_path: Vec<_> = add(&[])
            .into_iter()
            .filter(|(k, _)| *k != "CNI_PATH")
            .collect();
        assert_eq!(code(&run(&no_path, &good)), 4);
        // 3: the netns does not exist (nothing allocated then).
        assert_eq!(code(&run(&add(&[]), &good)), 3);
        assert!(
            !dir.path().join("ipam").exists()
                || std::fs::read_dir(dir.path().join("ipam")).unwrap().count() <= 1
        );
        // 6, 7, 2, 1.
        assert_eq!(code(&run(&add(&[]), "{nope")), 6);
        assert_eq!(
            code(&run(
                &add(&[]),
                r#"{"cniVersion":"1.1.0","name":"t","type":"x"}"#
            )),
            7
        );
        assert_eq!(
            code(&run(
                &add(&[]),
                &good.replace("\"mtu\"", "x").replace("}", ",\"vlan\":3}")
            )),
            2
        );
        let o = run(&add(&[]), &good.replace("1.1.0", "0.2.0"));
        assert_eq!(code(&o), 1);
        let v: Value = serde_json::from_str(&o.stdout).unwrap();
        assert_eq!(
            v["cniVersion"], "1.1.0",
            "an unsupported version is not echoed"
        );
        let o = run(
            &[("CNI_COMMAND", "GC"), ("CNI_PATH", "/x")],
            &good.replace("1.1.0", "1.0.0"),
        );
        assert_eq!(code(&o), 1, "GC needs 1.1.0");
        let o = run(
            &[("CNI_COMMAND", "STATUS")],
            &good.replace("1.1.0", "0.4.0"),
        );
        assert_eq!(code(&o), 1, "STATUS needs 1.1.0");
        let v: Value = serde_json::from_str(&o.stdout).unwrap();
        assert_eq!(
            v["cniVersion"], "0.4.0",
            "errors speak the config's version"
        );
        // GC without the list is an invalid configuration.
        assert_eq!(
            code(&run(&[("CNI_COMMAND", "GC"), ("CNI_PATH", "/x")], &good)),
            7
        );
    }

    #[test]
    fn del_of_an_unknown_container_succeeds_and_status_reports_exhaustion() {
        let dir = tempfile::tempdir().unwrap();
        let conf = format!(
            r#"{{"cniVersion":"1.1.0","name":"t","type":"tollway-cni","podCIDR":"10.9.0.0/30","dataDir":"{0}/ipam","agentDir":"{0}/agent"}}"#,
            dir.path().display()
        );
        let del = [
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "never-added"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin"),
        ];
        for _ in 0..2 {
            let o = run(&del, &conf);
            assert_eq!((o.exit_code, o.stdout.as_str()), (0, ""));
        }
        let status = [("CNI_COMMAND", "STATUS")];
        let o = run(&status, &conf);
        assert_eq!((o.exit_code, o.stdout.as_str()), (0, ""), "{}", o.stdout);
        // /30: only .2 is handed out; take it.
        let c: NetConf = NetConf::parse(conf.as_bytes()).unwrap();
        Store::new(&c).allocate("x", "eth0").unwrap();
        let o = run(&status, &conf);
        assert_eq!(code(&o), 50);
        assert!(o.stdout.contains("no free address"), "{}", o.stdout);
        // GC with an empty list frees it again.
        let o = run(
            &[("CNI_COMMAND", "GC"), ("CNI_PATH", "/x")],
            &conf.replace("}", r#","cni.dev/valid-attachments":[]}"#),
        );
        assert_eq!(o.exit_code, 0, "{}", o.stdout);
        assert_eq!(run(&status, &conf).exit_code, 0);
    }
}
