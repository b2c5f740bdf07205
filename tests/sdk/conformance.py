#!/usr/bin/env python3
"""Conformance of hwc-vpc-emulator with the OFFICIAL Huawei Cloud Python SDK (huaweicloudsdkvpc).

Drives a running emulator through every traffic-mirror operation and the port reads (ListPorts,
ShowPort, ListPortsByTags over ports seeded through the admin API) with the SDK's own VpcClient
(v3), checks that every successful answer parses into the SDK's models with the right types, that
documented rejections come back as ClientRequestException with the expected status, error code
and request id, and that a badly signed request (wrong SK) and a foreign project are refused.

Usage: conformance.py URL PROJECT_ID AK SK
   or: TMO_EMULATOR_URL=... TMO_PROJECT_ID=... TMO_AK=... TMO_SK=... conformance.py
Exit status 0 when every check passed; the last line is "conformance: N checks passed, M failed".
"""

import json
import os
import sys
import traceback
import urllib.request

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkvpc.v3 import (
    AddSourcesToTrafficMirrorSessionRequest,
    AddSourcesToTrafficMirrorSessionRequestBody,
    CreateTrafficMirrorFilterOption,
    CreateTrafficMirrorFilterRequest,
    CreateTrafficMirrorFilterRequestBody,
    CreateTrafficMirrorFilterRuleOption,
    CreateTrafficMirrorFilterRuleRequest,
    CreateTrafficMirrorFilterRuleRequestBody,
    CreateTrafficMirrorSessionOption,
    CreateTrafficMirrorSessionRequest,
    CreateTrafficMirrorSessionRequestBody,
    DeleteTrafficMirrorFilterRequest,
    DeleteTrafficMirrorFilterRuleRequest,
    DeleteTrafficMirrorSessionRequest,
    ListPortsByTagsRequest,
    ListPortsByTagsRequestBody,
    ListPortsRequest,
    ListTag,
    ListTrafficMirrorFilterRulesRequest,
    Match,
    ListTrafficMirrorFiltersRequest,
    ListTrafficMirrorSessionsRequest,
    RemoveSourcesFromTrafficMirrorSessionRequest,
    RemoveSourcesFromTrafficMirrorSessionRequestBody,
    ShowPortRequest,
    ShowTrafficMirrorFilterRequest,
    ShowTrafficMirrorFilterRuleRequest,
    ShowTrafficMirrorSessionRequest,
    TrafficMirrorSourcesOption,
    UpdateTrafficMirrorFilterOption,
    UpdateTrafficMirrorFilterRequest,
    UpdateTrafficMirrorFilterRequestBody,
    UpdateTrafficMirrorFilterRuleOption,
    UpdateTrafficMirrorFilterRuleRequest,
    UpdateTrafficMirrorFilterRuleRequestBody,
    UpdateTrafficMirrorSessionOption,
    UpdateTrafficMirrorSessionRequest,
    UpdateTrafficMirrorSessionRequestBody,
    VpcClient,
)

PASSED = 0
FAILED = 0


class CheckFailed(AssertionError):
    pass


def check(cond, what):
    """One assertion; counted, printed, and fatal for the current step when it fails."""
    global PASSED
    if not cond:
        raise CheckFailed(what)
    PASSED += 1


def step(name, fn):
    """Run one named step; a failure is reported and counted, the remaining steps still run."""
    global FAILED
    try:
        fn()
        print(f"ok   {name}", flush=True)
    except Exception as e:  # noqa: BLE001 - report every kind of failure the same way
        FAILED += 1
        print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
        traceback.print_exc(file=sys.stdout)


def client(url, project_id, ak, sk):
    config = HttpConfig.get_default_config()
    config.ignore_ssl_verification = True
    config.timeout = (10, 30)
    return (
        VpcClient.new_builder()
        .with_http_config(config)
        .with_credentials(BasicCredentials(ak, sk, project_id))
        .with_endpoints([url])
        .build()
    )


