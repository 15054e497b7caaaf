"""``python -m sasi`` = the ``sasi`` command."""

from sasi.cli import main

main()
