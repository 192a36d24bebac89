"""Custom attention ops (no DGL dependency).

- :func:`block_sparse_attention` / :func:`block_sparse_mask`: block-diagonal + global-token
  attention for no-grad encoding of low-degree inference nodes (DyLGNN Algorithm 2);
  PyTorch reference on CPU (``kernels.torch_block_sparse``), Triton kernel on CUDA
  (``kernels.triton_block_sparse``, imported lazily); the pattern and its inputs in
  ``kernels.block_sparse_pattern``, the op in ``kernels.block_sparse``.
- :func:`sparse_attention_enabled`: context manager that switches a Hugging Face BERT encoder
  to that op under ``torch.no_grad()`` (``kernels.bert_sparse``).
"""
from .bert_sparse import sparse_attention_enabled
from .block_sparse import block_sparse_attention, block_sparse_mask

__all__ = ["block_sparse_attention", "block_sparse_mask", "sparse_attention_enabled"]
