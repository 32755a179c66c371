"""``python -m gateway`` is the same as the ``gateway`` console script."""

from __future__ import annotations

from gateway.tools.cli import main

if __name__ == "__main__":
    main()
