"""The benchmark of the targets in bench/README.md (``bench/run``, see bench/README.md)."""
