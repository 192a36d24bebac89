"""Start DGL servers and trainer processes on every host of an ip-config.

Usage::

    # a real cluster: one "IP [PORT]" line per machine, passwordless ssh to each
    python launch/run_dist.py --ip-config ips.txt --part-config parts/cora.json \\
        --num-trainers 1 -- python -m lmgnn_dist.train --config run.yaml

    # single-machine debug mode: N loopback "machines" 127.0.0.1 .. 127.0.0.N
    python launch/run_dist.py --debug-local 2 --part-config parts/cora.json -- python ...

For each machine ``m`` (line ``m`` of the ip-config, which must match partition ``m``) the
launcher starts ``--num-servers`` DGL servers (``DGL_ROLE=server``) and ``--num-trainers``
trainers (``DGL_ROLE=client`` plus the ``torch.distributed`` env: ``MASTER_ADDR`` = first
machine, ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), the same environment contract as DGL's own
``tools/launch.py``. Loopback hosts are started as local subprocesses; any other host over
``ssh`` (``--ssh-port``, ``--ssh-user``, ``--ssh-opt``). Each process's output is streamed with
a ``[server-m.s]``/``[trainer-r]`` prefix. If any process fails, the others are stopped (their
whole process groups) and the launcher exits with that process's code; Ctrl-C does the same.

Remote hosts: nothing is copied. Before anything starts, one ``ssh`` call per remote host
(:func:`preflight_remote`) checks that the working directory, the partition config, this
machine's partition files, the ip-config, the workspace, the program and every command
argument that names a local file exist there, and that the server ports are free; any failure
is reported in one line naming the host and path/port. Each remote process runs under a small
``sh`` wrapper (:func:`remote_command`) that puts it in its own process group and kills that
group when the ssh channel's stdin closes, so stopping the local ``ssh`` client (or the
launcher dying) tears the remote processes down too.
"""
from __future__ import annotations

import argparse
import io
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

#: ``MASTER_PORT`` that :meth:`Launcher.start` gives the trainers when machine 0 is remote.
REMOTE_MASTER_PORT = 29500
#: seconds a remote process group gets between SIGTERM and SIGKILL at teardown.
REMOTE_KILL_GRACE_S = 5
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class LaunchError(RuntimeError):
    """A launch cannot start: bad ip-config, mismatched partitions, missing tools."""


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
    if not os.path.exists(path):
        raise LaunchError(f"{path}: ip-config not found")
    hosts: List[Host] = []
    seen: Dict[str, int] = {}
    for lineno, raw in enumerate(Path(path).read_text().splitlines(), 1):
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


def ssh_argv(host: Host, ssh_port: int = 22, ssh_user: str = "", ssh_opts: Sequence[str] = (),
             connect_timeout: float = 10.0) -> List[str]:
    """The ``ssh`` command line up to and including the target; the remote command follows.

    Non-interactive (``BatchMode=yes``: a host that wants a password fails instead of asking),
    ``ConnectTimeout``, keep-alives (a host that dies ends its ssh within ~60 s, which the
    launcher sees as a failed process). ``ssh_opts`` (``--ssh-opt``) come first: ssh keeps the
    first value given for an option, so they override these defaults. Raises nothing.
    """
    argv = ["ssh"]
    for opt in ssh_opts:
        argv += ["-o", opt]
    argv += ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
             "-o", f"ConnectTimeout={max(1, int(round(connect_timeout)))}", "-o", "LogLevel=ERROR",
             "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4",
             "-p", str(ssh_port), f"{ssh_user}@{host.ip}" if ssh_user else host.ip]
    return argv


# Runs "$@" in its own process group (setsid) and kills that group when stdin (the ssh
# channel) reaches EOF: the launcher closing the pipe, its ssh client being killed, or the
# launcher dying all close it. SIGTERM first, SIGKILL after the grace period. When the
# command ends by itself, leftovers of its group are stopped too and its exit code returned.
# (A background job's stdin is /dev/null in a non-interactive sh, hence fd 3.)
_REMOTE_WRAPPER = """\
exec 3<&0 </dev/null
setsid "$@" 3<&- &
pid=$!
{ cat <&3 >/dev/null; kill -s TERM -- -$pid || kill -s TERM $pid; sleep %(grace)d; kill -s KILL -- -$pid; } >/dev/null 2>&1 &
w=$!
exec 3<&-
wait $pid
rc=$?
kill -s TERM $w 2>/dev/null
kill -s TERM -- -$pid 2>/dev/null && { sleep 1; kill -s KILL -- -$pid 2>/dev/null; }
exit $rc
"""


