"""Write ``qm9.npz`` (docs/data.md) from a PyTorch Geometric copy of QM9 (needs the optional ``torch_geometric``).

Usage: ``python -m trainables.datasets.convert_qm9 PYG_ROOT OUT_DIR``
"""

from __future__ import annotations

import sys

from .qm9 import convert_pyg


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m trainables.datasets.convert_qm9 PYG_ROOT OUT_DIR", file=sys.stderr)
        return 2
    try:
        print(convert_pyg(args[0], args[1]))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
