"""docker-compose.yml, checked without Docker: it parses, its mounts exist, its images are pinned,
and its service names and ports agree with prometheus.yml, the Grafana provisioning and the
exporter's own flags."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from support import AlertmanagerFactory

from exporter.config import load_config, parse_config
from exporter.demo import DEMO_CONFIG_YAML

ROOT = Path(__file__).resolve().parents[1]
SERVICES = {"exporter", "prometheus", "alertmanager", "grafana", "demo"}
PORTS = {"exporter": 8088, "prometheus": 9090, "alertmanager": 9093, "grafana": 3000}

Service = dict[str, Any]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Service]:
    found: dict[str, Service] = compose["services"]
    return found


def _mounts(service: Service) -> list[tuple[str, str]]:
    """(source, container path) of each volume entry, in short or long syntax."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            mounts.append((volume["source"], volume["target"]))
        else:
            source, target = volume.split(":")[:2]
            mounts.append((source, target))
    return mounts


def _host_path(service: Service, container_path: str) -> Path | None:
    """The repository path bind-mounted at `container_path` (or a parent of it), if any."""
    wanted = PurePosixPath(container_path)
    for source, target in _mounts(service):
        if source.startswith(".") and (wanted == PurePosixPath(target)
                                       or PurePosixPath(target) in wanted.parents):
            return ROOT / source / wanted.relative_to(target)
    return None


def _flag(command: list[str], name: str) -> str:
    """The value of `--name value` or `--name=value` in a command."""
    for index, part in enumerate(command):
        if part == name:
            return command[index + 1]
        if part.startswith(f"{name}="):
            return part.split("=", 1)[1]
    raise AssertionError(f"{name} is not in {command}")


def _published_container_ports(service: Service) -> set[int]:
    return {int(str(port).rsplit(":", 1)[-1].split("/")[0]) for port in service.get("ports", [])}


def _address(url_or_target: str) -> tuple[str, int]:
    parts = urlsplit(url_or_target if "//" in url_or_target else f"http://{url_or_target}")
    assert parts.hostname and parts.port, url_or_target
    return parts.hostname, parts.port


def _prometheus_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    return config


def _datasources() -> list[dict[str, Any]]:
    path = ROOT / "grafana" / "provisioning" / "datasources" / "datasources.yml"
    sources: list[dict[str, Any]] = yaml.safe_load(path.read_text())["datasources"]
    return sources


# --- the file itself ---


def test_compose_file_has_the_five_services(services: dict[str, Service]) -> None:
    assert set(services) == SERVICES


def test_every_mounted_path_exists_in_the_repository(services: dict[str, Service]) -> None:
    for name, service in services.items():
        for source, _ in _mounts(service):
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"


def test_named_volumes_are_declared(compose: dict[str, Any], services: dict[str, Service]) -> None:
    declared = set(compose.get("volumes") or {})
    for service in services.values():
        for source, _ in _mounts(service):
            if not source.startswith((".", "/")):
                assert source in declared, source


