"""Remote (non-loopback) hosts over ``ssh``: the command line, the remote wrapper that ties a
remote process group to its ssh channel, and the pre-flight check of every host before
anything starts (paths, ports, ``setsid``, the interface for gloo)."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .hosts import Host, LaunchError

#: ``MASTER_PORT`` that :meth:`Launcher.start` gives the trainers when machine 0 is remote.
REMOTE_MASTER_PORT = 29500
#: seconds a remote process group gets between SIGTERM and SIGKILL at teardown.
REMOTE_KILL_GRACE_S = 5
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


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
