"""The model families a job can train (hyperparameter ``family``): one module each, listed here.

Each module (``image``, ``tabular``, ``logistic``, ``linear``, ``text``, ``transformer``) owns its Keras builder, the
manifest's preprocessing, its check of the train channel's rows, its bundled example data, its task
and defaults, as a :class:`~training.families.base.Family`. Adding a family is one module and one
line in ``FAMILIES``. Nothing here imports Keras: the builders import it when they run.
"""

from __future__ import annotations

from training.families import image, linear, logistic, tabular, text, transformer
from training.families.base import CLASSIFICATION, REGRESSION, TEXT_INPUT, BuildInputs, Family

# In this order in help texts and error messages.
FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        image.FAMILY,
        tabular.FAMILY,
        logistic.FAMILY,
        linear.FAMILY,
        text.BAG_OF_WORDS,
        text.RNN,
        transformer.FAMILY,
    )
}
DEFAULT_FAMILY = image.FAMILY.name

__all__ = [
    "CLASSIFICATION",
    "DEFAULT_FAMILY",
    "FAMILIES",
    "REGRESSION",
    "TEXT_INPUT",
    "BuildInputs",
    "Family",
    "family",
]


def family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}; got {name!r}") from None
