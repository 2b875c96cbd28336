"""a2x: speech audio → ARKit-52 facial animation (embedded model and NVIDIA Audio2Face-3D)."""

from .api import Animator, animate
from .audio import Audio, decode_audio
from .errors import A2XError
from .models import load_model
from .options import InferenceOptions
from .result import AnimationResult
from .stream import Stream
from .stream_audio import StreamFrame
from .version import __version__

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
