"""A fix for bioimageio.spec 0.5.12 under pydantic-core >= 2.50 (fixed upstream in 0.5.14).

bioimageio.spec 0.5.12.0 (the version bioimageio.core 0.11.0 pins) calls pydantic's
serializer handler as ``handler(value, info)`` in three wrap serializers; pydantic-core
2.50 checks that second argument (an index key), and every model description then fails
validation. pydantic holds these functions in its compiled schemas, so each one's code is
replaced by the same source with ``handler(value)``, as bioimageio.spec 0.5.14 has it.
Nothing changes where the pattern is absent.
"""

from __future__ import annotations

import inspect
import re
import textwrap
from typing import Any

_FIXED = "<bioimageio.spec serializer fixed by napari-noise2score>"
_CALL = re.compile(r"handler\(\s*(value|self),\s*info,?[^)]*\)")


def _targets() -> list[Any]:
    from bioimageio.spec._internal import io_packaging, validated_string_with_inner_node
    from bioimageio.spec.model import v0_4

    node = validated_string_with_inner_node.ValidatedStringWithInnerNode
    method = getattr(node.__dict__.get("_serialize"), "wrapped", None) or \
        getattr(node.__dict__.get("_serialize"), "func", None)
    return [io_packaging.package_file_descr_serializer, v0_4.package_weights,
            *([method] if inspect.isfunction(method) else [])]


def patch_file_serializer() -> None:
    """Fix the serializers that pass ``info`` on to the handler (once; idempotent)."""
    try:
        targets = _targets()
    except (ImportError, AttributeError):
        return
    for function in targets:
        if function.__code__.co_filename == _FIXED:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(function))
        except (OSError, TypeError):
            continue
        fixed = _CALL.sub(r"handler(\1)", source)
        if fixed == source or function.__code__.co_freevars:
            continue
        body = fixed[fixed.index("def "):]  # without decorators
        scope: dict[str, Any] = {}
        exec(compile(body, _FIXED, "exec"), function.__globals__, scope)
        function.__code__ = scope[function.__name__].__code__
