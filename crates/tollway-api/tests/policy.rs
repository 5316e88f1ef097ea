//! NetworkPolicy, CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy:
//! the upstream docs' examples decode unchanged, defaults are upstream's,
//! and every error names its field.

use tollway_api::{
    CiliumNetworkPolicy, CiliumPort, Decoded, Entity, IntOrString, Kind, L4Proto, NetworkPolicy,
    Object, PolicyType, Protocol, decode, parse_documents,
};

fn decoded(text: &str) -> Decoded {
    let docs = parse_documents("case.yaml", text).expect("parses");
    match decode(&docs[0]) {
        Ok(d) => d,
        Err(e) => panic!(
            "unexpected errors: {:#?}",
            e.iter().map(ToString::to_string).collect::<Vec<_>>()
        ),
    }
}

fn warnings(text: &str) -> Vec<String> {
    decoded(text)
        .warnings
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn errors_of(text: &str) -> Vec<String> {
    let docs = parse_documents("case.yaml", text).expect("parses");
    match decode(&docs[0]) {
        Ok(d) => panic!("expected an error, got {:?}", d.object.key()),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

fn netpol(text: &str) -> NetworkPolicy {
    match decoded(text).object {
        Object::NetworkPolicy(np) => np,
        o => panic!("not a NetworkPolicy: {:?}", o.kind()),
    }
}

fn cnp(text: &str) -> CiliumNetworkPolicy {
    match decoded(text).object {
        Object::CiliumNetworkPolicy(p) | Object::CiliumClusterwideNetworkPolicy(p) => p,
        o => panic!("not a Cilium policy: {:?}", o.kind()),
    }
}

/// A NetworkPolicy in `payments` with the given spec.
fn np_with(spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: np\n  namespace: payments\nspec:\n{spec}"
    )
}

/// A CiliumNetworkPolicy in `payments` with the given spec (rule).
fn cnp_with(spec: &str) -> String {
    format!(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: cnp\n  namespace: payments\nspec:\n  endpointSelector:\n    matchLabels: {{app: api}}\n{spec}"
    )
}

// ---- Kubernetes NetworkPolicy: the docs' examples ----

const K8S_DOCS_EXAMPLE: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: test-network-policy
  namespace: default
spec:
  podSelector:
    matchLabels:
      role: db
  policyTypes:
  - Ingress
  - Egress
  ingress:
  - from:
    - ipBlock:
        cidr: 172.17.0.0/16
        except:
        - 172.17.1.0/24
    - namespaceSelector:
        matchLabels:
          project: myproject
    - podSelector:
        matchLabels:
          role: frontend
    ports:
    - protocol: TCP
      port: 6379
  egress:
  - to:
    - ipBlock:
        cidr: 10.0.0.0/24
    ports:
    - protocol: TCP
      port: 5978
"#;

#[test]
fn kubernetes_docs_example() {
    let d = decoded(K8S_DOCS_EXAMPLE);
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    let Object::NetworkPolicy(np) = d.object else {
        panic!()
    };
    assert_eq!(np.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(np.pod_selector().match_labels["role"], "db");
    assert_eq!(
        np.spec.policy_types,
        vec![PolicyType::Ingress, PolicyType::Egress]
    );
    let from = &np.spec.ingress[0].from;
    assert_eq!(from.len(), 3);
    let block = from[0].ip_block.as_ref().unwrap();
    assert_eq!(block.cidr, "172.17.0.0/16");
    assert_eq!(block.except, vec!["172.17.1.0/24"]);
    assert!(from[1].namespace_selector.is_some() && from[1].pod_selector.is_none());
    assert_eq!(
        np.spec.ingress[0].ports[0].port,
        Some(IntOrString::Int(6379))
    );
    assert_eq!(np.spec.egress[0].ports[0].protocol(), Protocol::Tcp);
    assert_eq!(
        decoded(K8S_DOCS_EXAMPLE).object.key().to_string(),
        "NetworkPolicy default/test-network-policy"
    );
}

#[test]
fn default_deny_and_allow_all() {
    let deny = netpol(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: default-deny-ingress\nspec:\n  podSelector: {}\n  policyTypes:\n  - Ingress\n",
    );
    assert!(deny.pod_selector().is_empty());
    assert!(deny.spec.ingress.is_empty());
    assert!(deny.isolates(PolicyType::Ingress) && !deny.isolates(PolicyType::Egress));

    let allow = netpol(&np_with(
        "  podSelector: {}\n  ingress:\n  - {}\n  policyTypes:\n  - Ingress\n",
    ));
    assert_eq!(allow.spec.ingress.len(), 1);
    assert!(allow.spec.ingress[0].from.is_empty() && allow.spec.ingress[0].ports.is_empty());

    let all = netpol(&np_with(
        "  podSelector: {}\n  policyTypes:\n  - Ingress\n  - Egress\n",
    ));
    assert!(all.isolates(PolicyType::Ingress) && all.isolates(PolicyType::Egress));
}

#[test]
fn namespace_and_pod_selector_in_one_peer_or_two() {
    // One peer: pods labelled role=client in namespaces labelled user=alice.
    let and = netpol(&np_with(
        "  podSelector: {matchLabels: {app: db}}\n  ingress:\n  - from:\n    - namespaceSelector:\n        matchLabels:\n          user: alice\n      podSelector:\n        matchLabels:\n          role: client\n",
    ));
    let from = &and.spec.ingress[0].from;
    assert_eq!(from.len(), 1);
    assert!(from[0].namespace_selector.is_some() && from[0].pod_selector.is_some());
    // Two peers: either.
    let or = netpol(&np_with(
        "  podSelector: {matchLabels: {app: db}}\n  ingress:\n  - from:\n    - namespaceSelector:\n        matchLabels:\n          user: alice\n    - podSelector:\n        matchLabels:\n          role: client\n",
    ));
    assert_eq!(or.spec.ingress[0].from.len(), 2);
}

#[test]
fn end_port_and_named_port() {
    let range = netpol(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: multi-port-egress\n  namespace: default\nspec:\n  podSelector:\n    matchLabels:\n      role: db\n  policyTypes:\n    - Egress\n  egress:\n    - to:\n        - ipBlock:\n            cidr: 10.0.0.0/24\n      ports:\n        - protocol: TCP\n          port: 32000\n          endPort: 32768\n",
    );
    let p = &range.spec.egress[0].ports[0];
    assert_eq!(
        (p.port.clone(), p.end_port),
        (Some(IntOrString::Int(32000)), Some(32768))
    );
    assert_eq!(range.spec.policy_types, vec![PolicyType::Egress]);

    let named = netpol(&np_with(
        "  podSelector: {matchLabels: {app: api}}\n  ingress:\n  - from:\n    - namespaceSelector:\n        matchLabels:\n          kubernetes.io/metadata.name: frontend\n    ports:\n    - port: http\n    - port: 53\n      protocol: UDP\n",
    ));
    let ports = &named.spec.ingress[0].ports;
    assert_eq!(ports[0].port, Some(IntOrString::String("http".into())));
    assert_eq!(ports[0].protocol, Some(Protocol::Tcp));
    assert_eq!(ports[1].protocol, Some(Protocol::Udp));
}

#[test]
fn policy_types_are_inferred_as_kubernetes_does() {
    let only_ingress = netpol(&np_with(
        "  podSelector: {}\n  ingress:\n  - from:\n    - podSelector: {}\n",
    ));
    assert_eq!(only_ingress.spec.policy_types, vec![PolicyType::Ingress]);
    let with_egress = netpol(&np_with(
        "  podSelector: {}\n  egress:\n  - to:\n    - podSelector: {}\n",
    ));
    assert_eq!(
        with_egress.spec.policy_types,
        vec![PolicyType::Ingress, PolicyType::Egress]
    );
    let none = netpol(&np_with("  podSelector: {}\n"));
    assert_eq!(none.spec.policy_types, vec![PolicyType::Ingress]);
    // Explicit types are kept; egress rules without Egress do nothing.
    let w = warnings(&np_with(
        "  podSelector: {}\n  policyTypes: [Ingress]\n  egress:\n  - {}\n",
    ));
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("spec.egress: has no effect: spec.policyTypes does not include Egress"),
        "{w:?}"
    );
}

// ---- Cilium: the docs' shapes ----

#[test]
fn cilium_l3_endpoints_and_entities() {
    let p = cnp(
        "apiVersion: \"cilium.io/v2\"\nkind: CiliumNetworkPolicy\nmetadata:\n  name: \"l3-rule\"\nspec:\n  endpointSelector:\n    matchLabels:\n      role: backend\n  ingress:\n  - fromEndpoints:\n    - matchLabels:\n        role: frontend\n",
    );
    let rule = p.spec.as_ref().unwrap();
    assert_eq!(
        rule.endpoint_selector.as_ref().unwrap().0.match_labels["role"],
        "backend"
    );
    assert_eq!(
        rule.ingress[0].from_endpoints[0].0.match_labels["role"],
        "frontend"
    );
    assert!(rule.default_deny_ingress() && !rule.default_deny_egress());
    assert_eq!(p.metadata.namespace.as_deref(), Some("default"));

    let world = cnp(&cnp_with(
        "  ingress:\n  - fromEntities:\n    - world\n    - cluster\n    - remote-node\n    - kube-apiserver\n",
    ));
    assert_eq!(
        world.spec.unwrap().ingress[0].from_entities,
        vec![
            Entity::World,
            Entity::Cluster,
            Entity::RemoteNode,
            Entity::KubeApiserver
        ]
    );
}

#[test]
fn cilium_cidr_rules() {
    let p = cnp(
        "apiVersion: \"cilium.io/v2\"\nkind: CiliumNetworkPolicy\nmetadata:\n  name: \"cidr-rule\"\nspec:\n  endpointSelector:\n    matchLabels:\n      app: myService\n  egress:\n  - toCIDR:\n    - 20.1.1.1/32\n    - 20.1.1.2\n  - toCIDRSet:\n    - cidr: 10.0.0.0/8\n      except:\n      - 10.96.0.0/12\n",
    );
    let rule = p.spec.unwrap();
    assert_eq!(rule.egress[0].to_cidr, vec!["20.1.1.1/32", "20.1.1.2"]);
    let set = &rule.egress[1].to_cidr_set[0];
    assert_eq!(set.cidr.as_deref(), Some("10.0.0.0/8"));
    assert_eq!(set.except, vec!["10.96.0.0/12"]);
}

#[test]
fn cilium_l4_ports_and_protocol_default() {
    let p = cnp(&cnp_with(
        "  egress:\n  - toPorts:\n    - ports:\n      - port: \"80\"\n        protocol: TCP\n  ingress:\n  - fromEndpoints:\n    - {}\n    toPorts:\n    - ports:\n      - port: 8080\n      - port: \"9000\"\n        endPort: 9010\n      - port: HTTP-Alt\n        protocol: UDP\n",
    ));
    let rule = p.spec.unwrap();
    let tcp80 = &rule.egress[0].to_ports[0].ports[0];
    assert_eq!(tcp80.port(), CiliumPort::Number(80));
    assert_eq!(tcp80.protocol, Some(L4Proto::Tcp));
    let ports = &rule.ingress[0].to_ports[0].ports;
    // A YAML number is read as Cilium's string; the protocol defaults to ANY.
    assert_eq!(ports[0].port.as_deref(), Some("8080"));
    assert_eq!(ports[0].protocol, Some(L4Proto::Any));
    assert_eq!(
        (ports[1].port(), ports[1].end_port),
        (CiliumPort::Number(9000), Some(9010))
    );
    // Port names compare case-insensitively: stored lower-cased.
    assert_eq!(ports[2].port(), CiliumPort::Named("http-alt"));
    assert_eq!(ports[2].protocol(), L4Proto::Udp);
}

#[test]
fn cilium_deny_and_default_deny() {
    let p = cnp(
        "apiVersion: \"cilium.io/v2\"\nkind: CiliumNetworkPolicy\nmetadata:\n  name: \"external-lockdown\"\nspec:\n  endpointSelector: {}\n  ingressDeny:\n  - fromEntities:\n    - \"world\"\n  ingress:\n  - fromEntities:\n    - \"all\"\n",
    );
    let rule = p.spec.unwrap();
    assert!(rule.endpoint_selector.unwrap().is_empty());
    assert_eq!(rule.ingress_deny[0].from_entities, vec![Entity::World]);
    assert_eq!(rule.ingress[0].from_entities, vec![Entity::All]);

    let text = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: my-app-dns\nspec:\n  endpointSelector:\n    matchLabels:\n      app: my-app\n  enableDefaultDeny:\n    egress: false\n    ingress: false\n  egress:\n  - toEndpoints:\n    - matchLabels:\n        \"k8s:io.kubernetes.pod.namespace\": kube-system\n        \"k8s:k8s-app\": kube-dns\n    toPorts:\n    - ports:\n      - port: \"53\"\n        protocol: ANY\n      rules:\n        dns:\n        - matchPattern: \"*\"\n        - matchName: api.example.com\n        - matchPattern: \"*.example.com\"\n";
    let rule = cnp(text).spec.unwrap();
    assert!(!rule.default_deny_egress() && !rule.default_deny_ingress());
    // DNS rules on egress are accepted, and not enforced yet.
    let w = warnings(text);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("spec.egress[0].toPorts[0].rules: L7 rules are not enforced yet"),
        "{w:?}"
    );
}

#[test]
fn cilium_specs_list_and_clusterwide() {
    let p = cnp(
        "apiVersion: \"cilium.io/v2\"\nkind: CiliumNetworkPolicy\nmetadata:\n  name: \"multi-rules\"\n  namespace: payments\nspecs:\n  - endpointSelector:\n      matchLabels:\n        app: myService\n    ingress:\n    - fromEndpoints:\n      - matchLabels:\n          env: staging\n      toPorts:\n      - ports:\n        - port: \"80\"\n          protocol: TCP\n  - endpointSelector:\n      matchLabels:\n        env: prod\n    ingress:\n    - fromEndpoints:\n      - matchLabels:\n          \"k8s:io.kubernetes.pod.namespace\": production\n",
    );
    assert!(p.spec.is_none());
    let paths: Vec<String> = p.rules().map(|(path, _)| path).collect();
    assert_eq!(paths, vec!["specs[0]", "specs[1]"]);

    let d = decoded(
        "apiVersion: \"cilium.io/v2\"\nkind: CiliumClusterwideNetworkPolicy\nmetadata:\n  name: \"wildcard-from-endpoints\"\n  namespace: ignored\nspec:\n  description: \"Policy for ingress allow to kube-dns from all Cilium managed endpoints in the cluster\"\n  endpointSelector:\n    matchLabels:\n      k8s:io.kubernetes.pod.namespace: kube-system\n      k8s-app: kube-dns\n  ingress:\n  - fromEndpoints:\n    - {}\n    toPorts:\n    - ports:\n      - port: \"53\"\n        protocol: UDP\n  labels:\n  - key: owner\n    value: platform\n    source: unspec\n",
    );
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    assert_eq!(d.object.kind(), Kind::CiliumClusterwideNetworkPolicy);
    assert_eq!(
        d.object.key().to_string(),
        "CiliumClusterwideNetworkPolicy wildcard-from-endpoints"
    );
    let Object::CiliumClusterwideNetworkPolicy(p) = d.object else {
        panic!()
    };
    assert!(p.is_clusterwide());
    assert_eq!(p.metadata.namespace, None);
    let sel = &p.spec.unwrap().endpoint_selector.unwrap();
    assert_eq!(
        sel.0.match_labels["k8s:io.kubernetes.pod.namespace"],
        "kube-system"
    );
}

#[test]
fn seed_policy_decodes_with_exactly_the_l7_warning() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/seed/checkout-api-l7-policy.yaml"
    );
    let text = std::fs::read_to_string(path).expect("seed manifest");
    let docs = parse_documents("checkout-api-l7-policy.yaml", &text).expect("parses");
    assert_eq!(docs.len(), 1);
    let d = decode(&docs[0]).expect("the seed policy is accepted");
    let w: Vec<String> = d.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        w,
        vec![
            "checkout-api-l7-policy.yaml:20: document 1 (CiliumNetworkPolicy payments/checkout-api-l7-policy): \
             spec.ingress[0].toPorts[0].rules: L7 rules are not enforced yet: the L3/L4 part of this rule is"
        ]
    );
    assert_eq!(d.warnings[0].field, "spec.ingress[0].toPorts[0].rules");
    assert_eq!(
        d.warnings[0].message,
        "L7 rules are not enforced yet: the L3/L4 part of this rule is"
    );
    let Object::CiliumNetworkPolicy(p) = d.object else {
        panic!("not a CiliumNetworkPolicy")
    };
    let ingress = &p.spec.as_ref().unwrap().ingress[0];
    let pr = &ingress.to_ports[0];
    assert_eq!(pr.ports[0].port(), CiliumPort::Number(8080));
    assert_eq!(pr.ports[0].protocol(), L4Proto::Tcp);
    let http = pr.rules.as_ref().unwrap().http.as_ref().unwrap();
    assert_eq!(http.len(), 2);
    assert_eq!(http[1].method.as_deref(), Some("GET"));
    assert_eq!(http[1].path.as_deref(), Some("/api/v2/orders/.*"));
}

