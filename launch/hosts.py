"""The machines of a job: ip-config parsing, loopback debug machines, port and partition
checks. Every check raises :class:`LaunchError` with one line naming the file, line or host."""
from __future__ import annotations

import ipaddress
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence


class LaunchError(RuntimeError):
    """A launch cannot start: bad ip-config, mismatched partitions, missing tools."""


def read_text_file(path: Optional[str], what: str, hint: str = "") -> str:
    """The text of ``path``; LaunchError (one line naming ``what`` and the path) when it is
    missing, a folder, unreadable or not UTF-8 text."""
    if not path:
        raise LaunchError(f"no {what} given")
    hint = f" ({hint})" if hint else ""
    if not os.path.exists(path):
        raise LaunchError(f"{path}: {what} not found{hint}")
    if os.path.isdir(path):
        raise LaunchError(f"{path}: {what} is a folder, expected a file{hint}")
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LaunchError(f"{path}: cannot read the {what} ({exc})") from None


@dataclass
class Host:
    ip: str
    port: int

    @property
    def is_local(self) -> bool:
        try:
            return ipaddress.ip_address(self.ip).is_loopback
        except ValueError:
            return self.ip == "localhost"


def free_port(ip: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``ip`` right now (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def read_ip_config(path: str, num_servers: int = 1) -> List[Host]:
    """Parse an ip-config: one ``IP [PORT]`` per machine; blank lines and ``#`` comments skipped.

    A machine without a port gets a free one (``num_servers`` consecutive ports are used from it).

    Raises
    ------
    LaunchError naming the file and line for a malformed line, a bad IP or port, or a
    duplicate IP (DGL identifies machines by IP: on one host use 127.0.0.1, 127.0.0.2, ...).
    """
    text = read_text_file(path, "ip-config")
    hosts: List[Host] = []
    seen: Dict[str, int] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) > 2:
            raise LaunchError(f"{path}:{lineno}: expected 'IP [PORT]', got {raw!r}")
        ip = parts[0]
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise LaunchError(f"{path}:{lineno}: {ip!r} is not an IPv4/IPv6 address") from None
        if ip in seen:
            raise LaunchError(
                f"{path}:{lineno}: IP {ip} already used on line {seen[ip]}; each machine needs "
                "its own IP (on one host use 127.0.0.1, 127.0.0.2, ...)")
        seen[ip] = lineno
        if len(parts) == 2:
            if not parts[1].isdigit() or not 0 < int(parts[1]) < 65536 - num_servers:
                raise LaunchError(f"{path}:{lineno}: bad port {parts[1]!r}")
            port = int(parts[1])
        else:
            port = free_port(ip) if Host(ip, 0).is_local else 30050
        hosts.append(Host(ip, port))
    if not hosts:
        raise LaunchError(f"{path}: ip-config lists no machine")
    return hosts


def write_debug_ip_config(path: str, num_machines: int) -> List[Host]:
    """Write an ip-config of ``num_machines`` loopback machines 127.0.0.1..N with free ports."""
    if not 1 <= num_machines <= 254:
        raise LaunchError(f"--debug-local needs 1..254 machines, got {num_machines}")
    hosts = [Host(f"127.0.0.{i + 1}", 0) for i in range(num_machines)]
    for h in hosts:
        h.port = free_port(h.ip)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("".join(f"{h.ip} {h.port}\n" for h in hosts))
    return hosts


def check_port_free(host: Host, num_servers: int) -> None:
    """Raise LaunchError if a local server port is already taken."""
    if not host.is_local:
        return
    for p in range(host.port, host.port + num_servers):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host.ip, p))
            except OSError:
                raise LaunchError(f"port {p} on {host.ip} is already in use") from None


def check_partition_matches(part_config: str, hosts: Sequence[Host]) -> dict:
    """The partition config must exist and have one partition per machine.

    Raises
    ------
    LaunchError naming the file and both numbers.
    """
    text = read_text_file(part_config, "partition config", "run `python -m partition`")
    try:
        meta = json.loads(text)
    except ValueError as exc:
        raise LaunchError(f"{part_config}: partition config is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("num_parts"), int):
        raise LaunchError(f"{part_config}: not a DGL partition config (no integer 'num_parts'); "
                          "pass the <graph_name>.json that `python -m partition` wrote")
    if meta.get("num_parts") != len(hosts):
        raise LaunchError(
            f"{part_config} has {meta.get('num_parts')} partitions but the ip-config lists "
            f"{len(hosts)} machines; they must be equal")
    return meta
