#!/usr/bin/env python3
"""Drives `slurm-maint oci-emulator` with the unmodified official OCI Python SDK.

Run by tests/oci_sdk.rs, which starts the emulator, makes the keys and the config files:

    python3 tests/oci_sdk.py --endpoint http://127.0.0.1:PORT --config CFG \
        --bad-config BADCFG --tenancy OCID --compartment OCID --fixed-event OCID \
        --other-compartment OCID --alt-event OCID --wr-fail-event OCID ...

    python3 tests/oci_sdk.py --session-tokens --endpoint http://127.0.0.1:PORT ...

The first form walks every operation the emulator serves and checks each answer against
OCI's API reference and the SDK's models (fidelity()); the second checks the SDK's OKE
workload identity and instance principal signers (the environment points them at the
emulator). Every check prints one line; the last
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


NONE = oci.retry.NoneRetryStrategy()


def raw_error(name, resp, status, code):
    """An answer of OCI's error shape: the status, {"code", "message"}, opc-request-id."""
    try:
        body = resp.json()
    except ValueError:
        body = {}
    check(name, resp.status_code == status and body.get("code") == code
          and bool(body.get("message")) and bool(resp.headers.get("opc-request-id")),
          f"got {resp.status_code} {resp.text[:200]} rid={resp.headers.get('opc-request-id')}")


def wait_work_request(ep, wrs, wr_id):
    """Polls a work request to its end, moving the emulator's clock; its statuses seen."""
    seen = []
    for _ in range(200):
        wr = wrs.get_work_request(wr_id).data
        if not seen or seen[-1] != wr.status:
            seen.append(wr.status)
        if wr.status in ("SUCCEEDED", "FAILED", "CANCELED"):
            return wr, seen
        advance(ep, 1)
    return wr, seen


def event_fields_present(name, events):
    """What OCI sends on every event (required fields, maps and lists even when empty,
    and description/timeCreated, which real events always carry): never None."""
    bad = []
    for e in events:
        missing = [f for f in ("freeform_tags", "defined_tags", "description", "time_created",
                               "time_window_start", "alternative_resolution_actions", "created_by",
                               "maintenance_category", "maintenance_reason", "instance_action",
                               "lifecycle_state", "can_reschedule", "compartment_id", "instance_id")
                   if getattr(e, f) is None]
        if missing or not isinstance(e.freeform_tags, dict) or not isinstance(e.defined_tags, dict):
            bad.append((e.id, missing))
        # What a third-party tool does on its main path.
        e.freeform_tags.get("slurm-maint")
        e.defined_tags.get("Operations", {})
    check(name, events and not bad, bad)