def check_env_key(key: str) -> None:
    """Raise LaunchError unless ``key`` is a valid environment variable name."""
    if not _ENV_KEY.match(key):
        raise LaunchError(f"--env: {key!r} is not a valid environment variable name")


def remote_command(cwd: str, env: Dict[str, str], command: Sequence[str],
                   grace_s: int = REMOTE_KILL_GRACE_S) -> str:
    """The string ssh runs on a remote host: ``cd cwd``, export ``env``, run ``command``.

    Every value is shell-quoted, so values with spaces, quotes, ``$`` or newlines arrive
    verbatim. The whole script runs under ``sh -c`` whatever the login shell, in the wrapper
    above (its own process group, killed when the ssh channel's stdin closes).

    Raises
    ------
    LaunchError for an env key that is not a variable name.
    """
    for k in env:
        check_env_key(k)
    script = f"cd {shlex.quote(cwd)} || exit 127\n"
    if env:
        script += "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + "\n"
    script += _REMOTE_WRAPPER % {"grace": grace_s}
    return "exec sh -c " + shlex.quote(script) + " lmgnn-remote " + " ".join(
        shlex.quote(c) for c in command)


# Run by the pre-flight check with the remote python: ``IP PORT...``. Reports ports that
# cannot be bound on IP and the interface that holds IP (for GLOO_SOCKET_IFNAME).
_PORT_CHECK = r"""
import errno, socket, sys
ip = sys.argv[1]
fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
for p in sys.argv[2:]:
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((ip, int(p)))
    except OSError as e:
        print("@@lmgnn busy", p, errno.errorcode.get(e.errno, e.errno), e.strerror)
    s.close()
if fam == socket.AF_INET:
    import fcntl, struct
    s = socket.socket(fam, socket.SOCK_DGRAM)
    for _, name in socket.if_nameindex():
        try:
            a = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))
        except OSError:
            continue
        if socket.inet_ntoa(a[20:24]) == ip:
            print("@@lmgnn ifname", name)
            break
"""


def preflight_script(paths: Sequence[str], ip: str, ports: Sequence[int],
                     pythons: Sequence[str]) -> str:
    """The ``sh`` script run on a remote host by :func:`preflight_remote`.

    Prints ``@@lmgnn missing I`` for each ``paths[I]`` that does not exist, ``@@lmgnn
    nosetsid`` without ``setsid``, the port check's lines (first of ``pythons`` found; else
    ``@@lmgnn nopython``) and ``@@lmgnn done`` last.
    """
    q = shlex.quote
    lines = [f"test -e {q(path)} || echo '@@lmgnn missing {i}'" for i, path in enumerate(paths)]
    lines.append("command -v setsid >/dev/null 2>&1 || echo '@@lmgnn nosetsid'")
    lines.append("PY=")
    lines.append("for c in " + " ".join(q(c) for c in pythons)
                 + '; do if command -v "$c" >/dev/null 2>&1; then PY=$c; break; fi; done')
    lines.append('if [ -n "$PY" ]; then "$PY" -c ' + q(_PORT_CHECK) + " " + q(ip) + " "
                 + " ".join(str(p) for p in ports) + "; else echo '@@lmgnn nopython'; fi")
    lines.append("echo '@@lmgnn done'")
    return "\n".join(lines) + "\n"


