"""The ``vog`` command line, as the script the wheel installs (``vog --help``)."""

import signal
import sys


def main(argv=None):
    """Runs ``vog`` with ``argv`` (default: ``sys.argv``) and exits with its status."""
    from . import _vog
    from ._ort import ensure_library_env

    ensure_library_env()

    args = list(sys.argv if argv is None else argv)
    if args:
        args[0] = "vog"
    # The engine runs without the interpreter: let Ctrl-C end the process, as for the binary.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(_vog.cli(args))
