"""Transformer properties: masks, padding invariance, the incremental-decoding cache,
shared embeddings, attention for visualisation, mixed precision, checkpoint averaging."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from transduce.config import ModelConfig
from transduce.models import Seq2Seq, build_model
from transduce.search import beam_search, greedy_search
from transduce.training.checkpoint import MODEL_FILE, average_checkpoints, save_weights
from transduce.training.loss import sequence_loss

V, PAD, BOS, EOS = 40, 0, 2, 3  # the special ids of transduce.text.Vocab


def tiny(seed: int = 0, **overrides) -> Seq2Seq:
    """A small random Transformer in eval mode (no dropout, so outputs are deterministic)."""
    torch.manual_seed(seed)
    fields = {"arch": "transformer", "emb_dim": 32, "hidden_size": 32, "heads": 4,
              "ff_size": 64, "encoder_layers": 2, "decoder_layers": 2, "share_embeddings": True,
              "dropout": 0.1, "attention_dropout": 0.1, "activation_dropout": 0.1,
              "max_positions": 64, **overrides}
    return build_model(ModelConfig(**fields), V, V, PAD).eval()


def padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows -> ids (B, S) right-padded with PAD, and mask (B, S) True at real tokens."""
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [PAD] * (width - len(r)) for r in rows])
    return ids, ids != PAD


def random_rows(n: int, lo: int, hi: int, seed: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(lo, hi + 1, (n,), generator=g).tolist()
    return [torch.randint(4, V, (k,), generator=g).tolist() for k in lengths]


VARIANTS = {
    "pre-norm": {},
    "post-norm": {"pre_norm": False},
    "learned-positions": {"positions": "learned"},
    "separate-embeddings": {"share_embeddings": False, "tie_embeddings": False},
}


# ---- masks and padding ----------------------------------------------------------------

def test_decoder_is_causal():
    """Changing a later target token leaves the outputs at earlier positions unchanged."""
    model = tiny()
    src, src_mask = padded(random_rows(2, 5, 8, seed=1))
    tgt = torch.tensor(random_rows(2, 6, 6, seed=2))
    changed = tgt.clone()
    changed[:, 4] = (changed[:, 4] + 1) % V
    with torch.no_grad():
        a, b = model(src, src_mask, tgt), model(src, src_mask, changed)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])


def test_source_padding_is_masked():
    """Whatever sits in padded source positions changes nothing, and gets zero attention."""
    model = tiny()
    src, src_mask = padded([[5, 6, 7, 8, 9], [10, 11]])
    junk = src.masked_fill(~src_mask, 17)  # real-looking tokens where the mask says pad
    tgt = torch.tensor([[BOS, 4, 5], [BOS, 6, 7]])
    with torch.no_grad():
        a, b = model(src, src_mask, tgt), model(junk, src_mask, tgt)
        attn = model.attention(src, src_mask, tgt)  # (B, T, S)
    torch.testing.assert_close(a, b)
    assert attn is not None and attn.shape == (2, 3, 5)
    assert float(attn[1, :, 2:].abs().max()) == 0.0
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 3))


@pytest.mark.parametrize("variant", VARIANTS)
def test_padding_invariance(variant):
    """A sentence's log-probs do not depend on its batch-mates or on how much padding it has."""
    model = tiny(**VARIANTS[variant])
    rows = random_rows(4, 2, 12, seed=3)
    tgts = random_rows(4, 2, 9, seed=4)
    src, src_mask = padded(rows)
    tgt, _ = padded([[BOS] + t for t in tgts])
    with torch.no_grad():
        batched = torch.log_softmax(model(src, src_mask, tgt), -1)
        for i, (s, t) in enumerate(zip(rows, tgts)):
            alone_src, alone_mask = padded([s])
            alone = torch.log_softmax(model(alone_src, alone_mask, torch.tensor([[BOS] + t])), -1)
            torch.testing.assert_close(batched[i, : len(t) + 1], alone[0], atol=1e-5, rtol=1e-5)


def test_greedy_translation_does_not_depend_on_batch_mates():
    model = tiny(seed=5)
    rows = random_rows(5, 2, 10, seed=6)
    src, src_mask = padded(rows)
    limit = torch.full((5,), 12)
    together = greedy_search(model, src, src_mask, BOS, EOS, limit)
    for i, row in enumerate(rows):
        s, m = padded([row])
        alone = greedy_search(model, s, m, BOS, EOS, limit[:1])[0]
        assert alone.ids == together[i].ids
        assert alone.log_prob == pytest.approx(together[i].log_prob, abs=1e-4)


# ---- incremental decoding ---------------------------------------------------------------

