"""launch.api: the config -> LaunchSpec translation and the CLI -> spec translation, without
starting any process."""
from __future__ import annotations

import json

import pytest

from launch import api
from launch.api import LaunchSpec, Machines, SSHSettings
from launch.hosts import LaunchError
from launch.run_dist import parse_args, spec_from_args
from lmgnn_dist.config import load_config
from lmgnn_dist.drivers.pipeline import launch_spec


def _cfg(tmp_path, *overrides):
    return load_config("examples/cora/pipeline.yaml",
                       [f"output_dir={tmp_path / 'run'}", *overrides])


def test_config_to_spec_debug_local(tmp_path):
    cfg = _cfg(tmp_path, "launch.debug_local=3", "data.num_parts=3", "launch.num_trainers=2",
               "launch.num_servers=2", "launch.omp_threads=4", "launch.ssh_port=2222",
               "launch.ssh_user=me", "launch.ssh_opts=[IdentityFile=k]", "launch.env={A: x=1}")
    spec = launch_spec(cfg, "parts/g.json")
    assert spec == LaunchSpec(Machines(debug_local=3), "parts/g.json",
                              workspace=cfg.output_dir, num_trainers=2, num_servers=2,
                              omp_threads=4, ssh=SSHSettings(2222, "me", ("IdentityFile=k",)),
                              env={"A": "x=1"}, log_dir=str(tmp_path / "run" / "logs"),
                              quiet=True)
    # another workspace (the embed driver's --out): logs and ip-config go there
    out = launch_spec(cfg, "parts/g.json", workspace=str(tmp_path / "emb"), verbose=True)
    assert out.workspace == str(tmp_path / "emb") and not out.quiet
    assert out.log_dir == str(tmp_path / "emb" / "logs")


def test_config_to_spec_ip_config(tmp_path):
    spec = launch_spec(_cfg(tmp_path, "launch.debug_local=0", "launch.ip_config=ips.txt"), "g.json")
    assert spec.machines == Machines(ip_config="ips.txt")


def test_cli_to_spec():
    args = parse_args(["--debug-local", "2", "--part-config", "g.json", "--workspace", "w",
                       "--num-trainers", "3", "--ssh-opt", "A=b", "--env", "K=v=w",
                       "--log-dir", "L", "--quiet", "--", "python", "-c", "pass"])
    spec = spec_from_args(args)
    assert spec == LaunchSpec(Machines(debug_local=2), "g.json", workspace="w", num_trainers=3,
                              ssh=SSHSettings(opts=("A=b",)), env={"K": "v=w"}, log_dir="L",
                              quiet=True)
    assert args.command == ["python", "-c", "pass"]


def test_machines_need_exactly_one_source(tmp_path):
    for bad in (Machines(), Machines(debug_local=1, ip_config="x")):
        with pytest.raises(LaunchError, match="exactly one of debug_local"):
            bad.resolve(str(tmp_path))
    path, hosts = Machines(debug_local=2).resolve(str(tmp_path))
    assert path == str(tmp_path / "ip_config_debug.txt") and len(hosts) == 2


def test_prepare_builds_the_launcher_without_starting(tmp_path, monkeypatch):
    conf = tmp_path / "g.json"
    conf.write_text(json.dumps({"num_parts": 2}))
    monkeypatch.setattr(api.Launcher, "start", lambda self: pytest.fail("started"))
    spec = LaunchSpec(Machines(debug_local=2), str(conf), workspace=str(tmp_path),
                      num_trainers=2, omp_threads=3, env={"X": "1"}, log_dir=str(tmp_path / "l"))
    launcher = api.prepare(spec, ["python", "-c", "pass"])
    assert [h.ip for h in launcher.hosts] == ["127.0.0.1", "127.0.0.2"]
    assert launcher.ip_config == str(tmp_path / "ip_config_debug.txt")
    specs = launcher.process_specs()
    assert len(specs) == 2 + 4
    assert all(s.env["OMP_NUM_THREADS"] == "3" and s.env["X"] == "1" for s in specs)
    assert launcher.output.log_dir == str(tmp_path / "l") and launcher.output.verbose


def test_launch_bad_input_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(api.Launcher, "start", lambda self: pytest.fail("started"))
    spec = LaunchSpec(Machines(debug_local=1), str(tmp_path / "missing.json"),
                      workspace=str(tmp_path))
    assert api.launch(spec, ["true"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.json: partition config not found" in err[0]
    conf = tmp_path / "g.json"
    conf.write_text(json.dumps({"num_parts": 1}))
    bad_env = LaunchSpec(Machines(debug_local=1), str(conf), workspace=str(tmp_path),
                         env={"BAD KEY": "1"})
    assert api.launch(bad_env, ["true"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "BAD KEY" in err[0]
