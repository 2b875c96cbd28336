"""A small anti-aliased polygon filler that draws straight into YUV 4:2:0 planes.

The preview video must render at >= 10x real time on two cores; converting every RGB frame to
YUV for the H.264 encoder costs more than drawing it, so the canvas keeps the encoder's planes
and blends flat colours into them (YUV is a linear transform of RGB, so blending there equals
blending in RGB). Coverage is exact along x (fractional span ends) and sampled on
``SUBSAMPLES`` scan lines per pixel row along y; the nonzero winding rule fills the polygons.
"""

from __future__ import annotations

import numpy as np

#: Scan lines per pixel row: with exact coverage along x, 2 keeps edges smooth at half the cost of 4.
SUBSAMPLES = 2

#: BT.709 limited-range RGB -> YCbCr (what players assume for HD H.264 without colour tags).
_RGB_TO_YUV = np.array(
    [[0.1826, 0.6142, 0.0620], [-0.1006, -0.3386, 0.4392], [0.4392, -0.3989, -0.0403]],
    dtype=np.float32,
)
_YUV_OFFSET = np.array([16.0, 128.0, 128.0], dtype=np.float32)


def rgb_to_yuv(rgb: np.ndarray) -> np.ndarray:
    """``[..., 3]`` RGB (0-255) -> ``[..., 3]`` limited-range BT.709 Y, Cb, Cr as float32."""
    return np.asarray(rgb, dtype=np.float32) @ _RGB_TO_YUV.T + _YUV_OFFSET


