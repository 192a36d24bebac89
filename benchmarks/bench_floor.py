"""Floors under the quality rows (issue 22 item 2): what the frozen LM gives without training it.

For one quality part (``quality_defs.PARTS``: its TAG and ``max_seq_len``) and each pooling
(``model.pooling``: ``cls``, ``mean``, ``auto``), the frozen pre-trained LM encodes every
target node once (:class:`lmgnn_dist.model.lm.LMEncoder`, no DGL, no distributed job), and
two parameter-free-graph classifiers are fit on the train nodes, their regularisation chosen on
validation:

- **linear probe**: multinomial logistic regression on the LM embedding ``X``;
- **SGC** (Wu et al., 2019, "Simplifying Graph Convolutional Networks", eq. 8 with the
  propagated features concatenated as SIGN does): logistic regression on ``[X, ÂX, Â²X]``,
  ``Â = D^-1/2 (A + I) D^-1/2`` the symmetric-normalised graph of the target type's
  relations (both directions, self loops).

scikit-learn's ``LogisticRegression`` (lbfgs) over ``C`` in :data:`C_GRID` on standardised
features; the ``C`` with the best validation accuracy is kept and reported on test. The fit is
deterministic (a convex problem, no sampling), so there is one number per row, not a mean over
seeds. Embeddings are kept in ``<work>/<part>/emb_<pooling>_<precision>.npy`` (reused when
the TAG, LM and settings match their ``.json``).

``--lm NAME=FOLDER`` adds the same rows for another LM (an HF folder, e.g. a run's
``stage1/lm``: a task- or link-prediction-tuned LM), and ``--side-by-side`` rows on the
pre-trained and that LM's embeddings concatenated, ``[X_pre, X_NAME]`` (``2 D`` columns,
propagated alike): would a GNN reading both beat either alone? A task-tuned LM has seen the
train nodes' labels, so its train rows fit them better than its val/test rows -- the probe
sees what stage 2's GNN sees.

    .venv/bin/python benchmarks/bench_floor.py --part cora [--pooling cls mean]
        [--precision fp32] [--lm NAME=FOLDER ...] [--side-by-side]
        [--md benchmarks/QUALITY_floor.md]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

C_GRID = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 10.0)


def target_graph(tag, ntype: str):
    """``Â`` (scipy CSR, float64, ``[N, N]``): the symmetric-normalised adjacency with self
    loops of every relation between ``ntype`` nodes, both directions."""
    import scipy.sparse as sp

    n = tag.nodes[ntype].num_nodes
    rows, cols = [np.arange(n)], [np.arange(n)]
    for (src_t, _, dst_t), e in tag.edges.items():
        if src_t == dst_t == ntype:
            rows += [e.src, e.dst]
            cols += [e.dst, e.src]
    a = sp.coo_matrix((np.ones(sum(len(r) for r in rows)),
                       (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).tocsr()
    a.data[:] = 1.0  # duplicates (an edge stored both ways, self loops) count once
    d = np.asarray(a.sum(1)).ravel() ** -0.5
    return sp.diags(d) @ a @ sp.diags(d)


def encode(tag, ntype: str, model: str, max_seq_len: int, pooling: str, precision: str,
           cache: Path, batch_size: int = 64) -> np.ndarray:
    """float32 ``[N, D]`` frozen-LM embeddings of ``ntype``'s texts in file order, from
    ``cache`` when it was made from the same inputs."""
    import torch

    from lmgnn_dist.device import DevicePlan
    from lmgnn_dist.model.lm import LMEncoder
    from partition.tag import iter_texts
    from partition.tokenize import load_tokenizer, tokenize_texts

    table = tag.nodes[ntype]
    key = {"model": model, "max_seq_len": max_seq_len, "pooling": pooling,
           "precision": precision, "n": table.num_nodes,
           "text": hashlib.sha256("\n".join(iter_texts(table)).encode()).hexdigest(),
           **weights_digest(model)}
    meta = cache.with_suffix(".json")
    if cache.exists() and meta.exists() and json.loads(meta.read_text()) == key:
        return np.load(cache)
    tok = load_tokenizer(model)
    ids = torch.as_tensor(tokenize_texts(iter_texts(table), tok, max_seq_len,
                                         num_texts=table.num_nodes, desc=f"tokenize {ntype}"))
    cpu = torch.device("cpu")
    lm = LMEncoder(model, tok.pad_token_id, device=DevicePlan(cpu, cpu, precision),
                   pooling=pooling)
    t0 = time.time()
    x = lm.encode_no_grad(ids, batch_size).numpy()
    print(f"encoded {len(x)} {ntype} texts ({pooling}, {precision}) in {time.time() - t0:.0f}s",
          flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, x)
    meta.write_text(json.dumps(key))
    return x


def weights_digest(model: str) -> Dict[str, str]:
    """``{"weights": sha256}`` of a local model folder's weight files (so a re-trained LM
    in the same folder is encoded again); ``{}`` for a hub name / alias."""
    folder = Path(model)
    files = sorted(f for f in folder.glob("*") if f.suffix in (".safetensors", ".bin")) \
        if folder.is_dir() else []
    if not files:
        return {}
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    return {"weights": h.hexdigest()}


def parse_lms(specs) -> Dict[str, str]:
    """``--lm NAME=FOLDER`` -> {NAME: FOLDER}. Raises SystemExit naming a bad spec: no
    ``=``, an empty or repeated name, or a folder that does not exist."""
    out: Dict[str, str] = {}
    for spec in specs or []:
        name, sep, folder = spec.partition("=")
        if not sep or not name or name in out or not Path(folder).is_dir():
            raise SystemExit(f"error: --lm {spec!r}: expected NAME=FOLDER with a unique NAME "
                             "and an existing model folder")
        out[name] = folder
    return out


def fit_select(x: np.ndarray, y: np.ndarray, split: np.ndarray) -> Dict[str, float]:
    """Logistic regression on the train rows (``split == 1``) for each ``C`` in
    :data:`C_GRID`; returns the best validation accuracy's ``C``, ``val_acc`` and its
    ``test_acc`` (``split`` 2 / 3)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    tr, va, te = (split == k for k in (1, 2, 3))
    scaler = StandardScaler().fit(x[tr])
    z = scaler.transform(x)
    best = None
    for c in C_GRID:
        clf = LogisticRegression(C=c, max_iter=2000).fit(z[tr], y[tr])
        val = float((clf.predict(z[va]) == y[va]).mean())
        if best is None or val > best["val_acc"]:
            best = {"C": c, "val_acc": val,
                    "test_acc": float((clf.predict(z[te]) == y[te]).mean())}
    return best


