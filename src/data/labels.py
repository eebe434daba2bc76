"""Class names: which labels a data set has, in which order, and which one is "positive".

A model's outputs are indices into its class names, which are saved with it
(``LSTMConfig.class_names``). Two classes keep a single logit whose sigmoid is
P(positive), with the positive class second; three or more get one logit each.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any, List, Optional, Sequence, Tuple

from src.exceptions import DataError

logger = logging.getLogger(__name__)

IMDB_CLASS_NAMES = ("negative", "positive")  # also the names of models saved before class names were
POSITIVE_NAMES = ("1", "pos", "positive")  # taken as the positive class of two, when present
NEGATIVE_NAMES = ("0", "neg", "negative")  # with POSITIVE_NAMES: the same two classes under other names
MAX_CLASSES = 1000
MAX_NAME_LENGTH = 200


# a whole number written as one: "3", "-2", "3.0"; not "007" or "01", codes whose zeros are part of the name
_INTEGRAL = re.compile(r"[+-]?(?:0|[1-9]\d*)(?:\.0*)?")


def label_name(value: Any) -> Optional[str]:
    """A label as text, the same whatever the file's format: "3" for 3, 3.0 and "3.0" (every digit of a long
    one kept), "true" for true and "True", "pos" for " pos "; None for a missing one (empty, NaN, null)."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    name = str(value).strip()
    if _INTEGRAL.fullmatch(name):
        return str(int(name.partition(".")[0]))  # exact: a float would round past 2**53
    return name.lower() if name.lower() in ("true", "false") else name or None


def _order(names: Sequence[str]) -> List[str]:
    """Numbers in numeric order (1-5 stars), other names alphabetically."""
    try:
        return sorted(names, key=lambda name: float(name))
    except ValueError:
        return sorted(names)


def class_names_of(labels: Sequence[str], positive_label: Optional[str] = None, where: str = "the training data"
                   ) -> Tuple[str, ...]:
    """The classes of ``labels`` in the order of the model's outputs.

    Two classes: the positive one last, ``positive_label`` or else the one named 1, pos or positive
    (DataError naming ``--positive-label`` when neither tells). Several: numeric or alphabetical order."""
    names = _order(sorted(set(labels)))
    _warn_of_names_alike(names, where)
    if len(names) < 2:
        found = f"only the class {names[0]!r}" if names else "no labels"
        raise DataError(f"{where} holds {found}; a classifier needs examples of at least two classes")
    if len(names) > MAX_CLASSES:
        raise DataError(f"{where} has {len(names)} different labels (at most {MAX_CLASSES}); is --label-column "
                        "the column of the labels?")
    too_long = next((name for name in names if len(name) > MAX_NAME_LENGTH), None)
    if too_long is not None:
        raise DataError(f"{where} has a label of {len(too_long)} characters (at most {MAX_NAME_LENGTH}): "
                        f"{too_long[:40]!r}...; is --label-column the column of the labels?")
    if len(names) > 2:
        if positive_label is not None:
            raise DataError(f"--positive-label is for two classes; {where} has {len(names)}: leave it out")
        return tuple(names)
    return _binary_order(names, positive_label, where)


def _warn_of_names_alike(names: Sequence[str], where: str) -> None:
    """Say so where two labels differ only in case ("Pos" and "pos"): each is a class of its own."""
    by_folded: dict = {}
    for name in names:
        by_folded.setdefault(name.casefold(), []).append(name)
    alike = [group for group in by_folded.values() if len(group) > 1]
    if alike:
        shown = "; ".join(" and ".join(repr(name) for name in group) for group in alike[:3])
        logger.warning("%s has labels that differ only in case (%s): each is a class of its own; if they mean "
                       "one class, write them alike", where, shown)


def _binary_order(names: List[str], positive_label: Optional[str], where: str) -> Tuple[str, ...]:
    if positive_label is not None:
        if positive_label not in names:
            raise DataError(f"--positive-label {positive_label!r} is not a label of {where} "
                            f"({names[0]!r}, {names[1]!r})")
        positive = positive_label
    else:
        known = [name for name in names if name.lower() in POSITIVE_NAMES]
        if len(known) != 1:
            raise DataError(f"{where} has the two classes {names[0]!r} and {names[1]!r}; say which one is positive "
                            f"with --positive-label")
        positive = known[0]
    return tuple(name for name in names if name != positive) + (positive,)


def label_indices(labels: Sequence[str], class_names: Sequence[str], path: object, rows: Sequence[str]) -> List[int]:
    """Each label's index in ``class_names``; DataError naming the file and row (``rows[i]``) of one that is
    not among them."""
    index = {name: number for number, name in enumerate(class_names)}
    if is_sentiment(class_names):  # 0/1, neg/pos and negative/positive all name these two
        index = {**{alias: 0 for alias in NEGATIVE_NAMES}, **{alias: 1 for alias in POSITIVE_NAMES}, **index}
    found = []
    for label, where in zip(labels, rows):
        name = next((form for form in (label, label.lower(), _zeros_dropped(label)) if form in index), None)
        if name is None:
            shown = ", ".join(repr(name) for name in class_names[:10]) + (", ..." if len(class_names) > 10 else "")
            raise DataError(f"{path}, {where}: the label {label!r} is not one of the training data's classes "
                            f"({shown}); correct it or remove the row")
        found.append(index[name])
    return found


def _zeros_dropped(label: str) -> str:
    """``label`` as models saved before codes kept their zeros name it ("01" was 1), for their test files."""
    return str(int(label)) if label.isascii() and label.isdigit() else label


def is_sentiment(class_names: Sequence[str]) -> bool:
    """Whether two classes are a negative and a positive one by their names (IMDB's, 0/1, neg/pos)."""
    return (len(class_names) == 2 and class_names[0].lower() in NEGATIVE_NAMES
            and class_names[1].lower() in POSITIVE_NAMES)


def check_class_names(names: Any, outputs: int) -> Tuple[str, ...]:
    """``names`` from a model file, checked: distinct short strings, one per class of ``outputs`` logits."""
    expected = 2 if outputs == 1 else outputs
    if (not isinstance(names, (list, tuple)) or len(names) != expected
            or not all(isinstance(name, str) and 0 < len(name) <= MAX_NAME_LENGTH for name in names)
            or len(set(names)) != len(names)):
        raise ValueError(f"class_names must be {expected} distinct names of 1-{MAX_NAME_LENGTH} characters for "
                         f"output_dim {outputs}")
    return tuple(names)