#[test]
fn icmp_rules_are_accepted_with_a_warning() {
    let w = warnings(&cnp_with(
        "  ingress:\n  - fromEntities: [world]\n    icmps:\n    - fields:\n      - type: 8\n        family: IPv4\n",
    ));
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("spec.ingress[0].icmps: ICMP rules are not enforced yet"),
        "{w:?}"
    );
}

#[test]
fn stored_objects_round_trip() {
    for text in [
        K8S_DOCS_EXAMPLE.to_string(),
        cnp_with(
            "  ingress:\n  - fromEndpoints: [{matchLabels: {app: web}}]\n    toPorts:\n    - ports: [{port: \"8080\", protocol: TCP}]\n      rules:\n        http: [{method: GET, path: /x}]\n",
        ),
        "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {name: c}\nspecs:\n- endpointSelector: {}\n  egressDeny:\n  - toCIDRSet: [{cidr: 10.0.0.0/8, except: [10.1.0.0/16]}]\n".to_string(),
    ] {
        let o = decoded(&text).object;
        let back = Object::from_value(o.to_value()).expect("stored form decodes");
        assert_eq!(back, o);
    }
}

#[test]
fn kinds_by_cli_name() {
    for (name, kind) in [
        ("netpol", Kind::NetworkPolicy),
        ("networkpolicies", Kind::NetworkPolicy),
        ("networkpolicies.networking.k8s.io", Kind::NetworkPolicy),
        ("NetworkPolicy", Kind::NetworkPolicy),
        ("cnp", Kind::CiliumNetworkPolicy),
        ("ciliumnetworkpolicies", Kind::CiliumNetworkPolicy),
        ("ccnp", Kind::CiliumClusterwideNetworkPolicy),
        (
            "ciliumclusterwidenetworkpolicy",
            Kind::CiliumClusterwideNetworkPolicy,
        ),
    ] {
        assert_eq!(Kind::from_cli(name), Some(kind), "{name}");
    }
    assert_eq!(Kind::NetworkPolicy.api_version(), "networking.k8s.io/v1");
    assert_eq!(
        Kind::CiliumClusterwideNetworkPolicy.api_version(),
        "cilium.io/v2"
    );
    assert_eq!(Kind::CiliumNetworkPolicy.plural(), "ciliumnetworkpolicies");
    assert!(Kind::NetworkPolicy.namespaced() && Kind::CiliumNetworkPolicy.namespaced());
    assert!(!Kind::CiliumClusterwideNetworkPolicy.namespaced());
}

