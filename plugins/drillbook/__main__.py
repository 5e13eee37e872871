"""``python -m drillbook`` is the ``drillbook`` command."""

import sys

from drillbook.cli import main

sys.exit(main())
