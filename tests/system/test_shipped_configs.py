"""Every configuration the project ships loads with the daemon's own loader.

Shipped means: the files in ``config/``, the files the Kubernetes kustomizations
turn into ConfigMaps, any ConfigMap in ``deploy/`` that embeds a configuration,
and the ConfigMaps ``kubectl kustomize`` actually builds. A configuration that
does not load makes its pods exit 2 and crash-loop, so each one is loaded here
with ``Config.load`` (``${VAR}`` references set, as the deployment would).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from replicator.config import Config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _yaml_files(*dirs: Path) -> list[Path]:
    return sorted(p for d in dirs for p in d.rglob("*") if p.suffix in (".yaml", ".yml"))


def _docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def _looks_like_a_config(doc: Any) -> bool:
    return isinstance(doc, dict) and "source" in doc and "regions" in doc


def _kustomizations() -> list[Path]:
    return sorted(DEPLOY.rglob("kustomization.yaml"))


def _generated(kustomization: Path) -> list[Path]:
    """The files a kustomization's configMapGenerators embed (``key=file`` or ``file``)."""
    k = yaml.safe_load(kustomization.read_text(encoding="utf-8"))
    return [kustomization.parent / entry.rpartition("=")[2]
            for generator in k.get("configMapGenerator", ()) for entry in generator.get("files", ())]


def _configmap_configs(docs: list[Any]) -> dict[str, str]:
    """``name/key`` -> text, for every ConfigMap value that is a replicator configuration."""
    out = {}
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "ConfigMap":
            for key, text in (doc.get("data") or {}).items():
                if _looks_like_a_config(yaml.safe_load(text)):
                    out[f"{doc['metadata']['name']}/{key}"] = text
    return out


def shipped_files() -> list[Path]:
    files = set(ROOT.joinpath("config").glob("*.yaml"))
    files.update(p for k in _kustomizations() for p in _generated(k))
    return sorted(files)


def embedded() -> dict[str, str]:
    """Configurations written inside ConfigMap manifests under deploy/ (not generated ones)."""
    out = {}
    for path in _yaml_files(DEPLOY):
        for name, text in _configmap_configs(_docs(path)).items():
            out[f"{path.relative_to(ROOT)}:{name}"] = text
    return out


def load(path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    """Config.load, with every ``${VAR}`` the file references set as its deployment would."""
    for name in _ENV_REF.findall(path.read_text(encoding="utf-8")):
        monkeypatch.setenv(name, f"value-of-{name}")
    return Config.load(path)


def test_every_file_that_looks_like_a_config_is_covered() -> None:
    """A configuration added under config/ or deploy/ is loaded below without editing this file."""
    covered = set(shipped_files())
    for path in _yaml_files(ROOT / "config", DEPLOY):
        if any(_looks_like_a_config(doc) for doc in _docs(path)):
            assert path in covered, f"{path.relative_to(ROOT)}: a configuration no test loads"
    assert {p.relative_to(ROOT).as_posix() for p in covered} >= {
        "config/example.yaml", "config/local.yaml", "config/local-events.yaml",
        "deploy/kubernetes/base/replicator.yaml",
        "deploy/kubernetes/overlays/events-mode/replicator.yaml"}


@pytest.mark.parametrize("path", shipped_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_shipped_config_loads(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load(path, monkeypatch)
    assert config.regions, path


@pytest.mark.parametrize("name", sorted(embedded()) or [None])
def test_configmap_embedded_config_loads(name: str | None, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    if name is None:
        pytest.skip("no ConfigMap under deploy/ embeds a configuration (they are generated)")
    path = tmp_path / "config.yaml"
    path.write_text(embedded()[name], encoding="utf-8")
    load(path, monkeypatch)


@pytest.mark.parametrize("directory", [k.parent for k in _kustomizations()],
                         ids=lambda d: d.relative_to(DEPLOY).as_posix())
def test_built_configmaps_load(directory: Path, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    """What the pods actually read: the ConfigMaps kustomize builds."""
    if shutil.which("kubectl"):
        cmd = ["kubectl", "kustomize", str(directory)]
    elif shutil.which("kustomize"):
        cmd = ["kustomize", "build", str(directory)]
    else:
        pytest.skip("neither kubectl nor kustomize is installed: the built ConfigMaps are not loaded")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    configs = _configmap_configs([d for d in yaml.safe_load_all(proc.stdout) if d])
    assert configs, f"{directory.relative_to(ROOT)} builds no ConfigMap holding a configuration"
    for name, text in configs.items():
        path = tmp_path / name.replace("/", "_")
        path.write_text(text, encoding="utf-8")
        load(path, monkeypatch)


def test_the_events_overlay_runs_the_events_feed(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load(DEPLOY / "kubernetes" / "overlays" / "events-mode" / "replicator.yaml", monkeypatch)
    assert config.feed.kind == "events" and config.feed.queue
    policy = (DEPLOY / "iam" / "source-policy.json").read_text(encoding="utf-8")
    assert f":{config.feed.queue}\"" in policy, "the IAM policy grants the SQS actions on that queue"
