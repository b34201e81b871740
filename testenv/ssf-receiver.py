#!/usr/bin/python3
"""An OpenID Shared Signals receiver written apart from sigil's code.

It discovers the transmitter (/.well-known/ssf-configuration), creates an
RFC 8936 poll stream with a bearer token, requests a verification event,
prints "READY <stream_id>", then polls: it verifies every SET against the
transmitter's JWKS (ES256 only, typ secevent+jwt, iss, aud, no exp, no
sub), prints each event as one JSON line (--text: one readable line), and
acknowledges it. It exits 0 once it has acknowledged --events revocation
events and the verification and then heard nothing for --quiet seconds,
and non-zero on any check that fails.

Uses Python's standard library and PyJWT (Debian python3-jwt) only.
"""
import argparse
import json
import ssl
import sys
import time
import urllib.request

import jwt

POLL = "urn:ietf:rfc:8936"
VERIFICATION = "https://schemas.openid.net/secevent/ssf/event-type/verification"
CAEP = "https://schemas.openid.net/secevent/caep/event-type/"


def fail(msg):
    print("receiver: " + msg, file=sys.stderr, flush=True)
    sys.exit(1)


class Transmitter:
    def __init__(self, issuer, ca, token):
        self.issuer, self.token = issuer, token
        self.ctx = ssl.create_default_context(cafile=ca)

    def call(self, method, url, body=None, auth=True, timeout=30):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if auth:
            req.add_header("Authorization", "Bearer " + self.token)
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=timeout) as resp:
                raw = resp.read()
                return resp.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            fail(f"{method} {url}: {e.code} {e.read()[:300]!r}")


def verify(set_, keys, issuer, aud):
    header = jwt.get_unverified_header(set_)
    if header.get("typ") != "secevent+jwt" or header.get("alg") != "ES256":
        fail(f"SET header {header}: want typ secevent+jwt, alg ES256")
    key = keys.get(header.get("kid"))
    if key is None:
        fail(f"SET signed by kid {header.get('kid')!r}, not in the JWKS")
    claims = jwt.decode(set_, key, algorithms=["ES256"], audience=aud, issuer=issuer,
                        options={"require": ["iss", "aud", "jti", "iat"]})
    if "exp" in claims or "sub" in claims or len(claims.get("events", {})) != 1:
        fail(f"SET claims {claims}: no exp, no sub, one event wanted")
    return claims


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--issuer", required=True)
    p.add_argument("--ca", required=True, help="PEM of the CA of the transmitter's TLS certificate")
    p.add_argument("--token-file", required=True, help="a bearer token for the transmitter's audience")
    p.add_argument("--aud", required=True, help="this receiver's identity, the aud of its SETs")
    p.add_argument("--events", type=int, required=True, help="revocation events to receive before exiting")
    p.add_argument("--quiet", type=float, default=0, help="seconds without events to wait for after --events")
    p.add_argument("--text", action="store_true", help="print readable lines, not JSON")
    p.add_argument("--timeout", type=float, default=60)
    a = p.parse_args()
    with open(a.token_file) as f:
        t = Transmitter(a.issuer, a.ca, f.read().strip())

    _, meta = t.call("GET", a.issuer.rstrip("/") + "/.well-known/ssf-configuration", auth=False)
    if meta["issuer"] != a.issuer or POLL not in meta["delivery_methods_supported"]:
        fail(f"metadata {meta}: issuer or poll delivery missing")
    _, jwks = t.call("GET", meta["jwks_uri"], auth=False)
    keys = {k["kid"]: jwt.PyJWK(k).key for k in jwks["keys"]}

    status, stream = t.call("POST", meta["configuration_endpoint"], {
        "delivery": {"method": POLL},
        "events_requested": [CAEP + "session-revoked", CAEP + "credential-change"],
        "description": "python receiver"})
    if status != 201 or stream["iss"] != a.issuer or stream["aud"] != [a.aud]:
        fail(f"created stream {status} {stream}")
    sid, endpoint = stream["stream_id"], stream["delivery"]["endpoint_url"]
    t.call("POST", meta["verification_endpoint"], {"stream_id": sid, "state": "python-" + sid})
    print("READY " + sid, flush=True)

    deadline, acks, events, verified, quiet_since = time.time() + a.timeout, [], 0, False, None
    while True:
        if time.time() > deadline:
            fail(f"timed out with {events} events, verified {verified}")
        done = events >= a.events and verified
        if done and quiet_since is not None and time.time() - quiet_since >= a.quiet:
            break
        _, resp = t.call("POST", endpoint, {"maxEvents": 10, "returnImmediately": done, "ack": acks})
        acks = []
        if not resp["sets"]:
            quiet_since = quiet_since or time.time()
            if done:
                time.sleep(0.2)
            continue
        quiet_since = None
        for jti, set_ in resp["sets"].items():
            claims = verify(set_, keys, a.issuer, a.aud)
            if claims["jti"] != jti:
                fail(f"SET under {jti} has jti {claims['jti']}")
            (typ, event), = claims["events"].items()
            if typ == VERIFICATION:
                if event.get("state") != "python-" + sid:
                    fail(f"verification state {event}")
                verified = True
            else:
                events += 1
            print(text(typ, claims["sub_id"], event) if a.text else
                  json.dumps({"type": typ, "sub_id": claims["sub_id"], "event": event, "txn": claims.get("txn")}), flush=True)
            acks.append(jti)
    t.call("POST", endpoint, {"maxEvents": 0, "returnImmediately": True, "ack": acks})
    print("DONE", flush=True)


def text(typ, sub, event):
    name = typ.rsplit("/", 1)[-1]
    reason = (event.get("reason_admin") or {}).get("en", "")
    if name == "session-revoked":
        who = f"token {sub.get('jti') or sub.get('id')}"
    elif name == "credential-change":
        who = (f"{event.get('credential_type')} certificate {event.get('x509_serial')} of "
               f"{sub.get('user', {}).get('uri')} ({event.get('change_type')})")
    else:
        return f"{name}: state {event.get('state')}"
    initiator = f", initiated by {event['initiating_entity']}" if event.get("initiating_entity") else ""
    return f"{name}: {who}, reason \"{reason}\"{initiator}"


if __name__ == "__main__":
    main()
