"""``python -m dpop_guard.devtools.demo``."""

import sys

from ._run import main

sys.exit(main())
