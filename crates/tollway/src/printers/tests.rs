//! End-to-end tests of `render`: every kind in every format.

use jiff::Timestamp;
use serde_json::json;
use tollway_api::{
    ContainerState, ContainerStatus, Kind, LabelSelector, LabelSelectorRequirement, Object,
    ObjectKey, PodStatus, StateRunning, StateTerminated, StateWaiting,
};

use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

const NOW: &str = "2024-05-01T12:00:00Z";

fn opts(format: OutputFormat) -> PrintOptions {
    PrintOptions {
        format,
        all_namespaces: false,
        show_labels: false,
        now: ts(NOW),
        single: false,
        namespace: Some("default".into()),
    }
}

/// Parse, default and validate a manifest, then stamp its creation time.
fn decode(yaml: &str, created: &str) -> Object {
    let docs = tollway_api::parse_documents("test.yaml", yaml).unwrap();
    let mut object = tollway_api::decode(&docs[0]).unwrap().object;
    object.meta_mut().creation_timestamp = Some(ts(created));
    object
}

fn pod(name: &str, ns: &str, created: &str) -> Object {
    decode(
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\n  \
             labels:\n    app: web\n    tier: front\nspec:\n  containers:\n  - name: app\n    \
             image: nginx:1.25\n"
        ),
        created,
    )
}

fn set_pod_status(object: &mut Object, status: PodStatus, node: Option<&str>) {
    if let Object::Pod(p) = object {
        p.status = Some(status);
        p.spec.node_name = node.map(str::to_string);
    }
}

