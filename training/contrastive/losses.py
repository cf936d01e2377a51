"""Contrastive losses used by the methods: InfoNCE with the forgetting factor, and ContraGAN's 2C.

All functions return per-sample losses; callers take the mean and apply the weights.
They avoid host synchronisation and stay finite for empty or partly filled queues.
"""

from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn.functional as F

FORGETTING_MODES = ("paper", "code_constant", "off")


# ----------------------------------------------------------------------------
# InfoNCE (FakeCLR paper eq. 5, with the iteration-aware margin of eq. 10).

def info_nce(query: torch.Tensor, positive_key: torch.Tensor, negatives: torch.Tensor, tau: float = 0.2,
             negative_mask: Optional[torch.Tensor] = None,
             negative_margin: Union[torch.Tensor, float, None] = None) -> torch.Tensor:
    """-log( e^{s+/tau} / (e^{s+/tau} + sum_i e^{(s_i + m_i)/tau}) ) per query.

    query, positive_key: [N, D] unit vectors; negatives: [K, D] (queue keys, no gradient);
    negative_mask: [K] bool, False entries are left out; negative_margin: m_i ([K] or scalar).
    """
    positive = (query * positive_key).sum(dim=1, keepdim=True)
    negative = query @ negatives.to(query.dtype).t()
    if negative_margin is not None:
        negative = negative + negative_margin
    logits = torch.cat([positive, negative], dim=1) / tau
    if negative_mask is not None:
        keep = torch.cat([negative_mask.new_ones(1), negative_mask]).to(torch.bool)
        logits = logits.masked_fill(~keep, float("-inf"))
    return torch.logsumexp(logits, dim=1) - logits[:, 0]


def forgetting_weights(stamps: torch.Tensor, mask: Optional[torch.Tensor] = None, tau_m: float = 0.01) -> torch.Tensor:
    """m_i = softmax_i(t_hat_i / tau_m) with min-max normalised stamps (paper eqs. 10-11).

    Only entries with mask=True take part (others get weight 0). Equal stamps give t_hat = 1
    (the paper leaves 0/0 undefined); an empty mask gives all-zero weights, never NaN.
    """
    if mask is None:
        mask = torch.ones_like(stamps, dtype=torch.bool)
    t = stamps.to(torch.float64)
    t_min = torch.where(mask, t, torch.full_like(t, float("inf"))).amin()
    t_max = torch.where(mask, t, torch.full_like(t, float("-inf"))).amax()
    span = t_max - t_min
    safe_span = torch.where(span > 0, span, torch.ones_like(span))  # also absorbs inf/nan of an empty mask
    t_hat = torch.where(span > 0, (t - torch.nan_to_num(t_min)) / safe_span, torch.ones_like(t))
    # A finite floor instead of -inf keeps the softmax finite when nothing is valid.
    logits = torch.where(mask, t_hat / tau_m, torch.full_like(t, torch.finfo(t.dtype).min))
    return (torch.softmax(logits, dim=0) * mask).to(torch.float32)


def forgetting_margin(mode: str, stamps: torch.Tensor, mask: torch.Tensor, tau_m: float = 0.01) -> Optional[torch.Tensor]:
    """The additive term m_i on the negative cosines: paper weights, the code's constant 1, or none."""
    if mode == "paper":
        return forgetting_weights(stamps, mask, tau_m)
    if mode == "code_constant":
        return mask.to(torch.float32)
    if mode == "off":
        return None
    raise ValueError(f"forgetting factor: unknown forgetting_mode {mode!r}; use one of {', '.join(FORGETTING_MODES)}")


# ----------------------------------------------------------------------------
# ContraGAN conditional contrastive loss (2C).

def same_label_matrix(labels: torch.Tensor) -> torch.Tensor:
    """[n, n] bool: True where two samples carry the same label (class indices or label vectors)."""
    if labels.ndim == 1:
        return labels[:, None] == labels[None, :]
    return (labels[:, None, :] == labels[None, :, :]).all(dim=2)


def contrastive_2c_loss(embeddings: torch.Tensor, proxies: torch.Tensor, labels: torch.Tensor,
                        tau: float = 1.0) -> torch.Tensor:
    """Per-sample 2C loss: positives = own class proxy + other same-class samples; self excluded.

    embeddings, proxies: [n, d] (normalised here); labels: [n] class ids or [n, c] label vectors.
    """
    e = F.normalize(embeddings, dim=1)
    p = F.normalize(proxies, dim=1)
    n = e.shape[0]
    sample_logits = (e @ e.t()) / tau
    proxy_logits = (e * p).sum(dim=1, keepdim=True) / tau
    not_self = ~torch.eye(n, dtype=torch.bool, device=e.device)
    positive_pairs = same_label_matrix(labels) & not_self
    numerator = torch.logsumexp(torch.cat([proxy_logits, sample_logits.masked_fill(~positive_pairs, float("-inf"))], 1), 1)
    denominator = torch.logsumexp(torch.cat([proxy_logits, sample_logits.masked_fill(~not_self, float("-inf"))], 1), 1)
    return denominator - numerator
