"""The model families a job can train (hyperparameter ``family``), described without importing Keras.

What the job needs to know before training: the task (it decides how labels are read and which
metric gates compression), the exported graph's input and output names, the bundled example data,
and the registry name used when none is given. ``training.models`` builds the Keras models.
"""

from __future__ import annotations

from dataclasses import dataclass

CLASSIFICATION = "classification"
REGRESSION = "regression"


@dataclass(frozen=True)
class Family:
    name: str
    task: str
    input_name: str
    output_name: str
    example: str  # bundled data when a local run names none: "digits" or a training.data.TABULAR_DATASETS key
    default_model_name: str
    tabular: bool  # rows of named features (CSV, JSON Lines or N x F .npz) rather than images
    learning_rate: float  # Adam's step when the job is given none; a linear model needs big steps
    text: bool = False  # raw text plus a label per row, tokenised by shared.text; the graph takes token ids

    @property
    def classification(self) -> bool:
        return self.task == CLASSIFICATION


FAMILIES = {
    f.name: f
    for f in (
        Family("image", CLASSIFICATION, "image", "probabilities", "digits", "digits", False, 2e-3),
        Family("tabular", CLASSIFICATION, "features", "probabilities", "breast_cancer", "breast-cancer", True, 2e-3),
        Family(
            "logistic",
            CLASSIFICATION,
            "features",
            "probabilities",
            "breast_cancer",
            "breast-cancer-logistic",
            True,
            1e-2,
        ),
        Family("linear", REGRESSION, "features", "prediction", "diabetes", "diabetes", True, 0.1),
        # input_name is the graph's token-id input; the manifest's input is the raw string TEXT_INPUT.
        Family("text", CLASSIFICATION, "tokens", "probabilities", "reviews", "reviews", False, 1e-2, text=True),
        Family("text-rnn", CLASSIFICATION, "tokens", "probabilities", "reviews", "reviews-rnn", False, 5e-3, text=True),
    )
}
DEFAULT_FAMILY = "image"
TEXT_INPUT = "text"  # the manifest input of the text families: one raw string per instance


def family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}; got {name!r}") from None