fn running_status(ip: &str) -> PodStatus {
    PodStatus {
        phase: "Running".into(),
        pod_ip: Some(ip.into()),
        container_statuses: vec![ContainerStatus {
            name: "app".into(),
            ready: true,
            state: ContainerState {
                running: Some(StateRunning {
                    started_at: ts("2024-05-01T11:55:00Z"),
                }),
                ..Default::default()
            },
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn crashing_status() -> PodStatus {
    PodStatus {
        phase: "Running".into(),
        pod_ip: Some("10.244.1.17".into()),
        container_statuses: vec![ContainerStatus {
            name: "app".into(),
            ready: false,
            restart_count: 3,
            state: ContainerState {
                waiting: Some(StateWaiting {
                    reason: "CrashLoopBackOff".into(),
                    message: None,
                }),
                ..Default::default()
            },
            last_state: ContainerState {
                terminated: Some(StateTerminated {
                    exit_code: 1,
                    reason: Some("Error".into()),
                    started_at: None,
                    finished_at: Some(ts("2024-05-01T11:59:48Z")),
                }),
                ..Default::default()
            },
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A running pod, a crashing one (other namespace) and a pending one.
fn pods() -> Vec<Object> {
    let mut web = pod("checkout-api-7d9f-abcde", "default", "2024-05-01T11:55:00Z");
    set_pod_status(&mut web, running_status("10.244.1.5"), Some("node-1"));
    let mut worker = pod("worker", "payments", "2024-04-29T09:00:00Z");
    set_pod_status(&mut worker, crashing_status(), Some("node-2"));
    let pending = pod("batch", "default", "2024-05-01T11:59:15Z");
    vec![web, worker, pending]
}

fn refs(objects: &[Object]) -> Vec<&Object> {
    objects.iter().collect()
}

#[test]
fn pods_table_is_aligned_like_kubectl() {
    let objects = pods();
    let text = render(Kind::Pod, &refs(&objects), &opts(OutputFormat::Table)).unwrap();
    assert_eq!(
        text,
        "NAME                      READY   STATUS             RESTARTS      AGE\n\
         checkout-api-7d9f-abcde   1/1     Running            0             5m\n\
         worker                    0/1     CrashLoopBackOff   3 (12s ago)   2d3h\n\
         batch                     0/1     Pending            0             45s\n"
    );
}

#[test]
fn pods_wide_all_namespaces_with_labels() {
    let objects = pods();
    let mut o = opts(OutputFormat::Wide);
    o.all_namespaces = true;
    o.show_labels = true;
    let text = render(Kind::Pod, &refs(&objects), &o).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "NAMESPACE   NAME                      READY   STATUS             RESTARTS      AGE    \
         IP            NODE     NOMINATED NODE   READINESS GATES   LABELS"
    );
    assert_eq!(
        lines[1],
        "default     checkout-api-7d9f-abcde   1/1     Running            0             5m     \
         10.244.1.5    node-1   <none>           <none>            app=web,tier=front"
    );
    assert_eq!(
        lines[2],
        "payments    worker                    0/1     CrashLoopBackOff   3 (12s ago)   2d3h   \
         10.244.1.17   node-2   <none>           <none>            app=web,tier=front"
    );
    assert_eq!(
        lines[3],
        "default     batch                     0/1     Pending            0             45s    \
         <none>        <none>   <none>           <none>            app=web,tier=front"
    );
    assert_eq!(lines.len(), 4);
}

#[test]
fn terminating_pod_shows_terminating() {
    let mut objects = pods();
    objects[1].meta_mut().deletion_timestamp = Some(ts(NOW));
    let text = render(Kind::Pod, &refs(&objects[1..2]), &opts(OutputFormat::Table)).unwrap();
    assert!(
        text.contains("worker   0/1     Terminating   3 (12s ago)   2d3h\n"),
        "{text}"
    );
}

fn service(yaml_spec: &str, name: &str) -> Object {
    decode(
        &format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n{yaml_spec}"),
        "2024-04-30T12:00:00Z",
    )
}

fn services() -> Vec<Object> {
    let mut api = service(
        "  selector:\n    app: checkout\n    tier: api\n  ports:\n  - name: http\n    port: 80\n    \
         targetPort: 8080\n  - name: grpc\n    port: 9090\n    protocol: UDP\n",
        "checkout-api",
    );
    let mut web = service(
        "  type: NodePort\n  selector:\n    app: web\n  ports:\n  - port: 80\n    nodePort: 30080\n",
        "web",
    );
    let headless = service(
        "  clusterIP: None\n  selector:\n    app: db\n  ports:\n  - port: 5432\n",
        "db",
    );
    for (o, ip) in [(&mut api, "10.96.0.10"), (&mut web, "10.96.12.200")] {
        if let Object::Service(s) = o {
            s.spec.cluster_ip = Some(ip.into());
            s.spec.cluster_ips = vec![ip.into()];
        }
    }
    vec![api, web, headless]
}

#[test]
fn services_table_ports_and_headless() {
    let objects = services();
    let text = render(Kind::Service, &refs(&objects), &opts(OutputFormat::Table)).unwrap();
    assert_eq!(
        text,
        "NAME           TYPE        CLUSTER-IP     EXTERNAL-IP   PORT(S)           AGE\n\
         checkout-api   ClusterIP   10.96.0.10     <none>        80/TCP,9090/UDP   24h\n\
         web            NodePort    10.96.12.200   <none>        80:30080/TCP      24h\n\
         db             ClusterIP   None           <none>        5432/TCP          24h\n"
    );
}

#[test]
fn services_wide_adds_selector() {
    let objects = services();
    let text = render(Kind::Service, &refs(&objects), &opts(OutputFormat::Wide)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].ends_with("PORT(S)           AGE   SELECTOR"),
        "{text}"
    );
    assert!(lines[1].ends_with("24h   app=checkout,tier=api"), "{text}");
    assert!(lines[2].ends_with("24h   app=web"), "{text}");
    assert!(lines[3].ends_with("24h   app=db"), "{text}");
}

#[test]
fn service_without_ports_or_ip() {
    // Validation wants ports, so build the object directly.
    let objects = [from_json(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "bare", "namespace": "default",
            "creationTimestamp": "2024-04-30T12:00:00Z"},
        "spec": {"ports": []}}))];
    let mut o = opts(OutputFormat::Wide);
    o.all_namespaces = true;
    let text = render(Kind::Service, &refs(&objects), &o).unwrap();
    assert_eq!(
        text.lines().nth(1),
        Some("default     bare   ClusterIP   <none>       <none>        <none>    24h   <none>")
    );
}

fn deployment() -> Object {
    let mut d = decode(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: checkout-api\n  \
         namespace: payments\nspec:\n  replicas: 3\n  selector:\n    matchLabels:\n      \
         app: checkout\n  template:\n    metadata:\n      labels:\n        app: checkout\n    \
         spec:\n      containers:\n      - name: api\n        image: checkout:1.2\n      \
         - name: sidecar\n        image: envoy:1.30\n",
        "2024-05-01T09:30:00Z",
    );
    if let Object::Deployment(dep) = &mut d {
        dep.status = Some(tollway_api::DeploymentStatus {
            observed_generation: 1,
            replicas: 3,
            updated_replicas: 3,
            ready_replicas: 2,
            available_replicas: 2,
        });
    }
    d
}

#[test]
fn deployments_table_and_wide() {
    let objects = [deployment()];
    let text = render(
        Kind::Deployment,
        &refs(&objects),
        &opts(OutputFormat::Table),
    )
    .unwrap();
    assert_eq!(
        text,
        "NAME           READY   UP-TO-DATE   AVAILABLE   AGE\n\
         checkout-api   2/3     3            2           150m\n"
    );
    let text = render(Kind::Deployment, &refs(&objects), &opts(OutputFormat::Wide)).unwrap();
    assert_eq!(
        text,
        "NAME           READY   UP-TO-DATE   AVAILABLE   AGE    CONTAINERS    IMAGES                    SELECTOR\n\
         checkout-api   2/3     3            2           150m   api,sidecar   checkout:1.2,envoy:1.30   app=checkout\n"
    );
}

#[test]
fn deployment_without_status_is_zero_ready() {
    let mut d = deployment();
    if let Object::Deployment(dep) = &mut d {
        dep.status = None;
    }
    let text = render(Kind::Deployment, &[&d], &opts(OutputFormat::Table)).unwrap();
    assert!(
        text.ends_with("checkout-api   0/3     0            0           150m\n"),
        "{text}"
    );
}

#[test]
fn selector_rendering_sorts_by_key_and_values() {
    let req = |key: &str, op: &str, values: &[&str]| LabelSelectorRequirement {
        key: key.into(),
        operator: op.into(),
        values: values.iter().map(|v| v.to_string()).collect(),
    };
    let sel = LabelSelector {
        match_labels: [("app".to_string(), "x".to_string())].into(),
        match_expressions: vec![
            req("env", "In", &["b", "a"]),
            req("zone", "NotIn", &["z1"]),
            req("legacy", "DoesNotExist", &[]),
            req("canary", "Exists", &[]),
        ],
    };
    assert_eq!(
        columns::format_selector(&sel),
        "app=x,canary,env in (a,b),!legacy,zone notin (z1)"
    );
    let bad = LabelSelector {
        match_labels: Default::default(),
        match_expressions: vec![req("k", "Near", &["v"])],
    };
    assert_eq!(columns::format_selector(&bad), "<invalid>");
    assert_eq!(columns::format_selector(&LabelSelector::default()), "");
}

fn from_json(v: serde_json::Value) -> Object {
    Object::from_value(v).unwrap()
}

#[test]
fn namespaces_and_service_accounts() {
    let ns = [
        from_json(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "payments", "creationTimestamp": "2024-04-01T12:00:00Z"}})),
        from_json(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "old", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "status": {"phase": "Terminating"}})),
    ];
    let mut o = opts(OutputFormat::Table);
    o.all_namespaces = true; // no NAMESPACE column for cluster-scoped kinds
    assert_eq!(
        render(Kind::Namespace, &refs(&ns), &o).unwrap(),
        "NAME       STATUS        AGE\npayments   Active        30d\nold        Terminating   60m\n"
    );
    let sa = [from_json(
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "default", "namespace": "payments",
            "creationTimestamp": "2024-05-01T11:59:00Z"}}),
    )];
    assert_eq!(
        render(Kind::ServiceAccount, &refs(&sa), &o).unwrap(),
        "NAMESPACE   NAME      SECRETS   AGE\npayments    default   0         60s\n"
    );
}

