#!/usr/bin/env python3
"""Render deploy/helm/tollway with the real Helm (v4, through the
helm-python-sdk package, which bundles Helm's Go library) for every
scenario in crates/tollway-deploy/tests/scenarios.txt, and write the output
to crates/tollway-deploy/tests/golden/<scenario>.yaml. Also runs `helm lint`.

The Rust tests render the same scenarios with tollway-deploy's renderer and
compare the documents with these files, so a renderer that drifts from Helm,
or a chart change that was not re-rendered, fails `cargo test`.

Run it after changing the chart:

    crates/tollway-deploy/scripts/helm-golden.sh
"""
import json
import pathlib
import sys

import helm_python as helm

HERE = pathlib.Path(__file__).resolve().parent
CRATE = HERE.parent
CHART = CRATE.parent.parent / "deploy" / "helm" / "tollway"
GOLDEN = CRATE / "tests" / "golden"


def scenarios():
    for line in (CRATE / "tests" / "scenarios.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, sets = line.partition(":")
        yield name.strip(), sets.split()


def deep_merge(base, over):
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            deep_merge(base[k], v)
        else:
            base[k] = v
    return base


def main():
    findings = helm.lint(str(CHART))
    print("helm lint:", json.dumps(findings, default=str))
    GOLDEN.mkdir(parents=True, exist_ok=True)
    with helm.Chart.load(str(CHART)) as chart:
        for name, sets in scenarios():
            values = {}
            for s in sets:
                deep_merge(values, helm.parse_set_string(s))
            try:
                manifests = chart.render(values, name="tollway", namespace="kube-system")
            except Exception as e:  # a scenario that must fail
                out = f"# error\n{e}\n"
            else:
                parts = []
                for path in sorted(manifests):
                    text = manifests[path]
                    if path.endswith("NOTES.txt") or not text.strip():
                        continue
                    parts.append(f"# Source: {path}\n{text}")
                out = "\n---\n".join(parts)
            (GOLDEN / f"{name}.yaml").write_text(out)
            print(f"{name}: {len(out)} bytes")


if __name__ == "__main__":
    sys.exit(main())
