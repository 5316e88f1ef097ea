//! From a pod's spec to what its processes get: argv and environment.

use std::path::Path;

use tollway_api::{Container, Pod, Protocol};

/// What the lab knows about a pod when it starts its containers.
pub struct PodContext<'a> {
    /// The pod.
    pub pod: &'a Pod,
    /// Its address.
    pub pod_ip: &'a str,
    /// Its node's address.
    pub host_ip: &'a str,
    /// Its node.
    pub node: &'a str,
    /// The lab.
    pub lab: &'a str,
    /// This binary (what `tollway` in a command means).
    pub exe: &'a Path,
}

impl PodContext<'_> {
    fn field(&self, path: &str) -> String {
        let m = &self.pod.metadata;
        match path {
            "metadata.name" => m.name.clone(),
            "metadata.namespace" => m.namespace_or_default().to_string(),
            "metadata.uid" => m.uid.clone().unwrap_or_default(),
            "spec.nodeName" => self.node.to_string(),
            "spec.serviceAccountName" => self.pod.service_account().to_string(),
            "status.podIP" => self.pod_ip.to_string(),
            "status.hostIP" => self.host_ip.to_string(),
            _ => String::new(),
        }
    }

    /// The container's environment: a minimal base, the downward-API
    /// variables the lab always sets, then the container's own `env`.
    pub fn env(&self, c: &Container) -> Vec<(String, String)> {
        let exe_dir = self
            .exe
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let m = &self.pod.metadata;
        let mut env: Vec<(String, String)> = vec![
            (
                "PATH".into(),
                format!("{exe_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
            ),
            ("HOME".into(), "/root".into()),
            ("HOSTNAME".into(), m.name.clone()),
            ("POD_NAME".into(), m.name.clone()),
            ("POD_NAMESPACE".into(), m.namespace_or_default().to_string()),
            ("POD_IP".into(), self.pod_ip.to_string()),
            ("NODE_NAME".into(), self.node.to_string()),
            ("TOLLWAY_LAB".into(), self.lab.to_string()),
            ("TOLLWAY_NODE".into(), self.node.to_string()),
        ];
        for e in &c.env {
            let value = match (&e.value, &e.value_from) {
                (Some(v), _) => expand(v, &env),
                (None, Some(from)) => from
                    .field_ref
                    .as_ref()
                    .map(|f| self.field(&f.field_path))
                    .unwrap_or_default(),
                (None, None) => String::new(),
            };
            env.retain(|(k, _)| *k != e.name);
            env.push((e.name.clone(), value));
        }
        env
    }

    /// The container's argv. Without `command` the lab runs the built-in
    /// workload (the lab cannot pull images): `tollway workload serve` with
    /// the container's `args`, or else one listener per declared port
    /// (`--http` for TCP, `--udp` for UDP; HTTP on 8080 when none).
    pub fn argv(&self, c: &Container, env: &[(String, String)]) -> Vec<String> {
        let exe = self.exe.display().to_string();
        let mut argv: Vec<String> = if c.command.is_empty() {
            let mut v = vec![exe.clone(), "workload".into(), "serve".into()];
            if !c.args.is_empty() {
                v.extend(c.args.iter().map(|a| expand(a, env)));
            } else if c.ports.is_empty() {
                v.extend(["--http".into(), "8080".into()]);
            } else {
                for p in &c.ports {
                    let flag = match p.protocol.unwrap_or(Protocol::Tcp) {
                        Protocol::Udp => "--udp",
                        _ => "--http",
                    };
                    v.extend([flag.to_string(), p.container_port.to_string()]);
                }
            }
            v
        } else {
            c.command
                .iter()
                .chain(c.args.iter())
                .map(|a| expand(a, env))
                .collect()
        };
        if argv.first().is_some_and(|a| a == "tollway") {
            argv[0] = exe;
        }
        argv
    }
}

/// Kubernetes' `$(VAR)` expansion: defined variables are replaced, unknown
/// references stay as written, `$$` is a literal `$`.
pub fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(a) = after.strip_prefix('$') {
            out.push('$');
            rest = a;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(j) => {
                    let name = &inner[..j];
                    match env.iter().rev().find(|(k, _)| k == name) {
                        Some((_, v)) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[j + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_kubernetes() {
        let env = vec![
            ("A".to_string(), "1".to_string()),
            ("B".to_string(), "two".to_string()),
        ];
        assert_eq!(expand("x$(A)y$(B)", &env), "x1ytwo");
        assert_eq!(expand("$(C)", &env), "$(C)");
        assert_eq!(expand("$$(A)", &env), "$(A)");
        assert_eq!(expand("cost $5", &env), "cost $5");
        assert_eq!(expand("$(A", &env), "$(A");
    }

    #[test]
    fn default_command_is_the_workload_on_declared_ports() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: ns}\nspec:\n  containers:\n  - name: a\n    image: x\n    ports:\n    - {containerPort: 8080}\n    - {containerPort: 53, protocol: UDP}\n  - name: b\n    image: x\n  - name: c\n    command: [tollway, workload, serve, --tcp, '$(PORT)']\n    env:\n    - {name: PORT, value: '9000'}\n    - name: ME\n      valueFrom: {fieldRef: {fieldPath: status.podIP}}\n";
        let docs = tollway_api::parse_documents("p.yaml", text).unwrap();
        let tollway_api::Object::Pod(pod) = tollway_api::decode(&docs[0]).unwrap().object else {
            panic!()
        };
        let ctx = PodContext {
            pod: &pod,
            pod_ip: "10.244.0.2",
            host_ip: "172.18.0.2",
            node: "node-1",
            lab: "t",
            exe: Path::new("/opt/tw/tollway"),
        };
        let c = &pod.spec.containers;
        let env0 = ctx.env(&c[0]);
        assert_eq!(
            ctx.argv(&c[0], &env0),
            [
                "/opt/tw/tollway",
                "workload",
                "serve",
                "--http",
                "8080",
                "--udp",
                "53"
            ]
        );
        assert_eq!(ctx.argv(&c[1], &env0)[3..], ["--http", "8080"]);
        let env2 = ctx.env(&c[2]);
        assert_eq!(
            ctx.argv(&c[2], &env2),
            ["/opt/tw/tollway", "workload", "serve", "--tcp", "9000"]
        );
        let get = |k: &str| env2.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("ME"), Some("10.244.0.2"));
        assert_eq!(get("POD_NAME"), Some("p"));
        assert_eq!(get("POD_NAMESPACE"), Some("ns"));
        assert_eq!(get("NODE_NAME"), Some("node-1"));
        assert!(get("PATH").unwrap().starts_with("/opt/tw:"));
    }
}