fn nodes() -> Vec<Object> {
    let mut nodes = vec![
        from_json(json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "node-1", "creationTimestamp": "2024-05-01T08:00:00Z",
                "labels": {"node-role.kubernetes.io/control-plane": "",
                    "node-role.kubernetes.io/worker": ""},
                "annotations": {"tollway.io/version": "v0.1.0",
                    "tollway.io/os-image": "Ubuntu 24.04",
                    "tollway.io/kernel-version": "6.8.0",
                    "tollway.io/container-runtime": "tollway://0.1.0"}},
            "status": {"addresses": [{"type": "InternalIP", "address": "172.18.0.2"}],
                "conditions": [{"type": "Ready", "status": "True"}]}})),
        from_json(json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "node-2", "creationTimestamp": "2024-05-01T08:00:00Z"},
            "status": {"conditions": [{"type": "Ready", "status": "False"}]}})),
    ];
    if let Object::Node(n) = &mut nodes[0] {
        n.spec.pod_cidr = Some("10.244.1.0/24".into());
    }
    nodes
}

#[test]
fn nodes_table_and_wide() {
    let objects = nodes();
    assert_eq!(
        render(Kind::Node, &refs(&objects), &opts(OutputFormat::Table)).unwrap(),
        "NAME     STATUS     ROLES                  AGE   VERSION\n\
         node-1   Ready      control-plane,worker   4h    v0.1.0\n\
         node-2   NotReady   <none>                 4h    <none>\n"
    );
    let text = render(Kind::Node, &refs(&objects), &opts(OutputFormat::Wide)).unwrap();
    assert_eq!(
        text,
        "NAME     STATUS     ROLES                  AGE   VERSION   INTERNAL-IP   EXTERNAL-IP   \
         OS-IMAGE       KERNEL-VERSION   CONTAINER-RUNTIME   POD-CIDR\n\
         node-1   Ready      control-plane,worker   4h    v0.1.0    172.18.0.2    <none>        \
         Ubuntu 24.04   6.8.0            tollway://0.1.0     10.244.1.0/24\n\
         node-2   NotReady   <none>                 4h    <none>    <none>        <none>        \
         <unknown>      <unknown>        <unknown>           <none>\n"
    );
}

