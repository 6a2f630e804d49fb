"""What listens on this machine's TCP ports, read from /proc (the tests check that the UI and
the services listen on loopback only)."""

from __future__ import annotations

import ipaddress
from pathlib import Path


def listening_sockets() -> set[tuple[str, int, str]]:
    """(address, port, socket inode) of every TCP socket listening on this machine, from
    /proc/net/tcp{,6}; IPv4-mapped IPv6 addresses are given as IPv4."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)
            # the kernel prints 32-bit words in host (little-endian) order
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            ip = ipaddress.ip_address(words)
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
                ip = ip.ipv4_mapped
            found.add((ip.compressed, int(port, 16), fields[9]))
    return found
