"""The Grafana dashboard and Prometheus alert rules in deploy/, held to what the app exports.

The rules pass ``promtool check rules`` and their unit tests (``promtool test rules``); every
Grafana query is valid PromQL (checked by promtool as a recording rule); and every metric, label
and label value they name is one a live app really exports on ``/metrics``. promtool comes from
Debian's ``prometheus`` package: outside CI a missing promtool skips those checks, in CI (``CI``
set) it fails them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import wait_for
from tests.service.conftest import LiveServer, service_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "otpagent-alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "otpagent-alerts.test.yml"
DASHBOARD = DEPLOY / "grafana" / "otpagent-dashboard.json"
#: Grafana's variables, as Prometheus would see them once Grafana has filled them in.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$channel": ".*"}

SELECTOR = re.compile(r"\b(otpagent_[a-z0-9_]+)\s*(?:\{([^}]*)\})?")
MATCHER = re.compile(r'([a-z_]+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
GROUPING = re.compile(r"\b(?:by|on|without|ignoring)\s*\(([^)]*)\)")


@pytest.fixture
def promtool() -> str:
    found = os.environ.get("OTPAGENT_PROMTOOL") or shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: apt-get install -y prometheus")
        pytest.skip("promtool is not installed (apt-get install -y prometheus)")
    return found


def rule_expressions() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in _panels(dashboard["panels"]) for t in p.get("targets", ())]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"] if isinstance(v.get("query"), dict)]
    return exprs


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _filled(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def test_the_alert_rules_pass_promtool_and_their_unit_tests(promtool: str) -> None:
    checked = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    tested = subprocess.run([promtool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=120)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_grafana_query_is_valid_promql(promtool: str, tmp_path: Path) -> None:
    exprs = [e for e in dashboard_expressions() if not e.startswith("label_values(")]
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:query_{i}", "expr": _filled(e)}
                                                        for i, e in enumerate(exprs)]}]}
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))

    checked = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert len(exprs) >= 20


def _exported(live: LiveServer) -> dict[str, dict[str, set[str]]]:
    """Every sample name the app exports, with each label's values."""
    with live.client() as api:
        message_id = api.post("/v1/messages", json={"phone_number": "+447700900006", "content": "m"}).json()[
            "message_id"]
        assert wait_for(lambda: api.get(f"/v1/messages/{message_id}").json()["status"] == "sent")
        assert wait_for(lambda: "otpagent_attempt_latency_seconds_bucket{" in api.get("/metrics").text)
        text = api.get("/metrics").text
    names: dict[str, dict[str, set[str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = names.setdefault(sample.name, {})
            for label, value in sample.labels.items():
                labels.setdefault(label, set()).add(value)
    return names


@pytest.fixture
def exported(make_server: Any, tmp_path: Path) -> dict[str, dict[str, set[str]]]:
    config = service_config(tmp_path)
    config["channels"]["sms"].update(cost=0.01, daily_budget=5)  # so the budget gauge has a series
    return _exported(make_server(config))


@pytest.mark.parametrize("source", ["alert rules", "grafana dashboard"])
def test_every_metric_label_and_value_they_use_is_exported(exported: dict[str, dict[str, set[str]]],
                                                           source: str) -> None:
    exprs = rule_expressions() if source == "alert rules" else [_filled(e) for e in dashboard_expressions()]
    problems: list[str] = []
    for expr in exprs:
        used = SELECTOR.findall(expr)
        assert used, f"no otpagent metric in {expr!r}"
        labels_here = {"le"} if any(name.endswith("_bucket") for name, _ in used) else set()
        for name, matchers in used:
            if name not in exported:
                problems.append(f"{name} is not exported (in {expr!r})")
                continue
            labels_here |= set(exported[name])
            for label, op, value in MATCHER.findall(matchers):
                if label not in exported[name]:
                    problems.append(f"{name} has no label {label!r}")
                elif op in ("=", "=~") and value != ".*":
                    missing = [v for v in value.split("|") if v not in exported[name][label]]
                    if missing:
                        problems.append(f"{name}{{{label}}} never takes the value(s) {missing}")
        for grouping in GROUPING.findall(expr):
            for label in (part.strip() for part in grouping.split(",") if part.strip()):
                if label not in labels_here:
                    problems.append(f"grouping by {label!r}, which no metric of {expr!r} has")

    assert problems == []