#[test]
fn empty_lists() {
    let mut o = opts(OutputFormat::Table);
    o.namespace = Some("payments".into());
    assert_eq!(
        render(Kind::Pod, &[], &o).unwrap(),
        "No resources found in payments namespace.\n"
    );
    assert_eq!(render(Kind::Node, &[], &o).unwrap(), "No resources found\n");
    o.all_namespaces = true;
    assert_eq!(render(Kind::Pod, &[], &o).unwrap(), "No resources found\n");
    o.format = OutputFormat::Json;
    assert_eq!(
        render(Kind::Pod, &[], &o).unwrap(),
        "{\n  \"apiVersion\": \"v1\",\n  \"items\": [],\n  \"kind\": \"List\",\n  \
         \"metadata\": {\n    \"resourceVersion\": \"\"\n  }\n}\n"
    );
}

#[test]
fn json_list_and_single() {
    let objects = services();
    let text = render(
        Kind::Service,
        &refs(&objects[..1]),
        &opts(OutputFormat::Json),
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["kind"], "List");
    assert_eq!(v["apiVersion"], "v1");
    assert_eq!(v["metadata"], json!({"resourceVersion": ""}));
    assert_eq!(v["items"][0], objects[0].to_value());
    assert!(text.starts_with("{\n  \"apiVersion\": \"v1\",\n  \"items\": [\n    {\n"));

    let mut o = opts(OutputFormat::Json);
    o.single = true;
    let text = render(Kind::Service, &refs(&objects[..1]), &o).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v, objects[0].to_value());
    assert!(text.starts_with("{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"Service\",\n"));
    assert!(text.ends_with("}\n"));
}

#[test]
fn yaml_list_and_single() {
    let objects = [deployment()];
    let text = render(Kind::Deployment, &refs(&objects), &opts(OutputFormat::Yaml)).unwrap();
    assert!(
        text.starts_with("apiVersion: v1\nitems:\n- apiVersion: apps/v1\n  kind: Deployment\n"),
        "{text}"
    );
    assert!(
        text.contains("\nkind: List\nmetadata:\n  resourceVersion: "),
        "{text}"
    );
    let back: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(back["items"][0], objects[0].to_value());
    assert_eq!(back["metadata"]["resourceVersion"], "");

    let mut o = opts(OutputFormat::Yaml);
    o.single = true;
    let text = render(Kind::Deployment, &refs(&objects), &o).unwrap();
    assert!(
        text.starts_with("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n"),
        "{text}"
    );
    assert!(text.contains("  name: checkout-api\n"), "{text}");
    let back: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(back, objects[0].to_value());
}

#[test]
fn names() {
    let mut all = pods();
    all.truncate(1);
    let o = opts(OutputFormat::Name);
    assert_eq!(
        render(Kind::Pod, &refs(&all), &o).unwrap(),
        "pod/checkout-api-7d9f-abcde\n"
    );
    assert_eq!(
        render(Kind::Service, &refs(&services()), &o).unwrap(),
        "service/checkout-api\nservice/web\nservice/db\n"
    );
    assert_eq!(
        render(Kind::Deployment, &[&deployment()], &o).unwrap(),
        "deployment.apps/checkout-api\n"
    );
    assert_eq!(
        render(Kind::Node, &refs(&nodes()), &o).unwrap(),
        "node/node-1\nnode/node-2\n"
    );
    assert_eq!(resource_name(Kind::Namespace), "namespace");
    assert_eq!(resource_name(Kind::ServiceAccount), "serviceaccount");
}