def remote_required_paths(machine: int, part_config: str, ip_config: str, workspace: str,
                          command: Sequence[str], cwd: str) -> List[Tuple[str, str]]:
    """``(what, absolute path)`` of everything machine ``machine``'s processes need to find.

    The working directory, the partition config and this machine's partition files (from the
    config's ``part-<m>`` entry), the ip-config (every DGL process reads it), the workspace,
    the program if given as a path, and every command argument that names an existing local
    file or folder. Relative paths are taken relative to ``cwd``. Raises nothing.
    """
    def ab(path: str) -> str:
        return os.path.normpath(os.path.join(cwd, path))

    out: List[Tuple[str, str]] = [("the working directory", cwd),
                                  ("the partition config", ab(part_config))]
    try:
        entry = json.loads(Path(ab(part_config)).read_text()).get(f"part-{machine}", {})
    except (OSError, ValueError):
        entry = {}
    if isinstance(entry, dict):
        base = os.path.dirname(ab(part_config))
        for value in entry.values():
            if isinstance(value, str):
                out.append((f"partition {machine}'s file", os.path.normpath(os.path.join(base, value))))
    out += [("the ip-config", ab(ip_config)), ("the workspace", ab(workspace))]
    if command and "/" in command[0]:
        out.append(("the program", ab(command[0])))
    for arg in command[1:]:
        if arg and not arg.startswith("-") and os.path.exists(ab(arg)):
            out.append(("the command argument", ab(arg)))
    seen, unique = set(), []
    for what, path in out:
        if path not in seen:
            seen.add(path)
            unique.append((what, path))
    return unique


@dataclass
class HostCheck:
    """What :func:`check_remote_host` found on one host.

    ``problems``: one phrase each (empty: the host is fine); ``warnings``: checks that could
    not be made; ``ifname``: the interface holding the host's ip-config address, if found.
    """

    host: Host
    problems: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    ifname: Optional[str] = None


def _describe_paths(items: Sequence[Tuple[str, str]]) -> str:
    """``what path, ...``; several files of one kind in one folder as ``whats DIR/{a, b}``."""
    groups: Dict[Tuple[str, str], List[str]] = {}
    for what, path in items:
        groups.setdefault((what, os.path.dirname(path)), []).append(os.path.basename(path))
    parts = []
    for (what, folder), names in groups.items():
        if len(names) == 1:
            parts.append(f"{what} {os.path.join(folder, names[0])}")
        else:
            parts.append(f"{what}s {folder}/{{{', '.join(names)}}}")
    return ", ".join(parts)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def check_remote_host(host: Host, paths: Sequence[Tuple[str, str]], ports: Sequence[int],
                      pythons: Sequence[str], ssh_port: int = 22, ssh_user: str = "",
                      ssh_opts: Sequence[str] = (), connect_timeout: float = 10.0) -> HostCheck:
    """Check ``paths`` and ``ports`` on ``host`` with one ``ssh`` call; never raises.

    Unreachable hosts (ssh exit code 255: connection refused / timed out, authentication
    failed, ...) are reported with ssh's own last error line; a call that hangs past
    ``connect_timeout`` + 20 s is reported as not answering.
    """
    res = HostCheck(host)
    argv = ssh_argv(host, ssh_port, ssh_user, ssh_opts, connect_timeout)
    shown = f"ssh -p {ssh_port} {argv[-1]}"
    script = preflight_script([p for _, p in paths], host.ip, ports, pythons)
    try:
        out = subprocess.run(argv + ["exec sh -c " + shlex.quote(script)], stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=connect_timeout + 20)
    except subprocess.TimeoutExpired:
        res.problems.append(f"host {host.ip} did not answer over ssh ({shown}) within "
                            f"{connect_timeout + 20:.0f}s")
        return res
    if out.returncode == 255:
        reason = _last_line(out.stderr) or "ssh exited with code 255"
        res.problems.append(f"ssh to host {host.ip} failed ({shown}): {reason}")
        return res
    marks = [ln.split()[1:] for ln in out.stdout.splitlines() if ln.startswith("@@lmgnn ")]
    if ["done"] not in marks:
        reason = _last_line(out.stderr) or f"exit code {out.returncode}"
        res.problems.append(f"host {host.ip}: the check did not run over ssh ({shown}): {reason} "
                            "(the login shell must run POSIX sh commands)")
        return res
    missing = [paths[int(m[1])] for m in marks if m[0] == "missing"]
    if missing:
        res.problems.append(f"host {host.ip} lacks " + _describe_paths(missing))
    if ["nosetsid"] in marks:
        res.problems.append(f"host {host.ip} has no 'setsid' command (util-linux), needed to "
                            "stop remote processes")
    if ["nopython"] in marks:
        res.warnings.append(f"host {host.ip} has no python3 on its PATH: ports "
                            f"{', '.join(map(str, ports))} not checked")
    for m in marks:
        if m[0] == "busy":
            port, err, why = m[1], m[2], " ".join(m[3:])
            if err == "EADDRINUSE":
                res.problems.append(f"port {port} on host {host.ip} is already in use")
            elif err == "EADDRNOTAVAIL":
                res.problems.append(f"host {host.ip} has no interface with address {host.ip} "
                                    f"(cannot bind port {port}); list each machine's own address "
                                    "in the ip-config")
            else:
                res.problems.append(f"cannot bind port {port} on host {host.ip}: {why}")
        elif m[0] == "ifname" and len(m) == 2:
            res.ifname = m[1]
    return res


