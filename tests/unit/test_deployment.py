"""The deployment files are valid and consistent, checked offline: docker-compose.yml
against the compose spec and against this code base, the Dockerfile's promises, and
the installed package carrying everything the services read at run time."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.config import Settings, describe_settings
from services.cli import main as modelops_cli

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SPEC: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
SERVICES: dict[str, Any] = SPEC["services"]
OURS = [name for name, s in SERVICES.items() if s.get("image") == "modelops:latest"]
SECRETS = (
    "MODELOPS_API_KEY",
    "MODELOPS_FLOWER_BASIC_AUTH",
    "MODELOPS_ALERT_WEBHOOK_SECRET",
    "POSTGRES_PASSWORD",
)


def _env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines())
    return {k.strip(): v.strip() for k, v in (p for p in pairs if len(p) == 2)
            if not k.lstrip().startswith("#")}  # fmt: skip


def test_compose_file_matches_the_compose_spec():
    checker = Path(sys.executable).with_name("check-jsonschema")
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dependencies_and_volumes_are_declared():
    volumes = set(SPEC["volumes"])
    for name, service in SERVICES.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in volumes, f"{name} mounts undeclared volume {source}"
    for name in OURS:  # one shared volume holds var/ for every ModelOps process
        assert "modelops-var:/var/lib/modelops" in SERVICES[name]["volumes"], name


def _check_command(argv: list[str]) -> None:
    """The program exists in the image and every module it names exists here."""
    program = argv[0]
    if program == "celery":
        module = importlib.import_module(argv[argv.index("-A") + 1])
        assert hasattr(module, "app"), f"{module.__name__} has no Celery app"
        assert argv[argv.index("-A") + 2] in {"worker", "beat", "flower"}
    elif program == "python":
        assert argv[1] == "-m", argv
        spec = importlib.util.find_spec(argv[2])
        assert spec and spec.origin, argv[2]
        assert re.search(r"^def main\b", Path(spec.origin).read_text(), re.M), argv
    elif program == "modelops":
        assert argv[1] in modelops_cli.commands, f"no `modelops {argv[1]}`"
    else:
        raise AssertionError(f"unexpected program {program!r} in {argv}")


@pytest.mark.parametrize("name", OURS)
def test_every_service_command_names_something_that_exists(name):
    _check_command(SERVICES[name]["command"])


def test_the_roles_are_as_designed():
    commands = {name: " ".join(s.get("command", [])) for name, s in SERVICES.items()}
    assert "-Q training,default" in commands["worker"]
    assert "ports" not in SERVICES["worker"]  # scalable: --scale worker=N
    assert "container_name" not in SERVICES["worker"]
    assert SERVICES["beat"].get("deploy", {}).get("replicas", 1) == 1
    assert "--appendonly yes --appendfsync everysec" in commands["redis"]
    assert SERVICES["redis"]["healthcheck"]["test"][-1] == "ping"
    assert "--basic-auth" not in commands["flower"]  # never on a command line
    flower_env = SERVICES["flower"]["environment"]
    assert flower_env["FLOWER_BASIC_AUTH"].startswith("${MODELOPS_FLOWER_BASIC_AUTH:?")
    for name in ("api", "flower"):  # published on loopback unless configured
        assert all(
            p.startswith("${MODELOPS_PUBLISH_ADDRESS:-127.0.0.1}:")
            for p in SERVICES[name]["ports"]
        )


def test_secrets_come_from_the_environment_with_no_default():
    text = COMPOSE.read_text()
    for name in SECRETS:
        for found in re.findall(rf"\${{{name}([^}}]*)}}", text):
            assert found.startswith(":?"), f"{name} has a default: {found}"
    for service in SERVICES.values():
        environment = service.get("environment", {})
        for name in SECRETS:
            value = environment.get(name)
            assert value is None or value.startswith("${" + name + ":?"), name


def test_every_modelops_variable_is_a_setting_the_services_accept():
    """The services refuse unknown MODELOPS_* variables at start-up: none here."""
    settings = {env_name for env_name, *_ in describe_settings()}
    for name in OURS:
        passed = {k for k in SERVICES[name]["environment"] if k.startswith("MODELOPS_")}
        assert passed <= settings, f"{name}: unknown {passed - settings}"


def test_sqlite_by_default_and_the_postgres_profile_switches_the_database():
    default = SERVICES["api"]["environment"]["MODELOPS_DATABASE_URL"]
    assert default.endswith(":-sqlite:////var/lib/modelops/modelops.db}")
    assert SERVICES["postgres"]["profiles"] == ["postgres"]
    switch = _env_file(ROOT / "deploy/postgres.env")
    assert switch["COMPOSE_PROFILES"] == "postgres"
    url = switch["MODELOPS_DATABASE_URL"]
    assert url.startswith("postgresql+psycopg://modelops:${POSTGRES_PASSWORD:?")
    assert url.endswith("@postgres:5432/modelops")
    resolved = url.replace(url[url.index("${") : url.index("}") + 1], "secret")
    assert Settings(database_url=resolved).is_sqlite is False
    postgres = SERVICES["init"]["depends_on"]["postgres"]
    assert postgres == {"condition": "service_healthy", "required": False}


def test_the_monitoring_profile_scrapes_the_prometheus_endpoint(tmp_path):
    from services.api.app import create_app

    prometheus = SERVICES["prometheus"]
    assert prometheus["profiles"] == ["monitoring"]
    config = yaml.safe_load((ROOT / "deploy/prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    assert job["static_configs"][0]["targets"] == ["api:8000"]
    routes = {
        rule.rule
        for rule in create_app(Settings(home="/nonexistent-home")).url_map.iter_rules()
    }
    assert job["metrics_path"] in routes


def test_the_dockerfile_runs_as_a_user_on_python_3_11_slim_with_npm_assets():
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert stages[-1] == "python:3.11-slim"
    assert "npm ci" in text and "package-lock.json" in text
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in {"root", "0"}
    assert re.search(r"pip install '\.\[postgres\]'", text)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "var"} <= set(ignored)


def test_the_installed_package_carries_templates_assets_and_migrations(tmp_path):
    """What a non-editable install (the Docker image) serves and migrates from."""
    source = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("common", "services", "dashboard"):
        shutil.copytree(ROOT / name, source / name, ignore=skip)
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path / "dist"), str(source)],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    # `make run` installs the package first: setuptools must have nothing to say
    assert "Warning" not in built.stdout + built.stderr, built.stderr
    [wheel] = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        "services/api/serve.py",
        "services/api/blueprints/templates/docs.html",
        "dashboard/templates/index.html",
        "dashboard/static/dashboard.css",
        *(f"dashboard/static/js/{p.name}"
          for p in (ROOT / "dashboard/static/js").glob("*.js")),
        *(f"common/storage/migrations/versions/{p.name}"
          for p in (ROOT / "common/storage/migrations/versions").glob("*.py")),
    }  # fmt: skip
    if (ROOT / "dashboard/node_modules").is_dir():  # `make install` puts them there
        expected |= {
            "dashboard/node_modules/chart.js/dist/chart.umd.js",
            "dashboard/node_modules/swagger-ui-dist/swagger-ui-bundle.js",
        }
    assert expected <= names, sorted(expected - names)
