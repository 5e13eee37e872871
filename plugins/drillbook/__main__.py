"""``python -m drillbook`` is the ``drillbook`` command."""

import sys

from drillbook.cli import main

# Airflow's plugins manager imports every .py under plugins/ as a module named
# "__main__" (the file's stem); only ``python -m drillbook`` has this spec name.
if __name__ == "__main__" and getattr(__spec__, "name", None) == "drillbook.__main__":
    sys.exit(main())