def preflight_remote(hosts: Sequence[Host], part_config: str, ip_config: str, workspace: str,
                     command: Sequence[str], num_servers: int = 1, ssh_port: int = 22,
                     ssh_user: str = "", ssh_opts: Sequence[str] = (),
                     connect_timeout: float = 10.0) -> Dict[str, HostCheck]:
    """Check every remote (non-loopback) host before anything is started; one ssh call each.

    Per host ``m``: the paths of :func:`remote_required_paths`, its server ports
    ``port .. port + num_servers - 1`` (and ``REMOTE_MASTER_PORT`` on machine 0), the
    ``setsid`` command. Hosts are checked concurrently. Returns ``{ip: HostCheck}``.

    Raises
    ------
    LaunchError with one line listing every host's problems (ssh failing: unreachable host,
    refused key, ... with ssh's own reason; missing paths; ports in use), or when remote hosts
    exist but no ``ssh`` client is installed.
    """
    remote = [(m, h) for m, h in enumerate(hosts) if not h.is_local]
    if not remote:
        return {}
    if shutil.which("ssh") is None:
        raise LaunchError(f"host {remote[0][1].ip} is remote but no 'ssh' client is installed "
                          "here; install openssh-client or run on loopback hosts")
    cwd = os.getcwd()
    pythons = ["python3"] + ([command[0]] if command and "python" in os.path.basename(command[0])
                             else [])

    def one(mh: Tuple[int, Host]) -> HostCheck:
        m, h = mh
        ports = list(range(h.port, h.port + num_servers))
        if m == 0:
            ports.append(REMOTE_MASTER_PORT)
        paths = remote_required_paths(m, part_config, ip_config, workspace, command, cwd)
        return check_remote_host(h, paths, ports, pythons, ssh_port, ssh_user, ssh_opts,
                                 connect_timeout)

    with ThreadPoolExecutor(max_workers=min(16, len(remote))) as pool:
        checks = list(pool.map(one, remote))
    problems = [p for c in checks for p in c.problems]
    if problems:
        hint = (" (nothing is copied: every host needs the same paths)"
                if any(" lacks " in p for p in problems) else "")
        raise LaunchError("pre-flight check failed: " + "; ".join(problems) + hint)
    return {c.host.ip: c for c in checks}


@dataclass
class ProcSpec:
    """One process of a job: its name (``server-m.s``/``trainer-r``), machine and environment.

    ``env`` is what the process needs on top of the inherited environment (the launcher
    contract); ``machine`` indexes the job's host list (= partition id).
    """

    name: str
    machine: int
    env: Dict[str, str]
    is_server: bool


