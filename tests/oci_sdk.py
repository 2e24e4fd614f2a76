#!/usr/bin/env python3
"""Drives `slurm-maint oci-emulator` with the unmodified official OCI Python SDK.

Run by tests/oci_sdk.rs, which starts the emulator, makes the keys and the config files:

    python3 tests/oci_sdk.py --endpoint http://127.0.0.1:PORT --config CFG \
        --bad-config BADCFG --tenancy OCID --compartment OCID --fixed-event OCID

    python3 tests/oci_sdk.py --session-tokens --endpoint http://127.0.0.1:PORT ...

The second form checks the SDK's OKE workload identity and instance principal signers
(the environment points them at the emulator). Every check prints one line; the last
line is 'N passed, N failed'.
"""

import argparse
import base64
import email.utils
import json
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone

import oci

try:
    import requests
except ImportError:  # the SDK vendors it
    from oci._vendor import requests

RESULTS = {"passed": 0, "failed": 0}


def check(name, cond, detail=""):
    if cond:
        RESULTS["passed"] += 1
        print(f"ok   {name}")
    else:
        RESULTS["failed"] += 1
        print(f"FAIL {name} {detail}")


def expect_service_error(name, fn, statuses, code=None):
    try:
        fn()
    except oci.exceptions.ServiceError as e:
        ok = e.status in statuses and (code is None or e.code == code)
        check(name, ok and bool(e.request_id), f"got {e.status} {e.code} {e.message} rid={e.request_id}")
        return e
    check(name, False, "no ServiceError raised")
    return None


def advance(endpoint, seconds):
    req = urllib.request.Request(f"{endpoint}/_emulator/advance?seconds={seconds}", method="POST")
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def parse_authorization(value):
    assert value.startswith("Signature "), value
    params = {}
    for part in value[len("Signature "):].split('",'):
        k, _, v = part.partition("=")
        params[k.strip().lstrip(",")] = v.strip().strip('"')
    return params


def compare_with_rust(config, path):
    """The SDK's own signer, given the same request, produces the Rust signer's signature."""
    signer = oci.signer.Signer(config["tenancy"], config["user"], config["fingerprint"], config["key_file"])
    with open(path) as f:
        vectors = json.load(f)
    for v in vectors:
        body = v["body"].encode() if v["body"] is not None else None
        req = requests.Request(v["method"], v["url"], data=body, headers={"date": v["date"]}).prepare()
        signer(req)
        sdk = parse_authorization(req.headers["authorization"])
        rust = parse_authorization(v["authorization"])
        same = all(sdk.get(k) == rust.get(k) for k in ("headers", "keyId", "algorithm", "signature"))
        check(f"Rust signer == SDK signer: {v['method']} {v['url'][:60]}", same, f"sdk={sdk} rust={rust}")
        if v["method"] in ("PUT", "POST"):
            check(f"x-content-sha256 agrees: {v['method']}",
                  req.headers.get("x-content-sha256") == v["x-content-sha256"])


def jwt_claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def b64url_int(n):
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def emulator_state(endpoint):
    with urllib.request.urlopen(f"{endpoint}/_emulator/state") as r:
        return json.load(r)