class YuvImage:
    """A 4:2:0 picture in the ``[H * 3 / 2, W]`` uint8 layout of PyAV's ``yuv420p`` frames
    (``data``; ``y``, ``u``, ``v`` are views of its planes) that polygons are blended into."""

    def __init__(self, width: int, height: int, rgb: tuple[int, int, int] = (0, 0, 0)) -> None:
        if width % 2 or height % 4:
            raise ValueError("yuv420p frames need an even width and a height divisible by 4")
        self.width, self.height = width, height
        self.data = np.empty((height * 3 // 2, width), dtype=np.uint8)
        quarter = height // 4
        self.y = self.data[:height]
        self.u = self.data[height:height + quarter].reshape(height // 2, width // 2)
        self.v = self.data[height + quarter:].reshape(height // 2, width // 2)
        self.uv = self.data[height:].reshape(2, height // 2, width // 2)  # both chroma planes
        self.fill_rect(0, 0, width, height, rgb)

    @classmethod
    def from_rgb(cls, rgb: np.ndarray) -> YuvImage:
        """A canvas holding an ``[H, W, 3]`` uint8 picture (e.g. text drawn by matplotlib)."""
        height, width = rgb.shape[:2]
        image = cls(width, height)
        yuv = rgb_to_yuv(rgb[..., :3]) + 0.5
        image.y[:] = yuv[..., 0]
        image.u[:] = yuv[..., 1].reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))
        image.v[:] = yuv[..., 2].reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))
        return image

    def copy_region(self, other: YuvImage, x0: int, y0: int, x1: int, y1: int) -> None:
        """Copy the rectangle ``x0..x1, y0..y1`` (even corners) of ``other`` into this image."""
        self.y[y0:y1, x0:x1] = other.y[y0:y1, x0:x1]
        self.u[y0 // 2:y1 // 2, x0 // 2:x1 // 2] = other.u[y0 // 2:y1 // 2, x0 // 2:x1 // 2]
        self.v[y0 // 2:y1 // 2, x0 // 2:x1 // 2] = other.v[y0 // 2:y1 // 2, x0 // 2:x1 // 2]

    def paste(self, other: YuvImage, x: int, y: int, src_x: int = 0, width: int | None = None) -> None:
        """Copy columns ``src_x .. src_x + width`` of ``other`` to ``(x, y)`` (all even)."""
        width = other.width - src_x if width is None else width
        h = other.height
        self.y[y:y + h, x:x + width] = other.y[:, src_x:src_x + width]
        cx, cy, cs, cw = x // 2, y // 2, src_x // 2, width // 2
        self.u[cy:cy + h // 2, cx:cx + cw] = other.u[:, cs:cs + cw]
        self.v[cy:cy + h // 2, cx:cx + cw] = other.v[:, cs:cs + cw]

    def fill_rect(self, x0: int, y0: int, x1: int, y1: int, rgb: tuple[int, int, int]) -> None:
        """An opaque axis-aligned rectangle (even corners keep the chroma exact)."""
        y, u, v = _yuv_of(rgb)
        self.y[y0:y1, x0:x1] = round(y)
        self.u[y0 // 2:(y1 + 1) // 2, x0 // 2:(x1 + 1) // 2] = round(u)
        self.v[y0 // 2:(y1 + 1) // 2, x0 // 2:(x1 + 1) // 2] = round(v)

    def fill(self, shapes: np.ndarray | list[np.ndarray], rgb: tuple[int, int, int],
             alpha: float = 1.0) -> None:
        """Blend the union of the closed polygons ``shapes`` (each ``[N, 2]`` pixel x, y) in
        colour ``rgb``. Several shapes of one colour in one call cost little more than one."""
        self.fill_layers([(shapes, rgb)], alpha)

    def fill_layers(self, layers: list[tuple[np.ndarray | list[np.ndarray], tuple[int, int, int]]],
                    alpha: float = 1.0) -> tuple[int, int, int, int] | None:  # fmt: skip
        """:meth:`fill` each ``(shapes, rgb)`` in turn, the later over the earlier. Layers that
        overlap (the parts of a mouth) share one coverage pass over their common box: most of
        a fill's cost is per call, not per pixel. Returns that box (even corners; None when
        nothing was drawn), so that a caller can later restore just the pixels it touched."""
        starts, ends, tags = [], [], []
        for index, (shapes, _) in enumerate(layers):
            start, end = _edges([shapes] if isinstance(shapes, np.ndarray) else shapes)
            starts.append(start)
            ends.append(end)
            tags.append(np.full(len(start), index, dtype=np.int64))
        start, end, tag = np.concatenate(starts), np.concatenate(ends), np.concatenate(tags)
        if not len(start):
            return None
        both = np.concatenate([start, end])
        lo = np.floor(both.min(axis=0)).astype(int)
        hi = np.ceil(both.max(axis=0)).astype(int) + 1
        x0, y0 = max(0, lo[0] & ~1), max(0, lo[1] & ~1)
        x1 = min(self.width, hi[0] + (hi[0] & 1))
        y1 = min(self.height, hi[1] + (hi[1] & 1))
        if x1 <= x0 or y1 <= y0:
            return None
        offset = np.array([x0, y0], dtype=np.float32)
        covers = coverage(start - offset, end - offset, x1 - x0, y1 - y0, tag, len(layers))
        if alpha != 1.0:
            covers *= alpha
        plane_y = self.y[y0:y1, x0:x1]
        plane_uv = self.uv[:, y0 // 2:y1 // 2, x0 // 2:x1 // 2]
        for cover, (_, rgb) in zip(covers, layers, strict=True):
            y, _, _ = _yuv_of(rgb)
            _blend(plane_y, cover, y)
            half = cover[0::2, 0::2] + cover[1::2, 0::2] + cover[0::2, 1::2] + cover[1::2, 1::2]
            half *= 0.25
            _blend(plane_uv, half, _CHROMA[rgb])
        return x0, y0, x1, y1


def _edges(polygons: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Start and end points of every edge, each polygon turned counter-clockwise first so that
    overlapping shapes add up (nonzero rule) instead of cancelling."""
    starts, ends = [], []
    for points in polygons:
        pts = np.asarray(points, dtype=np.float32)
        if len(pts) < 3:
            continue
        following = np.concatenate((pts[1:], pts[:1]))  # np.roll, without its overhead
        area = float(np.sum(pts[:, 0] * following[:, 1] - following[:, 0] * pts[:, 1]))
        if area < 0:
            pts, following = following[::-1], pts[::-1]
        starts.append(pts)
        ends.append(following)
    if not starts:
        return np.empty((0, 2), np.float32), np.empty((0, 2), np.float32)
    return np.concatenate(starts), np.concatenate(ends)


_COLOUR_CACHE: dict[tuple[int, int, int], tuple[float, float, float]] = {}


_CHROMA: dict[tuple[int, int, int], np.ndarray] = {}


def _yuv_of(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    if rgb not in _COLOUR_CACHE:
        _COLOUR_CACHE[rgb] = tuple(float(c) for c in rgb_to_yuv(rgb))  # type: ignore[assignment]
        _CHROMA[rgb] = np.array(_COLOUR_CACHE[rgb][1:], dtype=np.float32).reshape(2, 1, 1)
    return _COLOUR_CACHE[rgb]


def _blend(plane: np.ndarray, cover: np.ndarray, value: float | np.ndarray) -> None:
    """``plane += cover * (value - plane)``, rounded back into the uint8 plane."""
    mixed = plane.astype(np.float32)
    mixed += cover * (value - mixed)
    mixed += 0.5
    plane[:] = mixed


def coverage(start: np.ndarray, end: np.ndarray, width: int, height: int,
             layer: np.ndarray | None = None, layers: int = 1) -> np.ndarray:
    """``[layers, height, width]`` share (0..1) of each pixel inside the edges ``start -> end``
    of each layer (``layer``: each edge's layer; None: all in layer 0)."""
    keep = start[:, 1] != end[:, 1]
    start, end = start[keep], end[keep]
    layer = np.zeros(len(start), dtype=np.int64) if layer is None else layer[keep]
    rows = height * SUBSAMPLES
    sample_y = (np.arange(rows, dtype=np.float32) + 0.5) / SUBSAMPLES
    ya, yb = start[:, 1], end[:, 1]
    top, bottom = np.minimum(ya, yb), np.maximum(ya, yb)
    crosses = (sample_y[:, None] >= top) & (sample_y[:, None] < bottom)
    row, edge = np.nonzero(crosses)
    t = (sample_y[row] - ya[edge]) / (yb[edge] - ya[edge])
    x = start[edge, 0] + t * (end[edge, 0] - start[edge, 0])
    x = np.clip(x, 0.0, float(width))
    direction = np.where(yb[edge] > ya[edge], 1.0, -1.0)
    whole = np.floor(x).astype(np.int64)
    part = x - whole
    stride = width + 2
    cell = (layer[edge] * rows + row) * stride + whole
    cells = np.bincount(
        np.concatenate([cell, cell + 1]),
        weights=np.concatenate([direction * (1.0 - part), direction * part]),
        minlength=layers * rows * stride,
    ).reshape(layers * rows, stride)
    winding = np.cumsum(cells[:, :width], axis=1, dtype=np.float32)
    np.abs(winding, out=winding)
    np.minimum(winding, 1.0, out=winding)  # nonzero rule: any winding is inside
    rows_of = winding.reshape(layers, height, SUBSAMPLES, width)
    total = rows_of[:, :, 0].copy()
    for k in range(1, SUBSAMPLES):
        total += rows_of[:, :, k]
    total *= 1.0 / SUBSAMPLES
    return total


_UNIT_CIRCLES: dict[int, np.ndarray] = {}


def ellipse(cx: float, cy: float, rx: float, ry: float, segments: int = 32) -> np.ndarray:
    """``[segments, 2]`` points of an ellipse."""
    circle = _UNIT_CIRCLES.get(segments)
    if circle is None:  # a preview draws thousands of ellipses of a few sizes: keep cos/sin
        angle = np.linspace(0.0, 2.0 * np.pi, segments, endpoint=False)
        circle = _UNIT_CIRCLES[segments] = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return circle * np.array([rx, ry]) + np.array([cx, cy])


def stroke(line: np.ndarray, width: float | np.ndarray) -> np.ndarray:
    """The outline polygon of the polyline ``line`` drawn ``width`` wide (per point or one)."""
    line = np.asarray(line, dtype=np.float32)
    tangent = np.empty_like(line)  # np.gradient along the line, without its overhead
    tangent[1:-1] = (line[2:] - line[:-2]) / np.float32(2.0)
    tangent[0], tangent[-1] = line[1] - line[0], line[-1] - line[-2]
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-6)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    half = (np.broadcast_to(np.asarray(width, dtype=np.float32), (len(line),)) / 2)[:, None]
    return np.concatenate([line + normal * half, (line - normal * half)[::-1]])
