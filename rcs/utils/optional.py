"""Optional dependencies: import them where they are used, or fail with the install command.

``faiss = require("faiss", "cpu", "FAISS k-means")`` returns the module, or raises
:class:`rcs.errors.NotAvailableError` naming the extra (``pip install 'rcs-toolkit[cpu]'``) and
the package, so the CLI prints one clear line instead of a traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from rcs.errors import NotAvailableError

EXTRAS = {
    "faiss": ("cpu", "faiss-cpu (or faiss-gpu with the [gpu] extra: install one, not both)"),
    "submitit": ("slurm", "submitit"),
    "matplotlib": ("plots", "matplotlib"),
}
"""module -> (extra of rcs-toolkit, PyPI package)."""


def require(module: str, purpose: str) -> ModuleType:
    """``import module`` or raise ``NotAvailableError`` saying what needs it and how to
    install it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        extra, package = EXTRAS.get(module.split(".")[0], ("all", module))
        raise NotAvailableError(
            f"{purpose} needs the optional package {package!r}, which does not import here "
            f"({e}); install it with: pip install 'rcs-toolkit[{extra}]'") from None
