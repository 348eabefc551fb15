"""Optional dependencies, imported only by the features that need them."""

import importlib

from .errors import MissingExtraError


def require(module, extra, feature):
    """``module`` imported, or MissingExtraError saying that ``feature`` needs the extra
    ``heterocnn[extra]`` (``package`` installs it)."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(f"{feature} needs {module.split('.')[0]}, which is not "
                                f"installed: pip install 'heterocnn[{extra}]' ({e})") from None