def step_log_probs(model: Seq2Seq, src: torch.Tensor, src_mask: torch.Tensor,
                   tgt_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Feed tgt_in (B, T) one token at a time: log-probs (B, T, V), attention (B, T, S)."""
    enc = model.encode(src, src_mask)
    state = model.start(enc)
    outs, attns = [], []
    for t in range(tgt_in.size(1)):
        log_probs, state, attn = model.step(tgt_in[:, t], state, enc)
        assert attn is not None
        outs.append(log_probs)
        attns.append(attn)
    return torch.stack(outs, 1), torch.stack(attns, 1)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("use_cache", [True, False])
def test_incremental_decoding_equals_full_sequence(variant, use_cache):
    model = tiny(**VARIANTS[variant])
    model.decoder.use_cache = use_cache
    src, src_mask = padded(random_rows(3, 3, 9, seed=7))
    # 21 positions: past the 16 that the cache has room for at the start, so it grows
    tgt_in = torch.tensor([[BOS] + r for r in random_rows(3, 20, 20, seed=8)])
    with torch.no_grad():
        full = torch.log_softmax(model(src, src_mask, tgt_in), -1)
        full_attn = model.attention(src, src_mask, tgt_in)
        inc, inc_attn = step_log_probs(model, src, src_mask, tgt_in)
    torch.testing.assert_close(inc, full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(inc_attn, full_attn, atol=1e-6, rtol=1e-5)


def test_state_select_reorders_every_cache():
    """Decoding rows [2, 0] after a reorder equals decoding them in a batch of their own."""
    model = tiny()
    src, src_mask = padded(random_rows(3, 4, 8, seed=9))
    prefix = torch.tensor(random_rows(3, 3, 3, seed=10))
    index = torch.tensor([2, 0])
    with torch.no_grad():
        enc = model.encode(src, src_mask)
        state = model.start(enc)
        for t in range(3):
            _, state, _ = model.step(prefix[:, t], state, enc)
        picked, _, _ = model.step(torch.tensor([7, 8]), state.select(index), enc.select(index))
        sub_src, sub_mask = src[index], src_mask[index]
        sub_enc = model.encode(sub_src, sub_mask)
        sub_state = model.start(sub_enc)
        for t in range(3):
            _, sub_state, _ = model.step(prefix[index, t], sub_state, sub_enc)
        direct, _, _ = model.step(torch.tensor([7, 8]), sub_state, sub_enc)
    torch.testing.assert_close(picked, direct, atol=1e-5, rtol=1e-5)


def test_reordering_moves_cache_rows_in_place_or_into_spare_buffers():
    """A reordering that moves few rows copies them in place; one that moves most copies
    into the buffers the previous copy left spare; dropping rows reuses them too. After
    each, a step equals decoding the selected rows in a batch of their own."""
    model = tiny(seed=17)
    src, src_mask = padded(random_rows(6, 4, 8, seed=18))
    prefix = torch.tensor(random_rows(6, 3, 3, seed=19))

    def decoded(rows: torch.Tensor, capacity: int = 16):
        enc = model.encode(src[rows], src_mask[rows])
        state = model.decoder.start(enc, capacity)
        for t in range(3):
            _, state, _ = model.step(prefix[rows, t], state, enc)
        return state, enc

    with torch.no_grad():
        state, enc = decoded(torch.arange(6), capacity=2)  # grew from 2 to 4 positions
        assert state.past[0][0].size(1) == 4
        rows, pointers = torch.arange(6), []
        for index in ([0, 1, 2, 3, 5, 4], [5, 4, 3, 2, 1, 0], [1, 0, 3, 2, 5, 4], [0, 2, 5]):
            index = torch.tensor(index)
            pointers.append(state.past[0][0].data_ptr())
            state, enc, rows = state.select(index), enc.select(index), rows[index]
            ours, _, _ = model.step(prefix[rows, 0], state, enc)
            ref_state, ref_enc = decoded(rows)
            direct, _, _ = model.step(prefix[rows, 0], ref_state, ref_enc)
            torch.testing.assert_close(ours, direct, atol=1e-5, rtol=1e-5)
        pointers.append(state.past[0][0].data_ptr())
    assert pointers[1] == pointers[0]  # two rows moved: in place
    assert pointers[2] != pointers[1]  # all moved: into new buffers, the old ones spare
    assert pointers[3] == pointers[1]  # all moved again: into the spare ones
    assert pointers[4] == pointers[2]  # rows dropped: into the spare ones too


def test_beam_state_shares_the_memory_of_a_sentence():
    """`expand` keeps one memory per sentence for its beams: steps equal those of a state
    whose rows were copied one by one; reordering beams within their sentences leaves the
    memory untouched, dropping a sentence shrinks it, and mixing sentences is refused."""
    model = tiny(seed=13)
    src, src_mask = padded(random_rows(3, 4, 8, seed=14))
    K = 2
    rows = torch.arange(3).repeat_interleave(K)
    prev = torch.tensor([5, 6, 7, 8, 9, 10])
    with torch.no_grad():
        enc = model.encode(src, src_mask)
        shared = model.start(enc).expand(K)
        copied = model.start(enc.select(rows))
        lp_shared, shared, attn_shared = model.step(prev, shared, enc.select(rows))
        lp_copied, copied, attn_copied = model.step(prev, copied, enc.select(rows))
        torch.testing.assert_close(lp_shared, lp_copied, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(attn_shared, attn_copied, atol=1e-6, rtol=1e-5)
        within = torch.tensor([1, 1, 2, 3, 5, 4])  # each sentence keeps its own rows
        reordered = shared.select(within)
        assert reordered.memory[0][0] is shared.memory[0][0]
        dropped = torch.tensor([0, 1, 4, 5])  # sentence 1 leaves
        kept = shared.select(dropped)
        assert kept.memory[0][0].size(0) == 2 and kept.src_mask.size(0) == 2
        lp_kept, _, _ = model.step(prev[dropped], kept, enc.select(rows[dropped]))
        lp_ref, _, _ = model.step(prev[dropped], copied.select(dropped), enc.select(rows[dropped]))
        torch.testing.assert_close(lp_kept, lp_ref, atol=1e-5, rtol=1e-5)
        with pytest.raises(ValueError, match="blocks of 2"):
            shared.select(torch.tensor([0, 2, 1, 3, 4, 5]))


def test_beam_result_does_not_depend_on_batch_mates():
    model = tiny(seed=15)
    rows = random_rows(5, 2, 9, seed=16)
    src, src_mask = padded(rows)
    limit = torch.full((5,), 12)
    together = beam_search(model, src, src_mask, BOS, EOS, limit, beam_size=4, n_best=2)
    for i, row in enumerate(rows):
        s, m = padded([row])
        [alone] = beam_search(model, s, m, BOS, EOS, limit[:1], beam_size=4, n_best=2)
        assert [h.ids for h in alone] == [h.ids for h in together[i]]
        assert [h.score for h in alone] == pytest.approx([h.score for h in together[i]],
                                                         abs=1e-4)


@pytest.mark.parametrize("variant", ["pre-norm", "post-norm"])
def test_beam_search_with_and_without_cache_agree(variant):
    model = tiny(seed=11, **VARIANTS[variant])
    src, src_mask = padded(random_rows(4, 3, 9, seed=12))
    limit = torch.full((4,), 10)
    cached = beam_search(model, src, src_mask, BOS, EOS, limit, beam_size=4, n_best=3,
                         return_attention=True)
    model.decoder.use_cache = False
    plain = beam_search(model, src, src_mask, BOS, EOS, limit, beam_size=4, n_best=3,
                        return_attention=True)
    for hyps_a, hyps_b in zip(cached, plain):
        assert [h.ids for h in hyps_a] == [h.ids for h in hyps_b]
        for a, b in zip(hyps_a, hyps_b):
            assert a.score == pytest.approx(b.score, abs=1e-4)
            assert a.attention is not None and b.attention is not None
            torch.testing.assert_close(a.attention, b.attention, atol=1e-5, rtol=1e-4)


def test_beam_one_equals_greedy():
    model = tiny(seed=13)
    src, src_mask = padded(random_rows(4, 3, 9, seed=14))
    limit = torch.full((4,), 10)
    greedy = greedy_search(model, src, src_mask, BOS, EOS, limit)
    beam = beam_search(model, src, src_mask, BOS, EOS, limit, beam_size=1, alpha=0.0)
    assert [h.ids for h in greedy] == [b[0].ids for b in beam]


# ---- building -----------------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_variants_build_and_learn(variant):
    """Each variant trains: a few Adam steps on one batch lower its loss."""
    model = tiny(**VARIANTS[variant]).train()
    src, src_mask = padded(random_rows(6, 3, 8, seed=15))
    tgt, _ = padded(random_rows(6, 3, 8, seed=16))
    tgt_in = torch.cat([torch.full((6, 1), BOS), tgt[:, :-1]], 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = sequence_loss(model(src, src_mask, tgt_in), tgt, PAD) / int((tgt != PAD).sum())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_embeddings_shared_and_tied():
    model = tiny(share_embeddings=True, tie_embeddings=True)
    assert model.src_embed is model.tgt_embed
    assert model.generator.weight is model.tgt_embed.weight
    assert float(model.tgt_embed.weight[PAD].detach().abs().max()) == 0.0
    apart = tiny(share_embeddings=False, tie_embeddings=False)
    assert apart.src_embed is not apart.tgt_embed
    assert apart.generator.weight is not apart.tgt_embed.weight
    assert model.max_positions == 64


@pytest.mark.parametrize("overrides, message", [
    ({"emb_dim": 16}, "emb_dim"),
    ({"attention_layer": 2}, "attention_layer"),
    ({"attention_head": 4}, "attention_head"),
])
def test_bad_settings_name_the_key(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny(**overrides)


def test_shared_embeddings_need_one_vocabulary():
    cfg = ModelConfig(arch="transformer", emb_dim=32, hidden_size=32, share_embeddings=True)
    with pytest.raises(ValueError, match="share_embeddings"):
        build_model(cfg, V, V + 1, PAD)


def test_positions_beyond_the_table():
    """Sinusoidal positions extend past max_positions; learned ones say what is wrong."""
    long_src, long_mask = padded([list(range(3, 13)) * 7])  # 70 tokens > max_positions 64
    tgt_in = torch.tensor([[BOS, 5]])
    with torch.no_grad():
        assert torch.isfinite(tiny()(long_src, long_mask, tgt_in)).all()
        with pytest.raises(ValueError, match="max_positions"):
            tiny(positions="learned")(long_src, long_mask, tgt_in)


# ---- attention for visualisation ------------------------------------------------------

def test_attention_layer_and_head_selection():
    src, src_mask = padded(random_rows(2, 4, 7, seed=17))
    tgt_in = torch.tensor([[BOS, 5, 6], [BOS, 7, 8]])
    with torch.no_grad():
        mean_last = tiny(seed=1).attention(src, src_mask, tgt_in)
        heads = [tiny(seed=1, attention_head=h).attention(src, src_mask, tgt_in)
                 for h in range(4)]
        first = tiny(seed=1, attention_layer=0).attention(src, src_mask, tgt_in)
        also_last = tiny(seed=1, attention_layer=1).attention(src, src_mask, tgt_in)
    assert mean_last is not None and first is not None
    torch.testing.assert_close(torch.stack(heads).mean(0), mean_last)
    torch.testing.assert_close(also_last, mean_last)
    assert not torch.allclose(first, mean_last)


def test_search_returns_attention_rows():
    model = tiny(seed=18)
    src, src_mask = padded(random_rows(3, 3, 8, seed=19))
    hyps = greedy_search(model, src, src_mask, BOS, EOS, torch.full((3,), 9),
                         return_attention=True)
    for h, n in zip(hyps, src_mask.sum(1).tolist()):
        assert h.attention is not None and h.attention.shape == (len(h.ids) + 1, src.size(1))
        torch.testing.assert_close(h.attention.sum(-1), torch.ones(len(h.ids) + 1))
        assert float(h.attention[:, n:].abs().sum()) == 0.0


# ---- precision and checkpoints ------------------------------------------------------------

@pytest.mark.parametrize("variant", ["pre-norm", "post-norm"])
def test_bf16_autocast_gives_finite_loss_and_gradients(variant):
    model = tiny(**VARIANTS[variant]).train()
    src, src_mask = padded(random_rows(4, 3, 10, seed=20))
    tgt, _ = padded(random_rows(4, 3, 10, seed=21))
    tgt_in = torch.cat([torch.full((4, 1), BOS), tgt[:, :-1]], 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(src, src_mask, tgt_in)
    assert logits.dtype == torch.bfloat16
    loss = sequence_loss(logits, tgt, PAD, label_smoothing=0.1)
    loss.backward()
    fp32 = sequence_loss(model(src, src_mask, tgt_in), tgt, PAD, label_smoothing=0.1)
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(fp32.item(), rel=0.05)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_averaging_identical_checkpoints_is_the_identity(tmp_path: Path):
    model = tiny(seed=22)
    for step in (1, 2, 3):
        save_weights(model, tmp_path / f"step-{step}" / MODEL_FILE)
    fresh = tiny(seed=23)
    average_checkpoints([tmp_path / f"step-{s}" for s in (1, 2, 3)], tmp_path / "avg.safetensors",
                        fresh)
    expected = model.state_dict()
    for name, value in fresh.state_dict().items():
        torch.testing.assert_close(value, expected[name], atol=0, rtol=0)
    assert fresh.generator.weight is fresh.tgt_embed.weight  # tying survives loading
