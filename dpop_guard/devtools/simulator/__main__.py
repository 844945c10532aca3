"""``python -m dpop_guard.devtools.simulator``: the same code path as ``dpop-guard simulate``."""

import sys

from . import main

sys.exit(main())
