"""The chart's optional dashboard (`dashboard.enabled`): off by default, a Deployment
and a Service when on, secrets by reference only, and arguments `corral dashboard`
accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_chart import helm, kinds, one, template, template_error

__all__ = ["helm"]  # the fixture, used by name

ON = {"dashboard": {"enabled": True, "redisUrl": "redis://redis.data:6379/0"}}


def dashboard_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    [deployment] = [d for d in docs if d["kind"] == "Deployment"
                    and d["metadata"]["name"].endswith("-dashboard")]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def test_off_by_default(helm: str, tmp_path: Path) -> None:
    names = [d["metadata"]["name"] for d in template(helm, tmp_path)]
    assert not [n for n in names if "dashboard" in n]


def test_on_it_is_a_read_only_deployment_behind_a_service(helm: str, tmp_path: Path) -> None:
    docs = [d for d in template(helm, tmp_path, ON)
            if d["metadata"]["name"] == "corral-dashboard"]
    assert kinds(docs) == ["Deployment", "Service"]
    service = one(docs, "Service")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http",
                                         "protocol": "TCP"}]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert service["spec"]["selector"] == \
        one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pod["automountServiceAccountToken"] is False
    container = dashboard_container(docs)
    assert "--allow-actions" not in container["args"]
    assert container["env"] == [{"name": "CORRAL_REDIS_URL",
                                 "value": "redis://redis.data:6379/0"}]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_secrets_are_referenced_never_inlined(helm: str, tmp_path: Path) -> None:
    values = {"dashboard": {
        "enabled": True, "allowActions": True,
        "redisUrlSecret": {"name": "redis-url", "key": "url"},
        "tokenSecret": {"name": "dashboard-token", "key": "token"},
        "grafanaUrl": "https://grafana.example/d/corral?orgId=1&refresh=30s",
        "queues": ["default", "emails"]}}
    container = dashboard_container(template(helm, tmp_path, values))
    assert container["env"] == [
        {"name": "CORRAL_REDIS_URL",
         "valueFrom": {"secretKeyRef": {"name": "redis-url", "key": "url"}}},
        {"name": "CORRAL_DASHBOARD_TOKEN",
         "valueFrom": {"secretKeyRef": {"name": "dashboard-token", "key": "token"}}},
    ]
    assert container["args"] == [
        "dashboard", "--host=0.0.0.0", "--port=8000", "--log-format=json", "--allow-actions",
        "--grafana-url=https://grafana.example/d/corral?orgId=1&refresh=30s",
        "--queue=default", "--queue=emails"]


@pytest.mark.parametrize(("values", "message"), [
    ({"dashboard": {"enabled": True}}, "needs dashboard.redisUrl or dashboard.redisUrlSecret"),
    ({"dashboard": {**ON["dashboard"], "allowActions": True}},
     "allowActions needs dashboard.tokenSecret.name"),
    ({"dashboard": {**ON["dashboard"], "redisUrl": "redis://u:pw@redis:6379/0"}}, "redisUrl"),
    ({"dashboard": {**ON["dashboard"], "grafanaUrl": "javascript:alert(1)"}}, "grafanaUrl"),
    ({"dashboard": {**ON["dashboard"], "token": "inline"}}, "token"),
], ids=["no-redis", "actions-without-token", "password-in-url", "grafana-scheme",
        "inline-token"])
def test_wrong_values_are_refused(helm: str, tmp_path: Path, values: dict[str, Any],
                                  message: str) -> None:
    assert message in template_error(helm, tmp_path, values)


def test_the_dashboard_accepts_the_charts_arguments(helm: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from corral.cli import build_parser
    from corral_dashboard.cli import settings_of

    values = {"dashboard": {"enabled": True, "redisUrl": "redis://r:6379/0",
                            "allowActions": True, "tokenSecret": {"name": "t"},
                            "grafanaUrl": "https://g.example/d/x", "secureCookies": True}}
    container = dashboard_container(template(helm, tmp_path, values))
    monkeypatch.setenv("CORRAL_DASHBOARD_TOKEN", "a-token-of-twenty-chars")
    monkeypatch.setenv("CORRAL_REDIS_URL", container["env"][0]["value"])
    settings = settings_of(build_parser().parse_args(container["args"]))
    assert (settings.host, settings.port, settings.token, settings.grafana_url,
            settings.secure_cookies, settings.redis_url) == (
        "0.0.0.0", 8000, "a-token-of-twenty-chars", "https://g.example/d/x", True,
        "redis://r:6379/0")
