"""Diffusion noise per inference: ``[steps + 1, frames, D]`` float32 (spec §2, §6, §8.11).

Every track draws the same sequence (the SDK seeds each track's generator identically), so one
source serves a whole batch. ``constant``: one draw used for every inference (the SDK's default,
``constantNoise=true``); otherwise inference ``w`` gets its own draw, and any window can be
recomputed alone (the SDK's ``Reset`` and previews set the generator offset to ``w * size``).

Generators (``--param noise_generator=...``):

- ``auto`` (default): ``curand`` wherever CuPy and a CUDA device are present, so that a GPU run
  is the SDK's own output; ``numpy`` elsewhere. A run records the generator that drew
  (``AnimationResult.parameters["noise_generator"]``).
- ``curand``: cuRAND's Philox4x32-10 through CuPy, as the SDK draws it
  (``curandGenerateNormal``, mean 0, std 1, offset ``w * size``); with ``seed`` 0 (cuRAND's
  default seed, which the SDK never changes) the noise is the SDK's own. Needs CuPy and a GPU.
- ``numpy``: NumPy's Philox keyed by ``(seed, w)``; identical on every machine and engine, CPU
  or GPU, but not the SDK's numbers (the same distribution).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import numpy as np

from ..errors import EngineError

GENERATORS = ("auto", "numpy", "curand")

log = logging.getLogger("a2x_core")


@functools.cache
def curand_available() -> bool:
    """Whether CuPy imports and sees a CUDA device (checked once per process)."""
    try:
        import cupy

        return int(cupy.cuda.runtime.getDeviceCount()) > 0
    except Exception:  # no CuPy, no driver, no device: CuPy raises its own error types
        return False


def resolve_generator(generator: str) -> str:
    """The generator that ``generator`` names here: "auto" is "curand" where CuPy and a CUDA
    device are present, else "numpy"."""
    if generator != "auto":
        return generator
    return "curand" if curand_available() else "numpy"


class NoiseSource:
    """Seeded noise windows from NumPy's Philox (portable: the same numbers everywhere)."""

    generator = "numpy"

    def __init__(self, shape: tuple[int, ...], seed: int, constant: bool) -> None:
        self.shape = tuple(int(d) for d in shape)
        self.seed = int(seed)
        self.constant = constant
        self._fixed: np.ndarray | None = None

    @property
    def key(self) -> tuple[Any, ...]:
        """What identifies the draws (for caching them on a device)."""
        return (self.generator, self.seed, self.shape, self.constant)

    def window(self, index: int) -> np.ndarray:
        """The noise of inference ``index`` on the host."""
        if self.constant:
            if self._fixed is None:
                self._fixed = self._draw(np.random.SeedSequence(self.seed))
            return self._fixed
        return self._draw(np.random.SeedSequence([self.seed, int(index)]))

    def device_window(self, index: int, torch: Any, device: Any) -> Any:
        """The noise of inference ``index`` as a torch tensor on ``device``."""
        return torch.from_numpy(self.window(index)).to(device)

    def _draw(self, seed: np.random.SeedSequence) -> np.ndarray:
        generator = np.random.Generator(np.random.Philox(seed))
        return generator.standard_normal(self.shape, dtype=np.float32)


class CurandNoise(NoiseSource):
    """cuRAND Philox4x32-10 draws through CuPy, on the GPU (the SDK's generator)."""

    generator = "curand"

    def __init__(self, shape: tuple[int, ...], seed: int, constant: bool) -> None:
        super().__init__(shape, seed, constant)
        try:
            import cupy
            from cupy.cuda import curand
        except ImportError:
            raise EngineError(
                "noise_generator=curand needs CuPy",
                hint="pip install cupy-cuda12x (or cupy-cuda13x), or use noise_generator=numpy",
            ) from None
        try:
            self._generator = curand.createGenerator(curand.CURAND_RNG_PSEUDO_PHILOX4_32_10)
        except Exception as error:  # CuPy raises CUDA/cuRAND errors of its own types
            raise EngineError(
                f"cuRAND is unavailable ({error})",
                hint="noise_generator=curand needs a CUDA GPU; use noise_generator=numpy",
            ) from None
        self._cupy, self._curand = cupy, curand
        curand.setPseudoRandomGeneratorSeed(self._generator, self.seed)
        self._size = int(np.prod(self.shape))
        self._fixed_device: Any = None

    def _draw_device(self, index: int) -> Any:
        """``curandGenerateNormal`` of one window's size at offset ``index * size``."""
        out = self._cupy.empty(self.shape, dtype=self._cupy.float32)
        self._curand.setGeneratorOffset(self._generator, int(index) * self._size)
        self._curand.generateNormal(self._generator, out.data.ptr, self._size, 0.0, 1.0)
        return out

    def _window_device(self, index: int) -> Any:
        if not self.constant:
            return self._draw_device(index)
        if self._fixed_device is None:
            self._fixed_device = self._draw_device(0)
        return self._fixed_device

    def window(self, index: int) -> np.ndarray:
        return self._cupy.asnumpy(self._window_device(index))

    def device_window(self, index: int, torch: Any, device: Any) -> Any:
        return torch.from_dlpack(self._window_device(index)).to(device)


def noise_source(generator: str, shape: tuple[int, ...], seed: int, constant: bool) -> NoiseSource:
    """The noise source named ``generator`` ("auto", "numpy" or "curand"); its ``generator``
    attribute says which one draws.

    Raises:
        EngineError: "curand" asked for explicitly, without CuPy or a GPU ("auto" falls back
            to "numpy" with a warning when cuRAND fails to start).
    """
    chosen = resolve_generator(generator)
    if chosen != "curand":
        return NoiseSource(shape, seed, constant)
    try:
        return CurandNoise(shape, seed, constant)
    except EngineError as error:
        if generator != "auto":
            raise
        log.warning("diffusion noise from NumPy's Philox, not the SDK's cuRAND: %s", error)
        return NoiseSource(shape, seed, constant)