def rejects(fn, status, code, what):
    """fn() must raise ClientRequestException with this status and error code and a request id."""
    try:
        fn()
    except ClientRequestException as e:
        check(e.status_code == status, f"{what}: status {e.status_code} != {status} ({e.error_msg})")
        check(e.error_code == code, f"{what}: error_code {e.error_code} != {code} ({e.error_msg})")
        check(bool(e.request_id), f"{what}: request_id missing")
        check(bool(e.error_msg), f"{what}: error_msg missing")
        return e
    raise CheckFailed(f"{what}: expected {status} {code}, the call succeeded")


def is_timestamp(s):
    import re

    return isinstance(s, str) and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", s) is not None


SESSION_TYPES = {
    "id": str,
    "project_id": str,
    "name": str,
    "description": str,
    "traffic_mirror_filter_id": str,
    "traffic_mirror_sources": list,
    "traffic_mirror_target_id": str,
    "traffic_mirror_target_type": str,
    "virtual_network_id": int,
    "packet_length": int,
    "priority": int,
    "enabled": bool,
    "type": str,
    "created_at": str,
    "updated_at": str,
}

FILTER_TYPES = {
    "id": str,
    "project_id": str,
    "name": str,
    "description": str,
    "ingress_rules": list,
    "egress_rules": list,
    "type": str,
    "created_at": str,
    "updated_at": str,
}

RULE_TYPES = {
    "id": str,
    "project_id": str,
    "description": str,
    "traffic_mirror_filter_id": str,
    "direction": str,
    "ethertype": str,
    "protocol": str,
    "action": str,
    "priority": int,
    "created_at": str,
    "updated_at": str,
}


def typed(obj, types, what):
    """Every field present, not None, of the documented Python type (bool is not an int here)."""
    check(obj is not None, f"{what}: missing")
    for attr, ty in types.items():
        v = getattr(obj, attr)
        check(v is not None, f"{what}.{attr} is None")
        if ty is int:
            check(isinstance(v, int) and not isinstance(v, bool), f"{what}.{attr}={v!r} is not an int")
        else:
            check(isinstance(v, ty), f"{what}.{attr}={v!r} is not {ty.__name__}")
    if hasattr(obj, "created_at"):
        check(is_timestamp(obj.created_at), f"{what}.created_at={obj.created_at!r}")
        check(is_timestamp(obj.updated_at), f"{what}.updated_at={obj.updated_at!r}")


