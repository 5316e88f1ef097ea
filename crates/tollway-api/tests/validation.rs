//! Every validation error path, table-driven: each case is a manifest and the
//! field + reason its error must name.

use tollway_api::{Object, decode, parse_documents};

fn errors_of(text: &str) -> Vec<String> {
    let docs = parse_documents("case.yaml", text).expect("parses");
    match decode(&docs[0]) {
        Ok(d) => panic!("expected an error, got {:?}", d.object.key()),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

fn ok(text: &str) -> Object {
    let docs = parse_documents("case.yaml", text).expect("parses");
    match decode(&docs[0]) {
        Ok(d) => d.object,
        Err(e) => panic!("unexpected errors: {e:?}"),
    }
}

fn pod(spec: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: payments\nspec:\n{spec}")
}

fn svc(spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  namespace: payments\nspec:\n{spec}"
    )
}

fn slice(body: &str) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: s-1\n  namespace: payments\n  labels: {{kubernetes.io/service-name: s}}\n{body}"
    )
}

fn deploy(spec: &str) -> String {
    format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n{spec}")
}

const C: &str = "  containers:\n  - name: c\n    image: x\n";

#[test]
fn each_error_names_its_field() {
    let cases: Vec<(String, &str)> = vec![
        // metadata
        ("apiVersion: v1\nkind: Namespace\nmetadata: {}\n".into(), "metadata.name: required"),
        ("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: Pay_ments\n".into(), "metadata.name: a lowercase RFC 1123 label"),
        ("apiVersion: v1\nkind: Service\nmetadata:\n  name: 9lives\nspec:\n  ports: [{port: 80}]\n".into(), "metadata.name: a DNS-1035 label"),
        ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: Bad\nspec:\n  containers: [{name: c, image: x}]\n".into(), "metadata.namespace:"),
        ("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: sa\n  labels:\n    bad key: x\n".into(), "metadata.labels.bad key:"),
        ("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: sa\n  labels:\n    app: 'not valid!'\n".into(), "metadata.labels.app: a valid label value"),
        ("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: sa\n  annotations:\n    'a/b/c': x\n".into(), "metadata.annotations.a/b/c:"),
        // pods
        (pod("  containers: []\n"), "spec.containers: required"),
        (pod("  containers:\n  - image: x\n"), "spec.containers[0].name: required"),
        (pod("  containers:\n  - name: c\n    image: x\n  - name: c\n    image: z\n"), "spec.containers[1].name: duplicate container name"),
        (pod("  containers:\n  - name: c\n    args: [x]\n"), "spec.containers[0].command: required when args"),
        (pod(&format!("{C}    ports:\n    - containerPort: 0\n")), "spec.containers[0].ports[0].containerPort: must be 1-65535, got 0"),
        (pod(&format!("{C}    ports:\n    - containerPort: 80\n      protocol: SCTP\n")), "spec.containers[0].ports[0].protocol: SCTP is not supported"),
        (pod(&format!("{C}    ports:\n    - containerPort: 80\n      protocol: QUIC\n")), "spec.containers[0].ports[0].protocol: unknown variant `QUIC`"),
        (pod(&format!("{C}    ports:\n    - containerPort: 80\n      name: http\n    - containerPort: 81\n      name: http\n")), "spec.containers[0].ports[1].name: duplicate port name"),
        (pod(&format!("{C}    ports:\n    - containerPort: 80\n      name: HTTP\n")), "spec.containers[0].ports[0].name: must contain only lower case"),
        (pod(&format!("{C}    env:\n    - name: 1BAD\n      value: x\n")), "spec.containers[0].env[0].name:"),
        (pod(&format!("{C}    env:\n    - name: X\n      value: x\n      valueFrom:\n        fieldRef: {{fieldPath: metadata.name}}\n")), "spec.containers[0].env[0].valueFrom: may not be specified"),
        (pod(&format!("{C}    env:\n    - name: X\n      valueFrom:\n        fieldRef: {{fieldPath: metadata.labels}}\n")), "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: must be one of"),
        (pod(&format!("{C}    env:\n    - name: X\n      valueFrom: {{}}\n")), "spec.containers[0].env[0].valueFrom: only fieldRef"),
        (pod(&format!("{C}  restartPolicy: Sometimes\n")), "spec.restartPolicy: must be one of Always, OnFailure, Never"),
        (pod(&format!("{C}  nodeName: Node_1\n")), "spec.nodeName:"),
        (pod(&format!("{C}  serviceAccountName: Bad_SA\n")), "spec.serviceAccountName:"),
        (pod(&format!("{C}  terminationGracePeriodSeconds: -1\n")), "spec.terminationGracePeriodSeconds: must be >= 0"),
        (pod(&format!("{C}  nodeSelector:\n    'k/': v\n")), "spec.nodeSelector.k/:"),
        // services
        (svc("  ports: []\n"), "spec.ports: required"),
        (svc("  type: ExternalName\n"), "spec.externalName: required for an ExternalName service"),
        (svc("  type: ExternalName\n  externalName: .\n"), "spec.externalName: required"),
        (svc("  type: ExternalName\n  externalName: DB_host.example.com\n"), "spec.externalName: a lowercase RFC 1123 subdomain"),
        (svc("  type: ExternalName\n  externalName: db.example.com\n  clusterIP: 10.96.0.5\n"), "spec.clusterIP: may not be set for an ExternalName service"),
        (svc("  type: LoadBalancer\n  clusterIP: None\n  ports: [{port: 80}]\n"), "spec.clusterIP: may not be \"None\" for a LoadBalancer service"),
        (svc("  allocateLoadBalancerNodePorts: false\n  ports: [{port: 80}]\n"), "spec.allocateLoadBalancerNodePorts: may only be set when spec.type is LoadBalancer"),
        (svc("  externalIPs: [10.0.0.300]\n  ports: [{port: 80}]\n"), "spec.externalIPs[0]: must be a valid IP address, got \"10.0.0.300\""),
        (svc("  externalIPs: [192.168.1.10, 127.0.0.1]\n  ports: [{port: 80}]\n"), "spec.externalIPs[1]: may not be in the loopback range"),
        (svc("  externalIPs: [0.0.0.0]\n  ports: [{port: 80}]\n"), "spec.externalIPs[0]: may not be unspecified"),
        (svc("  type: LoadBalancer\n  ports: [{port: 80}]\nstatus:\n  loadBalancer:\n    ingress:\n    - ip: lb.example.com\n"), "status.loadBalancer.ingress[0].ip: must be a valid IP address"),
        (svc("  type: LoadBalancer\n  ports: [{port: 80}]\nstatus:\n  loadBalancer:\n    ingress:\n    - hostname: 203.0.113.7\n"), "status.loadBalancer.ingress[0].hostname: must be a DNS name, not an IP address"),
        (svc("  type: LoadBalancer\n  ports: [{port: 80}]\nstatus:\n  loadBalancer:\n    ingress:\n    - {ip: 203.0.113.7, ipMode: Direct}\n"), "status.loadBalancer.ingress[0].ipMode: must be \"VIP\" or \"Proxy\""),
        (svc("  ports:\n  - port: 80\n  - port: 81\n    name: b\n"), "spec.ports[0].name: required when the service has more than one port"),
        (svc("  ports:\n  - port: 80\n    name: a\n  - port: 81\n    name: a\n"), "spec.ports[1].name: duplicate port name"),
        (svc("  ports:\n  - port: 80\n    name: A\n"), "spec.ports[0].name: a lowercase RFC 1123 label"),
        (svc("  ports:\n  - port: 70000\n"), "spec.ports[0].port: must be 1-65535, got 70000"),
        (svc("  ports:\n  - port: 80\n    name: a\n  - port: 80\n    name: b\n"), "spec.ports[1].port: duplicate port 80/TCP"),
        (svc("  ports:\n  - port: 80\n    targetPort: 0\n"), "spec.ports[0].targetPort: must be 1-65535, got 0"),
        (svc("  ports:\n  - port: 80\n    targetPort: Not-A-Name\n"), "spec.ports[0].targetPort: must contain only lower case"),
        (svc("  ports:\n  - port: 80\n    targetPort: [1]\n"), "spec.ports[0].targetPort:"),
        (svc("  ports:\n  - port: 80\n    nodePort: 30080\n"), "spec.ports[0].nodePort: may only be set when spec.type is NodePort or LoadBalancer"),
        (svc("  type: ExternalName\n  externalName: db.example.com\n  ports:\n  - port: 80\n    nodePort: 30080\n"), "spec.ports[0].nodePort: may only be set when spec.type is NodePort or LoadBalancer"),
        (svc("  type: NodePort\n  ports:\n  - port: 80\n    nodePort: 70000\n"), "spec.ports[0].nodePort: must be 1-65535, got 70000"),
        (svc("  clusterIP: 10.96.0.300\n  ports: [{port: 80}]\n"), "spec.clusterIP: must be an IPv4 address"),
        (svc("  type: NodePort\n  clusterIP: None\n  ports: [{port: 80}]\n"), "spec.clusterIP: may not be \"None\" for a NodePort"),
        (svc("  clusterIP: 10.96.0.20\n  clusterIPs: [10.96.0.21]\n  ports: [{port: 80}]\n"), "spec.clusterIPs[0]: must match spec.clusterIP"),
        (svc("  clusterIPs: [10.96.0.21, 10.96.0.22]\n  ports: [{port: 80}]\n"), "spec.clusterIPs[1]: only one"),
        (svc("  sessionAffinity: ClientIP\n  sessionAffinityConfig:\n    clientIP:\n      timeoutSeconds: 0\n  ports: [{port: 80}]\n"), "spec.sessionAffinityConfig.clientIP.timeoutSeconds: must be 1-86400, got 0"),
        (svc("  sessionAffinity: Sticky\n  ports: [{port: 80}]\n"), "spec.sessionAffinity: unknown variant `Sticky`"),
        (svc("  sessionAffinityConfig:\n    clientIP:\n      timeoutSeconds: 10\n  ports: [{port: 80}]\n"), "spec.sessionAffinityConfig: may only be set when spec.sessionAffinity is ClientIP"),
        (svc("  externalTrafficPolicy: Local\n  ports: [{port: 80}]\n"), "spec.externalTrafficPolicy: may only be set for externally-accessible services (NodePort, LoadBalancer, or with spec.externalIPs)"),
        (svc("  type: ExternalName\n  externalName: db.example.com\n  externalTrafficPolicy: Cluster\n"), "spec.externalTrafficPolicy: may only be set for externally-accessible"),
        (svc("  ipFamilies: [IPv6]\n  ports: [{port: 80}]\n"), "spec.ipFamilies: only IPv4"),
        (svc("  selector:\n    app: 'a b'\n  ports: [{port: 80}]\n"), "spec.selector.app:"),
        // endpoint slices
        (slice(""), "missing field `addressType`"),
        (slice("addressType: IPv5\n"), "addressType: unknown variant `IPv5`"),
        (slice("addressType: IPv4\nendpoints:\n- addresses: []\n"), "endpoints[0].addresses: must contain at least 1 address"),
        (slice("addressType: IPv4\nendpoints:\n- conditions: {ready: true}\n"), "endpoints[0].addresses: must contain at least 1 address"),
        (slice("addressType: IPv4\nendpoints:\n- addresses: [10.244.1.5]\n- addresses: [fd00::5]\n"), "endpoints[1].addresses[0]: must be a valid IPv4 address (addressType IPv4), got \"fd00::5\""),
        (slice("addressType: IPv6\nendpoints:\n- addresses: [10.244.1.5]\n"), "endpoints[0].addresses[0]: must be a valid IPv6 address"),
        (slice("addressType: IPv4\nendpoints:\n- addresses: [10.244.1.5, 127.0.0.1]\n"), "endpoints[0].addresses[1]: may not be in the loopback range"),
        (slice("addressType: IPv4\nendpoints:\n- addresses: [169.254.1.1]\n"), "endpoints[0].addresses[0]: may not be in the link-local range"),
        (slice("addressType: FQDN\nendpoints:\n- addresses: [localhost]\n"), "endpoints[0].addresses[0]: must be a fully qualified domain name"),
        (slice("addressType: FQDN\nendpoints:\n- addresses: [Db.Example.com]\n"), "endpoints[0].addresses[0]: a lowercase RFC 1123 subdomain"),
        (slice("addressType: IPv4\nendpoints:\n- addresses: [10.244.1.5]\n  nodeName: Node_1\n"), "endpoints[0].nodeName: a lowercase RFC 1123 subdomain"),
        (slice("addressType: IPv4\nendpoints:\n- addresses: [10.244.1.5]\n  hostname: web.0\n"), "endpoints[0].hostname: a lowercase RFC 1123 label"),
        (slice("addressType: IPv4\nendpoints:\n- addresses: [10.244.1.5]\n  conditions: {ready: maybe}\n"), "endpoints[0].conditions.ready: invalid type"),
        (slice("addressType: IPv4\nports:\n- {name: http, port: 80}\n- {name: http, port: 81}\n"), "ports[1].name: duplicate port name \"http\""),
        (slice("addressType: IPv4\nports:\n- {port: 80}\n- {port: 81, protocol: UDP}\n"), "ports[1].name: duplicate port name \"\""),
        (slice("addressType: IPv4\nports:\n- {name: HTTP, port: 80}\n"), "ports[0].name: a lowercase RFC 1123 label"),
        (slice("addressType: IPv4\nports:\n- {name: http, port: 0}\n"), "ports[0].port: must be 1-65535, got 0"),
        (slice("addressType: IPv4\nports:\n- {name: http, port: 80, protocol: QUIC}\n"), "ports[0].protocol: unknown variant `QUIC`"),
        (slice("addressType: IPv4\nports:\n- {name: http, port: 80, appProtocol: 'h 2'}\n"), "ports[0].appProtocol:"),
        ("apiVersion: discovery.k8s.io/v1beta1\nkind: EndpointSlice\nmetadata: {name: e}\naddressType: IPv4\n".into(), "apiVersion: must be \"discovery.k8s.io/v1\" for EndpointSlice"),
        // deployments
        (deploy("  replicas: -1\n  selector: {matchLabels: {app: a}}\n  template:\n    metadata: {labels: {app: a}}\n    spec:\n      containers: [{name: c, image: x}]\n"), "spec.replicas: must be >= 0"),
        (deploy("  template:\n    metadata: {labels: {app: a}}\n    spec:\n      containers: [{name: c, image: x}]\n"), "spec.selector: required"),
        (deploy("  selector: {matchLabels: {app: a}}\n  template:\n    metadata: {labels: {app: b}}\n    spec:\n      containers: [{name: c, image: x}]\n"), "spec.template.metadata.labels: must match spec.selector"),
        (deploy("  selector:\n    matchExpressions:\n    - {key: app, operator: Near}\n  template:\n    metadata: {labels: {app: a}}\n    spec:\n      containers: [{name: c, image: x}]\n"), "spec.selector.matchExpressions[0].operator: must be one of In"),
        (deploy("  selector:\n    matchExpressions:\n    - {key: app, operator: In}\n  template:\n    metadata: {labels: {app: a}}\n    spec:\n      containers: [{name: c, image: x}]\n"), "spec.selector.matchExpressions[0].values: must be specified"),
        (deploy("  selector:\n    matchExpressions:\n    - {key: app, operator: Exists, values: [a]}\n  template:\n    metadata: {labels: {app: a}}\n    spec:\n      containers: [{name: c, image: x}]\n"), "spec.selector.matchExpressions[0].values: may not be specified"),
        (deploy("  selector: {matchLabels: {app: a}}\n  template:\n    metadata: {labels: {app: a}}\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: x}]\n"), "spec.template.spec.restartPolicy: must be Always for a Deployment"),
        (deploy("  selector: {matchLabels: {app: a}}\n  template:\n    metadata: {labels: {app: a}}\n    spec:\n      containers: []\n"), "spec.template.spec.containers: required"),
        (deploy("  selector: {matchLabels: {app: a}}\n  strategy: {type: BlueGreen}\n  template:\n    metadata: {labels: {app: a}}\n    spec:\n      containers: [{name: c, image: x}]\n"), "spec.strategy.type: must be RollingUpdate or Recreate"),
    ];
    let mut failures = Vec::new();
    for (text, want) in &cases {
        let errs = errors_of(text);
        if !errs.iter().any(|e| e.contains(want)) {
            failures.push(format!("want {want:?}\n got {errs:?}"));
        }
        for e in &errs {
            assert!(e.starts_with("case.yaml:"), "error must name the file: {e}");
            assert!(
                e.contains("document 1 ("),
                "error must name document and object: {e}"
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn all_problems_of_an_object_are_reported_together() {
    let errs = errors_of(&svc("  ports:\n  - port: 0\n  - port: 70000\n"));
    assert!(
        errs.iter().any(|e| e.contains("spec.ports[0].port")),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|e| e.contains("spec.ports[1].port")),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|e| e.contains("spec.ports[1].name")),
        "{errs:?}"
    );
}

#[test]
fn defaults_are_kubernetes_defaults() {
    let Object::Service(s) = ok(&svc(
        "  type: NodePort\n  sessionAffinity: ClientIP\n  ports:\n  - port: 80\n",
    )) else {
        panic!()
    };
    let p = &s.spec.ports[0];
    assert_eq!(p.protocol, Some(tollway_api::Protocol::Tcp));
    assert_eq!(p.target_port, Some(tollway_api::IntOrString::Int(80)));
    assert_eq!(
        s.spec
            .session_affinity_config
            .unwrap()
            .client_ip
            .unwrap()
            .timeout_seconds,
        Some(10800)
    );
    assert_eq!(
        s.spec.external_traffic_policy,
        Some(tollway_api::TrafficPolicy::Cluster)
    );

    let Object::Pod(p) = ok(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  serviceAccount: legacy\n  containers: [{name: c, image: x, ports: [{containerPort: 80}]}]\n",
    ) else {
        panic!()
    };
    assert_eq!(p.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(p.spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(p.spec.termination_grace_period_seconds, Some(30));
    assert_eq!(p.service_account(), "legacy");
    assert_eq!(
        p.spec.containers[0].ports[0].protocol,
        Some(tollway_api::Protocol::Tcp)
    );

    let Object::Namespace(n) =
        ok("apiVersion: v1\nkind: Namespace\nmetadata: {name: ns1, namespace: ignored}\n")
    else {
        panic!()
    };
    assert_eq!(n.metadata.namespace, None);
}

#[test]
fn seed_manifest_shapes_are_accepted() {
    // The targetPort-by-name and named container ports the seed's services use.
    let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: checkout-api\n  namespace: payments\n  labels: {app: checkout-api}\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: checkout-api}\n  template:\n    metadata:\n      labels: {app: checkout-api}\n    spec:\n      serviceAccountName: checkout-api\n      containers:\n      - name: api\n        image: payments/checkout-api:1.4\n        imagePullPolicy: IfNotPresent\n        resources: {requests: {cpu: 100m}}\n        ports:\n        - name: http\n          containerPort: 8080\n";
    let Object::Deployment(d) = ok(text) else {
        panic!()
    };
    assert_eq!(d.replicas(), 2);
    assert_eq!(
        d.spec.template.spec.containers[0].ports[0].name.as_deref(),
        Some("http")
    );
}
