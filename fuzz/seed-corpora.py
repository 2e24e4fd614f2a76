#!/usr/bin/env python3
"""Writes fuzz/corpus/<target>/ (the committed seed corpora) from tests/fixtures/ and
from hand-made examples of the agent's requests and OCI's JSON.

Run from anywhere: python3 fuzz/seed-corpora.py. Files are named after what they hold;
the script only adds and overwrites, so inputs libFuzzer found (kept by `cargo fuzz cmin`)
stay."""
import json
import pathlib
import re

FUZZ = pathlib.Path(__file__).resolve().parent
FIXTURES = FUZZ.parent / "tests" / "fixtures"
CORPUS = FUZZ / "corpus"


def put(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


# Slurm's own output, every captured version and state.
hostlists = set()
for version in sorted(FIXTURES.glob("slurm-*")):
    for f in sorted(version.rglob("*")):
        if not f.is_file() or f.suffix in (".sh", ".md", ".conf", ".exitcode"):
            continue
        name = f"{version.name}-{f.parent.name}-{f.name}".replace("/", "-")
        text = f.read_bytes()
        stem = f.name
        targets = []
        if stem.startswith("scontrol-show-node"):
            targets = ["scontrol_nodes"]
        elif stem.startswith("scontrol-show-job"):
            targets = ["scontrol_jobs"]
        elif stem.startswith("scontrol-show-reservation"):
            targets = ["scontrol_reservations"]
        elif stem.startswith("scontrol-show-partition"):
            targets = ["scontrol_partitions"]
        elif stem.startswith("scontrol-show-topology"):
            targets = ["scontrol_topology"]
        elif stem.startswith("squeue-narrow"):
            targets = ["squeue_narrow"]
        elif stem.endswith(".json"):
            targets = ["slurm_json"]
        for t in targets:
            put(t, name, text)
        for m in re.finditer(rb"(?:NodeList|Nodes|\"nodes\")[=:] ?\"?([A-Za-z0-9_.,\[\]-]+)", text):
            hostlists.add(m.group(1).decode())
for i, h in enumerate(sorted(hostlists)):
    put("hostlist", f"fixture-{i:03}", h)
for i, h in enumerate([
    "node[001-003,7],gpu1,rack[1-2]-n[01-02]", "n[09-11]", "a[1-3]b[4-5]", "x", "n[0-18446744073709551615]",
    "n[1-65536]", "host-[00-99]", "n1,n01,n001", "[1-3]",
]):
    put("hostlist", f"example-{i:02}", h)

# Topologies beyond the captured ones: deeper trees, switches in a cycle, odd records.
for i, t in enumerate([
    "SwitchName=s1 Level=0 Nodes=n[1-2]\nSwitchName=s2 Level=0 Nodes=n[3-4]\n"
    "SwitchName=m1 Level=1 Switches=s[1-2]\nSwitchName=top Level=2 Switches=m1\n",
    "SwitchName=a Level=1 Switches=b\nSwitchName=b Level=1 Switches=a Nodes=n1\n",
    "BlockName=b1 BlockIndex=0 Nodes=gpu[001-018] BlockSize=18\nAggregatedBlock=b[1-2] Nodes=gpu[001-036]\n",
    "SwitchName=s1 Level=4294967296 Nodes=n1\n",
]):
    put("scontrol_topology", f"example-{i}", t)

# Durations as policies write them.
for i, d in enumerate(["90s", "10m", "6h", "1h30m", "0s", "2h0m5s", "999999999h"]):
    put("duration", f"example-{i}", d)

# The agent's validators: names, hostlists, reasons, hostile text.
for i, v in enumerate([
    "node001", "slurm-maint-node3-c1", "node[1-4],gpu1", "slurm-maint: nm-node2 attempt 1/3",
    "MAINT", "IGNORE_JOBS", "42", "007", "node1;rm -rf /", "$(reboot)", "n\u00f6de1", "-rf", ".hidden",
]):
    put("agent_validate", f"example-{i:02}", v)

# One request per route: byte 0 the route, byte 1 the length of the path parameter.
def request(route, param, body=b""):
    param = param.encode() if isinstance(param, str) else param
    body = json.dumps(body).encode() if not isinstance(body, bytes) else body
    return bytes([route, len(param)]) + param + body

reservation = {
    "name": "slurm-maint-node3-c1", "nodes": ["node[3-4]"], "start": "now",
    "durationMinutes": 60, "users": ["root"], "flags": ["MAINT", "IGNORE_JOBS"],
}
requests = {
    "snapshot": request(0, "batch"),
    "create-reservation": request(1, "", reservation),
    "create-reservation-later": request(1, "", {**reservation, "start": "2030-01-01T00:00:00Z", "accounts": ["ops"]}),
    "update-reservation": request(2, "slurm-maint-node3-c1", {"durationMinutes": 30, "nodes": ["node3"]}),
    "update-reservation-start": request(2, "slurm-maint-node3-c1", {"start": "now"}),
    "delete-reservation": request(3, "slurm-maint-node3-c1"),
    "drain": request(4, "node1", {"reason": "kernel update"}),
    "resume": request(5, "node2"),
    "clear-reason": request(6, "node6"),
    "reboot": request(7, "node1", {"reason": "kernel update", "nextState": "RESUME"}),
    "reboot-site": request(0x80 | 7, "node1", {"reason": "kernel update"}),
    "health": request(8, "node1"),
    "health-site": request(0x80 | 8, "node1"),
    "cancel": request(9, "3"),
    "hostile-node": request(4, "node1;reboot", {"reason": "x"}),
    "nul-node": request(5, b"node\x001"),
}
for name, data in requests.items():
    put("agent_requests", name, data)

# OCI's JSON, as its API returns it.
event = {
    "id": "ocid1.instancemaintenanceevent.oc1.phx.abc", "instanceId": "ocid1.instance.oc1.phx.i1",
    "compartmentId": "ocid1.compartment.oc1..c1", "maintenanceCategory": "EMERGENCY",
    "maintenanceReason": "HARDWARE_REPLACEMENT", "instanceAction": "REBOOT_MIGRATION",
    "alternativeResolutionActions": ["REBOOT_MIGRATION", "TERMINATE"],
    "timeWindowStart": "2026-12-05T10:00:00.000Z", "timeCreated": "2026-12-01T10:00:00Z",
    "canReschedule": True, "lifecycleState": "SCHEDULED", "createdBy": "SYSTEM",
    "displayName": "maintenance", "startWindowDuration": "PT2H", "estimatedDuration": "PT30M",
    "timeHardDueDate": "2026-12-20T00:00:00Z",
    "additionalDetails": {"faultDetails": json.dumps([{"faultId": "HPCRDMA-0002-02", "customerDescription": "RDMA link"}])},
    "freeformTags": {"a": "b"}, "definedTags": {"ns": {"k": 1.5}},
}
work_request = {
    "id": "ocid1.coreservicesworkrequest.oc1.phx.w1", "operationType": "UpdateInstanceMaintenanceEvent",
    "status": "SUCCEEDED", "compartmentId": "ocid1.compartment.oc1..c1", "percentComplete": 100.0,
    "resources": [{"entityType": "instance", "actionType": "UPDATED", "identifier": "ocid1.instance.oc1.phx.i1"}],
    "timeAccepted": "2026-12-01T10:00:00Z",
}
for name, value in {
    "event": event, "events": [event, {**event, "additionalDetails": {"faultDetails": "{not json"}}],
    "update": {"timeWindowStart": "2026-12-06T10:00:00Z", "alternativeResolutionAction": "TERMINATE"},
    "instance": {"id": "ocid1.instance.oc1.phx.i1", "compartmentId": "c", "availabilityDomain": "AD-1",
                 "displayName": "node1", "lifecycleState": "RUNNING", "freeformTags": {"slurm-node": "node1"}},
    "work-request": work_request,
    "work-request-errors": [{"code": "InternalError", "message": "x", "timestamp": "2026-12-01T10:00:00Z"}],
    "work-request-logs": [{"message": "started", "timestamp": "2026-12-01T10:00:00Z"}],
    "compartments": [{"id": "ocid1.compartment.oc1..c1", "name": "hpc", "lifecycleState": "ACTIVE"}],
}.items():
    put("oci_models", name, json.dumps(value))

# Signature headers, dates, JWTs and config files.
for name, text in {
    "authorization": 'Signature version="1",headers="date (request-target) host",keyId="ocid1.tenancy.oc1..t/ocid1.user.oc1..u/aa:bb",algorithm="rsa-sha256",signature="c2lnbmF0dXJl"',
    "authorization-defaults": 'Signature keyId="k",signature="AAAA"',
    "date": "Thu, 03 Dec 2026 11:48:35 GMT",
    "jwt": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4IiwiZXhwIjoxODAwMDAwMDAwfQ.c2ln",
    "config": "[DEFAULT]\nuser=ocid1.user.oc1..u\nfingerprint=aa:bb\nkey_file=~/.oci/key.pem\ntenancy=ocid1.tenancy.oc1..t\nregion=us-phoenix-1\n\n[OTHER]\nuser = x # comment\n",
}.items():
    put("oci_signature", name, text)
