"""What the drivers do before a job (lmgnn_dist.drivers.prepare): stale partitions are rebuilt or
refused, naming the input that changed."""
from __future__ import annotations

import shutil

import pandas as pd
import pytest

from lmgnn_dist.config import ConfigError, load_config
from lmgnn_dist.drivers.prepare import ensure_partitions


def _cfg(tmp_path, tag, bert, *extra):
    return load_config(None, [f"output_dir={tmp_path / 'run'}", f"data.tag_path={tag}",
                              f"data.part_dir={tmp_path / 'parts'}", "data.graph_name=tiny",
                              "data.max_seq_len=16", "data.part_method=random",
                              f"model.lm={bert}", *extra])


def test_stale_partitions_are_rebuilt_or_refused_naming_the_change(tmp_path, tiny_tag_dir,
                                                                   tiny_bert_dir, capsys):
    tag = tmp_path / "tag"
    shutil.copytree(tiny_tag_dir, tag)
    first = ensure_partitions(_cfg(tmp_path, tag, tiny_bert_dir))
    assert ensure_partitions(_cfg(tmp_path, tag, tiny_bert_dir)) == first
    assert "using existing partitions" in capsys.readouterr().out
    nodes = pd.read_parquet(tag / "nodes" / "paper.parquet")
    nodes["text"] = nodes["text"] + " edited"  # the user edited the texts
    nodes.to_parquet(tag / "nodes" / "paper.parquet")
    with pytest.raises(ConfigError, match=r"nodes/paper\.parquet changed .*on_partition_change"):
        ensure_partitions(_cfg(tmp_path, tag, tiny_bert_dir, "data.on_partition_change=refuse"))
    with pytest.raises(ConfigError, match=r"option max_seq_len 16 -> 12"):
        ensure_partitions(_cfg(tmp_path, tag, tiny_bert_dir, "data.on_partition_change=refuse",
                               "data.max_seq_len=12"))
    meta = ensure_partitions(_cfg(tmp_path, tag, tiny_bert_dir))
    out = capsys.readouterr().out
    assert "are stale (nodes/paper.parquet changed" in out and "partitioned in" in out
    assert meta["fingerprint"] != first["fingerprint"]
    assert ensure_partitions(_cfg(tmp_path, tag, tiny_bert_dir,
                                  "data.on_partition_change=refuse")) == meta  # fresh again
