import pytest
import torch

from src.models.lstm_model import LSTMClassifier, LSTMConfig, reverse_within_length


def tiny(**overrides):
    settings = dict(vocab_size=50, embedding_dim=8, hidden_dim=6, n_layers=2, dropout=0.2)
    settings.update(overrides)
    return LSTMClassifier(**settings)


def test_output_shapes():
    ids, lengths = torch.randint(1, 50, (4, 7)), torch.tensor([7, 5, 3, 1])
    assert tiny()(ids, lengths).shape == (4,)
    assert tiny(output_dim=3)(ids, lengths).shape == (4, 3)


def test_reverse_within_length_leaves_padding_in_place():
    x = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]]).unsqueeze(-1)
    out = reverse_within_length(x, torch.tensor([3, 2])).squeeze(-1)
    assert out.tolist() == [[3, 2, 1, 0], [5, 4, 0, 0]]


@pytest.mark.parametrize("pooling", ["max_mean", "max", "mean", "last"])
@pytest.mark.parametrize("bidirectional, stacking", [(True, "joint"), (False, "joint"), (True, "per_direction")])
def test_padding_does_not_change_a_prediction(pooling, bidirectional, stacking):
    torch.manual_seed(0)
    model = tiny(pooling=pooling, bidirectional=bidirectional, stacking=stacking).eval()
    review = torch.randint(1, 50, (1, 5))
    alone = model(review, torch.tensor([5]))
    batch = torch.zeros(3, 12, dtype=torch.long)
    batch[0, :5] = review
    batch[1] = torch.randint(1, 50, (12,))
    batch[2, :9] = torch.randint(1, 50, (9,))
    together = model(batch, torch.tensor([5, 12, 9]))
    assert torch.allclose(alone, together[0:1], atol=1e-6)
    assert torch.allclose(model(batch), together, atol=1e-6)  # lengths inferred from padding


def test_config_round_trip():
    model = tiny(output_dim=2, pooling="last", embedding_dropout=0.1)
    config = model.config
    assert isinstance(config, LSTMConfig) and config.hidden_dim == 6 and config.pooling == "last"
    clone = LSTMClassifier.from_config(config)
    clone.load_state_dict(model.state_dict())
    clone_from_dict = LSTMClassifier.from_config(vars(config).copy())
    assert clone_from_dict.config == config
    ids = torch.randint(1, 50, (2, 4))
    model.eval(), clone.eval()
    assert torch.equal(model(ids), clone(ids))


def test_per_direction_stacks_keep_the_directions_apart_until_pooling():
    """Each direction's output depends only on its own reading: the forward states at step t see words up to t,
    the backward ones words from t on, in every layer (joint stacks mix them from the second layer)."""
    torch.manual_seed(0)
    model = tiny(stacking="per_direction", n_layers=3, hidden_dim=4).eval()
    ids = torch.randint(1, 50, (1, 8))
    embedded = model.embedding(ids).detach().requires_grad_(True)
    states = model._encode(embedded, torch.tensor([8]))  # [1, 8, 2H]
    forward_at_3 = torch.autograd.grad(states[0, 3, :4].sum(), embedded, retain_graph=True)[0]
    backward_at_3 = torch.autograd.grad(states[0, 3, 4:].sum(), embedded)[0]
    assert forward_at_3[0, 4:].abs().sum() == 0 and forward_at_3[0, :4].abs().sum() > 0
    assert backward_at_3[0, :3].abs().sum() == 0 and backward_at_3[0, 3:].abs().sum() > 0
    assert model.config.language_model_layers == 3 and tiny().config.language_model_layers == 1
    assert model.layers[1][0].input_size == 4 and tiny(hidden_dim=4).layers[1][0].input_size == 8


def test_config_from_training_settings():
    from src.config import TrainConfig
    settings = TrainConfig(hidden_dim=7, n_layers=1, weight_drop=0.1, stacking="per_direction")
    three = LSTMConfig.from_settings(settings, 30, ["a", "b", "c"])
    assert (three.vocab_size, three.output_dim, three.class_names) == (30, 3, ("a", "b", "c"))
    assert (three.hidden_dim, three.n_layers, three.weight_drop, three.stacking) == (7, 1, 0.1, "per_direction")
    assert LSTMConfig.from_settings(settings, 30).output_dim == 1
    assert LSTMConfig.from_settings(TrainConfig(), 30) == LSTMConfig(vocab_size=30)


def test_unknown_config_key():
    with pytest.raises(ValueError, match="unknown model settings"):
        LSTMClassifier.from_config({"vocab_size": 10, "hiden_dim": 3})


