"""deploy/: the compose file (PyYAML), the systemd units (configparser) and the Dockerfile say
what the README promises: every Procfile process runs, Redis keeps queued tasks (AOF,
noeviction), Flower needs its password, nothing runs as root, everything restarts. Where the
tools exist, ``systemd-analyze verify`` and ``docker compose config`` check them too."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support.missing import missing

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = DEPLOY / "systemd"
ONE_SHOT = {"migrate", "rrr-migrate"}  # Procfile `release:` runs once, then exits


def command_key(argv: list[str]) -> tuple[str, ...]:
    """What a command runs, without its options: ``rrr flower --port $PORT`` -> (rrr, flower),
    ``celery -A tasks beat --loglevel=INFO`` -> (celery, beat)."""
    key: list[str] = []
    skip_next = False
    for token in argv:
        if skip_next:
            skip_next = False
        elif token.startswith("-"):
            skip_next = "=" not in token
        else:
            key.append(Path(token).name if not key else token)
    return tuple(key)


def test_command_key() -> None:
    assert command_key(["rrr", "flower", "--address", "0.0.0.0", "--port", "5555"]) == (
        "rrr",
        "flower",
    )
    assert command_key(["/opt/rrr/bin/celery", "-A", "tasks", "beat", "--loglevel=INFO"]) == (
        "celery",
        "beat",
    )
    assert command_key(["rrr", "worker", "ingest"]) == ("rrr", "worker", "ingest")
    assert command_key(["celery", "--app=tasks", "beat"]) == ("celery", "beat")  # value inline


def procfile() -> dict[str, tuple[str, ...]]:
    out = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            out[name.strip()] = command_key(shlex.split(command))
    return out


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return loaded


def service_argv(service: dict[str, Any]) -> list[str]:
    entrypoint = service.get("entrypoint", ["rrr"])  # the image's ENTRYPOINT
    return [*entrypoint, *service.get("command", [])]


def units() -> dict[str, configparser.ConfigParser]:
    parsed = {}
    for path in sorted(UNITS.glob("*.service")):
        unit = configparser.ConfigParser(strict=False, interpolation=None)
        unit.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
        unit.read(path)
        parsed[path.stem] = unit
    return parsed


def test_every_procfile_process_has_a_compose_service_and_a_unit() -> None:
    services = {command_key(service_argv(s)): name for name, s in compose()["services"].items()}
    by_unit = {
        command_key(shlex.split(u["Service"]["ExecStart"])): name for name, u in units().items()
    }
    for process, key in procfile().items():
        assert key in services, f"Procfile {process}: {key} has no compose service"
        assert key in by_unit, f"Procfile {process}: {key} has no systemd unit"
    assert services[("rrr", "worker", "ingest")] == "worker"  # `--scale worker=4`


def test_redis_keeps_queued_tasks() -> None:
    command = compose()["services"]["redis"]["command"]
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--appendonly"] == "yes"
    assert options["--maxmemory-policy"] == "noeviction"
    assert compose()["services"]["redis"]["volumes"]  # the AOF outlives the container


def test_flower_needs_its_password_and_listens_on_loopback_only() -> None:
    flower = compose()["services"]["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    assert all(port.startswith("127.0.0.1:") for port in flower["ports"])
    unit = units()["rrr-flower"]["Service"]
    assert unit["EnvironmentFile"] == "/etc/rrr/rrr.env"  # where FLOWER_BASIC_AUTH lives


def test_every_long_running_process_restarts() -> None:
    for name, service in compose()["services"].items():
        expected = "no" if name in ONE_SHOT else "unless-stopped"
        assert service.get("restart") == expected, name
    for name, unit in units().items():
        if name in ONE_SHOT:
            assert unit["Service"]["Type"] == "oneshot"
        else:
            assert unit["Service"]["Restart"] in ("always", "on-failure"), name
            assert float(unit["Service"]["RestartSec"]) > 0, name


def test_workers_scale_and_the_stream_keeps_its_journal() -> None:
    services = compose()["services"]
    for name in ("worker", "backfill"):  # a published host port would clash on --scale
        assert "ports" not in services[name] and "container_name" not in services[name]
        assert services[name]["environment"]["PROMETHEUS_MULTIPROC_DIR"]
    assert any(v.endswith(":/var/lib/rrr/var") for v in services["stream"]["volumes"])
    for name in ("rrr-ingest", "rrr-backfill"):
        service = units()[name]["Service"]
        assert service["KillMode"] == "mixed"  # SIGTERM to Celery's main process: warm stop
        assert int(service["TimeoutStopSec"]) > 300  # past the soft time limit
    assert units()["rrr-stream"]["Service"]["RestartPreventExitStatus"] == "3"  # refused key


def test_units_run_as_rrr() -> None:
    for name, unit in units().items():
        assert unit["Service"]["User"] == "rrr", name


def test_dockerfile_is_multi_stage_and_not_root() -> None:
    lines = [line.strip() for line in (DEPLOY / "Dockerfile").read_text().splitlines()]
    assert sum(line.startswith("FROM ") for line in lines) >= 2
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert 'ENTRYPOINT ["rrr"]' in lines


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """The units as systemd reads them, binaries pointed at this checkout's venv."""
    if shutil.which("systemd-analyze") is None:
        missing("systemd-analyze not installed (apt-get install systemd)")
    bin_dir = Path(shutil.which("rrr") or ROOT / ".venv" / "bin" / "rrr").parent
    for path in UNITS.iterdir():
        text = path.read_text().replace("/opt/rrr/bin/", f"{bin_dir}/")
        (tmp_path / path.name).write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *sorted(str(p) for p in tmp_path.iterdir())],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


def compose_command() -> list[str] | None:
    """``docker compose`` (the v2 plugin) or ``docker-compose`` (v1), whichever is installed."""
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, timeout=30, check=False
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy is not None else None


def test_docker_compose_config(tmp_path: Path) -> None:
    """Compose's own reading of the file, with the .env a user makes from env.example."""
    command = compose_command()
    if command is None:
        missing("docker compose (or docker-compose) not installed (apt-get install docker-compose)")
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy, ignore=shutil.ignore_patterns(".env"))
    shutil.copy(copy / "env.example", copy / ".env")
    result = subprocess.run(
        [*command, "-f", str(copy / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=copy,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin"},
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
