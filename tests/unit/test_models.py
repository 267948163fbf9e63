"""Encoders, decoders and attention: shapes, padding invariance, independence from batch-mates,
step-by-step decoding equal to teacher forcing; tied and pretrained embeddings; the loss."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from transduce.config import ModelConfig, load_config
from transduce.data import collate
from transduce.models import Seq2Seq, build_model, count_parameters, layer_table
from transduce.models.attention import BahdanauAttention, LuongAttention
from transduce.models.build import load_pretrained_embeddings
from transduce.models.cnn import CNNEncoder
from transduce.models.rnn import RNNEncoder, StackedCell
from transduce.training.loss import output_layer_loss, sequence_loss

PAD, BOS, EOS = 0, 2, 3
V_SRC, V_TGT = 23, 19
ATOL = 1e-5

RNN_VARIANTS = [
    dict(rnn_type=r, bidirectional=bi, attention=a, input_feeding=f)
    for r, bi, a, f in itertools.product(
        ["lstm", "gru"], [False, True], ["none", "bahdanau", "luong_dot", "luong_general"],
        [False, True])
    if not (a in ("none", "bahdanau") and f)  # input feeding only exists for Luong
]
CNN_VARIANTS = [dict(encoder="cnn", attention=a, input_feeding=f)
                for a, f in [("none", False), ("bahdanau", False), ("luong_general", True),
                             ("luong_dot", False)]]
VARIANTS = RNN_VARIANTS + CNN_VARIANTS


def variant_id(v: dict) -> str:
    return "-".join(str(x) if not isinstance(x, bool) else ("T" if x else "F") for x in v.values())


def tiny_model(seed: int = 0, **overrides) -> Seq2Seq:
    torch.manual_seed(seed)
    cfg = ModelConfig(**{"emb_dim": 12, "hidden_size": 16, "encoder_layers": 2,
                         "decoder_layers": 2, "dropout": 0.2, **overrides})
    return build_model(cfg, V_SRC, V_TGT, PAD).eval()


def random_batch(seed: int, n: int = 4, max_len: int = 9):
    g = torch.Generator().manual_seed(seed)
    src = [torch.randint(4, V_SRC, (int(torch.randint(1, max_len, (1,), generator=g)),),
                         generator=g).tolist() for _ in range(n)]
    tgt = [torch.randint(4, V_TGT, (int(torch.randint(1, max_len, (1,), generator=g)),),
                         generator=g).tolist() for _ in range(n)]
    return src, tgt


def log_probs_of(model: Seq2Seq, src, tgt) -> torch.Tensor:
    b = collate(src, tgt, PAD, BOS, EOS)
    with torch.no_grad():
        return torch.log_softmax(model(b.src_ids, b.src_mask, b.tgt_in), -1)  # (B, T, V)


# ---- encoders ----------------------------------------------------------------------------

ENCODERS = {
    "lstm-uni": lambda: RNNEncoder("lstm", 12, 16, 2, False, 0.0),
    "lstm-bi": lambda: RNNEncoder("lstm", 12, 16, 2, True, 0.0),
    "gru-uni": lambda: RNNEncoder("gru", 12, 16, 2, False, 0.0),
    "gru-bi": lambda: RNNEncoder("gru", 12, 16, 2, True, 0.0),
    "cnn": lambda: CNNEncoder(12, 16, 3, 3, 0.0),
}


@pytest.mark.parametrize("name", ENCODERS)
def test_encoder_shapes_and_padding_invariance(name: str):
    torch.manual_seed(1)
    encoder = ENCODERS[name]().eval()
    lengths = [5, 2, 7]
    emb = torch.randn(3, 7, 12)
    mask = torch.arange(7)[None, :] < torch.tensor(lengths)[:, None]  # (B, S)
    with torch.no_grad():
        out = encoder(emb, mask)
        assert out.memory.shape == (3, 7, 16) and out.final.shape == (3, 16)
        assert torch.equal(out.src_mask, mask)
        for i, n in enumerate(lengths):
            # the same sentence alone, and with garbage in extra padding: same encoding
            alone = encoder(emb[i:i + 1, :n], mask[i:i + 1, :n])
            noisy = emb[i:i + 1].clone()
            noisy[:, n:] = 100.0
            padded = encoder(torch.cat([noisy, torch.zeros(1, 4, 12)], 1),
                             torch.cat([mask[i:i + 1], torch.zeros(1, 4, dtype=torch.bool)], 1))
            for other in (alone, padded):
                torch.testing.assert_close(other.memory[0, :n], out.memory[i, :n],
                                           atol=ATOL, rtol=0)
                torch.testing.assert_close(other.final[0], out.final[i], atol=ATOL, rtol=0)
            assert torch.all(padded.memory[0, n:] == 0)


def test_bidirectional_final_state_sees_the_whole_sentence():
    # The backward half of `final` must depend on the first token, the forward half on the last.
    torch.manual_seed(2)
    enc = RNNEncoder("gru", 12, 16, 1, True, 0.0).eval()
    emb = torch.randn(1, 6, 12)
    mask = torch.ones(1, 6, dtype=torch.bool)
    first, last = emb.clone(), emb.clone()
    first[0, 0] += 1.0
    last[0, -1] += 1.0
    with torch.no_grad():
        base, f, lst = (enc(e, mask).final[0] for e in (emb, first, last))
    assert not torch.allclose(base[8:], f[8:])  # backward direction reads token 0 last
    assert not torch.allclose(base[:8], lst[:8])  # forward direction reads the last token last


def test_cnn_kernel_must_be_odd():
    with pytest.raises(ValueError, match="odd"):
        CNNEncoder(8, 8, 1, 4, 0.0)


# ---- attention ---------------------------------------------------------------------------

ATTENTIONS = {
    "bahdanau": lambda: BahdanauAttention(10, 14, 9),
    "luong_general": lambda: LuongAttention(10, 14, "general"),
    "luong_dot": lambda: LuongAttention(14, 14, "dot"),
}


@pytest.mark.parametrize("name", ATTENTIONS)
def test_attention_shapes_masking_and_weights(name: str):
    torch.manual_seed(3)
    attn = ATTENTIONS[name]()
    q_dim = 14 if name == "luong_dot" else 10
    query, memory = torch.randn(3, 4, q_dim), torch.randn(3, 6, 14)
    mask = torch.arange(6)[None, :] < torch.tensor([6, 3, 1])[:, None]
    keys = attn.project_keys(memory)
    ctx, weights = attn(query, keys, memory, mask)
    assert ctx.shape == (3, 4, 14) and weights.shape == (3, 4, 6)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4))
    assert torch.all(weights.masked_select(~mask[:, None, :].expand_as(weights)) == 0)
    assert torch.all(weights[2, :, 0] == 1)  # a one-token source gets all the attention
    # context is the weighted mean of the values; padded values are never read
    torch.testing.assert_close(ctx, torch.bmm(weights, memory))
    garbage = memory.masked_fill(~mask[:, :, None], 1e4)
    ctx2, _ = attn(query, attn.project_keys(garbage), garbage, mask)
    torch.testing.assert_close(ctx2, ctx)


def test_luong_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match="equal query and key sizes"):
        LuongAttention(10, 14, "dot")
    with pytest.raises(ValueError, match="'dot' or 'general'"):
        LuongAttention(10, 10, "concat")


# ---- whole models: every decoder variant ------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_translation_does_not_depend_on_batch_mates(variant: dict):
    model = tiny_model(**variant)
    src, tgt = random_batch(seed=4, n=5)
    batched = log_probs_of(model, src, tgt)  # (B, T, V)
    assert batched.shape == (5, max(len(t) for t in tgt) + 1, V_TGT)
    for i in range(len(src)):
        alone = log_probs_of(model, src[i:i + 1], tgt[i:i + 1])
        n = len(tgt[i]) + 1
        torch.testing.assert_close(alone[0, :n], batched[i, :n], atol=ATOL, rtol=0)
        # a different batch-mate with a longer source and target changes nothing either
        pair = log_probs_of(model, [src[i], [5] * 12], [tgt[i], [6] * 12])
        torch.testing.assert_close(pair[0, :n], batched[i, :n], atol=ATOL, rtol=0)


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_step_by_step_decoding_equals_teacher_forcing(variant: dict):
    model = tiny_model(seed=5, **variant)
    src, tgt = random_batch(seed=6, n=3)
    b = collate(src, tgt, PAD, BOS, EOS)
    forced = log_probs_of(model, src, tgt)  # (B, T, V)
    with torch.no_grad():
        enc = model.encode(b.src_ids, b.src_mask)
        state = model.start(enc)
        for t in range(b.tgt_in.size(1)):
            step_lp, state, attn = model.step(b.tgt_in[:, t], state, enc)  # (B, V)
            torch.testing.assert_close(step_lp, forced[:, t], atol=ATOL, rtol=0)
            if variant["attention"] == "none":
                assert attn is None
            else:
                assert attn.shape == b.src_ids.shape
                torch.testing.assert_close(attn.sum(-1), torch.ones(3))
                assert torch.all(attn[~b.src_mask] == 0)
    teacher_attn = model.attention(b.src_ids, b.src_mask, b.tgt_in)
    if variant["attention"] == "none":
        assert teacher_attn is None
    else:
        assert teacher_attn.shape == (3, b.tgt_in.size(1), b.src_ids.size(1))


@pytest.mark.parametrize("variant", VARIANTS[::3] + CNN_VARIANTS[:1], ids=variant_id)
def test_state_select_reorders_hypotheses(variant: dict):
    # Search reorders decoder state with select(); stepping reordered state == reordering output.
    model = tiny_model(seed=7, **variant)
    src, _ = random_batch(seed=8, n=3)
    b = collate(src, None, PAD, BOS, EOS)
    order = torch.tensor([2, 0, 0, 1])
    with torch.no_grad():
        enc = model.encode(b.src_ids, b.src_mask)
        state = model.start(enc)
        prev = torch.tensor([5, 6, 7])
        _, state, _ = model.step(prev, state, enc)
        nxt = torch.tensor([8, 9, 10])
        full, _, _ = model.step(nxt, state, enc)
        picked, _, _ = model.step(nxt[order], state.select(order), enc.select(order))
    torch.testing.assert_close(picked, full[order], atol=ATOL, rtol=0)


def test_training_mode_backpropagates_into_every_parameter():
    for variant in (VARIANTS[0], VARIANTS[-1], dict(attention="bahdanau", rnn_type="gru")):
        model = tiny_model(seed=9, **variant).train()
        src, tgt = random_batch(seed=10, n=4)
        b = collate(src, tgt, PAD, BOS, EOS)
        sequence_loss(model(b.src_ids, b.src_mask, b.tgt_in), b.tgt_out, PAD, 0.1).backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            if "positions" not in name:  # CNN positions past the longest source get no gradient
                assert p.grad.abs().sum() > 0, name


def test_eval_mode_is_deterministic_and_pad_embeddings_are_zero():
    model = tiny_model(seed=11, dropout=0.5)
    src, tgt = random_batch(seed=12)
    torch.testing.assert_close(log_probs_of(model, src, tgt), log_probs_of(model, src, tgt))
    assert torch.all(model.src_embed.weight[PAD] == 0)
    assert torch.all(model.tgt_embed.weight[PAD] == 0)


def test_tied_and_shared_embeddings():
    tied = tiny_model(tie_embeddings=True)
    untied = tiny_model(tie_embeddings=False)
    weights = [p for p in tied.generator.parameters() if p.shape == (V_TGT, 12)]
    assert weights and weights[0] is tied.tgt_embed.weight
    assert count_parameters(tied) == count_parameters(untied) - V_TGT * 16 + 16 * 12
    torch.manual_seed(0)
    shared = build_model(ModelConfig(emb_dim=12, hidden_size=16, share_embeddings=True),
                         V_SRC, V_SRC, PAD)
    assert shared.src_embed is shared.tgt_embed
    table = layer_table(tied)
    assert f"total parameters: {count_parameters(tied):,}" in table


# ---- the loss ------------------------------------------------------------------------------

@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_loss_ignores_padding(smoothing: float):
    torch.manual_seed(13)
    logits = torch.randn(2, 3, 7)
    targets = torch.tensor([[4, 5, 3], [6, 3, PAD]])
    loss = sequence_loss(logits, targets, PAD, smoothing)
    # extra padded positions with arbitrary logits add nothing
    more_logits = torch.cat([logits, 50 * torch.randn(2, 4, 7)], 1)
    more_targets = torch.cat([targets, torch.full((2, 4), PAD)], 1)
    torch.testing.assert_close(sequence_loss(more_logits, more_targets, PAD, smoothing), loss)
    # summed over real tokens: equals the per-sentence sums
    parts = sequence_loss(logits[:1], targets[:1], PAD, smoothing) + \
        sequence_loss(logits[1:, :2], targets[1:, :2], PAD, smoothing)
    torch.testing.assert_close(parts, loss)
    if smoothing == 0.0:
        manual = -torch.log_softmax(logits, -1).gather(2, targets[..., None]).squeeze(-1)
        torch.testing.assert_close(loss, manual[targets != PAD].sum())


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_fused_output_layer_loss_equals_logits_loss(smoothing: float, chunk: int):
    # The fused loss must give the loss, and the gradients, of logits = features @ W.T.
    torch.manual_seed(14)
    features = torch.randn(3, 5, 6, requires_grad=True)
    weight = torch.randn(V_TGT, 6, requires_grad=True)
    targets = torch.randint(4, V_TGT, (3, 5))
    targets[0, 3:] = PAD
    targets[2, 1:] = PAD
    expected = sequence_loss(features @ weight.t(), targets, PAD, smoothing)
    grads = torch.autograd.grad(2.5 * expected, (features, weight))
    loss = output_layer_loss(features, weight, targets, PAD, smoothing, chunk=chunk)
    fused_grads = torch.autograd.grad(2.5 * loss, (features, weight))
    torch.testing.assert_close(loss, expected)
    for fused, plain in zip(fused_grads, grads):
        torch.testing.assert_close(fused, plain)
    assert torch.all(fused_grads[0][targets == PAD] == 0)  # padding gets no gradient
    with torch.no_grad():
        torch.testing.assert_close(output_layer_loss(features, weight, targets, PAD, smoothing,
                                                     chunk=chunk), expected)


@pytest.mark.parametrize("tie, emb_dim", [(False, 12), (True, 16), (True, 12)])
def test_features_and_output_weight_give_the_logits(tie: bool, emb_dim: int):
    # Training goes through features/output_weight; search through forward/step: same logits.
    model = tiny_model(tie_embeddings=tie, emb_dim=emb_dim).eval()
    src, tgt = random_batch(seed=15)
    b = collate(src, tgt, PAD, BOS, EOS)
    with torch.no_grad():
        logits = model(b.src_ids, b.src_mask, b.tgt_in)
        features = model.features(b.src_ids, b.src_mask, b.tgt_in)
    torch.testing.assert_close(features @ model.output_weight.t(), logits)


@pytest.mark.parametrize("rnn_type", ["lstm", "gru"])
def test_stacked_cell_computes_what_torch_cells_compute(rnn_type: str):
    # StackedCell splits layer 0's input into a projected static part and a per-step part;
    # the result must be exactly what nn.LSTMCell/nn.GRUCell give on the whole input.
    torch.manual_seed(16)
    stack = StackedCell(rnn_type, 5, 3, 7, layers=2, dropout=0.0)
    static, dynamic = torch.randn(4, 5), torch.randn(4, 3)
    hidden = stack.initial(torch.randn(4, 7))
    weights = stack.step_weights()
    top, new = stack(stack.project(static, weights), dynamic, hidden, weights)
    x = torch.cat([static, dynamic], -1)
    for cell, state, got in zip(stack.cells, hidden, new):
        x = cell(x, state)
        torch.testing.assert_close(got, x)
        x = x[0] if rnn_type == "lstm" else x
    torch.testing.assert_close(top, x)


# ---- pretrained embeddings -----------------------------------------------------------------

def write_vectors(path: Path, rows: dict[str, list[float]], header: bool = True) -> Path:
    dim = len(next(iter(rows.values())))
    lines = [f"{len(rows)} {dim}"] if header else []
    lines += [w + " " + " ".join(f"{x:.6f}" for x in v) for w, v in rows.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("header", [True, False])
def test_pretrained_vectors_are_copied(tmp_path: Path, header: bool):
    itos = ["<pad>", "<unk>", "<s>", "</s>", "hund", "katze", "maus"]
    rows = {"katze": [0.5, -1.0, 2.0], "fremd": [9.0, 9.0, 9.0], "hund": [1.0, 2.0, 3.0]}
    path = write_vectors(tmp_path / "vec.txt", rows, header)
    emb = torch.nn.Embedding(len(itos), 3)
    before = emb.weight.detach().clone()
    assert load_pretrained_embeddings(emb, path, itos, freeze=False) == 2
    torch.testing.assert_close(emb.weight[4], torch.tensor(rows["hund"]))
    torch.testing.assert_close(emb.weight[5], torch.tensor(rows["katze"]))
    torch.testing.assert_close(emb.weight[6], before[6])  # not in the file: unchanged
    assert emb.weight.requires_grad


def test_pretrained_wrong_dimension_names_file_and_line(tmp_path: Path):
    path = tmp_path / "vec.txt"
    path.write_text("2 3\nhund 1 2 3\nkatze 1 2\n", encoding="utf-8")
    emb = torch.nn.Embedding(6, 3)
    with pytest.raises(ValueError, match=r"vec\.txt, line 3: vector has 2 values"):
        load_pretrained_embeddings(emb, path, ["<pad>", "<unk>", "<s>", "</s>", "hund", "katze"],
                                   freeze=False)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        load_pretrained_embeddings(emb, tmp_path / "missing.txt", ["hund"], freeze=False)


def test_pretrained_frozen_embeddings_do_not_train(tmp_path: Path):
    pairs = [("a b c", "c b a"), ("b c d", "d c b"), ("d a", "a d")] * 20
    (tmp_path / "tr.src").write_text("\n".join(p[0] for p in pairs) + "\n", encoding="utf-8")
    (tmp_path / "tr.tgt").write_text("\n".join(p[1] for p in pairs) + "\n", encoding="utf-8")
    vectors = write_vectors(tmp_path / "src.vec", {w: [float(i)] * 8 for i, w in
                                                   enumerate("abcd", start=1)})
    raw = {"data": {"train_src": str(tmp_path / "tr.src"), "train_tgt": str(tmp_path / "tr.tgt")},
           "tokenizer": {"kind": "word", "shared": False},
           "model": {"emb_dim": 8, "hidden_size": 8, "encoder_layers": 1, "tie_embeddings": False,
                     "pretrained_embeddings": {"src": str(vectors), "freeze": True}},
           "train": {"out_dir": str(tmp_path / "m"), "max_steps": 3, "batch_tokens": 40,
                     "progress": False, "lr": 0.1}}
    from transduce.training.trainer import Trainer

    messages: list[str] = []
    trainer = Trainer.from_config(load_config(raw), log=messages.append)
    assert any("loaded 4 pretrained vectors" in m for m in messages)
    src_before = trainer.model.src_embed.weight.detach().clone()
    tgt_before = trainer.model.tgt_embed.weight.detach().clone()
    itos = trainer.src.vocab.itos
    for w in "abcd":
        assert torch.all(src_before[itos.index(w)] == float("abcd".index(w) + 1))
    trainer.run()
    assert torch.equal(trainer.model.src_embed.weight, src_before)  # frozen
    assert not torch.equal(trainer.model.tgt_embed.weight, tgt_before)  # the rest trains
