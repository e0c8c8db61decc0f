"""The benchmark's server process.

    python -m benchmarks._serverproc SPEC_JSON

SPEC_JSON: {"mailboxes": {name: spec}, "servers": [{"name", "mailbox",
"tls"}], "cert": path, "key": path}.  Builds each mailbox once, starts one
cpoplib._server.Server per entry of "servers" (TLS ones share the mailbox
of the plain one), prints one JSON line {server name: port} and serves
until its standard input is closed.  Running the server in its own process
keeps its work (and its GIL) out of the client's timings.
"""

import gc
import json
import ssl
import sys

from cpoplib._server import Mailbox, Server

from .workloads import build_mailbox


def main(argv):
    spec = json.loads(argv[0])
    boxes = {}
    for name, mspec in spec["mailboxes"].items():
        messages = build_mailbox(mspec)
        boxes[name] = Mailbox(messages)
        del messages           # keep only the rendered wire form
        gc.collect()
    ctx = None
    if any(s["tls"] for s in spec["servers"]):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(spec["cert"], spec["key"])
    servers = {}
    try:
        for s in spec["servers"]:
            srv = Server(boxes[s["mailbox"]],
                         ssl_context=ctx if s["tls"] else None)
            servers[s["name"]] = srv.start()
        sys.stdout.write(json.dumps(
            {name: srv.port for name, srv in servers.items()}) + "\n")
        sys.stdout.flush()
        sys.stdin.read()       # until the parent closes our stdin
    finally:
        for srv in servers.values():
            srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
