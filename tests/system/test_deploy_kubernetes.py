"""deploy/kubernetes: the manifests pass the Kubernetes schemas (kubernetes-validate), before
and after kustomize, and run the daemon as its config and image say; the Prometheus Operator
resources, which are CRDs, are checked field by field."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from replicator.config import Config

from .deploy import (
    ALERTS,
    BASE,
    CRD_KINDS,
    DOCKERFILE,
    K8S_VERSION,
    OVERLAY,
    Stage,
    dockerfile_stages,
    exec_form,
    load_yaml_docs,
)


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))


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
    role = objects["ServiceAccount"]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+", role), role

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
