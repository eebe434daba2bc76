"""Tokenisation, vocabulary, and cutting reviews to the model's length.

``TextPreprocessor`` owns everything that turns text into the model's input: the
vocabulary, ``max_length`` (training's cut), ``eval_max_length`` (the cut of
validation, testing and prediction) and ``truncation``. It is saved as ``vocab.json``, so a
model directory alone reproduces training's encoding.

A small regular-expression tokenizer of our own: on the 25,000 IMDB training
reviews it tokenises, counts and encodes in a few seconds on two CPU cores,
faster than the ``tokenizers`` library's WordLevel pipeline measured on the same
machine (see ``bench/data_pipeline.py``), and it needs no extra dependency.
"""

from __future__ import annotations

import itertools
import json
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Union

import numpy as np

from src.config import check_setting, default_of, reading_length
from src.exceptions import DataError
from src.utils.io import atomic_write_json

PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
PAD_IDX = 0
UNK_IDX = 1
# 2: max_length and truncation are part of the vocabulary file. Version 1 files load with
# LEGACY_ENCODING, the settings inference used before; model directories of that time
# override it with their config.json. Files without eval_max_length (from before it) read
# max_length tokens at prediction, as their models were evaluated.
FORMAT_VERSION = 2
LEGACY_ENCODING = {"max_length": 400, "truncation": "head"}

# "words": words (letters/digits, with inner apostrophes: "don't") and the two punctuation
# marks that carry sentiment. "social" also keeps what short informal text says with other
# characters: emoticons (":)", ":-(", ";p", "<3"), #hashtags, @mentions and emoji, each one
# token. "unicode" (the default since own data of any language came in) is "social" for text
# in any script: the text NFC-normalised (decomposed accents composed) with curly apostrophes
# read as straight ones, words that keep their combining marks (Devanagari, Bengali or Arabic
# vowel signs split them before), and each character of the scripts written without spaces
# between words (Chinese, Japanese, Thai, Lao, Khmer, Myanmar) a token of its own, where a
# whole clause was one token. Vocabularies record their tokenizer; files from before
# tokenizers had names mean "words".
_WORD = r"[^\W_]+(?:'[^\W_]+)*|[!?]"
_EMOTICON = r"(?:[:;=][-o^']?[)(\]\[dp/\\|*]|</?3)(?![\w/])"
_TAG = r"(?<!\w)[#@][^\W\d_]\w*"
_EMOJI = "[\u2600-\u27bf\U0001f1e6-\U0001f1ff\U0001f300-\U0001f64f\U0001f680-\U0001f6ff\U0001f900-\U0001faff]"
_UNSPACED = ("\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
             "\uff66-\uff9f\U00020000-\U0003134f")  # Thai, Lao, Myanmar, Khmer, kana (half-width too), CJK


def _mark_ranges(last: int = 0xFFFF) -> str:
    """A character class body of every combining mark (categories Mn, Mc, Me) up to ``last`` (by default
    those of the Basic Multilingual Plane, which holds the scripts in everyday use)."""
    runs: List[List[int]] = []
    for code in range(0x300, last + 1):
        if unicodedata.category(chr(code)).startswith("M"):
            if runs and runs[-1][1] == code - 1:
                runs[-1][1] = code
            else:
                runs.append([code, code])
    return "".join(f"\\U{first:08x}-\\U{end:08x}" for first, end in runs)


_MARKS = _mark_ranges()
_LETTERS = rf"[^\W_{_UNSPACED}]+(?:[{_MARKS}]+[^\W_{_UNSPACED}]*)*"  # letters and digits with their marks
_GLYPH = rf"[{_UNSPACED}][{_MARKS}]*"  # one character of a script written without spaces, with its marks
_MARKED_TAG = rf"(?<!\w)[#@][^\W\d_][\w{_MARKS}]*"  # a #hashtag or @mention whose letters carry marks too
TOKENIZERS = {"words": re.compile(_WORD), "social": re.compile(f"{_EMOTICON}|{_TAG}|{_WORD}|{_EMOJI}"),
              "unicode": re.compile(f"{_EMOTICON}|{_MARKED_TAG}|{_LETTERS}(?:'{_LETTERS})*|[!?]|{_GLYPH}|{_EMOJI}")}
NORMALISING_TOKENIZERS = ("unicode",)
LEGACY_TOKENIZER = "words"


def reading_form(text: str, tokenizer: str) -> str:
    """``text`` as the named tokenizer reads it, before lower-casing: NFC-normalised, with curly apostrophes
    straight, for the normalising ones; as it is for the others."""
    if tokenizer not in NORMALISING_TOKENIZERS:
        return text
    return unicodedata.normalize("NFC", text).replace("\u2019", "'").replace("\u02bc", "'")


