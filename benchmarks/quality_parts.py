"""The quality benchmark's parts (issue 21): the data sets a run is made on, each with its base
config, TAG folder, how to make it, data and budget overrides and test-set size.
:mod:`quality_defs` re-exports :data:`PARTS`."""
from __future__ import annotations

from typing import Dict

#: part -> base config, TAG folder, how to make it (None: it is in the repo), its data
#: overrides, its budget overrides (stage epochs/steps ...; empty: the config's) and its
#: test-set size (for the per-node MDD of records without per-node predictions, which carry
#: their own count: arXiv-2023 split/test.csv.gz 668, its random split 6,775,
#: examples/cora/tag 543, low-label 1000)
PARTS: Dict[str, dict] = {
    "arxiv": {
        "config": "examples/arxiv2023/pipeline.yaml", "tag": "work/quality/arxiv23/tag",
        "convert": ["-m", "partition.converters.arxiv2023", "--src", "../shared/data/arxiv_2023",
                    "--out", "work/quality/arxiv23/tag"],
        "data": ["data.graph_name=arxiv2023", "data.max_seq_len=32"],
        "budget": [], "test_nodes": 668,
    },
    "arxiv_random": {  # issue 21 item 3: a seeded random 60/20/20 of all 33,868 labelled
        # nodes (6,775 test: one accuracy's standard error ~0.56 points, the time split's ~1.8)
        "config": "examples/arxiv2023/pipeline.yaml", "tag": "work/quality/arxiv23_random/tag",
        "convert": ["-m", "partition.converters.arxiv2023", "--src", "../shared/data/arxiv_2023",
                    "--out", "work/quality/arxiv23_random/tag", "--split", "random",
                    "--seed", "0"],
        "data": ["data.graph_name=arxiv2023r", "data.max_seq_len=32"],
        "budget": [], "test_nodes": 6775,
    },
    "cora": {
        "config": "examples/cora/pipeline.yaml", "tag": "examples/cora/tag", "convert": None,
        # [CLS], what every Cora row ran before the example (make demo) took mean pooling;
        # joint_pretrained_bf16_mean is make demo's recipe since then
        "data": ["data.graph_name=cora", "data.max_seq_len=128", "model.pooling=cls"],
        "budget": [], "test_nodes": 543,
    },
    "cora_low": {
        "config": "examples/cora/pipeline.yaml", "tag": "work/quality/cora_low/tag",
        "convert": ["-m", "partition.converters.tape", "--pt", "../shared/data/cora_tag/cora.pt",
                    "--out", "work/quality/cora_low/tag", "--classes", "cora",
                    "--split", "low_label", "--seed", "0"],
        "data": ["data.graph_name=cora_low", "data.max_seq_len=128", "model.pooling=cls"],
        "budget": ["stage1.epochs=10", "stage3.epochs=8", "stage3.eval_every=12"],
        "test_nodes": 1000,
        # 140 training nodes = 3 batches of 32 per trainer: epochs are tiny, so more of them
        # (stage 1 LM-only: 30 steps; stage 3: 24 steps, validated after 12 and 24)
    },
}
