"""``python -m diffad_core`` runs the ``diffad`` command."""

import sys

from .cli import main

sys.exit(main())