#[test]
fn istio_policies_are_still_not_supported_yet() {
    let e = errors_of(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  namespace: payments\nspec: {}\n",
    );
    assert!(
        e[0].contains("AuthorizationPolicy is not supported yet"),
        "{e:?}"
    );
}

// ---- errors, each naming its field ----

#[test]
fn each_policy_error_names_its_field() {
    let peer_rule = |peer: &str| {
        np_with(&format!(
            "  podSelector: {{}}\n  ingress:\n  - from:\n    - {peer}\n"
        ))
    };
    let np_port = |port: &str| {
        np_with(&format!(
            "  podSelector: {{}}\n  egress:\n  - ports:\n    - {port}\n"
        ))
    };
    let http_rule = |rule: &str| {
        cnp_with(&format!(
            "  ingress:\n  - toPorts:\n    - ports: [{{port: \"80\", protocol: TCP}}]\n      rules:\n        http:\n        - {rule}\n"
        ))
    };
    let cases: Vec<(String, &str)> = vec![
        // NetworkPolicy
        (np_with("  policyTypes: [Ingress]\n"), "spec.podSelector: required"),
        (np_with("  podSelector: {}\n  policyTypes: [Ingres]\n"), "spec.policyTypes[0]: unknown variant `Ingres`"),
        (np_with("  podSelector:\n    matchExpressions:\n    - {key: app, operator: Near}\n"), "spec.podSelector.matchExpressions[0].operator: must be one of"),
        (peer_rule("{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}"), "spec.ingress[0].from[0]: may not specify both ipBlock and another peer"),
        (peer_rule("{}"), "spec.ingress[0].from[0]: must specify a peer"),
        (peer_rule("{ipBlock: {cidr: 10.0.0.0/16, except: [10.1.0.0/24]}}"), "spec.ingress[0].from[0].ipBlock.except[0]: must be a strict subset of `cidr`"),
        (peer_rule("{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.0.0/16]}}"), "spec.ingress[0].from[0].ipBlock.except[0]: must be a strict subset of `cidr`"),
        (peer_rule("{ipBlock: {cidr: 10.0.0.300/16}}"), "spec.ingress[0].from[0].ipBlock.cidr: must be a CIDR"),
        (peer_rule("{ipBlock: {cidr: 10.0.0.0}}"), "spec.ingress[0].from[0].ipBlock.cidr: must be a CIDR like 10.0.0.0/8 (with a prefix length)"),
        (peer_rule("{ipBlock: {cidr: '2001:db8::/32'}}"), "spec.ingress[0].from[0].ipBlock.cidr: IPv6 is not supported yet"),
        (peer_rule("{ipBlock: {except: [10.0.0.0/8]}}"), "spec.ingress[0].from[0].ipBlock.cidr: required"),
        (peer_rule("{namespaceSelector: {matchLabels: {'bad key': x}}}"), "spec.ingress[0].from[0].namespaceSelector.matchLabels.bad key:"),
        (np_port("{endPort: 90}"), "spec.egress[0].ports[0].endPort: may not be specified when `port` is not specified"),
        (np_port("{port: 90, endPort: 80}"), "spec.egress[0].ports[0].endPort: must be greater than or equal to `port` (90), got 80"),
        (np_port("{port: 90, endPort: 70000}"), "spec.egress[0].ports[0].endPort: must be 1-65535, got 70000"),
        (np_port("{port: http, endPort: 90}"), "spec.egress[0].ports[0].endPort: may not be specified when `port` is non-numeric"),
        (np_port("{port: 0}"), "spec.egress[0].ports[0].port: must be 1-65535, got 0"),
        (np_port("{port: \"80\"}"), "spec.egress[0].ports[0].port: must contain at least one letter"),
        (np_port("{port: 80, protocol: SCTP}"), "spec.egress[0].ports[0].protocol: SCTP is not supported"),
        // Cilium: rules and peers
        ("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: p\n".into(), "spec: required: a CiliumNetworkPolicy needs `spec` or `specs`"),
        ("apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata:\n  name: p\nspecs: []\n".into(), "spec: required: a CiliumClusterwideNetworkPolicy needs `spec` or `specs`"),
        ("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: p\nspec:\n  ingress: [{fromEntities: [world]}]\n".into(), "spec.endpointSelector: required"),
        ("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: p\nspecs:\n- endpointSelector: {}\n- nodeSelector: {matchLabels: {role: worker}}\n".into(), "specs[1].nodeSelector: nodeSelector (host policy) is not supported yet"),
        (cnp_with("  ingress:\n  - fromEntities: [wrld]\n"), "spec.ingress[0].fromEntities[0]: unknown variant `wrld`"),
        (cnp_with("  egress:\n  - toEntities: [world-ipv6]\n"), "spec.egress[0].toEntities[0]: IPv6 is not supported yet"),
        (cnp_with("  egress:\n  - toCIDR: [10.0.0.0/40]\n"), "spec.egress[0].toCIDR[0]: prefix length must be 0-32"),
        (cnp_with("  egress:\n  - toCIDR: [not-an-ip]\n"), "spec.egress[0].toCIDR[0]: must be an IPv4 address or a CIDR"),
        (cnp_with("  ingress:\n  - fromCIDRSet:\n    - cidr: 10.0.0.0/16\n      except: [192.168.0.0/24]\n"), "spec.ingress[0].fromCIDRSet[0].except[0]: must be inside `cidr` (10.0.0.0/16)"),
        (cnp_with("  ingress:\n  - fromCIDRSet:\n    - cidr: 10.0.0.1\n"), "spec.ingress[0].fromCIDRSet[0].cidr: must be a CIDR like 10.0.0.0/8 (with a prefix length)"),
        (cnp_with("  ingress:\n  - fromCIDRSet:\n    - cidrGroupRef: office\n"), "spec.ingress[0].fromCIDRSet[0].cidrGroupRef: cidrGroupRef (CiliumCIDRGroup) is not supported yet"),
        (cnp_with("  ingress:\n  - fromEndpoints: [{}]\n    fromCIDR: [10.0.0.0/8]\n"), "spec.ingress[0]: combining fromEndpoints and fromCIDR in one rule is not supported"),
        (cnp_with("  ingress:\n  - fromEndpoints:\n    - matchLabels: {'k8:app': web}\n"), "spec.ingress[0].fromEndpoints[0].matchLabels.k8:app: unknown label source \"k8\""),
        (cnp_with("  ingress:\n  - fromEndpoints:\n    - matchExpressions:\n      - {key: 'k8s:app', operator: Near}\n"), "spec.ingress[0].fromEndpoints[0].matchExpressions[0].operator: must be one of"),
        (cnp_with("  ingress:\n  - fromRequires: [{matchLabels: {env: prod}}]\n"), "spec.ingress[0].fromRequires: fromRequires is not supported yet"),
        (cnp_with("  ingress:\n  - fromNodes: [{}]\n"), "spec.ingress[0].fromNodes: fromNodes is not supported yet"),
        (cnp_with("  ingress:\n  - fromGroups: [{aws: {}}]\n"), "spec.ingress[0].fromGroups: fromGroups is not supported yet"),
        (cnp_with("  ingress:\n  - fromEndpoints: [{}]\n    authentication: {mode: required}\n"), "spec.ingress[0].authentication: authentication is not supported yet"),
        (cnp_with("  egress:\n  - toFQDNs:\n    - matchName: api.example.com\n"), "spec.egress[0].toFQDNs: toFQDNs is not supported yet"),
        (cnp_with("  egress:\n  - toServices:\n    - k8sService: {serviceName: db, namespace: payments}\n"), "spec.egress[0].toServices: toServices is not supported yet"),
        (cnp_with("  egress:\n  - toGroups: [{aws: {}}]\n"), "spec.egress[0].toGroups: toGroups is not supported yet"),
        (cnp_with("  egress:\n  - toNodes: [{}]\n"), "spec.egress[0].toNodes: toNodes is not supported yet"),
        (cnp_with("  egress:\n  - toRequires: [{}]\n"), "spec.egress[0].toRequires: toRequires is not supported yet"),
        (cnp_with("  egress:\n  - toEntities: [world]\n    icmps: [{fields: [{type: 8}]}]\n    toPorts: [{ports: [{port: '80'}]}]\n"), "spec.egress[0].icmps: may not be combined with toPorts"),
        // Cilium: ports
        (cnp_with("  ingress:\n  - toPorts:\n    - ports: [{port: \"70000\"}]\n"), "spec.ingress[0].toPorts[0].ports[0].port: must be 0-65535, got 70000"),
        (cnp_with("  ingress:\n  - toPorts:\n    - ports: [{port: \"90\", endPort: 80}]\n"), "spec.ingress[0].toPorts[0].ports[0].endPort: must be greater than or equal to `port` (90), got 80"),
        (cnp_with("  ingress:\n  - toPorts:\n    - ports: [{port: http, endPort: 80}]\n"), "spec.ingress[0].toPorts[0].ports[0].endPort: may not be specified when `port` is a name"),
        (cnp_with("  ingress:\n  - toPorts:\n    - ports: [{endPort: 80}]\n"), "spec.ingress[0].toPorts[0].ports[0].endPort: may not be specified when `port` is 0 or empty"),
        (cnp_with("  ingress:\n  - toPorts:\n    - ports: [{port: \"80\", endPort: 70000}]\n"), "spec.ingress[0].toPorts[0].ports[0].endPort: must be 0-65535, got 70000"),
        (cnp_with("  ingress:\n  - toPorts:\n    - ports: [{port: my_port}]\n"), "spec.ingress[0].toPorts[0].ports[0].port: a port number or name:"),
        (cnp_with("  ingress:\n  - toPorts:\n    - ports: [{port: \"80\", protocol: SCTP}]\n"), "spec.ingress[0].toPorts[0].ports[0].protocol: SCTP is not supported (TCP, UDP or ANY)"),
        (cnp_with("  ingress:\n  - toPorts:\n    - ports: [{port: \"80\", protocol: ICMP}]\n"), "spec.ingress[0].toPorts[0].ports[0].protocol: unknown variant `ICMP`"),
        (cnp_with("  ingress:\n  - toPorts:\n    - ports: [{port: \"80\"}]\n      listener: {envoyConfig: {kind: CiliumEnvoyConfig, name: x}, name: l}\n"), "spec.ingress[0].toPorts[0].listener: listener is not supported yet"),
        (cnp_with("  egress:\n  - toPorts:\n    - ports: [{port: \"443\"}]\n      terminatingTLS: {secret: {name: s}}\n      originatingTLS: {secret: {name: s}}\n"), "spec.egress[0].toPorts[0].terminatingTLS: terminatingTLS is not supported yet"),
        (cnp_with("  egress:\n  - toPorts:\n    - ports: [{port: \"443\"}]\n      serverNames: [api.example.com]\n"), "spec.egress[0].toPorts[0].serverNames: serverNames is not supported yet"),
        // Cilium: L7
        (http_rule("{path: '/api/(v2'}"), "spec.ingress[0].toPorts[0].rules.http[0].path: must be a valid regular expression, got \"/api/(v2\": unclosed group"),
        (http_rule("{method: 'GET|(POST'}"), "spec.ingress[0].toPorts[0].rules.http[0].method: must be a valid regular expression"),
        (http_rule("{host: '*.example.com'}"), "spec.ingress[0].toPorts[0].rules.http[0].host: must be a valid regular expression"),
        (http_rule("{path: /x, headerMatches: [{name: X-Token, value: s}]}"), "spec.ingress[0].toPorts[0].rules.http[0].headerMatches: headerMatches is not supported yet"),
        (cnp_with("  ingressDeny:\n  - fromEntities: [world]\n    toPorts:\n    - ports: [{port: \"80\", protocol: TCP}]\n      rules:\n        http: [{method: GET}]\n"), "spec.ingressDeny[0].toPorts[0].rules: L7 rules may not be used in a deny rule"),
        (cnp_with("  egressDeny:\n  - toEntities: [world]\n    toPorts:\n    - ports: [{port: \"53\", protocol: UDP}]\n      rules:\n        dns: [{matchName: x.com}]\n"), "spec.egressDeny[0].toPorts[0].rules: L7 rules may not be used in a deny rule"),
        (cnp_with("  ingress:\n  - toPorts:\n    - ports: [{port: \"80\"}]\n      rules:\n        http: [{method: GET}]\n"), "spec.ingress[0].toPorts[0].ports[0].protocol: L7 rules can only apply to TCP (not ANY) except for DNS rules"),
        (cnp_with("  ingress:\n  - toPorts:\n    - ports: [{port: \"0\", protocol: TCP}]\n      rules:\n        http: [{method: GET}]\n"), "spec.ingress[0].toPorts[0].rules: L7 rules can not be used when a port is 0"),
        (cnp_with("  ingress:\n  - toPorts:\n    - ports: [{port: \"9092\", protocol: TCP}]\n      rules:\n        kafka: [{topic: orders}]\n"), "spec.ingress[0].toPorts[0].rules.kafka: Kafka rules are not supported"),
        (cnp_with("  ingress:\n  - toPorts:\n    - ports: [{port: \"9000\", protocol: TCP}]\n      rules:\n        l7proto: envoy.filters.network.x\n        l7: [{k: v}]\n"), "spec.ingress[0].toPorts[0].rules.l7proto: custom L7 protocols (l7proto) are not supported"),
        (cnp_with("  ingress:\n  - toPorts:\n    - ports: [{port: \"80\", protocol: TCP}]\n      rules:\n        http: [{}]\n        dns: [{matchName: x.com}]\n"), "spec.ingress[0].toPorts[0].rules: multiple L7 protocol rule types"),
        (cnp_with("  ingress:\n  - toPorts:\n    - ports: [{port: \"53\", protocol: UDP}]\n      rules:\n        dns: [{matchName: x.com}]\n"), "spec.ingress[0].toPorts[0].rules.dns: DNS rules are not allowed on ingress"),
        (cnp_with("  egress:\n  - toPorts:\n    - ports: [{port: \"53\", endPort: 60, protocol: UDP}]\n      rules:\n        dns: [{matchName: x.com}]\n"), "spec.egress[0].toPorts[0].ports[0].endPort: DNS rules do not support port ranges"),
        (cnp_with("  egress:\n  - toPorts:\n    - ports: [{port: \"53\"}]\n      rules:\n        dns: [{matchName: 'x com'}]\n"), "spec.egress[0].toPorts[0].rules.dns[0].matchName: invalid characters"),
        (cnp_with("  egress:\n  - toPorts:\n    - ports: [{port: \"53\"}]\n      rules:\n        dns: [{matchPattern: '*.exa?ple.com'}]\n"), "spec.egress[0].toPorts[0].rules.dns[0].matchPattern: invalid characters"),
        (cnp_with("  egress:\n  - toPorts:\n    - ports: [{port: \"53\"}]\n      rules:\n        dns: [{}]\n"), "spec.egress[0].toPorts[0].rules.dns[0]: must specify matchName or matchPattern"),
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
fn all_problems_of_a_policy_are_reported_together() {
    let errs = errors_of(&cnp_with(
        "  ingress:\n  - fromCIDR: [10.0.0.0/33]\n  egress:\n  - toFQDNs: [{matchName: x.com}]\n",
    ));
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs[0].contains("(CiliumNetworkPolicy payments/cnp): spec.ingress[0].fromCIDR[0]"),
        "{errs:?}"
    );
    assert!(errs[1].contains("spec.egress[0].toFQDNs"), "{errs:?}");
}

#[test]
fn unknown_policy_fields_are_warnings_with_their_path() {
    let w = warnings(&cnp_with(
        "  ingress:\n  - fromEndpoints:\n    - matchLabel: {app: web}\n    toPort: []\n",
    ));
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w.iter()
            .any(|w| w
                .contains("spec.ingress[0].fromEndpoints[0].matchLabel: unknown field, ignored")),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|w| w.contains("spec.ingress[0].toPort: unknown field, ignored")),
        "{w:?}"
    );
    let e = errors_of(&cnp_with(
        "  ingress:\n  - toPorts:\n    - ports: [{port: 80.5}]\n",
    ));
    assert!(
        e[0].contains("spec.ingress[0].toPorts[0].ports[0].port: invalid type: floating point"),
        "{e:?}"
    );
}
