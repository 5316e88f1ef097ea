//! The chart's CRDs: valid, structural, Cilium-compatible, and covering the
//! fields Tollway reads. The seed's and the tests' policies validate
//! against them; policies with misspelled or mistyped fields do not.

// Helpers outside the #[test] functions unwrap too.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{Value as Json, json};
use tollway_api::{
    CidrRule, CiliumEgressRule, CiliumIngressRule, CiliumNetworkPolicy, CiliumRule, DefaultDeny,
    EndpointSelector, Entity, L4Proto, L7Rules, LabelSelector, LabelSelectorRequirement,
    ObjectMeta, PortProtocol, PortRule, PortRuleDns, PortRuleHttp, RuleLabel,
};

fn crds() -> Vec<Json> {
    render(&[])
        .crd_documents()
        .unwrap()
        .into_iter()
        .map(|d| d.value)
        .collect()
}

fn crd(name: &str) -> Json {
    crds()
        .into_iter()
        .find(|c| c["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no CRD {name}"))
}

/// The schema serving `apiVersion`/`kind`, if a chart CRD serves it.
fn schema_for(crds: &[Json], api_version: &str, kind: &str) -> Option<Json> {
    let (group, version) = api_version.split_once('/')?;
    let c = crds
        .iter()
        .find(|c| c["spec"]["group"] == group && c["spec"]["names"]["kind"] == kind)?;
    crd_schemas(c)
        .into_iter()
        .find(|(v, _)| v == version)
        .map(|(_, s)| s)
}

fn validate_policy(crds: &[Json], doc: &Json) -> Result<(), String> {
    let api = doc["apiVersion"].as_str().unwrap_or_default();
    let kind = doc["kind"].as_str().unwrap_or_default();
    let schema =
        schema_for(crds, api, kind).ok_or_else(|| format!("no CRD serves {api} {kind}"))?;
    validate_custom(&schema, doc)
}

#[test]
fn the_crds_are_the_expected_ones_and_structural() {
    let crds = crds();
    let names: Vec<&str> = crds
        .iter()
        .map(|c| c["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "ciliumclusterwidenetworkpolicies.cilium.io",
            "ciliumnetworkpolicies.cilium.io",
            "tollwayidentities.tollway.io"
        ]
    );
    for c in &crds {
        let name = c["metadata"]["name"].as_str().unwrap();
        validate_typed(c).unwrap_or_else(|e| panic!("{name}: {e}"));
        let versions = c["spec"]["versions"].as_array().unwrap();
        assert_eq!(
            versions.iter().filter(|v| v["storage"] == true).count(),
            1,
            "{name}: one storage version"
        );
        for (version, schema) in crd_schemas(c) {
            let errs = structural_errors(&schema);
            assert!(
                errs.is_empty(),
                "{name} {version} is not structural:\n{}",
                errs.join("\n")
            );
            // It compiles as a JSON schema too.
            jsonschema::draft4::new(&schema).unwrap_or_else(|e| panic!("{name} {version}: {e}"));
        }
    }
}

#[test]
fn the_structural_check_catches_what_kubernetes_refuses() {
    let bad = json!({
        "type": "object",
        "properties": {
            "metadata": {"type": "object", "properties": {"name": {"type": "string"}}},
            "a": {"properties": {"b": {"type": "string"}}},
            "c": {"type": "array"},
            "d": {"type": "object", "properties": {}, "additionalProperties": {"type": "string"}},
            "e": {"type": "string", "anyOf": [{"type": "string"}]},
            "f": {"type": "object", "required": ["g"], "properties": {}},
            "h": {"type": "string", "enum": [1]}
        }
    });
    let errs = structural_errors(&bad).join("\n");
    for want in [
        "metadata: only `type: object`",
        ".a: no type",
        ".c: an array needs one `items` schema",
        ".d: properties and additionalProperties together",
        ".e.anyOf[0]: `type` is not allowed",
        ".f: required \"g\" is not a property",
        ".h: enum value 1 is not a string",
    ] {
        assert!(errs.contains(want), "missing {want:?} in:\n{errs}");
    }
}