def process_specs(hosts: Sequence[Host], part_config: str, ip_config: str, num_trainers: int = 1,
                  num_servers: int = 1, num_samplers: int = 0, omp_threads: int = 1,
                  extra_env: Optional[Dict[str, str]] = None, graph_format: str = "csc",
                  job_id: str = "", master_port: Optional[int] = None) -> List[ProcSpec]:
    """The environment contract of every process of a job, servers first (pure: starts nothing).

    For each machine ``m`` (``hosts[m]``, serving partition ``m``): ``num_servers`` DGL servers
    (``DGL_ROLE=server``, ``DGL_SERVER_ID``) and ``num_trainers`` trainers (``DGL_ROLE=client``
    and the ``torch.distributed`` env: ``MASTER_ADDR`` = ``hosts[0]``, ``MASTER_PORT``,
    ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), plus the ``DGL_*`` variables every process reads.
    A process on a loopback host also gets ``LMGNN_MACHINE_IP``/``LMGNN_MACHINE_ID``/
    ``LMGNN_JOB_ID`` (see :mod:`lmgnn_dist.dist_init`). ``master_port`` defaults to a free
    port on a loopback master and 29500 otherwise. Used by :class:`Launcher` and by the Ray
    actors of :mod:`lmgnn_dist.ray_pipeline`.
    """
    base = {
        "DGL_IP_CONFIG": os.path.abspath(ip_config),
        "DGL_CONF_PATH": os.path.abspath(part_config),
        "DGL_NUM_SERVER": str(num_servers),
        "DGL_NUM_CLIENT": str(num_trainers * (1 + num_samplers) * len(hosts)),
        "DGL_NUM_SAMPLER": str(num_samplers),
        "DGL_GRAPH_FORMAT": graph_format,
        "DGL_DIST_MODE": "distributed",
        "DGL_KEEP_ALIVE": "0",
        "OMP_NUM_THREADS": str(omp_threads),
        "PYTHONUNBUFFERED": "1",
    }
    base.update(extra_env or {})

    def machine_env(m: int) -> Dict[str, str]:
        if not hosts[m].is_local:
            return dict(base)
        return dict(base, LMGNN_MACHINE_IP=hosts[m].ip, LMGNN_MACHINE_ID=str(m),
                    LMGNN_JOB_ID=job_id)

    specs: List[ProcSpec] = []
    for m in range(len(hosts)):
        for s in range(num_servers):
            env = dict(machine_env(m), DGL_ROLE="server", DGL_SERVER_ID=str(m * num_servers + s))
            specs.append(ProcSpec(f"server-{m}.{s}", m, env, True))
    master = hosts[0]
    if master_port is None:
        master_port = free_port(master.ip) if master.is_local else 29500
    world = num_trainers * len(hosts)
    for m in range(len(hosts)):
        for t in range(num_trainers):
            rank = m * num_trainers + t
            env = dict(machine_env(m), DGL_ROLE="client", DGL_GROUP_ID="0",
                       MASTER_ADDR=master.ip, MASTER_PORT=str(master_port), RANK=str(rank),
                       WORLD_SIZE=str(world), LOCAL_RANK=str(t))
            specs.append(ProcSpec(f"trainer-{rank}", m, env, False))
    return specs


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    is_server: bool
    thread: Optional[threading.Thread] = None
    remote: bool = False


