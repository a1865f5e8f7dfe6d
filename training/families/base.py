"""What a model family declares to the job (the ``Family`` record) and the task kinds; no Keras here.

A family module (``training.families.<name>``) builds one of these; ``training.families`` lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maas_core.shared.manifest import CLASSIFICATION, REGRESSION

if TYPE_CHECKING:  # not at run time: the CLI reads the family table without paying for numpy
    import numpy as np

__all__ = [
    "CLASSIFICATION",
    "PROBABILITIES",
    "REGRESSION",
    "TEXT_INPUT",
    "BuildInputs",
    "Family",
    "defaults_for_zero",
    "rows_of_ndim",
]

PROBABILITIES = "probabilities"  # every classifier's output: a [N, n_classes] probability row
TEXT_INPUT = "text"  # the manifest input of the text families: one raw string per instance


@dataclass(frozen=True)
class BuildInputs:
    """What every family's ``build`` is given: the training split, the classes, the job's step size,
    and for text families the vocabulary size and (transformer) the architecture's sizes by name."""

    x: np.ndarray  # the train split's rows (token ids for text families): the input's shape comes from it
    y: np.ndarray  # its labels or targets
    num_classes: int
    learning_rate: float
    vocabulary_size: int = 0
    sizes: Mapping[str, int] = field(default_factory=dict)  # the family's ``architecture`` hyperparameters


@dataclass(frozen=True)
class Family:
    name: str
    task: str
    input_name: str  # the exported graph's input (token ids for text; the manifest's input is TEXT_INPUT)
    output_name: str
    default_model_name: str  # the registry name when the job is given none
    learning_rate: float  # Adam's step when the job is given none; a linear model needs big steps
    # BuildInputs -> an untrained, compiled keras.Model. Family modules import Keras inside it: the
    # job checks its data before paying for that.
    build: Callable[[BuildInputs], Any]
    # (training rows, feature column names or None) -> the manifest's ``preprocessing``
    preprocessing: Callable[[int, list[str] | None], dict[str, Any]]
    # (family name, the train channel's x) -> why the rows do not fit this family, or None
    rows_problem: Callable[[str, np.ndarray], str | None]
    write_example: Callable[[Path], Path]  # the bundled data a local run trains on when it names none
    text: bool = False  # raw text plus a label per row, tokenised by shared.text; the graph takes token ids
    retrained_compression: bool = False  # the pruned and distilled candidates (their students fit this family)
    tokenizer: str = "word"  # text families: shared.text's tokenizer type, "word" or "wordpiece"
    # (the job's hyperparameters) -> the ones the family fills in where the job left them at 0 or empty
    # (a transformer preset's sizes); raises ValueError naming what does not fit. The job records them.
    settings: Callable[[Mapping[str, Any]], dict[str, Any]] = lambda hyperparameters: {}
    architecture: tuple[str, ...] = ()  # the hyperparameters ``build`` reads from ``BuildInputs.sizes``
    onnx_model_type: str = ""  # onnxruntime's transformer optimiser's model type ("bert"), tried before compression

    @property
    def classification(self) -> bool:
        return self.task == CLASSIFICATION

    @property
    def input_dtype(self) -> str:
        return "int64" if self.text else "float32"


def defaults_for_zero(**defaults: Any) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """A ``settings`` that gives each of ``defaults`` its value where the job left it at 0."""

    def settings(hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
        return {k: hyperparameters.get(k) or v for k, v in defaults.items()}

    return settings


def rows_of_ndim(ndim: int, refusal: str) -> Callable[[str, np.ndarray], str | None]:
    """A ``rows_problem`` that takes x of ``ndim`` dimensions; ``refusal`` may name {name} and {shape}."""

    def rows_problem(name: str, x: np.ndarray) -> str | None:
        return None if x.ndim == ndim else refusal.format(name=name, shape=list(x.shape))

    return rows_problem
