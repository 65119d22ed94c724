"""``python -m vog``: the ``vog`` command line."""

from ._cli import main

main()
