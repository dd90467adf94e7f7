"""What the deploy tests share: where the artifacts are, and the Dockerfile read as stages.

deploy/ and docs/operations.md are the artifacts ops teams install; each is checked as its
own tools would, in a module of its own: test_deploy_container.py, test_deploy_systemd.py,
test_deploy_kubernetes.py, test_deploy_iam.py and test_deploy_runbook.py.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from replicator.config import Config

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "container" / "Dockerfile"
UNITS = DEPLOY / "systemd"
K8S = DEPLOY / "kubernetes"
BASE = K8S / "base"
OVERLAY = K8S / "overlays" / "events-mode"
IAM = DEPLOY / "iam"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
RUNBOOK = REPO / "docs" / "operations.md"
VENV_BIN = Path(sys.executable).parent
#: Where the docs and the unit files install the program.
INSTALLED = "/opt/replicator/bin/replicator"
#: The oldest Kubernetes the manifests target (PDB unhealthyPodEvictionPolicy is GA in 1.31).
K8S_VERSION = "1.31.0"
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def default_shutdown_grace() -> float:
    return float(Config.model_fields["shutdown_grace"].default)


# -- the Dockerfile, as stages of instructions -------------------------------------------------


@dataclass
class Stage:
    image: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def one(self, keyword: str) -> str:
        found = self.all(keyword)
        assert len(found) == 1, f"stage {self.name}: expected one {keyword}, found {found}"
        return found[0]


def dockerfile_stages(text: str) -> list[Stage]:
    """The Dockerfile's stages, ARGs before the first FROM substituted into FROM lines."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments and parser directives; inside a continuation too, as Docker does
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a line continuation"
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            image, *alias = re.split(r"\s+AS\s+", re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest),
                                     flags=re.IGNORECASE)
            stages.append(Stage(image.strip(), alias[0].strip() if alias else str(len(stages))))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, rest))
    return stages


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value