#[test]
fn the_policy_crds_match_ciliums() {
    let cnp = crd("ciliumnetworkpolicies.cilium.io");
    let ccnp = crd("ciliumclusterwidenetworkpolicies.cilium.io");
    assert_eq!(cnp["spec"]["group"], "cilium.io");
    assert_eq!(cnp["spec"]["scope"], "Namespaced");
    assert_eq!(ccnp["spec"]["scope"], "Cluster");
    assert_eq!(
        cnp["spec"]["names"],
        json!({"kind": "CiliumNetworkPolicy", "listKind": "CiliumNetworkPolicyList",
            "plural": "ciliumnetworkpolicies", "singular": "ciliumnetworkpolicy",
            "shortNames": ["cnp", "ciliumnp"], "categories": ["cilium", "ciliumpolicy"]})
    );
    assert_eq!(
        ccnp["spec"]["names"],
        json!({"kind": "CiliumClusterwideNetworkPolicy",
            "listKind": "CiliumClusterwideNetworkPolicyList",
            "plural": "ciliumclusterwidenetworkpolicies",
            "singular": "ciliumclusterwidenetworkpolicy",
            "shortNames": ["ccnp"], "categories": ["cilium", "ciliumpolicy"]})
    );
    for c in [&cnp, &ccnp] {
        let v = &c["spec"]["versions"][0];
        assert_eq!(v["name"], "v2");
        assert_eq!(v["subresources"], json!({"status": {}}));
    }
    // One schema for both (the CCNP file is the CNP file's twin).
    let mut a = crd_schemas(&cnp)[0].1.clone();
    let mut b = crd_schemas(&ccnp)[0].1.clone();
    a["description"] = Json::Null;
    b["description"] = Json::Null;
    assert_eq!(a, b, "the CNP and CCNP schemas differ");
}

#[test]
fn the_seed_policy_validates_unchanged() {
    let crds = crds();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/seed");
    let mut cilium = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        for doc in yaml_docs(&std::fs::read_to_string(&path).unwrap()) {
            let api = doc["apiVersion"].as_str().unwrap();
            if api.starts_with("cilium.io/") {
                cilium += 1;
                validate_policy(&crds, &doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            } else {
                // The Istio AuthorizationPolicy: no CRD of this chart serves
                // it yet (kubectl answers "no matches for kind").
                assert_eq!(api, "security.istio.io/v1", "{}", path.display());
                assert!(validate_policy(&crds, &doc).is_err());
            }
        }
    }
    assert_eq!(cilium, 1, "the seed has one CiliumNetworkPolicy");
}

#[test]
fn the_tests_policies_and_ciliums_features_validate() {
    let crds = crds();
    for file in ["from-cilium-policy-test.yaml", "cilium-features.yaml"] {
        let path = format!("{}/tests/policies/{file}", env!("CARGO_MANIFEST_DIR"));
        let docs = yaml_docs(&std::fs::read_to_string(&path).unwrap());
        assert!(docs.len() >= 3, "{file}");
        for doc in &docs {
            let name = doc["metadata"]["name"].as_str().unwrap();
            validate_policy(&crds, doc).unwrap_or_else(|e| panic!("{file}: {name}:\n{e}"));
            // Tollway's own types read every one of them.
            let parsed: CiliumNetworkPolicy = serde_json::from_value(doc.clone())
                .unwrap_or_else(|e| panic!("{file}: {name}: tollway-api: {e}"));
            assert_eq!(parsed.metadata.name, name);
        }
    }
}

#[test]
fn misspelled_or_mistyped_policies_are_refused() {
    let crds = crds();
    let seed = |spec: Json| {
        json!({"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
            "metadata": {"name": "p", "namespace": "payments"}, "spec": spec})
    };
    for (doc, want) in [
        (
            seed(json!({"endpointSelector": {}, "ingress": [{"fromEndpoint": [{}]}]})),
            "spec.ingress[0].fromEndpoint: unknown field",
        ),
        (
            seed(
                json!({"endpointSelector": {}, "ingress": [{"toPorts": [{"ports": [{"port": 8080}]}]}]}),
            ),
            "/spec/ingress/0/toPorts/0/ports/0/port",
        ),
        (
            seed(
                json!({"endpointSelector": {}, "ingress": [{"toPorts": [{"ports": [{"port": "8080", "protocol": "HTTP"}]}]}]}),
            ),
            "/spec/ingress/0/toPorts/0/ports/0/protocol",
        ),
        (
            seed(json!({"endpointSelector": {}, "egress": [{"toEntities": ["everything"]}]})),
            "/spec/egress/0/toEntities/0",
        ),
        (
            seed(json!({"endpointSelector": {}, "egress": [{"toCIDR": ["10.0.0.0"]}]})),
            "/spec/egress/0/toCIDR/0",
        ),
        (
            seed(
                json!({"endpointSelector": {"matchExpressions": [{"key": "a", "operator": "Has"}]}}),
            ),
            "/spec/endpointSelector/matchExpressions/0/operator",
        ),
        (
            seed(
                json!({"endpointSelector": {}, "ingress": [{"toPorts": [{"ports": [{"port": "70000"}]}]}]}),
            ),
            "/spec/ingress/0/toPorts/0/ports/0/port",
        ),
        (
            seed(json!({"endpointSelector": {}, "enableDefaultDeny": {"ingress": "yes"}})),
            "/spec/enableDefaultDeny/ingress",
        ),
        (
            seed(json!({"endpointSelector": {}, "ingres": []})),
            "spec.ingres: unknown field",
        ),
    ] {
        let e = validate_policy(&crds, &doc).expect_err(&format!("accepted: {doc}"));
        assert!(e.contains(want), "want {want:?} in:\n{e}");
    }
}