def floors(x: np.ndarray, a_hat, y: np.ndarray, split: np.ndarray) -> Dict[str, dict]:
    """``linear probe`` and ``SGC [X, ÂX, Â²X]`` rows (:func:`fit_select`)."""
    ax = a_hat @ x
    return {"linear probe": fit_select(x, y, split),
            "SGC [X, ÂX, Â²X]": fit_select(np.hstack([x, ax, a_hat @ ax]), y, split)}


def main(argv=None) -> Tuple[str, dict]:
    import bench_quality as bq

    from lmgnn_dist.config import load_config
    from partition.tag import read_tag

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", choices=list(bq.PARTS), default="cora")
    p.add_argument("--pooling", nargs="+", default=["cls", "mean"])
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--work", default=str(REPO / "work" / "floor"))
    p.add_argument("--lm", nargs="+", metavar="NAME=FOLDER",
                   help="more LMs (HF folders, e.g. a run's stage1/lm) to probe alike")
    p.add_argument("--side-by-side", action="store_true",
                   help="also rows on [pre-trained, LM] embeddings for each --lm")
    p.add_argument("--md", help="also write the table here (markdown)")
    args = p.parse_args(argv)
    lms = parse_lms(args.lm)

    part = bq.PARTS[args.part]
    bq.ensure_tag(args.part, dry_run=False)
    cfg = load_config(REPO / part["config"], [*part["data"], f"data.tag_path={part['tag']}"])
    ntype, model = cfg.task.target_ntype, cfg.model.lm
    tag = read_tag(REPO / part["tag"])
    table = tag.nodes[ntype]
    y = np.where(table.label is None, -1, table.label).astype(np.int64)
    a_hat = target_graph(tag, ntype)
    rows = {}
    for pooling in args.pooling:
        x = encode(tag, ntype, model, cfg.data.max_seq_len, pooling, args.precision,
                   Path(args.work) / args.part / f"emb_{pooling}_{args.precision}.npy")
        for name, r in floors(x, a_hat, y, table.split).items():
            rows[f"{name}, {pooling} pooling"] = r
        for lm_name, folder in lms.items():
            x_lm = encode(tag, ntype, folder, cfg.data.max_seq_len, pooling, args.precision,
                          Path(args.work) / args.part
                          / f"emb_{lm_name}_{pooling}_{args.precision}.npy")
            inputs = {lm_name: x_lm}
            if args.side_by_side:
                inputs[f"[pre-trained, {lm_name}]"] = np.hstack([x, x_lm])
            for label, feats in inputs.items():
                for name, r in floors(feats, a_hat, y, table.split).items():
                    rows[f"{name}, {pooling} pooling, {label}"] = r
    head = (f"{args.part}: frozen {model} ({args.precision}), {cfg.data.max_seq_len} tokens; "
            f"train / val / test {[int((table.split == k).sum()) for k in (1, 2, 3)]}")
    lines = [head, "", "| row | C | val acc | test acc |", "|---|---|---|---|"]
    lines += [f"| {k} | {r['C']} | {r['val_acc']:.4f} | {r['test_acc']:.4f} |"
              for k, r in rows.items()]
    text = "\n".join(lines)
    print(text)
    if args.md:
        from quality_report import write_atomic

        write_atomic(args.md, text + "\n")
    return text, rows


if __name__ == "__main__":
    main()