def admin_post(url, path, body):
    req = urllib.request.Request(f"{url}/_emulator/{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, json.loads(r.read())


def admin_calls(url):
    with urllib.request.urlopen(f"{url}/_emulator/calls", timeout=10) as r:
        return json.loads(r.read())


def main(argv):
    if len(argv) == 5:
        url, project_id, ak, sk = argv[1:]
    else:
        try:
            url, project_id, ak, sk = (os.environ[k] for k in ("TMO_EMULATOR_URL", "TMO_PROJECT_ID", "TMO_AK", "TMO_SK"))
        except KeyError:
            print(__doc__, file=sys.stderr)
            return 2
    url = url.rstrip("/")
    c = client(url, project_id, ak, sk)
    st = {}  # ids shared between steps

    def create_filter(name, description=None):
        opt = CreateTrafficMirrorFilterOption(name=name, description=description)
        return c.create_traffic_mirror_filter(
            CreateTrafficMirrorFilterRequest(body=CreateTrafficMirrorFilterRequestBody(traffic_mirror_filter=opt))
        )

    def create_rule(**kw):
        opt = CreateTrafficMirrorFilterRuleOption(**kw)
        return c.create_traffic_mirror_filter_rule(
            CreateTrafficMirrorFilterRuleRequest(
                body=CreateTrafficMirrorFilterRuleRequestBody(traffic_mirror_filter_rule=opt)
            )
        )

    def session_option(**overrides):
        kw = dict(
            name="web-tap",
            traffic_mirror_filter_id=st.get("filter"),
            traffic_mirror_sources=["eni-1", "eni-2"],
            traffic_mirror_target_id="target-eni",
            traffic_mirror_target_type="eni",
            priority=10,
        )
        kw.update(overrides)
        return CreateTrafficMirrorSessionOption(**kw)

    def create_session(**overrides):
        return c.create_traffic_mirror_session(
            CreateTrafficMirrorSessionRequest(
                body=CreateTrafficMirrorSessionRequestBody(traffic_mirror_session=session_option(**overrides))
            )
        )

    def sources_body(cls, sources):
        return cls(traffic_mirror_session=TrafficMirrorSourcesOption(traffic_mirror_sources=sources))

    def add_sources(sid, sources):
        return c.add_sources_to_traffic_mirror_session(
            AddSourcesToTrafficMirrorSessionRequest(
                traffic_mirror_session_id=sid,
                body=sources_body(AddSourcesToTrafficMirrorSessionRequestBody, sources),
            )
        )

    def remove_sources(sid, sources):
        return c.remove_sources_from_traffic_mirror_session(
            RemoveSourcesFromTrafficMirrorSessionRequest(
                traffic_mirror_session_id=sid,
                body=sources_body(RemoveSourcesFromTrafficMirrorSessionRequestBody, sources),
            )
        )

    def update_session(sid, **kw):
        return c.update_traffic_mirror_session(
            UpdateTrafficMirrorSessionRequest(
                traffic_mirror_session_id=sid,
                body=UpdateTrafficMirrorSessionRequestBody(traffic_mirror_session=UpdateTrafficMirrorSessionOption(**kw)),
            )
        )

    # ---- filters -------------------------------------------------------------------------------
    def filters_crud():
        r = create_filter("镜像-filter_1.0", "mirrors web traffic")
        check(r.status_code == 201, f"create filter status {r.status_code}")
        check(bool(r.request_id), "create filter request_id")
        f = r.traffic_mirror_filter
        typed(f, FILTER_TYPES, "created filter")
        check(f.name == "镜像-filter_1.0" and f.project_id == project_id, "created filter fields")
        check(f.ingress_rules == [] and f.egress_rules == [], "new filter has no rules")
        st["filter"] = f.id

        s = c.show_traffic_mirror_filter(ShowTrafficMirrorFilterRequest(traffic_mirror_filter_id=f.id))
        typed(s.traffic_mirror_filter, FILTER_TYPES, "shown filter")
        check(s.traffic_mirror_filter.id == f.id, "show filter id")

        u = c.update_traffic_mirror_filter(
            UpdateTrafficMirrorFilterRequest(
                traffic_mirror_filter_id=f.id,
                body=UpdateTrafficMirrorFilterRequestBody(
                    traffic_mirror_filter=UpdateTrafficMirrorFilterOption(description="updated")
                ),
            )
        )
        typed(u.traffic_mirror_filter, FILTER_TYPES, "updated filter")
        check(u.traffic_mirror_filter.description == "updated", "filter description updated")
        check(u.traffic_mirror_filter.name == "镜像-filter_1.0", "filter name kept")

        other = create_filter("spare")
        st["spare_filter"] = other.traffic_mirror_filter.id
        l = c.list_traffic_mirror_filters(ListTrafficMirrorFiltersRequest(name="镜像-filter_1.0"))
        check([x.id for x in l.traffic_mirror_filters] == [f.id], "list filters by name")
        check(l.page_info is not None and l.page_info.current_count == 1, "filters page_info.current_count")
        l = c.list_traffic_mirror_filters(ListTrafficMirrorFiltersRequest(limit=1))
        check(len(l.traffic_mirror_filters) == 1 and l.page_info.next_marker == f.id, "filters page 1")
        l = c.list_traffic_mirror_filters(ListTrafficMirrorFiltersRequest(limit=1, marker=l.page_info.next_marker))
        check([x.id for x in l.traffic_mirror_filters] == [st["spare_filter"]], "filters page 2")
        check(l.page_info.next_marker is None, "last filters page has no next_marker")
        l = c.list_traffic_mirror_filters(ListTrafficMirrorFiltersRequest(id=st["spare_filter"]))
        check([x.id for x in l.traffic_mirror_filters] == [st["spare_filter"]], "list filters by id")

    # ---- rules ---------------------------------------------------------------------------------
    def rules_crud():
        fid = st["filter"]
        r = create_rule(
            traffic_mirror_filter_id=fid,
            direction="ingress",
            protocol="TCP",
            ethertype="ipv4",
            source_cidr_block=" 10.0.0.0/8 ",
            destination_port_range="80-443",
            action="accept",
            priority=10,
            description="web",
        )
        check(r.status_code == 201, "create rule status")
        rule = r.traffic_mirror_filter_rule
        typed(rule, RULE_TYPES, "created rule")
        check(rule.ethertype == "IPv4", f"ethertype normalised: {rule.ethertype}")
        check(rule.source_cidr_block == "10.0.0.0/8", f"cidr trimmed: {rule.source_cidr_block!r}")
        check(rule.destination_port_range == "80-443", "port range kept")
        check(rule.destination_cidr_block is None and rule.source_port_range is None, "unset fields omitted")
        st["rule_in"] = rule.id

        r = create_rule(
            traffic_mirror_filter_id=fid, direction="egress", protocol="ALL", ethertype="IPv6",
            action="reject", priority=20,
        )
        typed(r.traffic_mirror_filter_rule, RULE_TYPES, "egress rule")
        st["rule_out"] = r.traffic_mirror_filter_rule.id

        s = c.show_traffic_mirror_filter_rule(ShowTrafficMirrorFilterRuleRequest(traffic_mirror_filter_rule_id=rule.id))
        typed(s.traffic_mirror_filter_rule, RULE_TYPES, "shown rule")
        check(s.traffic_mirror_filter_rule.id == rule.id, "show rule id")

        u = c.update_traffic_mirror_filter_rule(
            UpdateTrafficMirrorFilterRuleRequest(
                traffic_mirror_filter_rule_id=rule.id,
                body=UpdateTrafficMirrorFilterRuleRequestBody(
                    traffic_mirror_filter_rule=UpdateTrafficMirrorFilterRuleOption(
                        priority=5, source_port_range="1024-65535", protocol="udp"
                    )
                ),
            )
        )
        ur = u.traffic_mirror_filter_rule
        typed(ur, RULE_TYPES, "updated rule")
        check(ur.priority == 5 and ur.source_port_range == "1024-65535", "rule updated")
        check(ur.protocol == "udp", f"protocol kept in the case it was sent: {ur.protocol!r}")
        check(ur.direction == "ingress" and ur.traffic_mirror_filter_id == fid, "rule direction/filter kept")
        s = c.show_traffic_mirror_filter_rule(ShowTrafficMirrorFilterRuleRequest(traffic_mirror_filter_rule_id=rule.id))
        check(s.traffic_mirror_filter_rule.protocol == "udp", "shown protocol in the case it was sent")

        # The SDK leaves None out of the body but sends "": that clears an optional field.
        u = c.update_traffic_mirror_filter_rule(
            UpdateTrafficMirrorFilterRuleRequest(
                traffic_mirror_filter_rule_id=rule.id,
                body=UpdateTrafficMirrorFilterRuleRequestBody(
                    traffic_mirror_filter_rule=UpdateTrafficMirrorFilterRuleOption(source_port_range="", description="")
                ),
            )
        )
        ur = u.traffic_mirror_filter_rule
        typed(ur, RULE_TYPES, "rule with cleared fields")
        check(ur.source_port_range is None and ur.description == "", "empty string clears port range and description")
        check(ur.source_cidr_block == "10.0.0.0/8" and ur.destination_port_range == "80-443", "unsent fields kept")
        check(admin_calls(url)[-1]["body"] == {"traffic_mirror_filter_rule": {"source_port_range": "", "description": ""}},
              "SDK sent only the two empty strings")

        l = c.list_traffic_mirror_filter_rules(ListTrafficMirrorFilterRulesRequest(traffic_mirror_filter_id=fid))
        check([x.id for x in l.traffic_mirror_filter_rules] == [rule.id, st["rule_out"]], "list rules by filter")
        l = c.list_traffic_mirror_filter_rules(ListTrafficMirrorFilterRulesRequest(direction="egress", priority="20"))
        check([x.id for x in l.traffic_mirror_filter_rules] == [st["rule_out"]], "list rules by direction+priority")

        f = c.show_traffic_mirror_filter(ShowTrafficMirrorFilterRequest(traffic_mirror_filter_id=fid)).traffic_mirror_filter
        check([x.id for x in f.ingress_rules] == [rule.id], "filter shows its ingress rule")
        check([x.id for x in f.egress_rules] == [st["rule_out"]], "filter shows its egress rule")
        for x in f.ingress_rules + f.egress_rules:
            typed(x, RULE_TYPES, "rule inside filter")

    # ---- sessions ------------------------------------------------------------------------------
    def sessions_crud():
        # Numbers and booleans as strings: the SDK types them str in the create option.
        r = create_session(virtual_network_id="100", packet_length="128", enabled="true", description="tap")
        check(r.status_code == 201, "create session status")
        check(bool(r.request_id), "create session request_id")
        s = r.traffic_mirror_session
        typed(s, SESSION_TYPES, "created session")
        check((s.virtual_network_id, s.packet_length, s.enabled) == (100, 128, True), "string numbers parsed")
        check(s.traffic_mirror_sources == ["eni-1", "eni-2"], "sources kept in order")
        check(s.type == "eni", "default source type")
        st["session"] = s.id

        d = create_session(name="defaults", traffic_mirror_sources=["eni-9"]).traffic_mirror_session
        typed(d, SESSION_TYPES, "default session")
        check((d.virtual_network_id, d.packet_length, d.enabled) == (1, 96, False), "documented defaults")
        st["session2"] = d.id
        st["session3"] = create_session(name="third", traffic_mirror_sources=[]).traffic_mirror_session.id

        g = c.show_traffic_mirror_session(ShowTrafficMirrorSessionRequest(traffic_mirror_session_id=s.id))
        typed(g.traffic_mirror_session, SESSION_TYPES, "shown session")
        check(g.traffic_mirror_session.to_dict() == s.to_dict(), "show equals create answer")

        u = update_session(s.id, traffic_mirror_target_type="elb", traffic_mirror_target_id="elb-1",
                           priority=11, virtual_network_id=7, enabled="false", name="web-tap-2")
        us = u.traffic_mirror_session
        typed(us, SESSION_TYPES, "updated session")
        check((us.traffic_mirror_target_type, us.priority, us.virtual_network_id, us.enabled, us.name)
              == ("elb", 11, 7, False, "web-tap-2"), "session updated")
        check(us.packet_length == 128 and us.traffic_mirror_sources == ["eni-1", "eni-2"], "unsent fields kept")
        check(us.created_at == s.created_at, "created_at kept")

        a = add_sources(s.id, ["eni-3", "eni-4"])
        typed(a.traffic_mirror_session, SESSION_TYPES, "session after add-sources")
        check(a.traffic_mirror_session.traffic_mirror_sources == ["eni-1", "eni-2", "eni-3", "eni-4"], "sources added")
        rm = remove_sources(s.id, ["eni-1", "eni-3"])
        check(rm.traffic_mirror_session.traffic_mirror_sources == ["eni-2", "eni-4"], "sources removed")

        # Listing: every documented filter the SDK offers, and marker pagination.
        l = c.list_traffic_mirror_sessions(ListTrafficMirrorSessionsRequest())
        check([x.id for x in l.traffic_mirror_sessions] == [s.id, d.id, st["session3"]], "list in creation order")
        for x in l.traffic_mirror_sessions:
            typed(x, SESSION_TYPES, "listed session")
        check(l.page_info.current_count == 3 and l.page_info.previous_marker == s.id, "page_info")
        check(l.page_info.next_marker is None, "single page has no next_marker")
        for req, want in [
            (ListTrafficMirrorSessionsRequest(name="defaults"), [d.id]),
            (ListTrafficMirrorSessionsRequest(id=s.id), [s.id]),
            (ListTrafficMirrorSessionsRequest(priority="11"), [s.id]),
            (ListTrafficMirrorSessionsRequest(enabled="false", virtual_network_id="1"), [d.id, st["session3"]]),
            (ListTrafficMirrorSessionsRequest(traffic_mirror_target_type="elb"), [s.id]),
            (ListTrafficMirrorSessionsRequest(traffic_mirror_target_id="elb-1", packet_length="128"), [s.id]),
            (ListTrafficMirrorSessionsRequest(traffic_mirror_filter_id=st["filter"], type="eni", description="tap"), [s.id]),
            (ListTrafficMirrorSessionsRequest(created_at=d.created_at, name="defaults"), [d.id]),
            (ListTrafficMirrorSessionsRequest(updated_at=us.updated_at, id=s.id), [s.id]),
        ]:
            got = [x.id for x in c.list_traffic_mirror_sessions(req).traffic_mirror_sessions]
            check(got == want, f"list sessions {req.to_dict()}: {got}")
        seen, marker = [], None
        for _ in range(5):
            page = c.list_traffic_mirror_sessions(ListTrafficMirrorSessionsRequest(limit=2, marker=marker))
            seen += [x.id for x in page.traffic_mirror_sessions]
            marker = page.page_info.next_marker
            if marker is None:
                break
        check(seen == [s.id, d.id, st["session3"]], f"marker pagination: {seen}")

    # ---- documented rejections -----------------------------------------------------------------
    def rejections():
        sid = st["session"]
        rejects(lambda: create_session(priority=None), 400, "VPC.0003", "session without priority")
        rejects(lambda: create_session(name="bad name!"), 400, "VPC.0002", "invalid session name")
        rejects(lambda: create_session(name="x" * 65), 400, "VPC.0002", "65-character name")
        rejects(lambda: create_session(description="<script>"), 400, "VPC.0002", "description with <")
        rejects(lambda: create_session(packet_length="1461"), 400, "VPC.0002", "packet_length 1461")
        rejects(lambda: create_session(virtual_network_id="16777216"), 400, "VPC.0002", "VNI too large")
        rejects(lambda: create_session(priority=0), 400, "VPC.0002", "priority 0")
        rejects(lambda: create_session(traffic_mirror_target_type="vm"), 400, "VPC.0002", "target type vm")
        rejects(lambda: create_session(enabled="maybe"), 400, "VPC.0002", "enabled maybe")
        rejects(lambda: create_session(traffic_mirror_sources=[f"eni-{i}" for i in range(11)]),
                400, "VPC.1002", "11 sources")
        rejects(lambda: create_session(traffic_mirror_sources=["eni-1", "eni-1"]), 400, "VPC.1003", "duplicate source")
        rejects(lambda: create_session(traffic_mirror_filter_id="no-such-filter"), 400, "VPC.1102", "unknown filter")
        rejects(lambda: add_sources(sid, ["eni-2"]), 400, "VPC.1003", "add a source already there")
        rejects(lambda: add_sources(sid, [f"eni-x{i}" for i in range(9)]), 400, "VPC.1002", "add beyond 10 sources")
        rejects(lambda: remove_sources(sid, ["eni-77"]), 400, "VPC.1004", "remove a source not there")
        rejects(lambda: update_session(sid, priority=32767), 400, "VPC.0002", "update priority 32767")
        rejects(lambda: c.show_traffic_mirror_session(ShowTrafficMirrorSessionRequest(traffic_mirror_session_id="nope")),
                404, "VPC.1001", "show unknown session")
        rejects(lambda: c.list_traffic_mirror_sessions(ListTrafficMirrorSessionsRequest(limit=2001)),
                400, "VPC.0002", "limit 2001")
        rejects(lambda: c.list_traffic_mirror_sessions(ListTrafficMirrorSessionsRequest(marker="nope")),
                400, "VPC.0002", "unknown marker")
        rejects(lambda: c.delete_traffic_mirror_filter(DeleteTrafficMirrorFilterRequest(traffic_mirror_filter_id=st["filter"])),
                409, "VPC.1103", "delete a filter in use")
        rejects(lambda: create_filter(""), 400, "VPC.0002", "empty filter name")
        rejects(lambda: create_rule(traffic_mirror_filter_id=st["filter"], direction="sideways"),
                400, "VPC.0002", "rule direction")
        rejects(lambda: create_rule(traffic_mirror_filter_id=st["filter"], direction="ingress", protocol="SCTP"),
                400, "VPC.0002", "rule protocol")
        rejects(lambda: create_rule(traffic_mirror_filter_id=st["filter"], direction="ingress", priority=65536),
                400, "VPC.0002", "rule priority")
        rejects(lambda: create_rule(traffic_mirror_filter_id=st["filter"], direction="ingress", source_port_range="0-80"),
                400, "VPC.0002", "rule port range")
        rejects(lambda: create_rule(traffic_mirror_filter_id=st["filter"], direction="ingress", ethertype="IPv4",
                                    destination_cidr_block="2001:db8::/32"), 400, "VPC.0002", "rule CIDR family")
        rejects(lambda: create_rule(traffic_mirror_filter_id="no-such-filter", direction="ingress"),
                400, "VPC.1102", "rule for unknown filter")

    def authentication():
        bad = client(url, project_id, ak, sk + "x")
        e = rejects(lambda: bad.list_traffic_mirror_sessions(ListTrafficMirrorSessionsRequest()),
                    401, "APIGW.0301", "wrong secret key")
        check("signature" in e.error_msg, f"401 message names the signature: {e.error_msg}")
        unknown = client(url, project_id, ak + "-unknown", sk)
        rejects(lambda: unknown.list_traffic_mirror_filters(ListTrafficMirrorFiltersRequest()),
                401, "APIGW.0301", "unknown access key")
        foreign = client(url, project_id + "-other", ak, sk)
        rejects(lambda: foreign.list_traffic_mirror_sessions(ListTrafficMirrorSessionsRequest()),
                403, "APIGW.0302", "foreign project")

    def wire():
        # What the SDK put on the wire, as the emulator's call log saw it.
        calls = admin_calls(url)
        adds = [x for x in calls if x["path"].endswith("/add-sources")]
        check(adds and all(x["method"] == "PUT" for x in adds), "add-sources sent as PUT")
        creates = [x for x in calls if x["method"] == "POST" and x["path"].endswith("/traffic-mirror-sessions")
                   and x["status"] == 201]
        first = creates[0]["body"]["traffic_mirror_session"]
        check(first["enabled"] == "true" and first["virtual_network_id"] == "100", f"strings on the wire: {first}")
        lists = [x for x in calls if x["method"] == "GET" and "limit=2" in x["query"]]
        check(lists, "list query sent")

    # ---- ports (seeded through the admin API) --------------------------------------------------
    def ports():
        for i in range(5):
            status, _ = admin_post(url, "ports", {
                "id": f"port-{i}", "name": f"nic-{i}", "device_id": f"server-{i}", "device_owner": "compute:az1",
                "vpc_id": "vpc-a" if i < 4 else "vpc-b", "mac_address": f"fa:16:3e:00:00:0{i}",
                "private_ips": [{"subnet_cidr_id": "subnet-1", "ip_address": f"192.168.0.{10 + i}"}],
                "tags": [{"key": "role", "value": "web" if i % 2 == 0 else "db"}], "security_groups": ["sg-1"],
                "admin_state_up": True, "zone_id": "az1"})
            check(status == 201, f"seed port-{i}: {status}")
        l = c.list_ports(ListPortsRequest(device_id=["server-1", "server-3"]))
        check([p.id for p in l.ports] == ["port-1", "port-3"], f"device_id filter: {[p.id for p in l.ports]}")
        p = l.ports[0]
        check(p.private_ips[0].ip_address == "192.168.0.11" and p.private_ips[0].subnet_cidr_id == "subnet-1",
              "private_ips parsed")
        check(p.tags[0].key == "role" and p.tags[0].value == "db", "tags parsed")
        check(p.device_owner == "compute:az1" and p.vpc_id == "vpc-a" and p.status == "ACTIVE", "port fields")
        check(p.zone_id == "az1" and p.admin_state_up is True and p.security_groups == ["sg-1"], "extra fields")
        check(p.created_at is not None, "created_at parsed as a datetime")
        l = c.list_ports(ListPortsRequest(private_ips=["ip_address=192.168.0.12", "ip_address=192.168.0.14"]))
        check([p.id for p in l.ports] == ["port-2", "port-4"], f"private_ips filter: {[p.id for p in l.ports]}")
        l = c.list_ports(ListPortsRequest(private_ips=["ip_address=192.168.0.12", "ip_address=192.168.0.14"],
                                          vpc_id=["vpc-a"]))
        check([p.id for p in l.ports] == ["port-2"], "private_ips and vpc_id filters")
        # Paging by marker.
        seen, marker = [], None
        while True:
            l = c.list_ports(ListPortsRequest(limit=2, marker=marker))
            seen += [p.id for p in l.ports]
            check(l.page_info.current_count == len(l.ports), "current_count")
            marker = l.page_info.next_marker
            if not marker:
                break
        check(seen == [f"port-{i}" for i in range(5)], f"paged through every port: {seen}")
        r = c.show_port(ShowPortRequest(port_id="port-4"))
        check(r.port.id == "port-4" and r.port.vpc_id == "vpc-b" and r.port.mac_address == "fa:16:3e:00:00:04",
              "show port")
        rejects(lambda: c.show_port(ShowPortRequest(port_id="port-404")), 404, "VPC.1301", "show unknown port")
        body = ListPortsByTagsRequestBody(tags=[ListTag(key="role", values=["web"])])
        r = c.list_ports_by_tags(ListPortsByTagsRequest(body=body))
        check(sorted(x.resource_id for x in r.resources) == ["port-0", "port-2", "port-4"] and r.total_count == 3,
              f"by tags: {r}")
        check(r.resources[0].tags[0].value == "web", "by tags: resource tags")
        body = ListPortsByTagsRequestBody(tags=[ListTag(key="role", values=[])],
                                          matches=[Match(key="resource_name", value="nic-3")])
        r = c.list_ports_by_tags(ListPortsByTagsRequest(limit=10, offset=0, body=body))
        check([x.resource_id for x in r.resources] == ["port-3"], "by tags and name")
        r = c.list_ports_by_tags(ListPortsByTagsRequest(limit=2, offset=4, body=ListPortsByTagsRequestBody(tags=[])))
        check([x.resource_id for x in r.resources] == ["port-4"] and r.total_count == 5, "by tags: offset paging")
        calls = [x for x in admin_calls(url) if "/ports" in x["path"]]
        check(any(x["query"].count("private_ips=") == 2 for x in calls), "private_ips sent as repeated keys")
        check(all(x["path"].startswith(f"/v3/{project_id}/ports") for x in calls), "ports path under /v3/{project}")

    # ---- deletes -------------------------------------------------------------------------------
    def deletes():
        for sid in (st["session"], st["session2"], st["session3"]):
            r = c.delete_traffic_mirror_session(DeleteTrafficMirrorSessionRequest(traffic_mirror_session_id=sid))
            check(r.status_code == 204, f"delete session status {r.status_code}")
        rejects(lambda: c.delete_traffic_mirror_session(DeleteTrafficMirrorSessionRequest(traffic_mirror_session_id=st["session"])),
                404, "VPC.1001", "delete a deleted session")
        r = c.delete_traffic_mirror_filter_rule(DeleteTrafficMirrorFilterRuleRequest(traffic_mirror_filter_rule_id=st["rule_in"]))
        check(r.status_code == 204, "delete rule status")
        rejects(lambda: c.show_traffic_mirror_filter_rule(ShowTrafficMirrorFilterRuleRequest(traffic_mirror_filter_rule_id=st["rule_in"])),
                404, "VPC.1201", "show deleted rule")
        for fid in (st["filter"], st["spare_filter"]):
            r = c.delete_traffic_mirror_filter(DeleteTrafficMirrorFilterRequest(traffic_mirror_filter_id=fid))
            check(r.status_code == 204, "delete filter status")
        rejects(lambda: c.show_traffic_mirror_filter(ShowTrafficMirrorFilterRequest(traffic_mirror_filter_id=st["filter"])),
                404, "VPC.1101", "show deleted filter")
        # Deleting the filter deleted its remaining (egress) rule.
        l = c.list_traffic_mirror_filter_rules(ListTrafficMirrorFilterRulesRequest())
        check(l.traffic_mirror_filter_rules == [] and l.page_info.current_count == 0, "no rules left")
        l = c.list_traffic_mirror_sessions(ListTrafficMirrorSessionsRequest())
        check(l.traffic_mirror_sessions == [], "no sessions left")

    for name, fn in [
        ("filters: create, show, update, list", filters_crud),
        ("rules: create, show, update, list, filter shows rules", rules_crud),
        ("sessions: create, show, update, add/remove sources, list", sessions_crud),
        ("documented rejections", rejections),
        ("authentication: wrong SK, unknown AK, foreign project", authentication),
        ("wire format seen by the emulator", wire),
        ("ports: list with filters and paging, show, list by tags", ports),
        ("deletes", deletes),
    ]:
        step(name, fn)

    print(f"conformance: {PASSED} checks passed, {FAILED} steps failed")
    return 0 if FAILED == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
