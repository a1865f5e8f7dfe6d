"""SageMaker script-mode program: ``maas train submit`` puts a copy of this file at the top of the
source directory as ``entry.py`` (the ``sagemaker_program``), beside ``training/`` and ``shared/``.

The toolkit runs ``python entry.py --epochs 10 --model_name digits ...`` from ``/opt/ml/code``:
every hyperparameter once more as an argument, in the toolkit's spelling (``--batch_size``). The job
reads the same values from ``hyperparameters.json``, JSON-decoded, so the arguments are dropped
here rather than parsed a second time. ``python -m training.entry`` does the same from a checkout.
"""

from __future__ import annotations

import sys

from training.job import main

if __name__ == "__main__":
    sys.exit(main([]))
