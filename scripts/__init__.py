"""Scripts run from a checkout (``python -m scripts.demo``); not part of the installed package."""