def session_tokens(a):
    """OKE workload identity and instance principals, with the SDK's own signers, pointed
    at the emulator only through the SDK's environment variables and keyword arguments."""
    ep = a.endpoint

    # OKE workload identity: https://$KUBERNETES_SERVICE_HOST:12250 (reached through
    # HTTPS_PROXY), verified with OCI_KUBERNETES_SERVICE_ACCOUNT_CERT_PATH.
    oke = oci.auth.signers.get_oke_workload_identity_resource_principal_signer(
        service_account_token_path=a.sa_token_path)
    check("OKE signer: region from OCI_RESOURCE_PRINCIPAL_REGION", oke.region == a.region, oke.region)
    token = oke.get_security_token()
    claims = jwt_claims(token)
    public = oke.session_key_supplier.get_key_pair()["public"].public_numbers()
    jwk = json.loads(claims["jwk"])
    check("OKE token: jwk claim is the SDK's session key", jwk["n"] == b64url_int(public.n), jwk)
    check("OKE token: iat/exp", claims["exp"] - claims["iat"] == a.token_ttl, claims)
    compute = oci.core.ComputeClient({"region": oke.region}, signer=oke, service_endpoint=ep)
    events = oci.pagination.list_call_get_all_results(
        compute.list_instance_maintenance_events, a.compartment).data
    check("OKE token lists the events", len(events) == a.expect_events, len(events))
    oke.refresh_security_token()
    check("OKE refresh: a new token", oke.get_security_token() != token)
    check("OKE refreshed token works",
          len(compute.list_instance_maintenance_events(a.compartment).data) > 0)
    with open(a.sa_token_path) as f:
        sa = f.read().strip()
    forged = sa[: sa.rindex(".") + 1] + "d3Jvbmc"
    try:
        oci.auth.signers.get_oke_workload_identity_resource_principal_signer(
            service_account_token=forged, retry_strategy=oci.retry.NoneRetryStrategy())
        check("OKE: an unknown ServiceAccount token is refused", False, "no error")
    except oci.exceptions.ServiceError as e:
        check("OKE: an unknown ServiceAccount token is refused", e.status == 401, e)

    # Instance principals: OCI_METADATA_BASE_URL and the federation_endpoint argument.
    ip = oci.auth.signers.InstancePrincipalsSecurityTokenSigner(
        federation_endpoint=f"{ep}/v1/x509",
        federation_client_retry_strategy=oci.retry.NoneRetryStrategy())
    check("IP signer: tenancy from the leaf certificate", ip.tenancy_id == a.tenancy, ip.tenancy_id)
    check("IP signer: region from the metadata service", ip.region == a.region, ip.region)
    compute = oci.core.ComputeClient({"region": ip.region}, signer=ip, service_endpoint=ep)
    identity = oci.identity.IdentityClient({"region": ip.region}, signer=ip, service_endpoint=ep)
    events = oci.pagination.list_call_get_all_results(
        compute.list_instance_maintenance_events, a.compartment).data
    check("IP token lists the events", len(events) == a.expect_events, len(events))
    comps = identity.list_compartments(a.tenancy, compartment_id_in_subtree=True).data
    check("IP token lists compartments", len(comps) == a.expect_compartments, len(comps))
    old_token = ip.federation_client.security_token.security_token
    old_key = ip.federation_client.session_key_supplier.get_key_pair()["private"]
    check("IP token: ptype instance", jwt_claims(old_token).get("ptype") == "instance")

    # Past exp on the emulator's clock (the SDK's real clock still finds the token fresh):
    # the old token is refused, and the SDK's refresh-once-after-401 gets a new one.
    issued = emulator_state(ep)["tokensIssued"]
    advance(ep, a.token_ttl + 60)
    stale = oci.auth.signers.SecurityTokenSigner(old_token, old_key)
    raw = requests.get(f"{ep}/20160918/instanceMaintenanceEvents",
                       params={"compartmentId": a.compartment}, auth=stale)
    check("an expired token is refused with 401",
          raw.status_code == 401 and "expired" in raw.json().get("message", ""), raw.text[:200])
    events = compute.list_instance_maintenance_events(a.compartment).data
    check("the SDK refreshes after the 401 and lists again", len(events) > 0)
    check("a new token was federated",
          ip.federation_client.security_token.security_token != old_token
          and emulator_state(ep)["tokensIssued"] == issued + 1)


