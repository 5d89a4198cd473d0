"""Lint and render charts/wicket with the real Helm engine (helm-python-sdk: Helm's Go SDK
behind a C ABI; no helm binary). Used by tests/chart.rs.

    python3 tests/chart/helm.py lint VALUES.json            -> lint report (JSON)
    python3 tests/chart/helm.py render VALUES.json NAMESPACE -> {template: manifest} (JSON)
    python3 tests/chart/helm.py validate VALUES.json         -> {"ok": true} or {"error": "..."}

VALUES.json holds the values to set on top of the chart's defaults.
"""

import json
import os
import sys

import helm_python as helm

CHART = os.path.join(os.path.dirname(__file__), "..", "..", "charts", "wicket")


def main() -> None:
    command, values_file = sys.argv[1], sys.argv[2]
    with open(values_file) as f:
        values = json.load(f)
    if command == "lint":
        report = helm.lint(CHART, values, strict=True, namespace="ingress", kube_version="v1.30.0")
        out = report
    elif command == "render":
        chart = helm.Chart.load(CHART)
        chart.validate_schema(values)
        out = chart.render(values, name="wicket", namespace=sys.argv[3], is_install=True)
    elif command == "validate":
        chart = helm.Chart.load(CHART)
        try:
            chart.validate_schema(values)
            chart.render(values, name="wicket", namespace="ingress", is_install=True)
            out = {"ok": True}
        except helm.HelmError as e:
            out = {"error": str(e)}
    else:
        raise SystemExit(f"unknown command {command}")
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
