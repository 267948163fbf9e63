"""Token-level cross-entropy with label smoothing (Szegedy et al. 2016) that ignores padding.

`sequence_loss` scores logits. `output_layer_loss` fuses the output layer with the loss:
it never holds the (tokens x vocabulary) logits at once, and it computes the gradients in
the same pass over each chunk of tokens, so the softmax is never stored for backward.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

CHUNK_TOKENS = 1024  # rows of logits per chunk: 1024 x 8k floats = 32 MB


def sequence_loss(logits: torch.Tensor, targets: torch.Tensor, pad_id: int,
                  label_smoothing: float = 0.0) -> torch.Tensor:
    """Summed loss over real target tokens. logits (B, T, V), targets (B, T) -> scalar."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1),
                           ignore_index=pad_id, label_smoothing=label_smoothing,
                           reduction="sum")


def output_layer_loss(features: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                      pad_id: int, label_smoothing: float = 0.0,
                      chunk: int = CHUNK_TOKENS, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`sequence_loss(features @ weight.T + bias, ...)` without materialising the logits.

    features (B, T, H) feed the output layer weight (V, H); targets (B, T); `bias` (V,) is
    fixed (it gets no gradient). Returns the summed loss over real target tokens. Padding
    positions cost nothing.
    """
    flat = features.reshape(-1, features.size(-1))
    keep = (targets.reshape(-1) != pad_id).nonzero().squeeze(1)
    # Inside a Function, needs_input_grad is True even under torch.no_grad (validation):
    # decide here whether the gradients are worth computing.
    need_grad = torch.is_grad_enabled() and (features.requires_grad or weight.requires_grad)
    return _OutputLayerLoss.apply(flat, weight, targets.reshape(-1)[keep], keep,
                                  label_smoothing, chunk, need_grad, bias)


class _OutputLayerLoss(torch.autograd.Function):
    """Loss and, when needed, the gradients of (features, weight), chunk by chunk.

    For one token with logits z, target y and smoothing e over V classes:
        loss = logsumexp(z) - (1 - e) z_y - e mean(z)
        d loss / d z = softmax(z) - (1 - e) onehot(y) - e / V
    """

    @staticmethod
    def forward(ctx, features: torch.Tensor, weight: torch.Tensor,  # type: ignore[override]
                targets: torch.Tensor, keep: torch.Tensor, smoothing: float,
                chunk: int, need_grad: bool, bias: torch.Tensor | None) -> torch.Tensor:
        dtype = features.dtype  # under autocast, the dtype the matrix products run in
        w = weight.to(dtype)
        rows = features.index_select(0, keep)
        vocab = weight.size(0)
        total = features.new_zeros((), dtype=torch.float32)
        grad_rows = torch.empty_like(rows) if need_grad else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) \
            if need_grad else None
        for start in range(0, rows.size(0), chunk):
            x, y = rows[start:start + chunk], targets[start:start + chunk]
            z = (x @ w.t()).float()  # (n, V)
            if bias is not None:
                z += bias.float()
            picked = z.gather(1, y.unsqueeze(1)).squeeze(1)
            mean = z.mean(-1)
            top = z.amax(-1, keepdim=True)
            z.sub_(top).exp_()  # in place from here on: z becomes the gradient
            norm = z.sum(-1, keepdim=True)
            lse = (top + norm.log()).squeeze(1)
            total += (lse - (1 - smoothing) * picked - smoothing * mean).sum()
            if not need_grad:
                continue
            z.div_(norm).sub_(smoothing / vocab)
            z.scatter_add_(1, y.unsqueeze(1), z.new_full((y.numel(), 1), smoothing - 1))
            g = z.to(dtype)
            grad_rows[start:start + chunk] = g @ w  # type: ignore[index]
            if dtype == torch.float32:
                grad_w.addmm_(g.t(), x)  # type: ignore[union-attr]
            else:
                grad_w += (g.t() @ x).float()  # type: ignore[operator]
        if need_grad:
            ctx.save_for_backward(grad_rows, grad_w, keep)
            ctx.n_rows, ctx.weight_dtype = features.size(0), weight.dtype
        return total

    @staticmethod
    def backward(ctx, grad_total: torch.Tensor):  # type: ignore[override]
        grad_rows, grad_w, keep = ctx.saved_tensors
        grad_features = grad_rows.new_zeros(ctx.n_rows, grad_rows.size(1))
        grad_features.index_copy_(0, keep, grad_rows * grad_total.to(grad_rows.dtype))
        grad_weight = (grad_w * grad_total).to(ctx.weight_dtype)
        return grad_features, grad_weight, None, None, None, None, None, None
