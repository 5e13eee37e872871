"""Around one drill run: where it came from (``context``) and the one path its result takes (``pipeline``)."""
