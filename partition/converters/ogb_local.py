"""Local OGB files and offline loading: the supported datasets, the folder layout ogb's DGL
loaders read (:func:`required_files`), the check that every file is there before ogb runs
(:func:`check_files`, one error listing the layout) and loading through ogb with its PyPI
version check, downloads and ``input()`` prompts disabled (:func:`load_offline`). Used by
:func:`partition.converters.ogb.convert_ogb`.
"""
from __future__ import annotations

import builtins
import importlib
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple
from unittest import mock

#: per dataset: node type, relation, node-id mapping file, label-name mapping file, default
#: text files (relative to ``<root>`` / to the dataset folder ``{ds}``).
DATASETS: Dict[str, dict] = {
    "ogbn-arxiv": {
        "kind": "node", "ntype": "paper", "etype": "cites",
        "mapping": "nodeidx2paperid.csv.gz", "label_names": "labelidx2arxivcategeory.csv.gz",
        "text_defaults": ["titleabs.tsv", "{ds}/titleabs.tsv"], "text_kind": "titleabs",
    },
    "ogbn-products": {
        "kind": "node", "ntype": "product", "etype": "copurchased",
        "mapping": "nodeidx2asin.csv.gz", "label_names": "labelidx2productcategory.csv.gz",
        "text_defaults": ["{ds}/asin2title.tsv", "{ds}/asin2title.csv"], "text_kind": "asin_title",
    },
    "ogbl-citation2": {
        "kind": "link", "ntype": "paper", "etype": "cites",
        "mapping": "nodeidx2paperid.csv.gz", "label_names": None,
        "text_defaults": ["titleabs.tsv", "{ds}/titleabs.tsv"], "text_kind": "titleabs",
    },
}


def _import_ogb():
    """``import ogb`` without its PyPI version check: ``ogb/version.py`` (and ``outdated`` on
    its own import) start threads querying pypi.org, a network call that offline may hang until
    a timeout. While ogb is first imported, ``outdated`` is made unimportable (ogb then skips
    the check, as it does when the package is not installed); the entry is restored after."""
    if "ogb" not in sys.modules and "outdated" not in sys.modules:
        sys.modules["outdated"] = None  # type: ignore[assignment]  # -> ImportError in ogb
        try:
            return importlib.import_module("ogb")
        finally:
            del sys.modules["outdated"]
    return importlib.import_module("ogb")


def _meta_info(name: str):
    """ogb's own master.csv row for ``name`` (version, split kind, additional node files)."""
    import pandas as pd

    sub = "nodeproppred" if DATASETS[name]["kind"] == "node" else "linkproppred"
    ogb = _import_ogb()  # local: only this converter needs ogb
    master = pd.read_csv(os.path.join(os.path.dirname(ogb.__file__), sub, "master.csv"),
                         index_col=0, keep_default_na=False)
    return master[name]


def dataset_dir(name: str, ogb_root: os.PathLike) -> Path:
    """The folder ogb reads ``name`` from: ``<root>/<name with _>_dgl`` if it exists, else
    ``<root>/<name with _>`` (the same rule as ogb's loaders)."""
    base = Path(ogb_root) / "_".join(name.split("-"))
    dgl_dir = base.with_name(base.name + "_dgl")
    return dgl_dir if dgl_dir.exists() else base