def main():
    if "--session-tokens" in sys.argv:
        ap = argparse.ArgumentParser()
        ap.add_argument("--session-tokens", action="store_true")
        ap.add_argument("--endpoint", required=True)
        ap.add_argument("--tenancy", required=True)
        ap.add_argument("--compartment", required=True)
        ap.add_argument("--region", required=True)
        ap.add_argument("--sa-token-path", required=True)
        ap.add_argument("--token-ttl", type=int, required=True)
        ap.add_argument("--expect-compartments", type=int, required=True)
        ap.add_argument("--expect-events", type=int, required=True)
        session_tokens(ap.parse_args())
        print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed")
        return 0 if RESULTS["failed"] == 0 else 1

    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--bad-config", required=True)
    ap.add_argument("--tenancy", required=True)
    ap.add_argument("--compartment", required=True)
    ap.add_argument("--fixed-event", required=True)
    ap.add_argument("--expect-compartments", type=int, required=True)
    ap.add_argument("--expect-events", type=int, required=True)
    ap.add_argument("--rust-vectors", help="JSON requests signed by the Rust signer, to re-sign with the SDK")
    a = ap.parse_args()

    config = oci.config.from_file(a.config)
    oci.config.validate_config(config)
    ep = a.endpoint
    compute = oci.core.ComputeClient(config, service_endpoint=ep)
    identity = oci.identity.IdentityClient(config, service_endpoint=ep)
    wrs = oci.work_requests.WorkRequestClient(config, service_endpoint=ep)

    # Identity: the subtree, paginated one by one; the tenancy itself is not listed.
    comps = oci.pagination.list_call_get_all_results(
        identity.list_compartments, a.tenancy,
        compartment_id_in_subtree=True, access_level="ANY", lifecycle_state="ACTIVE", limit=1,
    ).data
    ids = [c.id for c in comps]
    check("list_compartments subtree over pages", len(ids) == a.expect_compartments, ids)
    check("tenancy not in list_compartments", a.tenancy not in ids)
    check("compartments ACTIVE", all(c.lifecycle_state == "ACTIVE" for c in comps))

    # Compute: events over several pages.
    first = compute.list_instance_maintenance_events(a.compartment, limit=2)
    check("first page has opc-next-page", first.has_next_page and len(first.data) == 2,
          first.headers.get("opc-next-page"))
    events = oci.pagination.list_call_get_all_results(
        compute.list_instance_maintenance_events, a.compartment, limit=2).data
    check("list_instance_maintenance_events all pages", len(events) == a.expect_events, len(events))
    check("summaries are InstanceMaintenanceEventSummary",
          all(isinstance(e, oci.core.models.InstanceMaintenanceEventSummary) for e in events))
    check("enum values known to the SDK",
          all(e.lifecycle_state == "SCHEDULED" and e.maintenance_category != "UNKNOWN_ENUM_VALUE"
              and e.instance_action != "UNKNOWN_ENUM_VALUE" for e in events))
    check("lifecycle filter", len(compute.list_instance_maintenance_events(
        a.compartment, lifecycle_state="SUCCEEDED").data) == 0)
    by_instance = compute.list_instance_maintenance_events(a.compartment, instance_id=events[0].instance_id).data
    check("instance filter", [e.id for e in by_instance] == [events[0].id])

    # The SDK's own signer on a bare request: the wire has no additionalDetails in a list.
    signer = oci.signer.Signer(config["tenancy"], config["user"], config["fingerprint"], config["key_file"])
    raw = requests.get(f"{ep}/20160918/instanceMaintenanceEvents",
                       params={"compartmentId": a.compartment}, auth=signer)
    check("raw list signed by oci.signer.Signer", raw.status_code == 200, raw.text[:200])
    check("summaries lack additionalDetails on the wire",
          isinstance(raw.json(), list) and all("additionalDetails" not in e for e in raw.json()))
    skewed = requests.get(f"{ep}/20160918/instanceMaintenanceEvents", params={"compartmentId": a.compartment},
                          headers={"date": email.utils.formatdate(time.time() - 600, usegmt=True)}, auth=signer)
    check("a date 10 min off is refused with 401 NotAuthenticated",
          skewed.status_code == 401 and skewed.json().get("code") == "NotAuthenticated"
          and bool(skewed.headers.get("opc-request-id")), skewed.text[:200])

    # Get: additionalDetails with faultDetails (a JSON string holding a list), etag.
    target = next(e for e in events if e.can_reschedule and e.id != a.fixed_event)
    got = compute.get_instance_maintenance_event(target.id)
    details = got.data.additional_details or {}
    faults = json.loads(details.get("faultDetails", "[]"))
    check("get has additionalDetails.faultDetails", isinstance(faults, list) and faults
          and faults[0].get("faultId"), details)
    check("get has an etag", bool(got.headers.get("etag")))
    check("get is an InstanceMaintenanceEvent", isinstance(got.data, oci.core.models.InstanceMaintenanceEvent))

    # Instances.
    inst = compute.get_instance(target.instance_id).data
    check("get_instance", inst.id == target.instance_id and inst.lifecycle_state == "RUNNING")
    reset = compute.instance_action(target.instance_id, "SOFTRESET")
    check("instance_action SOFTRESET", reset.data.id == target.instance_id)

    # Update (reschedule) → work request → event lifecycle.
    window = datetime.now(timezone.utc) + timedelta(seconds=30)
    upd = compute.update_instance_maintenance_event(
        target.id,
        oci.core.models.UpdateInstanceMaintenanceEventDetails(
            time_window_start=window, freeform_tags={"slurm-maint": "scheduled"}),
        if_match=got.headers["etag"], opc_retry_token="sdk-proof-1")
    wr_id = upd.headers.get("opc-work-request-id")
    check("update returns opc-work-request-id", bool(wr_id), upd.headers)
    seen = []
    wr = None
    for _ in range(200):
        wr = wrs.get_work_request(wr_id).data
        if not seen or seen[-1] != wr.status:
            seen.append(wr.status)
        if wr.status in ("SUCCEEDED", "FAILED", "CANCELED"):
            break
        advance(ep, 0.5)
    check("work request ACCEPTED→IN_PROGRESS→SUCCEEDED", seen == ["ACCEPTED", "IN_PROGRESS", "SUCCEEDED"], seen)
    check("work request resources name the event",
          wr is not None and any(r.identifier == target.id for r in wr.resources))
    logs = wrs.list_work_request_logs(wr_id).data
    errs = wrs.list_work_request_errors(wr_id).data
    check("work request logs and no errors", len(logs) >= 3 and len(errs) == 0)
    states = []
    for _ in range(300):
        ev = compute.get_instance_maintenance_event(target.id).data
        if not states or states[-1] != ev.lifecycle_state:
            states.append(ev.lifecycle_state)
        if ev.lifecycle_state in ("SUCCEEDED", "FAILED", "CANCELED"):
            break
        advance(ep, 1)
    check("event SCHEDULED→STARTED→PROCESSING→SUCCEEDED",
          states == ["SCHEDULED", "STARTED", "PROCESSING", "SUCCEEDED"], states)
    check("event kept the freeform tag", ev.freeform_tags.get("slurm-maint") == "scheduled")
    check("event has timeStarted/timeFinished", ev.time_started is not None and ev.time_finished is not None)

    # Rejections.
    other = next(e for e in events if e.can_reschedule and e.id not in (target.id, a.fixed_event))
    full = compute.get_instance_maintenance_event(other.id).data
    late = full.time_hard_due_date + timedelta(days=1)
    expect_service_error(
        "window past timeHardDueDate refused",
        lambda: compute.update_instance_maintenance_event(
            other.id, oci.core.models.UpdateInstanceMaintenanceEventDetails(time_window_start=late)),
        (400, 409))
    expect_service_error(
        "canReschedule=false refused",
        lambda: compute.update_instance_maintenance_event(
            a.fixed_event, oci.core.models.UpdateInstanceMaintenanceEventDetails(
                time_window_start=datetime.now(timezone.utc) + timedelta(hours=1))),
        (400, 409))
    expect_service_error(
        "stale if-match refused",
        lambda: compute.update_instance_maintenance_event(
            other.id, oci.core.models.UpdateInstanceMaintenanceEventDetails(display_name="x"),
            if_match='"stale"'),
        (412,), "NoEtagMatch")
    expect_service_error("unknown event is 404",
                         lambda: compute.get_instance_maintenance_event("ocid1.instancemaintenanceevent.oc1..nope"),
                         (404,), "NotAuthorizedOrNotFound")

    # A key the emulator does not know: 401 NotAuthenticated, not retried into success.
    bad = oci.core.ComputeClient(oci.config.from_file(a.bad_config), service_endpoint=ep,
                                 retry_strategy=oci.retry.NoneRetryStrategy())
    expect_service_error("wrong key refused with 401",
                         lambda: bad.list_instance_maintenance_events(a.compartment),
                         (401,), "NotAuthenticated")

    if a.rust_vectors:
        compare_with_rust(config, a.rust_vectors)

    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed")
    return 0 if RESULTS["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