@dataclass
class Launcher:
    """Starts, streams and supervises the processes of one distributed job."""

    hosts: List[Host]
    part_config: str
    command: List[str]
    num_trainers: int = 1
    num_servers: int = 1
    num_samplers: int = 0
    omp_threads: int = 1
    ssh_port: int = 22
    ssh_user: str = ""
    extra_env: Dict[str, str] = field(default_factory=dict)
    graph_format: str = "csc"
    ip_config: str = ""
    server_grace_s: float = 60.0
    ssh_opts: List[str] = field(default_factory=list)
    connect_timeout: float = 10.0
    host_env: Dict[str, Dict[str, str]] = field(default_factory=dict)
    procs: List[Proc] = field(default_factory=list)
    job_id: str = field(default_factory=lambda: os.urandom(4).hex())
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _spawn(self, name: str, host: Host, env: Dict[str, str], is_server: bool) -> None:
        if host.is_local:
            # several machines share this host: see lmgnn_dist.dist_init (shared-memory isolation)
            env = dict(env, LMGNN_MACHINE_IP=host.ip, LMGNN_JOB_ID=self.job_id,
                       LMGNN_MACHINE_ID=str(self.hosts.index(host)))
            full_env = dict(os.environ)
            full_env.update(env)
            popen = subprocess.Popen(self.command, env=full_env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        else:
            if shutil.which("ssh") is None:
                raise LaunchError(
                    f"host {host.ip} is remote but no 'ssh' client is installed here; "
                    "install openssh-client or run on loopback hosts")
            # host_env (found by the pre-flight check, e.g. GLOO_SOCKET_IFNAME) < base < --env
            env = dict(self.host_env.get(host.ip, {}), **env)
            # stdin: a pipe the launcher never writes; closing it (stop(), or this process
            # dying) makes the remote wrapper kill the remote process group.
            popen = subprocess.Popen(
                ssh_argv(host, self.ssh_port, self.ssh_user, self.ssh_opts, self.connect_timeout)
                + [remote_command(os.getcwd(), env, self.command)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                start_new_session=True)
        proc = Proc(name, popen, is_server, remote=not host.is_local)
        proc.thread = threading.Thread(target=self._stream, args=(proc,), daemon=True)
        proc.thread.start()
        self.procs.append(proc)

    def _stream(self, proc: Proc) -> None:
        assert proc.popen.stdout is not None
        # universal newlines: a progress bar's '\r' refreshes become lines of their own
        text = io.TextIOWrapper(proc.popen.stdout, encoding="utf-8", errors="replace", newline=None)
        for line in text:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            with self._lock:
                print(f"[{proc.name}] {line}", flush=True)

    def start(self) -> None:
        for spec in self.process_specs():
            self._spawn(spec.name, self.hosts[spec.machine], spec.env, spec.is_server)

    def process_specs(self, master_port: Optional[int] = None) -> List["ProcSpec"]:
        """This job's processes as :func:`process_specs` describes them."""
        return process_specs(self.hosts, self.part_config, self.ip_config, self.num_trainers,
                             self.num_servers, self.num_samplers, self.omp_threads,
                             self.extra_env, self.graph_format, self.job_id, master_port)

    def stop(self, sig: int = signal.SIGTERM, wait_s: float = 10.0) -> None:
        """Stop every process that is still running (its whole group), SIGKILL after ``wait_s``.

        A remote process is stopped by closing its ssh client's stdin: the remote wrapper then
        sends its process group SIGTERM, SIGKILL after ``REMOTE_KILL_GRACE_S``, and ssh exits
        once the remote side is gone (the ssh client itself is killed only if that takes
        longer than ``wait_s + REMOTE_KILL_GRACE_S``). Raises nothing.
        """
        for p in self.procs:
            if p.popen.poll() is None:
                if p.remote and p.popen.stdin is not None:
                    try:
                        p.popen.stdin.close()
                    except OSError:
                        pass
                    continue
                try:
                    os.killpg(p.popen.pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.time() + wait_s
        for p in self.procs:
            extra = REMOTE_KILL_GRACE_S if p.remote else 0.0
            try:
                p.popen.wait(max(0.0, deadline + extra - time.time()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.popen.wait()

    def wait(self) -> int:
        """Supervise until all trainers end; returns 0 or the first failing exit code."""
        trainers = [p for p in self.procs if not p.is_server]
        servers_done_by: Optional[float] = None
        while True:
            for p in self.procs:
                rc = p.popen.poll()
                if rc not in (None, 0):
                    with self._lock:
                        print(f"[launcher] {p.name} exited with code {rc}; stopping the others",
                              flush=True)
                    self.stop()
                    self._join_streams()
                    return rc
            if all(p.popen.poll() == 0 for p in trainers):
                # DGL servers exit by themselves once every client has finished.
                servers_done_by = servers_done_by or time.time() + self.server_grace_s
                if all(p.popen.poll() is not None for p in self.procs):
                    self._join_streams()
                    return 0
                if time.time() > servers_done_by:
                    with self._lock:
                        print("[launcher] servers did not exit after the trainers; stopping them",
                              flush=True)
                    self.stop()
                    self._join_streams()
                    return 0
            time.sleep(0.2)

    def _join_streams(self) -> None:
        for p in self.procs:
            if p.thread is not None:
                p.thread.join(timeout=5)


def check_partition_matches(part_config: str, hosts: Sequence[Host]) -> dict:
    """The partition config must exist and have one partition per machine.

    Raises
    ------
    LaunchError naming the file and both numbers.
    """
    if not os.path.exists(part_config):
        raise LaunchError(f"{part_config}: partition config not found (run `python -m partition`)")
    meta = json.loads(Path(part_config).read_text())
    if meta.get("num_parts") != len(hosts):
        raise LaunchError(
            f"{part_config} has {meta.get('num_parts')} partitions but the ip-config lists "
            f"{len(hosts)} machines; they must be equal")
    return meta


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Launch DGL servers + trainers on the machines of an ip-config.",
        usage="%(prog)s (--ip-config FILE | --debug-local N) --part-config JSON [options] -- CMD ...")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--ip-config", help="one 'IP [PORT]' line per machine")
    where.add_argument("--debug-local", type=int, metavar="N",
                       help="single-machine debug mode: N loopback machines 127.0.0.1..N")
    p.add_argument("--part-config", required=True, help="DGL partition JSON (<out>/<graph>.json)")
    p.add_argument("--workspace", default=".", help="folder for the generated ip-config")
    p.add_argument("--num-trainers", type=int, default=1, help="trainer processes per machine")
    p.add_argument("--num-servers", type=int, default=1, help="DGL servers per machine")
    p.add_argument("--num-samplers", type=int, default=0, help="DGL sampler processes per trainer")
    p.add_argument("--omp-threads", type=int, default=1, help="OMP_NUM_THREADS of each process")
    p.add_argument("--ssh-port", type=int, default=22, help="ssh port of the remote hosts")
    p.add_argument("--ssh-user", default="", help="ssh user on the remote hosts")
    p.add_argument("--ssh-opt", action="append", default=[], metavar="OPT",
                   help="extra 'ssh -o' option, e.g. IdentityFile=~/.ssh/k (repeatable; "
                        "overrides the launcher's defaults)")
    p.add_argument("--ssh-connect-timeout", type=float, default=10.0, metavar="S",
                   help="ssh ConnectTimeout in seconds (default 10)")
    p.add_argument("--env", action="append", default=[], metavar="K=V",
                   help="extra environment variable for every process (repeatable)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="trainer command after '--'")
    args = p.parse_args(argv)
    if args.command and args.command[0] == "--":
        args.command = args.command[1:]
    if not args.command:
        p.error("missing trainer command after '--'")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point; returns the exit code.

    2 with one ``error: ...`` line on stderr for bad input or a failed pre-flight check
    (nothing has been started then), otherwise the job's exit code (first failing process),
    ``128 + signal`` when stopped by SIGINT/SIGTERM. Raises nothing for bad input.
    """
    args = parse_args(argv)
    try:
        if args.debug_local:
            ip_config = os.path.join(args.workspace, "ip_config_debug.txt")
            hosts = write_debug_ip_config(ip_config, args.debug_local)
        else:
            ip_config = args.ip_config
            hosts = read_ip_config(ip_config, args.num_servers)
        check_partition_matches(args.part_config, hosts)
        for h in hosts:
            check_port_free(h, args.num_servers)
        extra = {}
        for kv in args.env:
            if "=" not in kv:
                raise LaunchError(f"--env expects K=V, got {kv!r}")
            k, v = kv.split("=", 1)
            check_env_key(k)
            extra[k] = v
        checks = preflight_remote(hosts, args.part_config, ip_config, args.workspace,
                                  args.command, args.num_servers, args.ssh_port, args.ssh_user,
                                  args.ssh_opt, args.ssh_connect_timeout)
    except LaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    host_env: Dict[str, Dict[str, str]] = {}
    for ip, c in checks.items():
        for w in c.warnings:
            print(f"[launcher] warning: {w}", file=sys.stderr, flush=True)
        # torch's gloo picks its address from the hostname, which often resolves to a
        # loopback address (Debian: 127.0.1.1); name the interface holding the host's address
        if c.ifname and "GLOO_SOCKET_IFNAME" not in extra:
            host_env[ip] = {"GLOO_SOCKET_IFNAME": c.ifname}
            print(f"[launcher] host {ip}: GLOO_SOCKET_IFNAME={c.ifname}", flush=True)
    launcher = Launcher(hosts, args.part_config, args.command, args.num_trainers,
                        args.num_servers, args.num_samplers, args.omp_threads, args.ssh_port,
                        args.ssh_user, extra, ip_config=ip_config, ssh_opts=list(args.ssh_opt),
                        connect_timeout=args.ssh_connect_timeout, host_env=host_env)

    def on_signal(signum, _frame):
        print(f"[launcher] signal {signum}: stopping all processes", flush=True)
        launcher.stop()
        sys.exit(128 + signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        launcher.start()
    except LaunchError as exc:
        launcher.stop()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return launcher.wait()


if __name__ == "__main__":
    sys.exit(main())
