"""Attention over the KV cache, called as transformers 5 calls it (same kernels, same masks).

Token-identical output in bf16 needs more than the same formula: the same kernel on the
same shapes. So this mirrors transformers' `sdpa_attention_forward` (GQA via
`enable_gqa` without a mask, heads packed as queries for one query token with a mask,
`repeat_kv` otherwise; `is_causal` when no mask is needed) and its mask rules (no mask when
nothing is padded and the window cannot cut), and Gemma 2's eager attention (soft-capping,
an additive float mask, softmax in float32).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def repeat_kv(states: torch.Tensor, groups: int) -> torch.Tensor:
    """[batch, kv_heads, length, dim] -> [batch, kv_heads * groups, length, dim]."""
    if groups == 1:
        return states
    batch, heads, length, dim = states.shape
    expanded = states[:, :, None, :, :].expand(batch, heads, groups, length, dim)
    return expanded.reshape(batch, heads * groups, length, dim)


def build_mask(valid: torch.Tensor, query_columns: torch.Tensor, key_first: int,
               window: int | None) -> torch.Tensor:
    """The boolean mask [batch, 1, queries, keys]: key columns from `key_first` on.

    `valid` [batch, keys] says which key columns hold a token (not padding), and
    `query_columns` [queries] where each query sits; causal, and inside the window.
    """
    keys = torch.arange(key_first, key_first + valid.shape[1], device=valid.device)
    allowed = keys[None, :] <= query_columns[:, None]
    if window is not None:
        allowed = allowed & (keys[None, :] > query_columns[:, None] - window)
    return allowed[None, None, :, :] & valid[:, None, None, :]


def needs_mask(padded: bool, queries: int, keys: int, window: int | None) -> bool:
    """transformers' rule (`_ignore_causal_mask_sdpa`): sdpa runs without a mask only when
    nothing is padded, the window cannot cut, and the query block is causal by itself."""
    if window is not None and keys >= window:
        return True
    return padded or not (queries == 1 or keys == queries)


def sdpa(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
         mask: torch.Tensor | None, scaling: float, groups: int) -> torch.Tensor:
    """Scaled dot-product attention; the output as [batch · queries, heads · dim]."""
    options = {}
    queries = query.shape[2]
    if groups > 1:
        if mask is None and key.shape[-1] <= 256:
            options["enable_gqa"] = True
        elif queries == 1:
            batch, heads, _, dim = query.shape
            query = query.reshape(batch, heads // groups, groups, dim)
        else:
            key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    causal = queries > 1 and mask is None
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=scaling,
                                         is_causal=causal, **options)
    out = out.reshape(out.shape[0], -1, queries, value.shape[-1]).transpose(1, 2)
    # Contiguous as transformers makes it (reshape copies where it must): the projection
    # after it must see the same layout.
    return out.reshape(out.shape[0] * queries, -1)


def eager(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor,
          scaling: float, groups: int, softcap: float | None) -> torch.Tensor:
    """Gemma 2's eager attention (the mask is boolean here, made additive as transformers
    does); the output as [batch · queries, heads · dim]."""
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if softcap is not None:
        weights = weights / softcap
        weights = torch.tanh(weights)
        weights = weights * softcap
    additive = torch.where(mask, torch.tensor(0.0, dtype=query.dtype),
                           torch.finfo(query.dtype).min)
    weights = weights + additive
    weights = F.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    out = torch.matmul(weights, value).transpose(1, 2)
    return out.reshape(out.shape[0] * out.shape[1], -1)
