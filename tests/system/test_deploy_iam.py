"""deploy/iam: the policies grant exactly what the code calls. Every S3/SQS call is found in
the source, then made for real against moto with a recorder on the clients, so each lands
in the right policy on the right ARN."""

from __future__ import annotations

import ast
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.session
import pytest
import yaml
from botocore import xform_name
from botocore.client import BaseClient

from replicator import clients as clients_module
from replicator.service import Service

from ..conftest import World
from .deploy import IAM, REPO

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
    (``self._client.put_object(...)``, or ``partial(self._client.list_objects_v2, ...)``:
    a method taken to be called later counts too); the recorded run below catches any other.
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
            if not isinstance(node, ast.Attribute) or node.attr.startswith("_"):
                continue
            receiver = node.value
            name = receiver.attr if isinstance(receiver, ast.Attribute) else \
                receiver.id if isinstance(receiver, ast.Name) else ""
            if not name.lower().endswith("client") or node.attr in not_operations:
                continue
            where = f"{path.relative_to(REPO)}:{node.lineno}"
            candidates = operations.get(node.attr, [])
            assert len(candidates) == 1, f"{where}: {name}.{node.attr}() is not one S3/SQS operation"
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

    class RecordingSession(clients_module.AioSession):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.register("before-parameter-build", recorder)

    monkeypatch.setattr(clients_module, "AioSession", RecordingSession)
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