@pytest.mark.parametrize("overrides, message", [
    ({"vocab_size": 0}, "vocab_size"), ({"hidden_dim": 0}, "hidden_dim"), ({"n_layers": 0}, "n_layers"),
    ({"embedding_dim": -1}, "embedding_dim"), ({"dropout": 1.0}, "dropout"), ({"dropout": -0.1}, "dropout"),
    ({"pooling": "attention"}, "pooling"), ({"pad_idx": 50}, "pad_idx"), ({"weight_drop": 1.0}, "weight_drop"),
])
def test_invalid_arguments(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny(**overrides)


def test_every_parameter_gets_gradient_except_the_pad_row():
    model = tiny()
    ids = torch.tensor([[3, 4, 5, 0], [6, 7, 0, 0]])
    model(ids, torch.tensor([3, 2])).sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert model.embedding.weight.grad[0].abs().sum() == 0
    assert model.count_parameters() == model.count_parameters(trainable_only=True) > 0


@pytest.mark.parametrize("pooling", ["max_mean", "last"])
@pytest.mark.parametrize("bidirectional, n_layers, stacking", [(True, 1, "joint"), (True, 3, "joint"),
                                                                (False, 2, "joint"), (True, 3, "per_direction")])
def test_packed_path_computes_the_padded_paths_function_and_gradients(pooling, bidirectional, n_layers, stacking):
    torch.manual_seed(0)
    model = tiny(pooling=pooling, bidirectional=bidirectional, n_layers=n_layers, stacking=stacking).eval()
    lengths = torch.tensor([9, 3, 7, 1, 5])
    ids = torch.randint(1, 50, (5, 9)).masked_fill(torch.arange(9) >= lengths[:, None], 0)
    results = {}
    for path in ("padded", "packed"):
        model.sequence_path = path
        logits = model(ids, lengths)
        results[path] = (logits, torch.autograd.grad(logits.sum(), list(model.parameters())))
    assert torch.allclose(results["padded"][0], results["packed"][0], atol=1e-6)
    for padded_grad, packed_grad in zip(results["padded"][1], results["packed"][1]):
        assert torch.allclose(padded_grad, packed_grad, atol=1e-6)


def _weight_drop_pair(**settings):
    """A model with weight drop 0.5 (no other dropout) and its twin without, with the same weights."""
    torch.manual_seed(0)
    dropped = tiny(weight_drop=0.5, dropout=0.0, embedding_dropout=0.0, **settings)
    plain = tiny(dropout=0.0, embedding_dropout=0.0, **settings)
    plain.load_state_dict(dropped.state_dict())
    return dropped, plain


def test_weight_drop_masks_the_hidden_weights_once_per_batch_while_training():
    """Weight drop (DropConnect, AWD-LSTM) is the same LSTM with one dropped copy of W_hh at every step of
    the batch, the input weights untouched; evaluation and the language model's stack run it without."""
    dropped, plain = _weight_drop_pair(bidirectional=False, n_layers=1)
    ids, lengths = torch.randint(1, 50, (3, 9)), torch.tensor([9, 6, 2])
    torch.manual_seed(1)
    trained = dropped.train()(ids, lengths)
    torch.manual_seed(1)
    hidden = plain.layers[0][0].weight_hh_l0
    mask = torch.nn.functional.dropout(torch.ones_like(hidden), 0.5)
    with torch.no_grad():
        hidden.mul_(mask)
    assert 0 < int((mask == 0).sum()) < mask.numel() and set(mask.unique().tolist()) == {0.0, 2.0}
    assert torch.allclose(trained, plain.train()(ids, lengths), atol=1e-6)
    plain.load_state_dict(dropped.state_dict())
    assert not torch.allclose(trained, plain(ids, lengths), atol=1e-3)
    assert torch.equal(dropped.eval()(ids, lengths), plain.eval()(ids, lengths))
    embedded = dropped.embedding(ids)
    assert torch.equal(dropped.train().direction_stack(embedded, 0, weight_drop=0.0),
                       plain.train().direction_stack(embedded, 0))


@pytest.mark.parametrize("bidirectional, n_layers, stacking", [(False, 2, "joint"), (True, 2, "joint"),
                                                                (True, 2, "per_direction")])
def test_weight_drop_draws_the_same_masks_on_the_packed_path(bidirectional, n_layers, stacking):
    dropped, plain = _weight_drop_pair(bidirectional=bidirectional, n_layers=n_layers, stacking=stacking)
    ids, lengths = torch.randint(1, 50, (3, 9)), torch.tensor([9, 6, 2])
    results = {}
    for path in ("padded", "packed"):
        dropped.sequence_path = path
        torch.manual_seed(2)
        results[path] = dropped.train()(ids, lengths)
    assert torch.allclose(results["padded"], results["packed"], atol=1e-6)
    assert not torch.allclose(results["packed"], plain.train()(ids, lengths), atol=1e-3)


def test_sequence_path_is_a_runtime_setting():
    model = tiny()
    assert model.sequence_path == "padded" and list(model.state_dict()) == list(tiny().state_dict())
    assert not any("fused" in name for name, _ in model.named_parameters())
    with pytest.raises(ValueError, match="sequence_path must be one of padded, packed"):
        model.sequence_path = "cudnn"