#[test]
fn apply_lines() {
    let ns = ObjectKey::new(Kind::Namespace, None, "payments");
    assert_eq!(describe_apply(&ns, "created"), "namespace/payments created");
    let d = ObjectKey::new(Kind::Deployment, Some("payments"), "checkout-api");
    assert_eq!(
        describe_apply(&d, "configured"),
        "deployment.apps/checkout-api configured"
    );
    let s = ObjectKey::new(Kind::Service, Some("payments"), "checkout-api");
    assert_eq!(
        describe_apply(&s, "unchanged"),
        "service/checkout-api unchanged"
    );
}

#[test]
fn output_formats_parse() {
    assert_eq!("wide".parse::<OutputFormat>().unwrap(), OutputFormat::Wide);
    assert_eq!("json".parse::<OutputFormat>().unwrap(), OutputFormat::Json);
    assert_eq!("yaml".parse::<OutputFormat>().unwrap(), OutputFormat::Yaml);
    assert_eq!("name".parse::<OutputFormat>().unwrap(), OutputFormat::Name);
    let err = "xml".parse::<OutputFormat>().unwrap_err().to_string();
    assert_eq!(
        err,
        "unable to match a printer suitable for the output format \"xml\", \
         allowed formats are: json,name,wide,yaml"
    );
}

fn policies() -> Vec<Object> {
    vec![
        decode(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: default-deny\n\
             spec:\n  podSelector: {}\n",
            "2024-05-01T11:00:00Z",
        ),
        decode(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: api-allow\n\
             spec:\n  podSelector:\n    matchLabels: {app: api}\n    matchExpressions:\n    \
             - {key: tier, operator: In, values: [back, front]}\n  ingress:\n  - from:\n    \
             - podSelector: {matchLabels: {app: web}}\n",
            "2024-04-30T12:00:00Z",
        ),
        decode(
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: l3-rule\n\
             spec:\n  endpointSelector: {matchLabels: {role: backend}}\n  ingress:\n  \
             - fromEndpoints: [{matchLabels: {role: frontend}}]\n",
            "2024-05-01T11:59:00Z",
        ),
        decode(
            "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata:\n  \
             name: lockdown\nspec:\n  endpointSelector: {}\n  ingressDeny:\n  \
             - fromEntities: [world]\n",
            "2024-04-01T12:00:00Z",
        ),
    ]
}

#[test]
fn network_policies_table() {
    let objects = policies();
    assert_eq!(
        render(
            Kind::NetworkPolicy,
            &refs(&objects),
            &opts(OutputFormat::Table)
        )
        .unwrap(),
        "NAME           POD-SELECTOR                   AGE\n\
         default-deny   <none>                         60m\n\
         api-allow      app=api,tier in (back,front)   24h\n"
    );
    let mut o = opts(OutputFormat::Wide);
    o.all_namespaces = true;
    let text = render(Kind::NetworkPolicy, &refs(&objects[..1]), &o).unwrap();
    assert_eq!(
        text,
        "NAMESPACE   NAME           POD-SELECTOR   AGE\ndefault     default-deny   <none>         60m\n"
    );
}

#[test]
fn cilium_policies_tables() {
    let objects = policies();
    let mut o = opts(OutputFormat::Table);
    o.all_namespaces = true;
    assert_eq!(
        render(Kind::CiliumNetworkPolicy, &refs(&objects), &o).unwrap(),
        "NAMESPACE   NAME      AGE\ndefault     l3-rule   60s\n"
    );
    // Cluster-scoped: no NAMESPACE column.
    assert_eq!(
        render(Kind::CiliumClusterwideNetworkPolicy, &refs(&objects), &o).unwrap(),
        "NAME       AGE\nlockdown   30d\n"
    );
}

#[test]
fn policy_names_and_apply_lines() {
    let objects = policies();
    let o = opts(OutputFormat::Name);
    assert_eq!(
        render(Kind::NetworkPolicy, &refs(&objects[..2]), &o).unwrap(),
        "networkpolicy.networking.k8s.io/default-deny\nnetworkpolicy.networking.k8s.io/api-allow\n"
    );
    assert_eq!(
        render(Kind::CiliumNetworkPolicy, &refs(&objects[2..3]), &o).unwrap(),
        "ciliumnetworkpolicy.cilium.io/l3-rule\n"
    );
    assert_eq!(
        render(
            Kind::CiliumClusterwideNetworkPolicy,
            &refs(&objects[3..]),
            &o
        )
        .unwrap(),
        "ciliumclusterwidenetworkpolicy.cilium.io/lockdown\n"
    );
    let k = ObjectKey::new(
        Kind::CiliumNetworkPolicy,
        Some("payments"),
        "checkout-api-l7-policy",
    );
    assert_eq!(
        describe_apply(&k, "created"),
        "ciliumnetworkpolicy.cilium.io/checkout-api-l7-policy created"
    );
}