/// A policy with every field of Tollway's policy types set. The struct
/// literals name every field, so a field added to tollway-api does not
/// compile here until the CRD schema (and this test) learn it.
fn every_tollway_field() -> CiliumNetworkPolicy {
    let selector = |k: &str, v: &str| {
        EndpointSelector(LabelSelector {
            match_labels: [(k.to_string(), v.to_string())].into_iter().collect(),
            match_expressions: vec![LabelSelectorRequirement {
                key: "tier".to_string(),
                operator: "In".to_string(),
                values: vec!["api".to_string()],
            }],
        })
    };
    let ports = vec![PortRule {
        ports: vec![PortProtocol {
            port: Some("8080".to_string()),
            end_port: Some(8090),
            protocol: Some(L4Proto::Tcp),
        }],
        rules: Some(L7Rules {
            http: Some(vec![PortRuleHttp {
                path: Some("/api/.*".to_string()),
                method: Some("GET".to_string()),
                host: Some("shop.example.com".to_string()),
                headers: vec!["X-Request-Id".to_string()],
                header_matches: Some(json!([{"name": "X-Tenant", "value": "acme"}])),
            }]),
            dns: Some(vec![PortRuleDns {
                match_name: Some("example.com".to_string()),
                match_pattern: Some("*.example.com".to_string()),
            }]),
            kafka: Some(json!([{"topic": "orders"}])),
            l7proto: Some("r2d2".to_string()),
            l7: Some(json!([{"cmd": "READ"}])),
        }),
        listener: Some(
            json!({"envoyConfig": {"kind": "CiliumEnvoyConfig", "name": "x"}, "name": "l"}),
        ),
        originating_tls: Some(json!({"secret": {"name": "ca"}})),
        terminating_tls: Some(json!({"secret": {"name": "cert"}})),
        server_names: Some(json!(["shop.example.com"])),
    }];
    let cidr_rule = CidrRule {
        cidr: Some("10.0.0.0/8".to_string()),
        except: vec!["10.1.0.0/16".to_string()],
        cidr_group_ref: Some("ranges".to_string()),
        cidr_group_selector: Some(json!({"matchLabels": {"kind": "blocked"}})),
    };
    let icmps = vec![json!({"fields": [{"type": 8, "family": "IPv4"}]})];
    let ingress = CiliumIngressRule {
        from_endpoints: vec![selector("app", "web")],
        from_cidr: vec!["192.0.2.0/24".to_string()],
        from_cidr_set: vec![cidr_rule.clone()],
        from_entities: vec![Entity::World, Entity::RemoteNode, Entity::KubeApiserver],
        to_ports: ports.clone(),
        icmps: icmps.clone(),
        from_requires: Some(json!([{"matchLabels": {"env": "prod"}}])),
        from_groups: Some(json!([{"aws": {"securityGroupsIds": ["sg-1"]}}])),
        from_nodes: Some(json!([{"matchLabels": {"kubernetes.io/hostname": "n1"}}])),
        authentication: Some(json!({"mode": "required"})),
    };
    let egress = CiliumEgressRule {
        to_endpoints: vec![selector("app", "db")],
        to_cidr: vec!["198.51.100.0/24".to_string()],
        to_cidr_set: vec![cidr_rule],
        to_entities: vec![Entity::Cluster, Entity::Host],
        to_ports: ports,
        icmps,
        to_services: Some(json!([{"k8sService": {"serviceName": "api", "namespace": "shop"}}])),
        to_fqdns: Some(json!([{"matchName": "api.example.com"}])),
        to_groups: Some(json!([{"aws": {"labels": {"a": "b"}}}])),
        to_nodes: Some(json!([{"matchLabels": {"role": "db"}}])),
        to_requires: Some(json!([{"matchLabels": {"env": "prod"}}])),
        authentication: Some(json!({"mode": "disabled"})),
    };
    let rule = CiliumRule {
        description: Some("every field".to_string()),
        endpoint_selector: Some(selector("app", "api")),
        node_selector: Some(selector("node", "worker")),
        ingress: vec![ingress.clone()],
        ingress_deny: vec![ingress],
        egress: vec![egress.clone()],
        egress_deny: vec![egress],
        enable_default_deny: Some(DefaultDeny {
            ingress: Some(true),
            egress: Some(false),
        }),
        labels: vec![RuleLabel {
            key: "team".to_string(),
            value: Some("shop".to_string()),
            source: Some("k8s".to_string()),
        }],
    };
    CiliumNetworkPolicy {
        api_version: "cilium.io/v2".to_string(),
        kind: "CiliumNetworkPolicy".to_string(),
        metadata: ObjectMeta {
            name: "every-field".to_string(),
            namespace: Some("shop".to_string()),
            ..ObjectMeta::default()
        },
        spec: Some(rule.clone()),
        specs: vec![rule],
    }
}

