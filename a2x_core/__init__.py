"""a2x: speech audio → ARKit-52 facial animation (embedded model and NVIDIA Audio2Face-3D).

The public names are imported on first use (PEP 562), so that ``a2x`` and the default model
do not pay for the streaming and Audio2Face-3D machinery they do not run.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .version import __version__

if TYPE_CHECKING:
    from .api import Animator, animate
    from .audio.accumulator import StreamFrame
    from .audio.decode import Audio, decode_audio
    from .errors import A2XError
    from .executor.stream import Stream
    from .models.registry import load_model
    from .options import InferenceOptions
    from .result import AnimationResult

#: Public name -> the module that defines it.
_EXPORTS = {
    "A2XError": ".errors",
    "AnimationResult": ".result",
    "Animator": ".api",
    "Audio": ".audio.decode",
    "InferenceOptions": ".options",
    "Stream": ".executor.stream",
    "StreamFrame": ".audio.accumulator",
    "animate": ".api",
    "decode_audio": ".audio.decode",
    "load_model": ".models.registry",
}

__all__ = [
    "A2XError",
    "AnimationResult",
    "Animator",
    "Audio",
    "InferenceOptions",
    "Stream",
    "StreamFrame",
    "__version__",
    "animate",
    "decode_audio",
    "load_model",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module when the name is first used."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
