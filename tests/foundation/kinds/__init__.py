"""Example drill kinds that live outside the package: the proof that a kind is one folder plus one registration."""
