"""``python -m a2x_core`` runs the ``a2x`` command line."""

import sys

from .cli import console_main

sys.exit(console_main())