def tokenize(text: str, lowercase: bool = True, tokenizer: str = default_of("tokenizer")) -> List[str]:
    """The tokens of ``text``, in order, by the named tokenizer (one of ``TOKENIZERS``)."""
    text = reading_form(text, tokenizer)
    return TOKENIZERS[tokenizer].findall(text.lower() if lowercase else text)


def truncate_ids(ids: np.ndarray, max_length: int, strategy: str = default_of("truncation")) -> np.ndarray:
    """Cut a review to ``max_length`` tokens; an empty review becomes one ``<unk>``.

    ``head`` keeps the beginning; ``head_tail`` keeps the first quarter of the budget
    from the beginning and the rest from the end, where reviewers tend to sum up.
    """
    if len(ids) == 0:
        return np.array([UNK_IDX], dtype=np.int32)
    if len(ids) <= max_length:
        return ids
    if strategy == "head":
        return ids[:max_length]
    head = max_length // 4
    return np.concatenate([ids[:head], ids[len(ids) - (max_length - head):]])


class TextPreprocessor:
    """Turns review text into token ids with a frequency-ranked vocabulary.

    Id 0 is ``<pad>`` and id 1 is ``<unk>``; the remaining ids go to the most frequent
    training words (ties broken alphabetically, so the vocabulary is reproducible).
    Training reads ``max_length`` tokens of a review (``truncate``), validation, testing and
    prediction ``eval_max_length`` (``truncate_for_prediction``, ``encode_for_model``), both cut
    by ``truncation``: an LSTM that pools over time reads whole reviews better than cut ones,
    and training on cut ones is cheaper.
    """

    def __init__(self, max_vocab_size: int = default_of("max_vocab_size"), min_freq: int = default_of("min_freq"),
                 lowercase: bool = True, max_length: int = default_of("max_length"),
                 truncation: str = default_of("truncation"), tokenizer: str = default_of("tokenizer"),
                 eval_max_length: Optional[int] = None):
        self.max_vocab_size = check_setting("max_vocab_size", max_vocab_size, "max_vocab_size")
        self.min_freq = check_setting("min_freq", min_freq, "min_freq")
        self.lowercase = lowercase
        self.max_length = check_setting("max_length", max_length, "max_length")
        self.eval_max_length = reading_length(self.max_length,
                                              check_setting("eval_max_length", eval_max_length, "eval_max_length"))
        self.truncation = check_setting("truncation", truncation, "truncation")
        self.tokenizer = check_setting("tokenizer", tokenizer, "tokenizer")
        self.itos: List[str] = [PAD_TOKEN, UNK_TOKEN]
        self.stoi: Dict[str, int] = {PAD_TOKEN: PAD_IDX, UNK_TOKEN: UNK_IDX}

    pad_idx = PAD_IDX
    unk_idx = UNK_IDX

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    @property
    def is_fitted(self) -> bool:
        return len(self.itos) > 2

    def tokenize(self, text: str) -> List[str]:
        return tokenize(text, self.lowercase, self.tokenizer)

    def build_vocab(self, texts: Iterable[str]) -> "TextPreprocessor":
        """Count the tokens of ``texts`` and keep the most frequent ones."""
        self._fit_tokens([self.tokenize(t) for t in texts])
        return self

    def fit_encode(self, texts: Sequence[str]) -> List[np.ndarray]:
        """``build_vocab`` then ``encode_batch``, tokenising each text once instead of twice."""
        tokenized = [self.tokenize(t) for t in texts]
        self._fit_tokens(tokenized)
        return [self._token_ids(tokens) for tokens in tokenized]

    def _fit_tokens(self, tokenized: List[List[str]]) -> None:
        counts = Counter(itertools.chain.from_iterable(tokenized))
        ranked = sorted(
            (item for item in counts.items() if item[1] >= self.min_freq),
            key=lambda item: (-item[1], item[0]),
        )
        words = [word for word, _ in ranked[: self.max_vocab_size - 2]]
        if not words and counts:  # every text would look the same to a model: all unknown words
            raise DataError(f"no word of the training texts appears {self.min_freq} times (--min-freq); lower it")
        self._set_vocab([PAD_TOKEN, UNK_TOKEN] + words)

    def _set_vocab(self, itos: List[str]) -> None:
        if itos[:2] != [PAD_TOKEN, UNK_TOKEN] or len(set(itos)) != len(itos):
            raise DataError("a vocabulary must start with <pad>, <unk> and hold no duplicate words")
        self.itos = itos
        self.stoi = {word: index for index, word in enumerate(itos)}

    def encode(self, text: str) -> List[int]:
        """Token ids of all of ``text`` (unknown words map to ``<unk>``); ``encode_for_model`` cuts them."""
        get = self.stoi.get
        return [get(token, UNK_IDX) for token in self.tokenize(text)]

    def encode_batch(self, texts: Iterable[str]) -> List[np.ndarray]:
        """Encode many texts to int32 arrays (compact: 4 bytes a token)."""
        return [self._token_ids(self.tokenize(text)) for text in texts]

    def truncate(self, ids: np.ndarray) -> np.ndarray:
        """Token ids cut to the model's input in training: at most ``max_length``, never empty."""
        return truncate_ids(ids, self.max_length, self.truncation)

    def truncate_for_prediction(self, ids: np.ndarray) -> np.ndarray:
        """Token ids cut to the model's input outside training: at most ``eval_max_length``, never empty."""
        return truncate_ids(ids, self.eval_max_length, self.truncation)

    def encode_for_model(self, texts: Iterable[str], tokenized: Optional[Iterable[List[str]]] = None
                         ) -> List[np.ndarray]:
        """The model's input for each text at prediction: encoded, then truncated. ``tokenized``: the
        texts' tokens (``tokenize``), where the caller has them already."""
        tokenized = map(self.tokenize, texts) if tokenized is None else tokenized
        return [self.truncate_for_prediction(self._token_ids(tokens)) for tokens in tokenized]

    def _token_ids(self, tokens: List[str]) -> np.ndarray:
        get = self.stoi.get
        return np.array([get(token, UNK_IDX) for token in tokens], dtype=np.int32)

    def decode(self, ids: Sequence[int]) -> str:
        """Words for ``ids``, with padding dropped."""
        return " ".join(self.itos[int(i)] for i in ids if int(i) != PAD_IDX)

    def to_dict(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "max_vocab_size": self.max_vocab_size,
            "min_freq": self.min_freq,
            "lowercase": self.lowercase,
            "max_length": self.max_length,
            "eval_max_length": self.eval_max_length,
            "truncation": self.truncation,
            "tokenizer": self.tokenizer,
            "itos": self.itos,
        }

    @classmethod
    def from_dict(cls, state: dict, legacy_encoding: Optional[Callable[[], dict]] = None) -> "TextPreprocessor":
        """Rebuild from ``to_dict()``'s output, checking every field (the file may come from anyone).

        A version-1 dict has no ``max_length``/``truncation``: ``legacy_encoding()`` gives
        them (default ``LEGACY_ENCODING``)."""
        if not isinstance(state, dict):
            raise DataError("no vocabulary data given (expected the dict written by to_dict)")
        try:
            version = state["format_version"]
            if version not in (1, FORMAT_VERSION):
                raise DataError(
                    f"vocabulary format version {version} is not supported (this version reads "
                    f"1 and {FORMAT_VERSION}); rebuild the vocabulary with this version"
                )
            encoding = state if version != 1 else {**LEGACY_ENCODING, **(legacy_encoding() if legacy_encoding else {})}
            processor = cls(state["max_vocab_size"], state["min_freq"], state["lowercase"],
                            encoding["max_length"], encoding["truncation"], state.get("tokenizer", LEGACY_TOKENIZER),
                            state.get("eval_max_length", encoding["max_length"]))
            itos = state["itos"]
            if not isinstance(itos, list) or not all(isinstance(word, str) for word in itos):
                raise DataError("the vocabulary's word list (itos) must be a list of strings")
            processor._set_vocab(list(itos))
        except KeyError as err:
            raise DataError(f"vocabulary data is incomplete (missing {err}); rebuild it") from None
        except (TypeError, ValueError) as err:
            if isinstance(err, DataError):
                raise
            raise DataError(f"vocabulary data is invalid ({err}); rebuild it") from None
        return processor

    def save(self, path: Union[str, Path]) -> None:
        """Write the vocabulary and settings as JSON, atomically."""
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Union[str, Path], legacy_encoding: Optional[Callable[[], dict]] = None
             ) -> "TextPreprocessor":
        try:
            state = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"vocabulary file {path} does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DataError(f"vocabulary file {path} is damaged ({err}); rebuild it by training again") from None
        if not isinstance(state, dict):
            raise DataError(f"vocabulary file {path} does not hold a vocabulary")
        try:
            return cls.from_dict(state, legacy_encoding)
        except DataError as err:
            raise DataError(f"vocabulary file {path}: {err}") from None
