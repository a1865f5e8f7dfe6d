import sys

from training.job import main

sys.exit(main())