def fidelity(a, config, compute, identity, wrs):
    """Each served operation as OCI's API reference (and the SDK's models) say."""
    ep = a.endpoint
    signer = oci.signer.Signer(config["tenancy"], config["user"], config["fingerprint"], config["key_file"])

    def raw(method, path, **kw):
        return requests.request(method, f"{ep}/20160918{path}", auth=signer, **kw)

    # Events: every field OCI always sends, listed and got, generated and from the scenario.
    listed = (oci.pagination.list_call_get_all_results(compute.list_instance_maintenance_events, a.compartment).data
              + oci.pagination.list_call_get_all_results(compute.list_instance_maintenance_events,
                                                         a.other_compartment).data)
    check("every event listed", len(listed) == a.expect_events + a.expect_other_events, len(listed))
    event_fields_present("listed events carry tags, description, timeCreated", listed)
    got = [compute.get_instance_maintenance_event(e.id).data for e in listed]
    event_fields_present("got events carry tags, description, timeCreated", got)
    fixed = compute.get_instance_maintenance_event(a.fixed_event).data
    check("a scenario event without tags gets {} and a description",
          fixed.freeform_tags == {} and fixed.defined_tags == {} and bool(fixed.description), fixed)
    wire = raw("GET", f"/instanceMaintenanceEvents/{a.fixed_event}").json()
    check("empty tags are {} on the wire", wire.get("freeformTags") == {} and wire.get("definedTags") == {}, wire)
    wire_list = raw("GET", "/instanceMaintenanceEvents", params={"compartmentId": a.compartment}).json()
    check("summaries have no lifecycleDetails/canDeleteLocalStorage/additionalDetails (the SDK's model)",
          all(not {"lifecycleDetails", "canDeleteLocalStorage", "additionalDetails"} & set(e) for e in wire_list)
          and all({"freeformTags", "definedTags", "timeCreated", "timeWindowStart"} <= set(e) for e in wire_list))

    # Sort orders: "Default order for TIMECREATED is descending. Default order for
    # DISPLAYNAME is ascending." With no sortBy the reference names no field; the
    # emulator sorts by TIMECREATED.
    def created(events):
        return [(e.time_created, e.id) for e in events]

    default = compute.list_instance_maintenance_events(a.compartment).data
    check("default order: TIMECREATED descending", created(default) == sorted(created(default), reverse=True),
          [e.id for e in default])
    by_time = compute.list_instance_maintenance_events(a.compartment, sort_by="TIMECREATED").data
    check("sortBy TIMECREATED: descending", created(by_time) == sorted(created(by_time), reverse=True))
    asc = compute.list_instance_maintenance_events(a.compartment, sort_by="TIMECREATED", sort_order="ASC").data
    check("sortBy TIMECREATED ASC", created(asc) == sorted(created(asc)))
    names = [e.display_name or "" for e in compute.list_instance_maintenance_events(
        a.other_compartment, sort_by="DISPLAYNAME").data]
    check("sortBy DISPLAYNAME: ascending, case-sensitive", names == sorted(names), names)
    names_desc = [e.display_name or "" for e in compute.list_instance_maintenance_events(
        a.other_compartment, sort_by="DISPLAYNAME", sort_order="DESC").data]
    check("sortBy DISPLAYNAME DESC", names_desc == sorted(names, reverse=True), names_desc)
    raw_error("sortBy outside its enum: 400 InvalidParameter",
              raw("GET", "/instanceMaintenanceEvents", params={"compartmentId": a.compartment, "sortBy": "NAME"}),
              400, "InvalidParameter")
    raw_error("lifecycleState outside its enum: 400 InvalidParameter",
              raw("GET", "/instanceMaintenanceEvents",
                  params={"compartmentId": a.compartment, "lifecycleState": "DONE"}), 400, "InvalidParameter")

    # Every filter.
    corr = compute.list_instance_maintenance_events(a.other_compartment, correlation_token="corr-alt").data
    check("correlationToken filter", [e.id for e in corr] == [a.alt_event], [e.id for e in corr])
    check("instanceAction filter", len(compute.list_instance_maintenance_events(
        a.compartment, instance_action="TERMINATE").data) == 0 and len(compute.list_instance_maintenance_events(
            a.compartment, instance_action="REBOOT_MIGRATION").data) == a.expect_events)
    windows = sorted(e.time_window_start for e in default)
    lo, hi = windows[0], windows[-1]
    check("timeWindowStart >= and <= filters", len(compute.list_instance_maintenance_events(
        a.compartment, time_window_start_greater_than_or_equal_to=hi).data) == sum(w >= hi for w in windows)
        and len(compute.list_instance_maintenance_events(
            a.compartment, time_window_start_less_than_or_equal_to=lo).data) == sum(w <= lo for w in windows)
        and len(compute.list_instance_maintenance_events(
            a.compartment, time_window_start_greater_than_or_equal_to=lo,
            time_window_start_less_than_or_equal_to=hi).data) == len(windows))

    # Paging headers: opc-next-page on every page but the last.
    pages, page = [], None
    while True:
        r = compute.list_instance_maintenance_events(a.compartment, limit=4, page=page)
        pages.append((len(r.data), r.headers.get("opc-next-page")))
        if not r.has_next_page:
            break
        page = r.headers["opc-next-page"]
    check("opc-next-page on all pages but the last", pages[-1][1] is None and all(n for _, n in pages[:-1])
          and sum(n for n, _ in pages) == a.expect_events, pages)
    raw_error("limit 0: 400 InvalidParameter",
              raw("GET", "/instanceMaintenanceEvents", params={"compartmentId": a.compartment, "limit": "0"}),
              400, "InvalidParameter")
    raw_error("no compartmentId: 400 MissingParameter", raw("GET", "/instanceMaintenanceEvents"),
              400, "MissingParameter")

    # alternativeResolutionAction: one of the event's alternativeResolutionActions, then
    # its instanceAction. canDeleteLocalStorage goes with it.
    alt = compute.get_instance_maintenance_event(a.alt_event).data
    upd = compute.update_instance_maintenance_event(
        a.alt_event, oci.core.models.UpdateInstanceMaintenanceEventDetails(
            alternative_resolution_action="TERMINATE", can_delete_local_storage=True),
        retry_strategy=NONE)
    check("alternativeResolutionAction accepted with a work request",
          upd.status == 202 and bool(upd.headers.get("opc-work-request-id")), upd.headers)
    wr, seen = wait_work_request(ep, wrs, upd.headers["opc-work-request-id"])
    check("its work request succeeds", wr.status == "SUCCEEDED", seen)
    after = compute.get_instance_maintenance_event(a.alt_event).data
    check("alternativeResolutionAction becomes the instanceAction",
          alt.instance_action == "REBOOT_MIGRATION" and after.instance_action == "TERMINATE"
          and after.can_delete_local_storage is True, (alt.instance_action, after.instance_action))
    expect_service_error(
        "an alternativeResolutionAction the event does not offer: 400 InvalidParameter",
        lambda: compute.update_instance_maintenance_event(
            a.wr_fail_event, oci.core.models.UpdateInstanceMaintenanceEventDetails(
                alternative_resolution_action="TERMINATE"), retry_strategy=NONE),
        (400,), "InvalidParameter")
    raw_error("an alternativeResolutionAction outside its enum: 400 InvalidParameter",
              raw("PUT", f"/instanceMaintenanceEvents/{a.alt_event}",
                  data=json.dumps({"alternativeResolutionAction": "STOP"}),
                  headers={"content-type": "application/json"}), 400, "InvalidParameter")
    raw_error("a body that is not JSON: 400 CannotParseRequest",
              raw("PUT", f"/instanceMaintenanceEvents/{a.alt_event}", data="{not json",
                  headers={"content-type": "application/json"}), 400, "CannotParseRequest")

    # A reschedule whose work request fails: FAILED, one error, logs both ways.
    before = compute.get_instance_maintenance_event(a.wr_fail_event).data
    upd = compute.update_instance_maintenance_event(
        a.wr_fail_event, oci.core.models.UpdateInstanceMaintenanceEventDetails(
            time_window_start=datetime.now(timezone.utc) + timedelta(hours=2)), retry_strategy=NONE)
    wr_id = upd.headers["opc-work-request-id"]
    wr, seen = wait_work_request(ep, wrs, wr_id)
    check("a failing reschedule's work request ends FAILED", seen == ["ACCEPTED", "IN_PROGRESS", "FAILED"], seen)
    check("work request fields", wr.operation_type and wr.compartment_id == a.other_compartment
          and wr.percent_complete == 100.0 and wr.time_accepted and wr.time_started and wr.time_finished
          and wr.resources and wr.resources[0].entity_type and wr.resources[0].action_type, wr)
    errs = wrs.list_work_request_errors(wr_id).data
    check("its errors: code, message, timestamp", len(errs) == 1 and errs[0].code and errs[0].message
          and errs[0].timestamp is not None, errs)
    logs = wrs.list_work_request_logs(wr_id).data
    logs_desc = wrs.list_work_request_logs(wr_id, sort_order="DESC").data
    check("its logs, oldest first; sortOrder DESC reverses them",
          len(logs) >= 3 and [l.message for l in logs_desc] == [l.message for l in reversed(logs)]
          and all(l.timestamp is not None for l in logs), [l.message for l in logs])
    page1 = wrs.list_work_request_logs(wr_id, limit=1)
    check("work request logs page", len(page1.data) == 1 and page1.has_next_page)
    back = compute.get_instance_maintenance_event(a.wr_fail_event).data
    # What OCI leaves after a failed reschedule is not documented; the emulator keeps the
    # event as it was.
    check("a failed reschedule leaves the event SCHEDULED at its window",
          back.lifecycle_state == "SCHEDULED" and back.time_window_start == before.time_window_start,
          (back.lifecycle_state, back.time_window_start, before.time_window_start))
    expect_service_error("unknown work request is 404",
                         lambda: wrs.get_work_request("ocid1.workrequest.oc1..nope"), (404,),
                         "NotAuthorizedOrNotFound")

    # Instances: required fields, tags, filters, sorts.
    insts = oci.pagination.list_call_get_all_results(compute.list_instances, a.other_compartment).data
    check("instances carry what OCI always sends",
          insts and all(i.availability_domain and i.compartment_id and i.id and i.lifecycle_state and i.region
                        and i.shape and i.time_created and i.freeform_tags is not None
                        and i.defined_tags is not None for i in insts), insts)
    check("displayName filter", [i.id for i in compute.list_instances(
        a.other_compartment, display_name="gpu-alt").data] == ["ocid1.instance.oc1..alt"])
    check("lifecycleState filter", [i.id for i in compute.list_instances(
        a.other_compartment, lifecycle_state="STOPPED").data] == ["ocid1.instance.oc1..alt"])
    check("lifecycleState is case-insensitive (the reference)",
          [i["id"] for i in raw("GET", "/instances", params={"compartmentId": a.other_compartment,
                                                             "lifecycleState": "stopped"}).json()]
          == ["ocid1.instance.oc1..alt"])
    check("availabilityDomain filter", [i.id for i in compute.list_instances(
        a.other_compartment, availability_domain="AD-2").data] == ["ocid1.instance.oc1..alt"])
    in_ad1 = compute.list_instances(a.other_compartment, availability_domain="AD-1", sort_by="DISPLAYNAME").data
    names = [i.display_name for i in in_ad1]
    check("instances sortBy DISPLAYNAME ascending", names == sorted(names) and len(names) > 1, names)
    grouped = [i.availability_domain for i in compute.list_instances(a.other_compartment).data]
    check("without availabilityDomain: grouped by availability domain", grouped == sorted(grouped), grouped)
    expect_service_error("unknown instance is 404", lambda: compute.get_instance("ocid1.instance.oc1..nope"),
                         (404,), "NotAuthorizedOrNotFound")

    # Identity.
    ten = identity.get_tenancy(a.tenancy).data
    check("GetTenancy", ten.id == a.tenancy and ten.name and ten.home_region_key == "IAD"
          and ten.freeform_tags == {} and ten.defined_tags == {}, ten)
    expect_service_error("GetTenancy of another tenancy is 404",
                         lambda: identity.get_tenancy("ocid1.tenancy.oc1..other"), (404,), "NotAuthorizedOrNotFound")
    root = identity.get_compartment(a.tenancy).data
    check("GetCompartment of the tenancy: the root compartment", root.id == a.tenancy
          and root.lifecycle_state == "ACTIVE" and root.name and root.time_created, root)
    sub = identity.get_compartment("ocid1.compartment.oc1..sub").data
    check("GetCompartment", sub.compartment_id == a.compartment and sub.name == "sub"
          and sub.description and sub.time_created and sub.freeform_tags == {} and sub.defined_tags == {}, sub)
    expect_service_error("unknown compartment is 404",
                         lambda: identity.get_compartment("ocid1.compartment.oc1..nope"), (404,),
                         "NotAuthorizedOrNotFound")
    children = [c.id for c in identity.list_compartments(a.tenancy).data]
    check("ListCompartments: first-level children only",
          sorted(children) == sorted([a.compartment, a.other_compartment]), children)
    check("ListCompartments of a compartment", [c.id for c in identity.list_compartments(a.compartment).data]
          == ["ocid1.compartment.oc1..sub"])
    check("name filter", [c.id for c in identity.list_compartments(
        a.tenancy, compartment_id_in_subtree=True, name="sub").data] == ["ocid1.compartment.oc1..sub"])
    by_name = [c.name for c in identity.list_compartments(a.tenancy, compartment_id_in_subtree=True,
                                                          sort_by="NAME", sort_order="DESC").data]
    check("sortBy NAME DESC", by_name == sorted(by_name, reverse=True), by_name)
    by_time = identity.list_compartments(a.tenancy, compartment_id_in_subtree=True, sort_by="TIMECREATED").data
    check("sortBy TIMECREATED: descending",
          [(c.time_created, c.id) for c in by_time] == sorted([(c.time_created, c.id) for c in by_time], reverse=True))
    check("accessLevel ACCESSIBLE", len(identity.list_compartments(
        a.tenancy, compartment_id_in_subtree=True, access_level="ACCESSIBLE").data) == a.expect_compartments)
    check("compartment lifecycleState is case-insensitive (the reference)",
          len(raw("GET", "/compartments", params={"compartmentId": a.tenancy, "compartmentIdInSubtree": "true",
                                                  "lifecycleState": "active"}).json()) == a.expect_compartments)
    expect_service_error("compartmentIdInSubtree below the tenancy: 400",
                         lambda: identity.list_compartments(a.compartment, compartment_id_in_subtree=True,
                                                            retry_strategy=NONE), (400,), "InvalidParameter")

    # Paths and methods OCI does not serve: 404 NotFound, 405 MethodNotAllowed.
    raw_error("an unknown path: 404 NotFound", raw("GET", "/instanceMaintenanceWindows"), 404, "NotFound")
    raw_error("a method the path lacks: 405 MethodNotAllowed",
              raw("DELETE", f"/instanceMaintenanceEvents/{a.alt_event}"), 405, "MethodNotAllowed")


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
    ap.add_argument("--other-compartment", required=True)
    ap.add_argument("--alt-event", required=True, help="offers REBOOT_MIGRATION and TERMINATE")
    ap.add_argument("--wr-fail-event", required=True, help="its reschedule's work request fails")
    ap.add_argument("--expect-other-events", type=int, required=True)
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
    check("instance_action answers an etag and no work request (InstanceActionResponse)",
          bool(reset.headers.get("etag")) and "opc-work-request-id" not in reset.headers, dict(reset.headers))
    stopped = compute.instance_action(target.instance_id, "STOP").data
    started = compute.instance_action(target.instance_id, "START").data
    check("STOP then START", stopped.lifecycle_state == "STOPPED" and started.lifecycle_state == "RUNNING")

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

    fidelity(a, config, compute, identity, wrs)

    if a.rust_vectors:
        compare_with_rust(config, a.rust_vectors)

    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed")
    return 0 if RESULTS["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
