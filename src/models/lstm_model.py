"""Bidirectional LSTM sentiment classifier.

Design for speed and correctness on padded batches:

* Each direction of each layer is its own unidirectional ``nn.LSTM`` run on the
  padded batch. The backward direction reads every review reversed *within its
  own length*, so it starts at the review's last word, never at padding, and a
  review's prediction does not depend on how long the other reviews in its batch are.
* ``stacking="joint"`` (the default) feeds each layer above the first both
  directions' states, as a bidirectional ``nn.LSTM`` does; ``"per_direction"``
  keeps each direction its own stack, joined only before pooling (as in ELMo), so
  every layer of the forward stack is a forward language model and can be
  pretrained as one (``src.training.lm_pretraining``).
* ``model.sequence_path = "packed"`` runs the same weights as one packed,
  bidirectional, multi-layer ``nn.LSTM`` call (cuDNN on a GPU; with per-direction
  stacks, one call per direction) instead. It computes the same function but was
  slower everywhere we measured (joint stacks): 5-6x on a 2-core CPU and 4.3x on
  an H200 (``bench/gpu_check.sh``), so "padded" is the default.
* The classifier pools over all time steps (masked max and mean), so the loss
  reaches the LSTM through its per-step ``output``, the fast backward path on CPU,
  and every word contributes gradient. ``pooling="last"`` uses the final states.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from src.config import check_setting, default_of
from src.data.labels import IMDB_CLASS_NAMES, check_class_names

MODEL_SETTINGS = ("embedding_dim", "hidden_dim", "n_layers", "dropout", "embedding_dropout", "bidirectional",
                  "pooling", "stacking", "weight_drop")  # the TrainConfig settings that shape the model


@dataclass
class LSTMConfig:
    """Everything needed to rebuild an ``LSTMClassifier``; saved inside checkpoints."""

    vocab_size: int
    embedding_dim: int = default_of("embedding_dim")
    hidden_dim: int = default_of("hidden_dim")
    output_dim: int = 1
    n_layers: int = default_of("n_layers")
    dropout: float = default_of("dropout")
    bidirectional: bool = default_of("bidirectional")
    pad_idx: int = 0
    pooling: str = default_of("pooling")
    embedding_dropout: float = default_of("embedding_dropout")
    class_names: Optional[Tuple[str, ...]] = None  # what each output means (None: IMDB's negative, positive)
    stacking: str = default_of("stacking")
    weight_drop: float = default_of("weight_drop")

    def __post_init__(self) -> None:
        for name in ("vocab_size", "output_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in MODEL_SETTINGS:
            setattr(self, name, check_setting(name, getattr(self, name), name))
        if not isinstance(self.pad_idx, int) or not 0 <= self.pad_idx < self.vocab_size:
            raise ValueError(f"pad_idx must be a valid token id below vocab_size={self.vocab_size}, got {self.pad_idx}")
        if self.class_names is not None:
            self.class_names = check_class_names(self.class_names, self.output_dim)

    @property
    def classes(self) -> Tuple[str, ...]:
        """The name of each class, in the order of the outputs (the positive class last of two); without
        ``class_names``, IMDB's for two classes and the output numbers for more."""
        if self.class_names is not None:
            return self.class_names
        return IMDB_CLASS_NAMES if self.output_dim <= 2 else tuple(str(i) for i in range(self.output_dim))

    @property
    def pooled_dim(self) -> int:
        """Size of the pooled vector the classifier reads."""
        return self.hidden_dim * self.directions * (2 if self.pooling == "max_mean" else 1)

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    def layer_input_size(self, layer: int) -> int:
        """What each direction's LSTM of ``layer`` (0 is the first) reads per step."""
        if layer == 0:
            return self.embedding_dim
        return self.hidden_dim * (self.directions if self.stacking == "joint" else 1)

    @property
    def separate_stacks(self) -> bool:
        """Whether each direction's layers read only their own direction (per direction, or one direction)."""
        return self.stacking == "per_direction" or not self.bidirectional

    @property
    def language_model_layers(self) -> int:
        """How many layers, from the first, read one direction only and so can be pretrained as language
        models: all of them with separate stacks, only the first when joint and bidirectional."""
        return self.n_layers if self.separate_stacks else 1

    def weight_shapes(self) -> Dict[str, Tuple[int, ...]]:
        """The shape of every tensor of ``LSTMClassifier.from_config(self).state_dict()``, without building it."""
        directions, gates = self.directions, 4 * self.hidden_dim
        shapes: Dict[str, Tuple[int, ...]] = {"embedding.weight": (self.vocab_size, self.embedding_dim)}
        for layer in range(self.n_layers):
            inputs = self.layer_input_size(layer)
            for direction in range(directions):
                prefix = f"layers.{layer}.{direction}."
                shapes.update({prefix + "weight_ih_l0": (gates, inputs), prefix + "weight_hh_l0": (gates, self.hidden_dim),
                               prefix + "bias_ih_l0": (gates,), prefix + "bias_hh_l0": (gates,)})
        shapes.update({"fc.weight": (self.output_dim, self.pooled_dim), "fc.bias": (self.output_dim,)})
        return shapes

    def check_weights(self, weights: Mapping[str, Any]) -> None:
        """Refuse (ValueError naming the field) weights of another shape than this config describes, before
        anything of that size is allocated: a model file may come from anyone."""
        if not isinstance(weights, Mapping) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
            raise ValueError("the weights are not a mapping of names to tensors")
        layers = {key.split(".")[1] for key in weights if key.startswith("layers.")}
        if len(layers) != self.n_layers:
            raise ValueError(f"n_layers is {self.n_layers} but the weights hold {len(layers)} layers")
        expected = self.weight_shapes()
        if set(expected) != set(weights):
            odd = sorted(set(expected) ^ set(weights))[:3]
            raise ValueError(f"the weights' names do not match the settings (for example {', '.join(odd)})")
        for name, shape in expected.items():
            if tuple(weights[name].shape) != shape:
                raise ValueError(f"{name} is {tuple(weights[name].shape)} in the weights but the settings "
                                 f"(vocab_size {self.vocab_size}, embedding_dim {self.embedding_dim}, hidden_dim "
                                 f"{self.hidden_dim}, ...) make it {shape}")
        for name, value in weights.items():  # NaN weights would predict NaN, which JSON cannot even carry
            if not value.is_floating_point():
                raise ValueError(f"{name} holds {value.dtype} numbers where weights are floating point")
            if not bool(torch.isfinite(value).all()):
                raise ValueError(f"{name} holds values that are not finite (NaN or infinite): the file is "
                                 "damaged or was saved from a training run that diverged")

    @classmethod
    def from_settings(cls, settings: Any, vocab_size: int, class_names: Optional[Sequence[str]] = None
                      ) -> "LSTMConfig":
        """The model that training ``settings`` (a ``TrainConfig``) describe for ``vocab_size`` words: one
        logit for two classes (or none named), one per class for more."""
        output_dim = 1 if class_names is None else outputs_for(len(class_names))
        return cls(vocab_size=vocab_size, output_dim=output_dim,
                   class_names=None if class_names is None else tuple(class_names),
                   **{name: getattr(settings, name) for name in MODEL_SETTINGS})

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "LSTMConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown model settings {unknown}; known ones are {sorted(known)}")
        return cls(**values)


