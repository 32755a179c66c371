"""The benchmark of DESIGN.md section 7 (``bench/run``, see bench/README.md)."""
