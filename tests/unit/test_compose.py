"""docker-compose.yml is valid against the compose spec (offline) and consistent:
no Docker engine is needed to check what it would run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"


def test_compose_file_matches_the_compose_spec():
    checker = Path(sys.executable).with_name("check-jsonschema")
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dependencies_and_volumes_are_declared_and_commands_are_ours():
    spec = yaml.safe_load(COMPOSE.read_text())
    services, volumes = spec["services"], set(spec["volumes"])
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            assert source in volumes, f"{name} mounts undeclared volume {source}"
    commands = {name: " ".join(s.get("command", [])) for name, s in services.items()}
    assert "services.worker.celery_app worker" in commands["worker"]
    assert "-Q training,default" in commands["worker"]
    assert "services.scheduler.beat beat" in commands["beat"]
    assert "--basic-auth=${MODELOPS_FLOWER_BASIC_AUTH}" in commands["flower"]
    assert "services.api.wsgi:app" in commands["api"]
    assert (ROOT / "services/api/gunicorn.conf.py").is_file()
    assert "--appendonly yes" in commands["redis"]
    assert "ports" not in services["worker"]  # scalable: --scale worker=N
