"""Low-rank adaptation (LoRA) of an LM through Hugging Face PEFT (``model.lora``).

LoRA (Hu et al., 2022, eq. 3) keeps a pre-trained weight ``W0 [d_out, d_in]`` frozen and
trains ``h = W0 x + (alpha / r) B A x`` with ``A [r, d_in]`` (random) and ``B [d_out, r]``
(zero at the start, so the adapted LM starts as the loaded one). SimTeG (Duan et al., 2023)
fine-tunes its LMs on text-attributed graphs this way to keep the embeddings a GNN later reads
from drifting far from the pre-trained ones.

Only the stages that train an LM adapt it (stage 1, stage 3, GLEM's LM phase); the adapters
are merged into the weights (:func:`merged`) whenever an LM is saved or its weights are
hashed, so a stage checkpoint, the export and every later stage see a plain Hugging Face model.
"""
from __future__ import annotations

import copy
import warnings

from torch import nn

__all__ = ["apply_lora", "merged"]


def apply_lora(model: nn.Module, settings) -> nn.Module:
    """``model`` (a Hugging Face ``PreTrainedModel``) wrapped by ``peft.get_peft_model`` with
    rank ``settings.rank`` adapters on ``settings.target_modules`` (empty: PEFT's default for
    the architecture, ``query`` and ``value`` for BERT), scaling ``settings.alpha / rank`` and
    dropout ``settings.dropout`` on the adapters' input; every other parameter is frozen
    (``requires_grad=False``). The forward pass (keyword arguments, output) is the model's.

    Raises ImportError naming the ``peft`` package when it is not installed, and ValueError
    (PEFT's) when a target module does not exist in ``model``."""
    try:
        with warnings.catch_warnings():  # "transformers < 5.6 / torch < 2.6 deprecated":
            warnings.simplefilter("ignore", FutureWarning)  # the pins DGL 2.1 forces
            from peft import LoraConfig, get_peft_model
    except ImportError as e:  # pragma: no cover - peft is in setup.py's requirements
        raise ImportError(f"model.lora.rank={settings.rank} needs the 'peft' package "
                          f"(pip install peft): {e}") from e
    targets = list(settings.target_modules) or None
    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha,
                        lora_dropout=settings.dropout, target_modules=targets, bias="none")
    return get_peft_model(model, config)


def merged(model: nn.Module) -> nn.Module:
    """The plain Hugging Face model computing what the adapted ``model`` (:func:`apply_lora`)
    computes: a deep copy with ``W0 + (alpha / r) B A`` merged into each adapted weight (PEFT's
    ``merge_and_unload``; ``model`` itself keeps training). About 0.3 s and one model's memory
    (~90 MB for MiniLM)."""
    return copy.deepcopy(model).merge_and_unload()
