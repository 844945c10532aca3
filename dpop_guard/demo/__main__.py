"""``python -m dpop_guard.demo``."""

import sys

from ._run import main

sys.exit(main())
