"""Command line of the partitioner.

``python -m partition --tag examples/cora/tag --out work/cora_parts --num-parts 2``

Bad input (TAG, options, output folder, model) ends with exit code 2 and one line on stderr,
``error: <file or option>: <what is wrong>``; nothing is written then.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

from .build import PartitionOptions, partition_tag
from .tag import TAGFormatError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """A usage error as one line (argparse prints the usage first), exit code 2."""
        self.exit(2, f"error: {message} (see python -m partition --help)\n")


def main(argv: Optional[Sequence[str]] = None) -> None:
    d = PartitionOptions()
    p = _Parser(prog="python -m partition",
                                description="Tokenise a Parquet TAG and partition it with DGL.")
    p.add_argument("--tag", required=True, help="TAG folder (nodes/, edges/, metadata.json)")
    p.add_argument("--out", required=True, help="output folder for the partitions")
    p.add_argument("--num-parts", type=int, default=d.num_parts)
    p.add_argument("--method", choices=["metis", "random"], default=d.method)
    p.add_argument("--num-trainers-per-machine", type=int, default=d.num_trainers_per_machine)
    p.add_argument("--model", default=d.model, help="tokenizer: alias, local folder or HF id")
    p.add_argument("--max-seq-len", type=int, default=d.max_seq_len)
    p.add_argument("--graph-name", default=d.graph_name)
    p.add_argument("--holdout-etype", action="append", default=[], metavar="SRC__ETYPE__DST",
                   help="link-prediction target: its val/test edges (and reverses) leave the "
                        "graph and are saved with filtered negatives (repeatable)")
    p.add_argument("--eval-negatives", type=int, default=d.eval_negatives,
                   help="filtered negatives per held-out edge")
    p.add_argument("--add-reverse-edges", action=argparse.BooleanOptionalAction,
                   default=d.add_reverse_edges,
                   help="add rev_<etype> for every relation whose reverse is not in the TAG "
                        "(default: on; --no-add-reverse-edges keeps the TAG's relations)")
    args = p.parse_args(argv)
    opts = PartitionOptions(args.num_parts, args.method, args.num_trainers_per_machine,
                            args.model, args.max_seq_len, args.graph_name,
                            holdout_etypes=args.holdout_etype, eval_negatives=args.eval_negatives,
                            add_reverse_edges=args.add_reverse_edges)
    try:
        meta = partition_tag(args.tag, args.out, opts)
    except (TAGFormatError, ValueError, OSError) as exc:  # OSError: FileNotFoundError, disk full
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps({"out": args.out, "times": meta["times"]}, indent=None))


if __name__ == "__main__":
    main()
