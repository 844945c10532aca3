"""``python -m examples.serve APP --workers N --port P``: uvicorn with N workers, minus a
40 ms stall per keep-alive request.

uvicorn's ``--workers`` binds its listening socket without ``IPPROTO_TCP``; asyncio then
leaves Nagle's algorithm on for every accepted connection, and each keep-alive request
after the first waits for the client's delayed ACK (about 40 ms on Linux; uvicorn issue
#3149, open as of uvicorn 0.54). Measured here: 730 req/s with 2 workers against 6,500 with
one. This launcher binds the socket with the protocol set and hands it to uvicorn's own
multiprocess supervisor; everything else is uvicorn.
"""

from __future__ import annotations

import argparse
import socket

import uvicorn
from uvicorn.supervisors import Multiprocess


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("app", help="the ASGI app as module:attribute")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    config = uvicorn.Config(
        args.app,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        access_log=False,
    )
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.set_inheritable(True)
    Multiprocess(config, sockets=[sock]).run()


if __name__ == "__main__":
    main()
