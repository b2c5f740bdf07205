#!/usr/bin/env python3
"""The identity side of hwc-vpc-emulator driven by the OFFICIAL Huawei Cloud Python SDK.

- Federated flow: BasicCredentials(project_id).with_idp_id().with_id_token_file().with_iam_endpoint()
  exchanges an ID token (signed by a test key whose JWKS this script registers through the admin
  API) for an unscoped token and then a temporary credential, and signs VPC calls with it.
- Metadata flow: MetadataAccessor (its base URL pointed at the emulator) with and without session
  tokens, and an unbound agency.

Usage: identity.py URL PROJECT_ID ID_TOKEN_FILE JWKS_FILE ISSUER AUDIENCE
Exit status 0 when every check passed; the last line is "identity: N checks passed, M steps failed".
"""

import json
import sys
import time
import traceback
import urllib.request

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.auth.internal import MetadataAccessor
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkvpc.v3 import ListPortsRequest, ListTrafficMirrorSessionsRequest, VpcClient

PASSED = 0
FAILED = 0


def check(cond, what):
    global PASSED
    if not cond:
        raise AssertionError(what)
    PASSED += 1


def step(name, fn):
    global FAILED
    try:
        fn()
        print(f"ok   {name}", flush=True)
    except Exception as e:  # noqa: BLE001 - report every kind of failure the same way
        FAILED += 1
        print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
        traceback.print_exc(file=sys.stdout)


def admin(url, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{url}/_emulator/{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read()
        return r.status, (json.loads(text) if text else None)


def vpc_client(url, credentials):
    config = HttpConfig.get_default_config()
    config.timeout = (10, 30)
    return VpcClient.new_builder().with_http_config(config).with_credentials(credentials) \
        .with_endpoints([url]).build()


def calls(url):
    return [(c["method"], c["path"], c["status"]) for c in admin(url, "GET", "calls")[1]]


def main(argv):
    url, project_id, token_file, jwks_file, issuer, audience = argv[1:7]
    url = url.rstrip("/")
    with open(jwks_file) as f:
        jwks = json.load(f)

    def federated():
        status, _ = admin(url, "POST", "identity-providers",
                          {"id": "cce-oidc", "issuer": issuer, "audience": audience, "jwks": jwks})
        check(status == 201, "register the identity provider")
        admin(url, "DELETE", "calls")
        creds = BasicCredentials(project_id=project_id).with_idp_id("cce-oidc") \
            .with_id_token_file(token_file).with_iam_endpoint(url)
        c = vpc_client(url, creds)
        r = c.list_traffic_mirror_sessions(ListTrafficMirrorSessionsRequest())
        check(r.traffic_mirror_sessions == [], "list sessions with the federated credential")
        c.list_ports(ListPortsRequest())
        seen = calls(url)
        check(seen[0] == ("POST", "/v3.0/OS-AUTH/id-token/tokens", 201), f"id-token exchange: {seen}")
        check(seen[1] == ("POST", "/v3.0/OS-CREDENTIAL/securitytokens", 201), f"securitytokens: {seen}")
        check(seen[2][2] == 200 and seen[3][2] == 200, f"VPC calls accepted: {seen}")
        check(len(seen) == 4, f"the credential is reused, not fetched per call: {seen}")
        check(creds.ak and creds.security_token and creds.ak not in ("", None), "temporary AK and token")
        check(creds._expire_at - time.time() > 5 * 3600, f"expires_at parsed (6 h asked): {creds._expire_at}")

    def metadata():
        MetadataAccessor._METADATA_ENDPOINT = url
        admin(url, "DELETE", "calls")
        creds = BasicCredentials(project_id=project_id)
        r = vpc_client(url, creds).list_traffic_mirror_sessions(ListTrafficMirrorSessionsRequest())
        check(r.traffic_mirror_sessions == [], "list sessions with the metadata credential")
        seen = calls(url)
        check(seen[0] == ("PUT", "/meta-data/latest/api/token", 404), f"no session tokens: {seen}")
        check(seen[1] == ("GET", "/openstack/latest/securitykey", 200), f"security key: {seen}")
        check(seen[2][2] == 200, f"VPC call accepted: {seen}")

        status, _ = admin(url, "PUT", "metadata", {"agency_bound": True, "token_required": True})
        check(status == 200, "require session tokens")
        admin(url, "DELETE", "calls")
        creds = BasicCredentials(project_id=project_id)
        vpc_client(url, creds).list_traffic_mirror_sessions(ListTrafficMirrorSessionsRequest())
        seen = calls(url)
        check(seen[0] == ("PUT", "/meta-data/latest/api/token", 200), f"session token: {seen}")
        check(seen[1] == ("GET", "/openstack/latest/securitykey", 200), f"security key with token: {seen}")

        admin(url, "PUT", "metadata", {"agency_bound": False, "token_required": False})
        creds = BasicCredentials(project_id=project_id)
        try:
            vpc_client(url, creds).list_traffic_mirror_sessions(ListTrafficMirrorSessionsRequest())
        except Exception as e:  # noqa: BLE001 - the SDK raises ClientRequestException here
            check("Please configure Cloud Service Agency first" in str(e), f"unbound agency: {e}")
            check(getattr(e, "status_code", None) == 401, f"unbound agency status: {e}")
        else:
            raise AssertionError("an unbound agency gave a credential")
        admin(url, "PUT", "metadata", {"agency_bound": True, "token_required": False})

    step("federated flow: with_idp_id, with_id_token_file, with_iam_endpoint", federated)
    step("metadata flow: MetadataAccessor without and with session tokens, unbound agency", metadata)
    print(f"identity: {PASSED} checks passed, {FAILED} steps failed")
    return 0 if FAILED == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
