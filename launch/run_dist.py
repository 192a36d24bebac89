"""Start DGL servers and trainer processes on every host of an ip-config.

Usage::

    # a real cluster: one "IP [PORT]" line per machine, passwordless ssh to each
    python launch/run_dist.py --ip-config ips.txt --part-config parts/cora.json \\
        --num-trainers 1 -- python -m lmgnn_dist.jobs.train --config run.yaml

    # single-machine debug mode: N loopback "machines" 127.0.0.1 .. 127.0.0.N
    python launch/run_dist.py --debug-local 2 --part-config parts/cora.json -- python ...

For each machine ``m`` (line ``m`` of the ip-config, which must match partition ``m``) the
launcher starts ``--num-servers`` DGL servers (``DGL_ROLE=server``) and ``--num-trainers``
trainers (``DGL_ROLE=client`` plus the ``torch.distributed`` env: ``MASTER_ADDR`` = first
machine, ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), the same environment contract as DGL's own
``tools/launch.py``. Loopback hosts are started as local subprocesses; any other host over
``ssh`` (``--ssh-port``, ``--ssh-user``, ``--ssh-opt``). Each process's output is streamed with
a ``[server-m.s]``/``[trainer-r]`` prefix (``--log-dir``: also into ``<dir>/<process>.log``;
``--quiet``: on the console only what the trainers mark for the user, error lines and the
launcher's own, see :class:`launch.output.ProcessOutput`). If any process fails, the others are stopped (their
whole process groups) and the launcher exits with that process's code; Ctrl-C does the same.

Remote hosts: nothing is copied. Before anything starts, one ``ssh`` call per remote host
(:func:`preflight_remote`) checks that the working directory, the partition config, this
machine's partition files, the ip-config, the workspace, the program and every command
argument that names a local file exist there, and that the server ports are free; any failure
is reported in one line naming the host and path/port. Each remote process runs under a small
``sh`` wrapper (:func:`remote_command`) that puts it in its own process group and kills that
group when the ssh channel's stdin closes, so stopping the local ``ssh`` client (or the
launcher dying) tears the remote processes down too.

From Python: :func:`launch.api.launch` with a :class:`launch.api.LaunchSpec` (this command
line is a thin layer over it: :func:`spec_from_args`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence

if __package__ in (None, ""):  # run as a script: python launch/run_dist.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from launch.api import Launcher, LaunchSpec, Machines, SSHSettings, launch  # noqa: E402
from launch.hosts import LaunchError  # noqa: E402

__all__ = ["Launcher", "LaunchSpec", "main", "parse_args", "spec_from_args"]


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
    p.add_argument("--log-dir", metavar="DIR",
                   help="write each process's output to DIR/<process>.log")
    p.add_argument("--quiet", action="store_true",
                   help="console: only the lines the trainers mark for the user (one progress "
                        "bar and one summary line per stage), error lines and the launcher's "
                        "own; everything else only in --log-dir")
    p.add_argument("command", nargs=argparse.REMAINDER, help="trainer command after '--'")
    args = p.parse_args(argv)
    if args.command and args.command[0] == "--":
        args.command = args.command[1:]
    if not args.command:
        p.error("missing trainer command after '--'")
    return args


def spec_from_args(args: argparse.Namespace) -> LaunchSpec:
    """The :class:`~launch.api.LaunchSpec` of parsed command-line arguments.

    Raises
    ------
    LaunchError naming the ``--env`` value that is not ``K=V``.
    """
    env: Dict[str, str] = {}
    for kv in args.env:
        if "=" not in kv:
            raise LaunchError(f"--env expects K=V, got {kv!r}")
        k, v = kv.split("=", 1)
        env[k] = v
    return LaunchSpec(
        Machines(debug_local=args.debug_local, ip_config=args.ip_config or ""),
        args.part_config, workspace=args.workspace, num_trainers=args.num_trainers,
        num_servers=args.num_servers, num_samplers=args.num_samplers,
        omp_threads=args.omp_threads,
        ssh=SSHSettings(args.ssh_port, args.ssh_user, tuple(args.ssh_opt),
                        args.ssh_connect_timeout),
        env=env, log_dir=args.log_dir, quiet=args.quiet)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point over :func:`launch.api.launch`; returns the exit code.

    2 with one ``error: ...`` line on stderr for bad input or a failed pre-flight check
    (nothing has been started then), otherwise the job's exit code (first failing process),
    ``128 + signal`` when stopped by SIGINT/SIGTERM. Raises nothing for bad input.
    """
    args = parse_args(argv)
    try:
        spec = spec_from_args(args)
    except LaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return launch(spec, args.command)


if __name__ == "__main__":
    sys.exit(main())