#[test]
fn services_external_ip_column_like_kubectl() {
    let lb_status = |ips: &[&str]| {
        let ingress: Vec<String> = ips.iter().map(|i| format!("{{ip: {i}}}")).collect();
        format!(
            "status:\n  loadBalancer:\n    ingress: [{}]\n",
            ingress.join(", ")
        )
    };
    let objects = [
        service(
            "  type: LoadBalancer\n  ports:\n  - port: 80\n    nodePort: 30080\n",
            "pending",
        ),
        decode(
            &format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: lb\nspec:\n  type: LoadBalancer\n  externalIPs: [192.168.50.10]\n  ports:\n  - port: 80\n    nodePort: 30081\n{}",
                lb_status(&["203.0.113.7"])
            ),
            "2024-04-30T12:00:00Z",
        ),
        decode(
            &format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: many\nspec:\n  type: LoadBalancer\n  ports:\n  - port: 80\n    nodePort: 30082\n{}",
                lb_status(&["203.0.113.7", "203.0.113.8"])
            ),
            "2024-04-30T12:00:00Z",
        ),
        service(
            "  externalIPs: [192.168.50.11, 192.168.50.12]\n  ports:\n  - port: 80\n",
            "ext-ips",
        ),
        service(
            "  type: ExternalName\n  externalName: db.example.com\n",
            "db",
        ),
    ];
    let text = render(Kind::Service, &refs(&objects), &opts(OutputFormat::Table)).unwrap();
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let col = |name: &str| rows.iter().find(|r| r[0] == name).unwrap().clone();
    assert_eq!(col("pending")[3], "<pending>");
    assert_eq!(col("lb")[3], "203.0.113.7,192.168.50.10");
    // More than 16 characters of ingress: cut to 13 unless wide.
    assert_eq!(col("many")[3], "203.0.113.7,2...");
    assert_eq!(col("ext-ips")[3], "192.168.50.11,192.168.50.12");
    assert_eq!(
        col("db")[1..5],
        ["ExternalName", "<none>", "db.example.com", "<none>"]
    );
    let wide = render(
        Kind::Service,
        &refs(&objects[2..3]),
        &opts(OutputFormat::Wide),
    )
    .unwrap();
    assert!(wide.contains("203.0.113.7,203.0.113.8"), "{wide}");
}

#[test]
fn endpoint_slices_table_like_kubectl() {
    let slice = |name: &str, body: &str| {
        decode(
            &format!(
                "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}\n  labels: {{kubernetes.io/service-name: web}}\n{body}"
            ),
            "2024-05-01T11:00:00Z",
        )
    };
    let objects = [
        slice(
            "kubernetes",
            "addressType: IPv4\nports:\n- {name: https, port: 6443}\nendpoints:\n- addresses: [172.18.0.2]\n",
        ),
        slice(
            "web-abc",
            "addressType: IPv4\nports:\n- {name: http, port: 8080}\n- {name: grpc}\n- {port: 9000, protocol: UDP}\n- {name: admin, port: 9900}\nendpoints:\n- addresses: [10.244.1.5, 10.244.1.6]\n- addresses: [10.244.2.7]\n- addresses: [10.244.2.8]\n",
        ),
        slice("empty", "addressType: IPv6\n"),
    ];
    assert_eq!(
        render(
            Kind::EndpointSlice,
            &refs(&objects),
            &opts(OutputFormat::Table)
        )
        .unwrap(),
        "NAME         ADDRESSTYPE   PORTS                        ENDPOINTS                                      AGE\n\
         kubernetes   IPv4          6443                         172.18.0.2                                     60m\n\
         web-abc      IPv4          8080,grpc,9000 + 1 more...   10.244.1.5,10.244.1.6,10.244.2.7 + 1 more...   60m\n\
         empty        IPv6          <unset>                      <unset>                                        60m\n"
    );
    assert_eq!(
        render(
            Kind::EndpointSlice,
            &refs(&objects[..1]),
            &opts(OutputFormat::Name)
        )
        .unwrap(),
        "endpointslice.discovery.k8s.io/kubernetes\n"
    );
}
