"""Each check of resource_server.check refuses the token that fails it
(python3 -m unittest test_resource_server; TestTerminatorHAProxy runs it)."""

import base64
import binascii
import ssl
import time
import urllib.parse
import unittest

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

import resource_server as rs

ISS = "https://sigil.test"
AUD = "spiffe://sigil.test/workload/inventory"
CERT = b"the DER of the client certificate"
OTHER_CERT = b"another certificate"


class FakeKeys:
    def __init__(self, keys):
        self.keys = keys

    def get(self, kid):
        if kid not in self.keys:
            raise rs.Invalid("unknown key")
        return self.keys[kid]


class Key:
    def __init__(self, key):
        self.key = key


class CheckTest(unittest.TestCase):
    def setUp(self):
        self.priv = ec.generate_private_key(ec.SECP256R1())
        self.keys = FakeKeys({"k1": Key(self.priv.public_key())})

    def token(self, claims=None, headers=None, drop=(), key=None, alg="ES256"):
        now = int(time.time())
        c = {"iss": ISS, "aud": [AUD], "sub": "spiffe://sigil.test/workload/reports", "iat": now, "nbf": now,
             "exp": now + 300, "jti": "j1", "cnf": {"x5t#S256": rs.thumbprint(CERT)}}
        c.update(claims or {})
        for k in drop:
            c.pop(k)
        h = {"typ": "at+jwt", "kid": "k1"}
        h.update(headers or {})
        return jwt.encode(c, key if key is not None else self.priv, algorithm=alg, headers=h)

    def refused(self, token, want, cert=CERT):
        with self.assertRaises(rs.Invalid) as cm:
            rs.check(token, cert, self.keys, ISS, AUD)
        self.assertEqual(str(cm.exception), want)

    def test_accepts_a_good_token(self):
        claims = rs.check(self.token(), CERT, self.keys, ISS, AUD)
        self.assertEqual(claims["jti"], "j1")

    def test_typ(self):
        self.refused(self.token(headers={"typ": "JWT"}), "not an access token (typ)")
        self.refused(self.token(headers={"typ": "txntoken+jwt"}), "not an access token (typ)")
        self.refused(self.token(headers={"typ": "secevent+jwt"}), "not an access token (typ)")

    def test_algorithm_pinned(self):
        self.refused(self.token(key="k", alg="HS256"), "algorithm not allowed")
        none = jwt.encode({"iss": ISS}, None, algorithm="none", headers={"typ": "at+jwt", "kid": "k1"})
        self.refused(none, "algorithm not allowed")

    def test_keys_only_from_the_jwks(self):
        for h in ({"jwk": {"kty": "EC"}}, {"jku": "https://evil"}, {"x5u": "https://evil"}, {"x5c": ["MII"]}):
            self.refused(self.token(headers=h), "forbidden header parameter")
        # PyJWT itself refuses a critical extension it does not know.
        self.refused(self.token(headers={"crit": ["exp"]}), "malformed token")
        self.refused(self.token(headers={"kid": "k2"}), "unknown key")
        other = ec.generate_private_key(ec.SECP256R1())
        self.refused(self.token(key=other), "InvalidSignatureError")

    def test_claims(self):
        self.refused(self.token({"iss": "https://evil"}), "InvalidIssuerError")
        self.refused(self.token({"aud": ["spiffe://sigil.test/workload/payments"]}), "InvalidAudienceError")
        self.refused(self.token({"exp": int(time.time()) - 60}), "ExpiredSignatureError")
        self.refused(self.token({"nbf": int(time.time()) + 120}), "ImmatureSignatureError")
        self.refused(self.token(drop=["jti"]), "MissingRequiredClaimError")
        self.refused(self.token(drop=["exp"]), "MissingRequiredClaimError")

    def test_bound_to_the_client_certificate(self):
        self.refused(self.token(), "token not bound to the client certificate", cert=OTHER_CERT)
        self.refused(self.token(), "no client certificate", cert=b"")
        self.refused(self.token(drop=["cnf"]), "token not bound to the client certificate")
        self.refused(self.token({"cnf": {"x5t#S256": 1}}), "token not bound to the client certificate")

    def test_client_cert_forms(self):
        der = b"\x30\x03\x02\x01\x01"
        pem = ssl.DER_cert_to_PEM_cert(der)
        self.assertEqual(rs.client_cert(base64.b64encode(der).decode()), der)
        self.assertEqual(rs.client_cert(urllib.parse.quote(pem)), der)
        self.assertEqual(rs.client_cert(""), b"")
        with self.assertRaises(rs.Invalid):
            rs.client_cert("-----BEGIN CERTIFICATE-----\nnot base64")
        with self.assertRaises(binascii.Error):
            rs.client_cert("not base64!")

    def test_malformed(self):
        self.refused("a.b", "malformed token")
        self.refused("x" * (rs.MAX_TOKEN + 1), "malformed token")
        self.refused("!!.!!.!!", "malformed token")


if __name__ == "__main__":
    unittest.main()