def required_files(name: str, ogb_root: os.PathLike,
                   text_file: Optional[os.PathLike] = None) -> List[Tuple[str, List[Path]]]:
    """What ``convert_ogb(name, ogb_root)`` needs: a list of ``(description, alternatives)``;
    an entry is satisfied when any one of its alternative paths exists.

    Raises ValueError for an unsupported ``name``.
    """
    if name not in DATASETS:
        raise ValueError(f"unsupported dataset {name!r}; expected one of {sorted(DATASETS)}")
    spec, info = DATASETS[name], _meta_info(name)
    ds = dataset_dir(name, ogb_root)
    raw, split = ds / "raw", ds / "split" / info["split"]
    processed = ds / "processed" / "dgl_data_processed"
    need: List[Tuple[str, List[Path]]] = [
        ("ogb release marker (ships in OGB's zip; ogb asks interactively without it)",
         [ds / f"RELEASE_v{info['version']}.txt"]),
    ]
    raw_files = ["edge.csv.gz", "num-node-list.csv.gz", "num-edge-list.csv.gz"]
    if spec["kind"] == "node":
        raw_files.append("node-label.csv.gz")
    if info["additional node files"] != "None":
        raw_files += [f"{f}.csv.gz" for f in info["additional node files"].split(",")]
    for f in raw_files:
        need.append(("raw graph file, or ogb's processed file instead",
                     [raw / f, processed]))
    ext = "csv.gz" if spec["kind"] == "node" else "pt"
    for part in ("train", "valid", "test"):
        need.append((f"official {info['split']!r} split", [split / f"{part}.{ext}",
                                                           split / "split_dict.pt"]))
    need.append(("node-id mapping", [ds / "mapping" / spec["mapping"]]))
    if text_file is not None:
        need.append(("text file (--text-file)", [Path(text_file)]))
    else:
        defaults = [Path(ogb_root) / d.format(ds=ds.name) for d in spec["text_defaults"]]
        need.append(("text file (or pass --text-file)", defaults))
    return need


def check_files(name: str, ogb_root: os.PathLike, text_file: Optional[os.PathLike] = None) -> Path:
    """Check every file :func:`convert_ogb` needs before ogb is touched (so it never downloads
    or prompts); return the text file to use.

    Raises
    ------
    FileNotFoundError
        One error listing the whole expected layout, each missing entry marked ``MISSING``.
    """
    need = required_files(name, ogb_root, text_file)
    missing = [(what, alts) for what, alts in need if not any(p.exists() for p in alts)]
    if missing:
        lines = [f"{name}: dataset files missing under --ogb-root {ogb_root} (nothing is "
                 "downloaded; put the unzipped OGB release and the text file there):"]
        for what, alts in need:
            mark = "MISSING" if (what, alts) in missing else "ok     "
            lines.append(f"  {mark} {' or '.join(str(p) for p in alts)}   [{what}]")
        raise FileNotFoundError("\n".join(lines))
    return next(p for p in need[-1][1] if p.exists())


@contextmanager
def _offline_ogb(kind: str) -> Iterator[None]:
    """Make ogb unable to download or to wait on ``input()`` (both raise instead)."""
    def refuse(*args, **kwargs):
        raise RuntimeError(f"ogb tried to prompt/download ({args[:1]}); the local OGB files are "
                           "incomplete or from another release (see check_files)")

    module = "ogb.nodeproppred.dataset_dgl" if kind == "node" else "ogb.linkproppred.dataset_dgl"
    with mock.patch(f"{module}.decide_download", refuse), \
            mock.patch(f"{module}.download_url", refuse), \
            mock.patch.object(builtins, "input", refuse):
        yield


def load_offline(name: str, ogb_root: os.PathLike):
    """Load ``name`` with ogb's DGL loader from ``ogb_root``, offline (call
    :func:`check_files` first). Returns ``(dataset, graph, labels, split)``: for ogbn-* the
    node labels and ``get_idx_split()``, for ogbl-* ``None`` and ``get_edge_split()``."""
    with _offline_ogb(DATASETS[name]["kind"]):
        if DATASETS[name]["kind"] == "node":
            from ogb.nodeproppred import DglNodePropPredDataset

            dataset = DglNodePropPredDataset(name=name, root=str(ogb_root))
            graph, labels = dataset[0]
            return dataset, graph, labels, dataset.get_idx_split()
        from ogb.linkproppred import DglLinkPropPredDataset

        dataset = DglLinkPropPredDataset(name=name, root=str(ogb_root))
        graph = dataset[0]
        return dataset, graph, None, dataset.get_edge_split()


__all__: List[str] = ["DATASETS", "dataset_dir", "required_files", "check_files", "load_offline"]