def outputs_for(n_classes: int) -> int:
    """The outputs a model trained from scratch has for ``n_classes``: one logit for two (BCE), one per class
    for more (cross-entropy)."""
    return 1 if n_classes == 2 else n_classes


def check_vocabulary_fits(vocab_size: int, embedding_rows: int) -> None:
    """Refuse a vocabulary of another size than the embedding's: ids past its rows would fail mid-run (a
    device-side assert on a GPU), and fewer words would leave rows that no text reaches."""
    if vocab_size != embedding_rows:
        raise ValueError(f"the vocabulary has {vocab_size} words but the model's embedding has {embedding_rows} "
                         "rows; use the preprocessor the model was built with, or build it with "
                         "vocab_size=preprocessor.vocab_size")


def _call_lstm(lstm: nn.LSTM, weights: Dict[str, torch.Tensor], inputs: Any) -> Tuple[Any, Any]:
    """``lstm(inputs)`` with ``weights`` in place of its parameters."""
    with warnings.catch_warnings():  # cuDNN compacts weights that are not one contiguous buffer, per call
        warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous")
        return torch.func.functional_call(lstm, weights, (inputs,))


def reverse_within_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence of ``x`` [B, T, D] in its first ``lengths[b]`` steps; padding stays put.

    Picks whole rows of the flattened [B * T, D] tensor with ``index_select``: on a CPU 4-13x faster than
    ``gather`` with an index expanded over D, and 2-4x with the gradient (bench/reversal.py)."""
    batch, steps_count = x.shape[:2]
    steps = torch.arange(steps_count, device=x.device).unsqueeze(0)  # [1, T]
    last = (lengths.to(x.device) - 1).unsqueeze(1)  # [B, 1]
    index = torch.where(steps <= last, last - steps, steps)  # [B, T]
    rows = index + torch.arange(batch, device=x.device).unsqueeze(1) * steps_count  # [B, T] into [B * T]
    return x.reshape(batch * steps_count, -1).index_select(0, rows.reshape(-1)).view_as(x)


class LSTMClassifier(nn.Module):
    """Embedding -> stacked (bi)LSTM -> pooling -> dropout -> linear.

    ``forward(token_ids [B, T], lengths [B])`` returns logits [B] when
    ``output_dim == 1`` (binary, for ``BCEWithLogitsLoss``) and [B, C] otherwise.
    """

    def __init__(self, vocab_size: int, embedding_dim: int = LSTMConfig.embedding_dim,
                 hidden_dim: int = LSTMConfig.hidden_dim, output_dim: int = 1, n_layers: int = LSTMConfig.n_layers,
                 dropout: float = LSTMConfig.dropout, bidirectional: bool = LSTMConfig.bidirectional, pad_idx: int = 0,
                 pooling: str = LSTMConfig.pooling, embedding_dropout: float = LSTMConfig.embedding_dropout,
                 class_names: Optional[Tuple[str, ...]] = None, stacking: str = LSTMConfig.stacking,
                 weight_drop: float = LSTMConfig.weight_drop):
        super().__init__()
        cfg = LSTMConfig(vocab_size, embedding_dim, hidden_dim, output_dim, n_layers, dropout,
                         bidirectional, pad_idx, pooling, embedding_dropout, class_names, stacking, weight_drop)
        self._config = cfg  # checked values: build from these, not from the arguments
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embedding_dim, padding_idx=cfg.pad_idx)
        self.embedding_dropout = nn.Dropout(cfg.embedding_dropout)
        self.layers = nn.ModuleList()
        for layer in range(cfg.n_layers):
            self.layers.append(nn.ModuleList(nn.LSTM(cfg.layer_input_size(layer), cfg.hidden_dim, batch_first=True)
                                             for _ in range(cfg.directions)))
        self.dropout = nn.Dropout(cfg.dropout)
        self.sequence_path = "padded"
        # Parameter-free template for the packed path: it is not a submodule, so it adds nothing to
        # state_dict(); functional_call gives it ``self.layers``' weights. Per direction: one stack of one
        # direction, run on each direction's input in turn.
        self.__dict__["_fused_lstm"] = nn.LSTM(cfg.embedding_dim, cfg.hidden_dim, num_layers=cfg.n_layers,
                                               bidirectional=not cfg.separate_stacks, batch_first=True,
                                               dropout=cfg.dropout if cfg.n_layers > 1 else 0.0)
        self.fc = nn.Linear(cfg.pooled_dim, cfg.output_dim)

    @property
    def config(self) -> LSTMConfig:
        return self._config

    @classmethod
    def from_config(cls, config: Union[LSTMConfig, Dict[str, Any]]) -> "LSTMClassifier":
        if isinstance(config, dict):
            config = LSTMConfig.from_dict(config)
        return cls(**asdict(config))

    @classmethod
    def from_weights(cls, config: Union[LSTMConfig, Dict[str, Any]], weights: Mapping[str, Any]) -> "LSTMClassifier":
        """The model a file describes: its config checked against its weights' shapes first (ValueError),
        so a hostile or damaged file cannot make it allocate more than the weights it holds."""
        if not isinstance(config, (LSTMConfig, dict)):
            raise ValueError("the model settings are not a mapping")
        config = LSTMConfig.from_dict(config) if isinstance(config, dict) else config
        config.check_weights(weights)
        model = cls.from_config(config)
        model.load_state_dict(weights)
        return model

    @property
    def sequence_path(self) -> str:
        """"padded" (per-direction LSTMs on the padded batch) or "packed" (one packed cuDNN call)."""
        return self._sequence_path

    @sequence_path.setter
    def sequence_path(self, value: str) -> None:
        self._sequence_path = check_setting("sequence_path", value, "sequence_path")

    def _fused_weights(self, only_direction: Optional[int] = None) -> Dict[str, torch.Tensor]:
        """``self.layers``' parameters under the names of one multi-layer (bidirectional) ``nn.LSTM``; with
        ``only_direction``, those of that direction's stack, as a unidirectional one."""
        weights = {}
        for index, directions in enumerate(self.layers):
            for direction, lstm in enumerate(directions):
                if only_direction is not None and direction != only_direction:
                    continue
                suffix = "_reverse" if direction and only_direction is None else ""
                for name, value in lstm.named_parameters():  # weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0
                    weights[f"{name[:-1]}{index}{suffix}"] = value
        return weights

    def _run_packed(self, embedded: torch.Tensor, lengths: torch.Tensor, weights: Dict[str, torch.Tensor]
                    ) -> torch.Tensor:
        """The fused template with ``weights`` as one packed cuDNN call: [B, T, E] -> [B, T, H'], zeros at padding."""
        packed = nn.utils.rnn.pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
        fused = self.__dict__["_fused_lstm"]
        fused.train(self.training)
        output, _ = _call_lstm(fused, self._drop_hidden_weights(weights, self._config.weight_drop), packed)
        states, _ = nn.utils.rnn.pad_packed_sequence(output, batch_first=True, total_length=embedded.size(1))
        return states

    def _encode_packed(self, embedded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The stack as packed cuDNN calls (one, or one per direction's stack): [B, T, E] -> [B, T, H * directions]."""
        if not self._config.separate_stacks or not self._config.bidirectional:  # one nn.LSTM computes it all
            return self._run_packed(embedded, lengths, self._fused_weights())
        forward = self._run_packed(embedded, lengths, self._fused_weights(0))
        backward = self._run_packed(reverse_within_length(embedded, lengths), lengths, self._fused_weights(1))
        return torch.cat([forward, reverse_within_length(backward, lengths)], dim=-1)

    def _drop_hidden_weights(self, weights: Dict[str, torch.Tensor], weight_drop: float) -> Dict[str, torch.Tensor]:
        """``weights`` (an LSTM's, by name) with DropConnect on the hidden-to-hidden matrices while training
        (AWD-LSTM): a mask drawn once per call, so the same at every time step of the batch."""
        if not (self.training and weight_drop):
            return weights
        return {name: nn.functional.dropout(value, weight_drop) if name.startswith("weight_hh") else value
                for name, value in weights.items()}

    def _run_direction(self, lstm: nn.LSTM, x: torch.Tensor, weight_drop: float) -> torch.Tensor:
        """One direction's LSTM of one layer: [B, T, I] -> [B, T, H], with ``weight_drop`` while training."""
        if not (self.training and weight_drop):
            return lstm(x)[0]
        return _call_lstm(lstm, self._drop_hidden_weights(dict(lstm.named_parameters()), weight_drop), x)[0]

    def direction_stack(self, embedded: torch.Tensor, direction: int, layers: Optional[int] = None,
                        between: Optional[nn.Module] = None, weight_drop: Optional[float] = None) -> torch.Tensor:
        """The first ``layers`` (default: all) of one direction's stack on a batch already in that direction's
        reading order (reversed for the backward one): [B, T, E] -> [B, T, H], with ``between`` (default: the
        model's dropout) between layers and ``weight_drop`` (default: the model's) on their hidden-to-hidden
        weights. Only for the layers that read one direction (``config.language_model_layers``): the
        language-model pretraining runs them too."""
        layers = self._config.n_layers if layers is None else layers
        if layers > self._config.language_model_layers:
            raise ValueError(f"only the first {self._config.language_model_layers} layer(s) of this model read one "
                             f"direction, not {layers}: its upper layers read both (stacking='joint')")
        weight_drop = self._config.weight_drop if weight_drop is None else weight_drop
        x = embedded
        for index in range(layers):
            if index > 0:
                x = (between or self.dropout)(x)
            x = self._run_direction(self.layers[index][direction], x, weight_drop)
        return x

    def _encode(self, embedded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Run the LSTM stack: [B, T, E] -> [B, T, H * directions]."""
        if self._sequence_path == "packed":
            return self._encode_packed(embedded, lengths)
        if self._config.separate_stacks:
            forward = self.direction_stack(embedded, 0)
            if not self._config.bidirectional:
                return forward
            backward = self.direction_stack(reverse_within_length(embedded, lengths), 1)
            return torch.cat([forward, reverse_within_length(backward, lengths)], dim=-1)
        x = embedded
        for index, (forward_lstm, backward_lstm) in enumerate(self.layers):  # joint: each layer reads both
            if index > 0:
                x = self.dropout(x)
            forward = self._run_direction(forward_lstm, x, self._config.weight_drop)
            backward = self._run_direction(backward_lstm, reverse_within_length(x, lengths), self._config.weight_drop)
            x = torch.cat([forward, reverse_within_length(backward, lengths)], dim=-1)
        return x

    def _pool(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[B, T, D] -> [B, D'] over the real (non-pad) steps only."""
        mask = (torch.arange(states.size(1), device=states.device).unsqueeze(0)
                < lengths.to(states.device).unsqueeze(1)).unsqueeze(-1)  # [B, T, 1]
        mode = self._config.pooling
        if mode == "last":
            hidden = self._config.hidden_dim
            index = (lengths.to(states.device) - 1).view(-1, 1, 1).expand(-1, 1, hidden)
            forward_last = states[..., :hidden].gather(1, index).squeeze(1)
            return torch.cat([forward_last, states[:, 0, hidden:]], dim=-1)
        pooled = []
        if mode in ("max_mean", "max"):
            pooled.append(states.masked_fill(~mask, float("-inf")).amax(dim=1))
        if mode in ("max_mean", "mean"):
            total = (states * mask).sum(dim=1)
            pooled.append(total / lengths.to(states.device).unsqueeze(1).to(states.dtype))
        return torch.cat(pooled, dim=-1)

    def forward(self, token_ids: torch.Tensor, lengths: Optional[torch.Tensor] = None,
                embedding_shift: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Logits [B] (one output) or [B, C]; ``embedding_shift`` [B, T, E] is added to the embedded words
        (adversarial training)."""
        if lengths is None:
            lengths = (token_ids != self._config.pad_idx).sum(dim=1).clamp(min=1)
        embedded = self.embedding(token_ids)  # [B, T, E]
        if embedding_shift is not None:
            embedded = embedded + embedding_shift.to(embedded.dtype)
        embedded = self.embedding_dropout(embedded)
        states = self._encode(embedded, lengths)  # [B, T, H * directions]
        logits = self.fc(self.dropout(self._pool(states, lengths)))  # [B, C]
        return logits.squeeze(-1) if self._config.output_dim == 1 else logits

    def count_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)
