#!/usr/bin/env python3
"""A resource server in Python that checks sigil's access tokens with
Debian's python3-jwt (PyJWT), behind a TLS terminator that does mTLS and
passes the client certificate on (haproxy.cfg beside this file).

    resource_server.py --listen 127.0.0.1:8080 \\
        --issuer https://sigil.example --audience spiffe://example.org/workload/inventory \\
        --jwks https://sigil.example/jwks.json --ca-bundle bundle.pem

For every request it checks, and answers 401 with an RFC 6750 challenge
when one fails:
  1. one Authorization: Bearer token, at most 8 KiB;
  2. the protected header: typ at+jwt (RFC 9068), alg ES256, a kid, and no
     jwk, jku, x5u, x5c or crit (keys come only from sigild's JWKS);
  3. the signature, with the JWKS key of that kid (fetched from sigild over
     TLS checked against the trust bundle; fetched again, at most every 30
     s, for an unknown kid);
  4. iss, aud (this service's SPIFFE ID), exp, iat and nbf (30 s leeway),
     and a jti;
  5. cnf.x5t#S256 equals base64url(SHA-256(DER of the client certificate))
     (RFC 8705), the certificate coming from the terminator in
     X-Client-Cert (base64 DER, or URL-encoded PEM from nginx). This is what makes a stolen token
     worthless: it only works over a TLS connection made with the TPM key
     its certificate holds.
Revocation is not checked here: ask sigild's introspection endpoint
(RFC 7662) or follow its revocation feed for that (package verify does).
"""

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import os
import ssl
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt  # Debian: python3-jwt

MAX_TOKEN = 8 << 10
MAX_CERT = 16 << 10
MAX_JWKS = 1 << 20
ALGORITHMS = ["ES256"]
FORBIDDEN_HEADERS = ("jwk", "jku", "x5u", "x5c", "crit")
LEEWAY = 30
MIN_REFRESH = 30


class Invalid(Exception):
    """A token refused; the message is the error_description."""


class Keys:
    """sigild's JWKS, fetched over TLS checked against the trust bundle."""

    def __init__(self, url, ca_bundle):
        self.url = url
        self.ctx = ssl.create_default_context(cafile=ca_bundle)
        self.lock = threading.Lock()
        self.keys = {}
        self.fetched = 0.0

    def fetch(self):
        with urllib.request.urlopen(self.url, context=self.ctx, timeout=10) as resp:
            data = resp.read(MAX_JWKS + 1)
        if len(data) > MAX_JWKS:
            raise Invalid("JWKS too large")
        keys = {}
        for k in json.loads(data).get("keys", []):
            if k.get("use", "sig") != "sig" or k.get("alg") not in ALGORITHMS or not k.get("kid"):
                continue
            keys[k["kid"]] = jwt.PyJWK(k, algorithm=k["alg"])
        self.keys, self.fetched = keys, time.monotonic()

    def get(self, kid):
        with self.lock:
            if kid not in self.keys and time.monotonic() - self.fetched >= MIN_REFRESH:
                self.fetch()
            key = self.keys.get(kid)
        if key is None:
            raise Invalid("unknown key")
        return key


def thumbprint(der):
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def client_cert(value):
    """The DER of the certificate in X-Client-Cert: base64 DER (HAProxy's
    ssl_c_der,base64) or URL-encoded PEM (nginx's $ssl_client_escaped_cert)."""
    if not value:
        return b""
    if value.startswith(("-----BEGIN", "%2D", "%2d")):
        try:
            return ssl.PEM_cert_to_DER_cert(urllib.parse.unquote(value))
        except ValueError:
            raise Invalid("malformed client certificate")
    return base64.b64decode(value, validate=True)


def check(token, cert_der, keys, issuer, audience):
    """Returns the claims of a token that passes every check, or raises Invalid."""
    if len(token) > MAX_TOKEN or token.count(".") != 2:
        raise Invalid("malformed token")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise Invalid("malformed token")
    if header.get("typ") != "at+jwt":
        raise Invalid("not an access token (typ)")
    if header.get("alg") not in ALGORITHMS:
        raise Invalid("algorithm not allowed")
    if any(h in header for h in FORBIDDEN_HEADERS):
        raise Invalid("forbidden header parameter")
    key = keys.get(header.get("kid", ""))
    try:
        claims = jwt.decode(
            token, key.key, algorithms=ALGORITHMS, audience=audience, issuer=issuer, leeway=LEEWAY,
            options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
        )
    except jwt.PyJWTError as e:
        raise Invalid(type(e).__name__)
    bound = (claims.get("cnf") or {}).get("x5t#S256", "")
    if not cert_der:
        raise Invalid("no client certificate")
    if not isinstance(bound, str) or not hmac.compare_digest(bound, thumbprint(cert_der)):
        raise Invalid("token not bound to the client certificate")
    return claims


def make_handler(keys, issuer, audience):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            sys.stderr.write("resource | %s\n" % (fmt % args))

        def answer(self, status, body, challenge=None):
            data = (json.dumps(body) + "\n").encode()
            self.send_response(status)
            if challenge:
                self.send_header("WWW-Authenticate", challenge)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def handle_one(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length > 0:
                self.rfile.read(min(length, 1 << 20))
            auths = self.headers.get_all("Authorization") or []
            scheme, _, token = (auths[0] if len(auths) == 1 else "").partition(" ")
            if scheme.lower() != "bearer" or not token:
                self.answer(401, {"error": "invalid_request"}, 'Bearer error="invalid_request"')
                return
            cert_b64 = self.headers.get("X-Client-Cert", "")
            try:
                if len(cert_b64) > MAX_CERT:
                    raise Invalid("client certificate too large")
                cert = client_cert(cert_b64)
                claims = check(token, cert, keys, issuer, audience)
            except (Invalid, binascii.Error) as e:
                self.log_message("refused: %s", e)
                self.answer(401, {"error": "invalid_token", "error_description": str(e)},
                            'Bearer error="invalid_token", error_description="%s"' % e)
                return
            except Exception as e:  # JWKS unreachable
                self.log_message("cannot check: %s", e)
                self.answer(503, {"error": "temporarily_unavailable"})
                return
            self.answer(200, {"sub": claims["sub"], "scope": claims.get("scope", ""), "jti": claims["jti"]})

        do_GET = handle_one
        do_POST = handle_one

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):  # the terminator closed an idle connection
            super().handle_error(request, client_address)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", default="127.0.0.1:8080")
    p.add_argument("--issuer", required=True)
    p.add_argument("--audience", required=True, help="this service's SPIFFE ID")
    p.add_argument("--jwks", required=True, help="sigild's JWKS URL")
    p.add_argument("--ca-bundle", required=True, help="trust bundle for sigild's TLS")
    p.add_argument("--ready", help="write the listening address here once serving")
    a = p.parse_args()
    host, port = a.listen.rsplit(":", 1)
    keys = Keys(a.jwks, a.ca_bundle)
    srv = Server((host, int(port)), make_handler(keys, a.issuer, a.audience))
    addr = "%s:%d" % srv.server_address[:2]
    if a.ready:
        with open(a.ready + ".tmp", "w") as f:
            f.write(addr + "\n")
        os.rename(a.ready + ".tmp", a.ready)
    print("resource | listening on http://%s" % addr, flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
