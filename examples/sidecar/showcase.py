#!/usr/bin/env python3
"""The showcase's three services (examples/showcase) in Python, standard
library only, each behind its own `sigil agent`: the agent terminates mTLS
with the TPM key, verifies tokens and passes the caller's identity in
X-Sigil-* headers (ingress), and makes the outgoing calls over mTLS with a
token exchanged for the caller's (egress). The services hold no key, no
certificate and no sigil token of their own.

    showcase.py --role payments --listen 127.0.0.1:9003 --agent payments.ready
    showcase.py --role orders   --listen 127.0.0.1:9002 --agent orders.ready
    showcase.py --role frontend --listen 127.0.0.1:9001 --agent frontend.ready

--agent is the agent's --ready file (JSON with "egress" and "socket").

frontend  POST /checkout  Authorization: Bearer USER_TOKEN (the agent's
          ingress runs with --ingress-edge and passes it through); calls
          orders through the egress with X-Sigil-Subject-Token: USER_TOKEN,
          so the agent exchanges the user's token.
          POST /logout    revokes the user's token through the agent's token
          service (Unix socket), which ends every token exchanged from it.
orders    POST /orders    calls payments through the egress, forwarding
          X-Sigil-Context: the agent exchanges the verified incoming token.
payments  POST /charge    answers who is charged (X-Sigil-Subject), who
          called on whose behalf (X-Sigil-Act) and in which transaction
          (X-Sigil-Txn, when the chain carries a transaction token).
"""

import argparse
import http.client
import json
import os
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1 << 20


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over the agent's Unix socket (its token service)."""

    def __init__(self, path, timeout=30):
        super().__init__("agent", timeout=timeout)
        self.path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.path)
        self.sock = s


class Agent:
    """The agent beside this service, from its --ready file."""

    def __init__(self, ready_file):
        with open(ready_file) as f:
            ready = json.load(f)
        self.egress = ready.get("egress", "")
        self.socket = ready.get("socket", "")

    def call(self, target, path, headers):
        """POST to a target through the egress; returns (status, body)."""
        host, port = self.egress.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            conn.request("POST", "/" + target + path, body=b"", headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read(MAX_BODY)
        finally:
            conn.close()

    def token_service(self, path, body):
        conn = UnixHTTPConnection(self.socket)
        try:
            conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, resp.read(MAX_BODY)
        finally:
            conn.close()


def make_handler(role, agent):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            sys.stderr.write("%-8s | %s\n" % (role, fmt % args))

        def answer(self, status, body):
            if isinstance(body, (dict, list)):
                body = (json.dumps(body) + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def user_token(self):
            auth = self.headers.get("Authorization", "")
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not token:
                self.answer(401, {"error": "send Authorization: Bearer <your token>"})
                return None
            return token

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self.answer(413, {"error": "body too large"})
                return
            self.rfile.read(length)
            route = (role, self.path)
            if route == ("frontend", "/checkout"):
                user = self.user_token()
                if user:
                    self.answer(*agent.call("orders", "/orders", {"X-Sigil-Subject-Token": user}))
            elif route == ("frontend", "/logout"):
                user = self.user_token()
                if user:
                    status, body = agent.token_service("/v1/revoke", {"token": user})
                    self.answer(status, {"logged_out": True} if status == 200 else body)
            elif route == ("orders", "/orders"):
                ctx = self.headers.get("X-Sigil-Context", "")
                self.answer(*agent.call("payments", "/charge", {"X-Sigil-Context": ctx}))
            elif route == ("payments", "/charge"):
                act = self.headers.get("X-Sigil-Act", "")
                self.answer(200, {
                    "charged": "42.00 EUR",
                    "for": self.headers.get("X-Sigil-Subject", ""),
                    "act": act.split(",") if act else [],
                    "scope": self.headers.get("X-Sigil-Scope", "").split(),
                    "caller": self.headers.get("X-Sigil-Caller", ""),
                    "txn": self.headers.get("X-Sigil-Txn", ""),
                })
            else:
                self.answer(404, {"error": "no route %s %s" % route})

    return Handler


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--role", required=True, choices=["frontend", "orders", "payments"])
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--agent", required=True, help="the agent's --ready file")
    p.add_argument("--ready", help="write the listening address here once serving")
    a = p.parse_args()
    host, port = a.listen.rsplit(":", 1)
    agent = None

    class Lazy:
        """The agent starts after the service (it needs its address)."""

        def __getattr__(self, name):
            nonlocal agent
            if agent is None:
                agent = Agent(a.agent)
            return getattr(agent, name)

    srv = ThreadingHTTPServer((host, int(port)), make_handler(a.role, Lazy()))
    addr = "%s:%d" % srv.server_address[:2]
    if a.ready:
        with open(a.ready + ".tmp", "w") as f:
            f.write(addr + "\n")
        os.rename(a.ready + ".tmp", a.ready)
    print("%-8s | listening on http://%s" % (a.role, addr), flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
