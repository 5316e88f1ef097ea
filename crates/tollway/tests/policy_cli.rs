//! `tollway policy validate`: no lab needed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tollway");

fn validate(name: &str, text: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    let out = Command::new(BIN)
        .args(["policy", "validate"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_seed_policy_is_valid_with_its_l7_warning() {
    let seed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/seed/checkout-api-l7-policy.yaml"
    ))
    .unwrap();
    let (code, out, err) = validate("seed.yaml", &seed);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("All policies are valid: 1 policy -> 2 rules"),
        "{out}"
    );
    assert!(err.contains("L7 rules are not enforced yet"), "{err}");
}

#[test]
fn every_error_names_file_object_and_field_and_exits_1() {
    let text = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: ok, namespace: shop}
spec:
  podSelector: {}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: bad-port, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
  - toPorts:
    - ports:
      - {port: '70000', protocol: TCP}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: bad-op, namespace: shop}
spec:
  podSelector:
    matchExpressions:
    - {key: app, operator: Maybe, values: [x]}
";
    let (code, out, err) = validate("policies.yaml", text);
    assert_eq!(code, 1, "{out}{err}");
    assert!(!out.contains("valid"), "{out}");
    let port = err
        .lines()
        .find(|l| l.contains("CiliumNetworkPolicy shop/bad-port"))
        .unwrap_or_else(|| panic!("no error for bad-port: {err}"));
    assert!(port.contains("policies.yaml:15"), "{port}");
    assert!(port.contains("document 2"), "{port}");
    assert!(
        port.contains("spec.ingress[0].toPorts[0].ports[0].port"),
        "{port}"
    );
    let op = err
        .lines()
        .find(|l| l.contains("NetworkPolicy shop/bad-op"))
        .unwrap_or_else(|| panic!("no error for bad-op: {err}"));
    assert!(op.contains("policies.yaml:"), "{op}");
    assert!(
        op.contains("spec.podSelector.matchExpressions[0].operator"),
        "{op}"
    );
    assert!(err.contains("2 error(s)"), "{err}");
}