def test_images_are_pinned_to_versions(services: dict[str, Service]) -> None:
    for name, service in services.items():
        image = service.get("image")
        assert image, f"{name} has no image (a built service needs a tag too)"
        repository, _, tag = image.rpartition(":")
        assert repository and tag and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not a version"
    base = re.search(r"^FROM\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert base and re.search(r":\d+\.\d+\.\d+", base.group(1)), "pin the Dockerfile's base image"


def test_long_running_services_have_health_checks(services: dict[str, Service]) -> None:
    for name in PORTS:
        assert services[name]["healthcheck"]["test"], name


def test_ports_are_published_on_loopback(services: dict[str, Service]) -> None:
    for name, port in PORTS.items():
        assert services[name]["ports"] == [f"127.0.0.1:{port}:{port}"], name


# --- the exporter ---


def test_exporter_command_serves_on_its_port_with_the_ledger_in_a_volume(
    services: dict[str, Service],
) -> None:
    exporter = services["exporter"]
    command = exporter["command"]
    assert command[:2] == ["orchestrator-exporter", "serve"]
    assert _flag(command, "--host") == "0.0.0.0"
    assert int(_flag(command, "--port")) == PORTS["exporter"]
    database = _flag(command, "--database-url")
    assert database.startswith("sqlite:////")
    ledger_dir = PurePosixPath(database.removeprefix("sqlite:///")).parent
    assert any(
        not source.startswith(".") and PurePosixPath(target) == ledger_dir
        for source, target in _mounts(exporter)
    ), "the ledger must live in a named volume"
    assert "EXPORTER_ADMIN_TOKEN" in exporter["environment"]


def test_exporter_config_is_mounted_and_valid(services: dict[str, Service]) -> None:
    exporter = services["exporter"]
    path = _host_path(exporter, _flag(exporter["command"], "--config"))
    assert path is not None and path.is_file()
    # The demo profile's fleet must stay below the budget alerts: the budgets of `serve --demo`.
    assert load_config(path).budgets == parse_config(yaml.safe_load(DEMO_CONFIG_YAML)).budgets


def test_demo_profile_drives_the_exporter(services: dict[str, Service]) -> None:
    demo = services["demo"]
    assert demo["profiles"] == ["demo"]
    assert demo["command"][:2] == ["orchestrator-exporter", "demo"]
    assert _address(_flag(demo["command"], "--url")) == ("exporter", PORTS["exporter"])
    assert demo["image"] == services["exporter"]["image"]
    assert demo["environment"]["EXPORTER_ADMIN_TOKEN"] == (
        services["exporter"]["environment"]["EXPORTER_ADMIN_TOKEN"]
    )
    assert demo["depends_on"]["exporter"]["condition"] == "service_healthy"


def test_dockerfile_copies_only_what_the_package_needs() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ignored[ignored.index("*") + 1 :][:3] == ["!pyproject.toml", "!README.md", "!exporter/"]
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY"):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source


# --- Prometheus and Alertmanager ---


def test_prometheus_scrapes_the_exporter_service(services: dict[str, Service]) -> None:
    targets = [
        target
        for job in _prometheus_config()["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    ]
    assert ("exporter", PORTS["exporter"]) in {_address(target) for target in targets}
    for target in targets:
        host, port = _address(target)
        assert host in services and port == PORTS[host], target


def test_prometheus_sends_alerts_to_the_alertmanager_service(
    services: dict[str, Service],
) -> None:
    managers = _prometheus_config()["alerting"]["alertmanagers"]
    targets = [target for manager in managers for static in manager["static_configs"]
               for target in static["targets"]]  # fmt: skip
    assert {_address(target) for target in targets} == {("alertmanager", PORTS["alertmanager"])}


def test_prometheus_reads_its_config_and_rules_from_the_repository(
    services: dict[str, Service],
) -> None:
    prometheus = services["prometheus"]
    config_path = _host_path(prometheus, _flag(prometheus["command"], "--config.file"))
    assert config_path == ROOT / "prometheus" / "prometheus.yml"
    for pattern in _prometheus_config()["rule_files"]:
        assert list(config_path.parent.glob(pattern)), pattern
    storage = _flag(prometheus["command"], "--storage.tsdb.path")
    in_volume = [target for source, target in _mounts(prometheus) if not source.startswith(".")]
    assert storage in in_volume, "the TSDB must live in a volume"


def test_alertmanager_reads_its_config_from_the_repository(services: dict[str, Service]) -> None:
    alertmanager = services["alertmanager"]
    path = _host_path(alertmanager, _flag(alertmanager["command"], "--config.file"))
    assert path == ROOT / "alertmanager" / "alertmanager.yml"
    if not path.is_file():
        pytest.skip("alertmanager/alertmanager.yml does not exist yet")


def _secret_files(config: Any) -> list[str]:
    """Every `*_file` setting of an Alertmanager config (webhook URLs, passwords)."""
    if isinstance(config, dict):
        found = [value for key, value in config.items()
                 if key.endswith("_file") and isinstance(value, str)]  # fmt: skip
        return found + [path for value in config.values() for path in _secret_files(value)]
    if isinstance(config, list):
        return [path for value in config for path in _secret_files(value)]
    return []


def test_the_slack_url_comes_from_a_git_ignored_file_in_a_mounted_directory(
    services: dict[str, Service],
) -> None:
    path = ROOT / "alertmanager" / "alertmanager.yml"
    if not path.is_file():
        pytest.skip("alertmanager/alertmanager.yml does not exist yet")
    secrets = _secret_files(yaml.safe_load(path.read_text()))
    assert secrets, "the Slack webhook URL must come from a file, not the config"
    for secret in secrets:
        host = _host_path(services["alertmanager"], secret)
        assert host is not None, f"{secret} is not inside a mounted directory"
        relative = host.relative_to(ROOT)
        ignored = subprocess.run(["git", "check-ignore", "-q", str(relative)], cwd=ROOT)
        assert ignored.returncode == 0, f"{relative} must be git-ignored: it holds a secret"
    # No compose `secrets:` entry: a missing secret file would stop `docker compose up`.
    assert "secrets" not in services["alertmanager"]


@pytest.mark.integration
def test_alertmanager_starts_without_the_slack_secret_file(
    alertmanager_factory: AlertmanagerFactory,
) -> None:
    config = (ROOT / "alertmanager" / "alertmanager.yml").read_text()
    for secret in _secret_files(yaml.safe_load(config)):
        assert not Path(secret).exists(), f"{secret} exists here: the test would prove nothing"
    server = alertmanager_factory(config)  # waits until /-/ready answers
    assert server.alerts() == []


# --- Grafana ---


def test_grafana_datasources_point_at_the_services(services: dict[str, Service]) -> None:
    by_type = {source["type"]: source for source in _datasources()}
    assert _address(by_type["prometheus"]["url"]) == ("prometheus", PORTS["prometheus"])
    assert _address(by_type["alertmanager"]["url"]) == ("alertmanager", PORTS["alertmanager"])


def test_grafana_rate_interval_matches_the_scrape_interval() -> None:
    prometheus = next(source for source in _datasources() if source["type"] == "prometheus")
    scrape_interval = _prometheus_config()["global"]["scrape_interval"]
    assert prometheus["jsonData"]["timeInterval"] == scrape_interval


def test_grafana_provisions_the_datasources_and_dashboards(services: dict[str, Service]) -> None:
    grafana = services["grafana"]
    assert _host_path(grafana, "/etc/grafana/provisioning") == ROOT / "grafana" / "provisioning"
    provider_file = ROOT / "grafana" / "provisioning" / "dashboards" / "orchestrator.yml"
    [provider] = yaml.safe_load(provider_file.read_text())["providers"]
    assert _host_path(grafana, provider["options"]["path"]) == ROOT / "grafana" / "dashboards"


def test_grafana_home_is_the_fleet_overview(services: dict[str, Service]) -> None:
    grafana = services["grafana"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    path = _host_path(grafana, home)
    assert path is not None and path.is_file(), home
    assert yaml.safe_load(path.read_text())["uid"] == "orchestrator-fleet"
