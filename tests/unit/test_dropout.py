"""The fast CPU dropout: its rate, scale and gradient, reproducibility under torch's seed, and
the attention path that uses it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from transduce.models.dropout import Dropout, dropout, dropout_mask
from transduce.models.transformer import attend


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_drop_rate_and_scale(p: float) -> None:
    torch.manual_seed(0)
    x = torch.ones(1000, 1000)
    y = dropout(x, p, training=True)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - p) < 0.003  # 1M Bernoulli draws: the std is below 0.0005
    kept = y[y != 0]
    assert torch.allclose(kept, torch.full_like(kept, 1 / (1 - p)), rtol=1e-4)
    assert abs(y.mean().item() - 1.0) < 0.01  # the expectation is preserved


def test_identity_when_not_training_or_p_zero() -> None:
    x = torch.randn(5, 7)
    assert dropout(x, 0.3, training=False) is x
    assert dropout(x, 0.0, training=True) is x
    module = Dropout(0.3).eval()
    assert module(x) is x


def test_gradient_is_the_same_mask() -> None:
    torch.manual_seed(1)
    x = torch.randn(64, 33, requires_grad=True)
    y = dropout(x, 0.25, training=True)
    y.sum().backward()
    assert x.grad is not None
    assert torch.equal(x.grad == 0, y == 0)
    assert torch.allclose(x.grad * x.detach(), y.detach(), atol=1e-6)


def test_reproducible_under_torch_seed_and_fresh_each_call() -> None:
    torch.manual_seed(7)
    first, second = dropout_mask((50, 50), 0.3), dropout_mask((50, 50), 0.3)
    torch.manual_seed(7)
    again = dropout_mask((50, 50), 0.3)
    assert torch.equal(first, again)
    assert not torch.equal(first, second)


def test_module_keeps_nn_dropout_interface() -> None:
    module = Dropout(0.4)
    assert isinstance(module, nn.Dropout) and module.p == 0.4
    x = torch.ones(200, 200)
    assert (module.train()(x) == 0).any()
    assert module.eval()(x) is x


def test_bf16_input_keeps_its_dtype() -> None:
    x = torch.ones(100, 100, dtype=torch.bfloat16)
    y = dropout(x, 0.2, training=True)
    assert y.dtype == torch.bfloat16 and (y == 0).any()


def qkv(T: int, L: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, 4, T, 8, generator=g), torch.randn(2, 4, L, 8, generator=g),
            torch.randn(2, 4, L, 8, generator=g))


def test_explicit_attention_equals_sdpa() -> None:
    """The path taken for dropout on CPU (weights computed here) against PyTorch's kernel,
    with a padding mask and with causal masking."""
    q, k, v = qkv(6, 6)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])[:, None, None, :]
    for m, causal in [(mask, False), (None, True)]:
        fused, _ = attend(q, k, v, m, causal, 0.0, need_weights=False)
        explicit, weights = attend(q, k, v, m, causal, 0.0, need_weights=True)
        assert torch.allclose(fused, explicit, atol=1e-5)
        assert weights is not None
        if causal:  # no query sees a later key
            assert torch.all(weights.triu(1) == 0)
        else:  # no query sees a padding key
            assert torch.all(weights[1, :, :, 4:] == 0)


def test_attention_dropout_drops_weights_reproducibly() -> None:
    q, k, v = qkv(5, 9)
    reference, _ = attend(q, k, v, None, False, 0.0, need_weights=False)
    torch.manual_seed(3)
    dropped, _ = attend(q, k, v, None, False, 0.5, need_weights=False)
    torch.manual_seed(3)
    again, _ = attend(q, k, v, None, False, 0.5, need_weights=False)
    assert torch.equal(dropped, again)
    assert not torch.allclose(dropped, reference, atol=1e-3)