#[test]
fn the_schema_covers_every_field_tollway_reads() {
    let crds = crds();
    let doc = serde_json::to_value(every_tollway_field()).unwrap();
    validate_policy(&crds, &doc).unwrap_or_else(|e| panic!("{e}\n{doc:#}"));
    let mut ccnp = doc.clone();
    ccnp["kind"] = json!("CiliumClusterwideNetworkPolicy");
    ccnp["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("namespace");
    validate_policy(&crds, &ccnp).unwrap();
}

#[test]
fn identities_validate() {
    let crds = crds();
    let c = crd("tollwayidentities.tollway.io");
    assert_eq!(c["spec"]["scope"], "Cluster");
    assert_eq!(c["spec"]["names"]["kind"], "TollwayIdentity");
    assert_eq!(c["spec"]["versions"][0]["name"], "v1alpha1");
    let id = json!({
        "apiVersion": "tollway.io/v1alpha1",
        "kind": "TollwayIdentity",
        "metadata": {"name": "48231"},
        "security-labels": {
            "k8s:app": "checkout-api",
            "k8s:io.kubernetes.pod.namespace": "payments",
            "k8s:io.cilium.k8s.policy.cluster": "default"
        }
    });
    validate_policy(&crds, &id).unwrap();
    let mut no_labels = id.clone();
    no_labels.as_object_mut().unwrap().remove("security-labels");
    assert!(
        validate_policy(&crds, &no_labels)
            .unwrap_err()
            .contains("security-labels")
    );
    let mut bad = id.clone();
    bad["security-labels"]["k8s:app"] = json!(3);
    assert!(validate_policy(&crds, &bad).is_err());
    let mut extra = id;
    extra["spec"] = json!({});
    assert!(
        validate_policy(&crds, &extra)
            .unwrap_err()
            .contains("spec: unknown field")
    );
    // The number rule is CEL (the API server evaluates it; these tests
    // cannot): check that it is there and names the range.
    let rules = &crd_schemas(&c)[0].1["x-kubernetes-validations"];
    assert!(
        rules[0]["rule"].as_str().unwrap().contains(">= 256"),
        "{rules}"
    );
}

#[test]
fn the_identity_crd_is_the_agents() {
    // The agent's allocator (tollway-kube) ships the CRD it was written
    // against; the chart's must serve the same objects.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tollway-kube/crd/tollwayidentities.yaml"
    );
    let theirs = yaml_docs(&std::fs::read_to_string(path).unwrap()).remove(0);
    let ours = crd("tollwayidentities.tollway.io");
    for field in ["group", "scope", "names"] {
        let mut a = ours["spec"][field].clone();
        if field == "names" {
            a.as_object_mut().unwrap().remove("categories");
        }
        assert_eq!(a, theirs["spec"][field], "spec.{field}");
    }
    let (ov, tv) = (&ours["spec"]["versions"][0], &theirs["spec"]["versions"][0]);
    for field in ["name", "served", "storage", "additionalPrinterColumns"] {
        assert_eq!(ov[field], tv[field], "versions[0].{field}");
    }
    // Same properties and types; ours adds descriptions and CEL rules.
    fn shape(s: &Json) -> Json {
        match s {
            Json::Object(o) => Json::Object(
                o.iter()
                    .filter(|(k, _)| {
                        !matches!(
                            k.as_str(),
                            "description" | "x-kubernetes-validations" | "required"
                        )
                    })
                    .map(|(k, v)| (k.clone(), shape(v)))
                    .collect(),
            ),
            v => v.clone(),
        }
    }
    let (os, ts) = (&crd_schemas(&ours)[0].1, &crd_schemas(&theirs)[0].1);
    assert_eq!(shape(os), shape(ts));
    // An object the allocator creates validates against ours.
    let created = json!({"apiVersion": "tollway.io/v1alpha1", "kind": "TollwayIdentity",
        "metadata": {"name": "256"}, "security-labels": {"k8s:app": "web"}});
    validate_custom(os, &created).unwrap();
}
