"""`shopsmart-ready ADDRESS`: exit 0 when a service answers at ADDRESS (HOST:PORT: a TCP
connection; http://…: an HTTP 2xx), else 1 with the reason. The image's health checks use it
(deploy/compose.yaml): the image carries no curl or nc."""

from __future__ import annotations

import argparse
import socket
import sys
import urllib.request


def answers(address: str, timeout: float) -> str | None:
    """None when the service at `address` answers, else why not."""
    try:
        if address.startswith(("http://", "https://")):
            with urllib.request.urlopen(address, timeout=timeout):
                return None
        host, _, port = address.rpartition(":")
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return None
    except (OSError, ValueError) as error:
        return str(error)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shopsmart-ready", description=__doc__)
    parser.add_argument("address", help="HOST:PORT or an http:// URL")
    parser.add_argument("--timeout", type=float, default=3)
    args = parser.parse_args(argv)
    why = answers(args.address, args.timeout)
    if why:
        print(f"shopsmart-ready: {args.address} does not answer: {why}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
