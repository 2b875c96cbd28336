"""A procedural 2D face that shows every ARKit-52 weight: the preview video's subject.

Front view, drawn from flat polygons (no asset, nothing to license). Subject-left shapes
(``eyeBlinkLeft``, ``mouthSmileLeft``...) move the side on the viewer's right, as a mirror
shows a face. Every length below is in face units: 1 unit = ``scale`` pixels, (0, 0) is the
middle of the face, y points down. The static parts (hair, cranium, ears, neck) are drawn
once into the background by :func:`draw_static_head`; :func:`draw_face` draws what moves.
"""

from __future__ import annotations

import numpy as np

from ..names import ARKIT_52, TONGUE_16
from .raster import YuvImage, ellipse, stroke

#: Flat colours (RGB) of the face's parts.
COLOURS: dict[str, tuple[int, int, int]] = {
    "skin": (236, 196, 168),
    "skin_shade": (214, 168, 138),
    "hair": (74, 52, 42),
    "lips": (190, 92, 96),
    "lip_line": (120, 50, 56),
    "cavity": (86, 28, 38),
    "teeth": (246, 244, 236),
    "tongue": (214, 112, 122),
    "sclera": (250, 250, 248),
    "iris": (64, 118, 160),
    "pupil": (18, 18, 22),
    "lash": (44, 30, 30),
    "brow": (82, 56, 42),
    "blush": (240, 140, 140),
    "nostril": (120, 70, 60),
}

#: Column of each ARKit pose in a weight row (the result's ``names`` are ARKit-52 order).
POSE = {name: i for i, name in enumerate(ARKIT_52)}
TONGUE = {name: i for i, name in enumerate(TONGUE_16)}

EYE_X, EYE_Y, EYE_RX = 0.36, -0.12, 0.17  # eye centres at (+-EYE_X, EYE_Y), half width EYE_RX
MOUTH_Y, MOUTH_HALF_WIDTH = 0.52, 0.29  # mouth centre line and corner distance at rest
JAW_DROP = 0.42  # chin travel at jawOpen = 1
_T = np.linspace(-1.0, 1.0, 17)  # samples across the mouth, right corner (viewer's left) first
_U = np.linspace(0.0, np.pi, 25)  # samples along the jaw line, subject-left hinge first


def draw_static_head(image: YuvImage, cx: float, cy: float, scale: float) -> None:
    """Neck, ears, hair and the upper head: what no weight moves."""

    def px(points: np.ndarray) -> np.ndarray:
        return points * scale + np.array([cx, cy])

    image.fill(px(np.array([[-0.40, 0.5], [0.40, 0.5], [0.46, 1.6], [-0.46, 1.6]])),
               COLOURS["skin_shade"])  # fmt: skip
    for side in (-1, 1):
        image.fill(px(ellipse(side * 0.88, 0.02, 0.12, 0.22)), COLOURS["skin_shade"])
    image.fill(px(ellipse(0.0, -0.32, 1.0, 0.95)), COLOURS["hair"])
    cranium = ellipse(0.0, -0.2, 0.9, 0.95, 64)
    image.fill(px(cranium[cranium[:, 1] <= 0.12]), COLOURS["skin"])
    image.fill(px(_STATIC_JAW), COLOURS["skin"])
    image.fill(px(stroke(np.array([[0.04, -0.02], [0.07, 0.12], [0.1, 0.22]]), 0.018)),
               COLOURS["skin_shade"])  # fmt: skip
    image.fill(px(np.array([[-0.9, -0.62], [-0.55, -0.98], [0.1, -1.02], [0.75, -0.85],
                            [0.92, -0.45], [0.55, -0.72], [-0.2, -0.74], [-0.75, -0.5]])),
               COLOURS["hair"])  # fmt: skip


#: Farthest each cached pose moves anything, in face units: the caches' keys step each weight
#: by about one pixel of that travel (finer steps would only add misses).
TRAVEL: dict[str, float] = {
    **{f"eyeBlink{s}": 0.10 for s in ("Left", "Right")},
    **{f"eyeLook{d}{s}": 0.085 for d in ("In", "Out") for s in ("Left", "Right")},
    **{f"eyeLook{d}{s}": 0.05 for d in ("Up", "Down") for s in ("Left", "Right")},
    **{f"eyeSquint{s}": 0.045 for s in ("Left", "Right")},
    **{f"eyeWide{s}": 0.035 for s in ("Left", "Right")},
    **{f"browDown{s}": 0.07 for s in ("Left", "Right")},
    "browInnerUp": 0.09,
    **{f"browOuterUp{s}": 0.09 for s in ("Left", "Right")},
    **{f"cheekSquint{s}": 0.07 for s in ("Left", "Right")},
    "jawOpen": JAW_DROP, "jawForward": 0.03, "jawLeft": 0.12, "jawRight": 0.12, "cheekPuff": 0.13,
    **{f"mouthSmile{s}": 0.04 for s in ("Left", "Right")},
    **{f"noseSneer{s}": 0.05 for s in ("Left", "Right")},
}  # fmt: skip
#: Poses that move only the eye region (eyes, lids, brows), and those of each eye: the two
#: eyes are cached apart (each eye's poses take fewer combinations than both eyes' together).
_EYE_POSES = [n for n in ARKIT_52 if n.startswith(("eye", "brow", "cheekSquint"))]
_SIDE_EYE_POSES = {suffix: [n for n in _EYE_POSES if n.endswith(suffix) or n == "browInnerUp"]
                   for suffix in ("Left", "Right")}  # fmt: skip
#: Poses that move the jaw line (the lower face's outline).
_JAW_POSES = ["jawOpen", "jawForward", "jawLeft", "jawRight", "cheekPuff"]
#: Poses that move the lower face's skin (jaw line, cheeks, nose), not the lips; the jaw's first.
_BASE_POSES = [*_JAW_POSES, "cheekSquintLeft", "cheekSquintRight", "mouthSmileLeft",
               "mouthSmileRight", "noseSneerLeft", "noseSneerRight"]  # fmt: skip
#: The lower face's parts, cached apart: their poses and boxes (face units; None: the whole
#: lower face). The cheeks' and the nose's boxes lie inside the jaw ring's static inner edge
#: (_RING_INNER), so that no jaw pose draws into them, and apart from each other.
_BASE_PARTS: dict[str, tuple[list[str], tuple[float, float, float, float] | None]] = {
    "jaw": (_JAW_POSES, None),
    "cheekLeft": (["cheekSquintLeft", "mouthSmileLeft", "cheekPuff"], (0.33, 0.05, 0.67, 0.38)),
    "cheekRight": (["cheekSquintRight", "mouthSmileRight", "cheekPuff"],
                   (-0.67, 0.05, -0.33, 0.38)),
    "nose": (["noseSneerLeft", "noseSneerRight"], (-0.18, 0.04, 0.18, 0.32)),
}
#: Steps (about pixels) a cached pose's weight must move before its key changes.
HOLD = 0.75
#: Regions in face units (x0, y0, x1, y1): the eyes and brows, and below them the lower face
#: (everything the jaw, cheeks, nose and mouth can reach); nothing else moves.
_EYE_REGION = (-0.64, -0.62, 0.64, 0.04)
#: Each eye's half of it: subject-left (side 1) on the +x half.
_SIDE_EYE_REGION = {1: (0.0, -0.62, 0.64, 0.04), -1: (-0.64, -0.62, 0.0, 0.04)}
_BASE_REGION = (-1.1, 0.04, 1.1, 1.56)

_Patch = tuple[np.ndarray, np.ndarray, np.ndarray]


class FaceDrawer:
    """Draws the face at one place and size. Eyes and brows hold still for most frames of
    speech, and the jaw line takes few distinct positions: both regions are cached as pixels
    per quantised pose, so that most frames draw only the lips, teeth and tongue."""

    def __init__(self, cx: float, cy: float, scale: float, size: tuple[int, int],
                 cache_size: int = 1024) -> None:  # fmt: skip
        self.cx, self.cy, self.scale = cx, cy, scale
        self.eye_box = self._box(_EYE_REGION, size)
        self.base_box = self._box(_BASE_REGION, size)
        self.cache_size = cache_size
        # cached regions: 0 = subject-left eye, 1 = subject-right eye, 2 = the lower face
        self._boxes = [self._box(_SIDE_EYE_REGION[1], size), self._box(_SIDE_EYE_REGION[-1], size),
                       self.base_box]  # fmt: skip
        self._caches: list[dict[bytes, _Patch]] = [{}, {}, {}]
        self._keys = [(np.array([POSE[n] for n in names]),
                       np.array([max(1.0, np.ceil(TRAVEL[n] * scale)) for n in names]))
                      for names in (_SIDE_EYE_POSES["Left"], _SIDE_EYE_POSES["Right"],
                                    _BASE_POSES)]  # fmt: skip
        # What the previous frame left in its image: each region's key and the mouth's box.
        # A region whose key did not change since then is left as it is (the eyes) or only
        # repaired where the mouth was drawn over it (the lower face): most frames of speech
        # then copy a few thousand pixels instead of two whole regions.
        self._held: list[np.ndarray | None] = [None, None, None]  # each region's held steps
        # the lower face's parts: their poses' places in _BASE_POSES, their boxes, their caches
        self._parts = {name: (np.array([_BASE_POSES.index(p) for p in poses]),
                              self.base_box if region is None else self._box(region, size))
                       for name, (poses, region) in _BASE_PARTS.items()}  # fmt: skip
        self._part_caches: dict[str, dict[bytes, _Patch]] = {name: {} for name in _BASE_PARTS}
        self._last_image: YuvImage | None = None
        self._last_keys: list[bytes | None] = [None, None, None]
        self._mouth_box: tuple[int, int, int, int] | None = None

    def _box(self, region: tuple[float, float, float, float], size: tuple[int, int]) -> tuple[int, int, int, int]:
        x0, y0, x1, y1 = region
        s = self.scale
        return (max(0, _even(self.cx + x0 * s)), max(0, _even(self.cy + y0 * s)),
                min(size[0], _even(self.cx + x1 * s)), min(size[1], _even(self.cy + y1 * s)))  # fmt: skip

    def px(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points, dtype=np.float32) * self.scale + np.array(
            [self.cx, self.cy], dtype=np.float32)

    def draw_static(self, image: YuvImage) -> None:
        draw_static_head(image, self.cx, self.cy, self.scale)

    def draw(self, image: YuvImage, background: YuvImage, weights: np.ndarray,
             tongue: np.ndarray | None = None) -> None:  # fmt: skip
        """Draw one frame's 52 ARKit weights (and the 16 tongue weights of an Audio2Face
        model, when given) into ``image``, whose static parts come from ``background``
        (drawn by :meth:`draw_static`)."""
        w = np.clip(np.asarray(weights, dtype=np.float64), 0.0, 1.0)

        def g(name: str) -> float:
            return float(w[POSE[name]])

        jaw_side = JAW_SIDE * (g("jawLeft") - g("jawRight"))
        drop = JAW_DROP * g("jawOpen") + 0.03 * g("jawForward")

        def eye(side: int, suffix: str) -> None:
            order = ("sclera", "iris", "pupil", "skin", "lash", "skin_shade", "brow")
            groups: dict[str, list[np.ndarray]] = {}
            _eye_shapes(groups, self.px, g, side, suffix)
            _brow_shapes(groups, self.px, g, side, suffix)
            image.fill_layers([(groups[colour], COLOURS[colour]) for colour in order])

        def base() -> None:
            # the jaw line moves on most frames of speech, the cheeks and nose seldom: each
            # has its own cache keyed by its own poses (the cheeks and the nose lie inside
            # the jaw ring, in boxes of their own), so a new pose of one reuses the others
            self._part("jaw", image, lambda: _draw_jaw(image, self.px, drop, jaw_side,
                                                       g("cheekPuff")))  # fmt: skip
            for side, suffix in ((1, "Left"), (-1, "Right")):
                self._part(f"cheek{suffix}", image,
                           lambda side=side, suffix=suffix: _draw_cheek(image, self.px, g, side, suffix))  # fmt: skip
            self._part("nose", image, lambda: _draw_nose(image, self.px, g))

        if image is not self._last_image:  # another picture: nothing of the last frame in it
            self._last_image, self._last_keys, self._mouth_box = image, [None] * 3, None
        self._cached(0, w, image, background, lambda: eye(1, "Left"))
        self._cached(1, w, image, background, lambda: eye(-1, "Right"))
        self._cached(2, w, image, background, base)
        self._mouth_box = _draw_mouth(image, self.px, g, drop, jaw_side, tongue)

    def _cached(self, which: int, weights: np.ndarray, image: YuvImage, background: YuvImage,
                draw) -> None:  # fmt: skip
        """Paste the region's pixels for its poses' weights, drawing them (over the
        background) once per key: each weight in steps of about a pixel of its travel, held
        until it moves :data:`HOLD` steps away (a weight hovering on a step's edge would
        otherwise flip the key, and miss the cache, on every other frame)."""
        cache, box = self._caches[which], self._boxes[which]
        columns, steps = self._keys[which]
        position = weights[columns] * steps
        held = self._held[which]
        held = np.round(position) if held is None else np.where(
            np.abs(position - held) < HOLD, held, np.round(position))  # fmt: skip
        self._held[which] = held
        key = held.astype(np.int16).tobytes()
        patch = cache.get(key)
        if patch is not None and key == self._last_keys[which]:  # the image still holds it
            if which == 2 and self._mouth_box is not None:  # but the mouth was drawn over it
                self._restore(patch, box, self._mouth_box, image)
            return
        self._last_keys[which] = key
        if patch is None:
            image.copy_region(background, *box)
            draw()
            self._store(cache, key, _grab(image, box))
            return
        _put(image, box, patch)

    def _part(self, name: str, image: YuvImage, draw) -> None:
        """Paste (or draw, then keep) one part of the lower face for its poses' held steps."""
        columns, box = self._parts[name]
        key = self._held[2][columns].astype(np.int16).tobytes()  # type: ignore[index]
        cache = self._part_caches[name]
        patch = cache.get(key)
        if patch is None:
            draw()
            self._store(cache, key, _grab(image, box))
        else:
            _put(image, box, patch)

    def _store(self, cache: dict[bytes, _Patch], key: bytes, patch: _Patch) -> None:
        if cache and len(cache) >= self.cache_size:
            cache.pop(next(iter(cache)))
        cache[key] = patch

    @staticmethod
    def _restore(patch: _Patch, box: tuple[int, int, int, int], part: tuple[int, int, int, int],
                 image: YuvImage) -> None:  # fmt: skip
        """Copy the rectangle ``part`` (even corners, clipped to ``box``) of a cached region
        ``patch`` back into ``image``."""
        x0, y0 = max(part[0], box[0]), max(part[1], box[1])
        x1, y1 = min(part[2], box[2]), min(part[3], box[3])
        if x1 <= x0 or y1 <= y0:
            return
        for plane, k, pixels in zip((image.y, image.u, image.v), (1, 2, 2), patch, strict=True):
            px0, py0, px1, py1 = x0 // k, y0 // k, x1 // k, y1 // k
            bx, by = box[0] // k, box[1] // k
            plane[py0:py1, px0:px1] = pixels[py0 - by:py1 - by, px0 - bx:px1 - bx]


def _grab(image: YuvImage, box: tuple[int, int, int, int]) -> _Patch:
    """A copy of the pixels of ``box`` (even corners) in ``image``'s three planes."""
    x0, y0, x1, y1 = box
    return tuple(plane[y0 // k:y1 // k, x0 // k:x1 // k].copy()  # type: ignore[return-value]
                 for plane, k in ((image.y, 1), (image.u, 2), (image.v, 2)))


def _put(image: YuvImage, box: tuple[int, int, int, int], patch: _Patch) -> None:
    """Paste a :func:`_grab` of the same box back."""
    x0, y0, x1, y1 = box
    for plane, k, pixels in zip((image.y, image.u, image.v), (1, 2, 2), patch, strict=True):
        plane[y0 // k:y1 // k, x0 // k:x1 // k] = pixels


def _even(value: float) -> int:
    return int(value) & ~1


def draw_face(image: YuvImage, weights: np.ndarray, cx: float, cy: float, scale: float,
              tongue: np.ndarray | None = None) -> None:
    """One-off drawing of a whole face over ``image`` (static parts included)."""
    drawer = FaceDrawer(cx, cy, scale, (image.width, image.height), cache_size=0)
    drawer.draw_static(image)
    background = YuvImage(image.width, image.height)
    background.data[:] = image.data
    drawer.draw(image, background, weights, tongue)


def jaw_outline(drop: float = 0.0, jaw_side: float = 0.0, puff: float = 0.0) -> np.ndarray:
    """``[25, 2]`` points of the lower face's outline, subject-left hinge to right hinge: the
    hinges stay under the cranium, the chin follows the jaw, the cheeks bulge with cheekPuff."""
    s = np.sin(_U)
    bulge = 1.0 + 0.13 * puff * (np.exp(-((_U - 0.7) ** 2) / 0.08)
                                 + np.exp(-((_U - (np.pi - 0.7)) ** 2) / 0.08))  # fmt: skip
    x = 0.855 * np.cos(_U) * (1.0 - 0.25 * s**3) * bulge + jaw_side * s**2
    y = 0.06 + (0.96 + drop) * s**1.3
    return np.stack([x, y], axis=1)


#: Farthest the chin moves sideways (jawLeft/jawRight at 1), in face units.
JAW_SIDE = 0.12


def _shrunk_jaw(margin: float) -> np.ndarray:
    """The rest outline pulled in by as much as jawLeft/jawRight can move each point sideways
    (more at the chin, nothing at the hinges) plus ``margin``: inside every pose's outline
    (the jaw only drops and the cheeks only bulge), yet close to it, so that the ring drawn
    over it each frame is thin and cheap."""
    rest = jaw_outline()
    s = np.sin(_U)
    x = np.sign(rest[:, 0]) * np.maximum(np.abs(rest[:, 0]) - JAW_SIDE * s**2 - margin, 0.0)
    y = 0.06 + (rest[:, 1] - 0.06) * (1.0 - margin - 0.03 * s)
    return np.stack([x, y], axis=1)


#: What the background holds of the lower face, and the inner edge of the ring drawn over it
#: each frame (a little further in, so that no anti-aliased seam shows between the two).
_STATIC_JAW = _shrunk_jaw(0.01)
_RING_INNER = _shrunk_jaw(0.03)
_RING_CHUNK = 6  # outline points per ring piece: small pieces have small bounding boxes


def _draw_jaw(image: YuvImage, px, drop: float, jaw_side: float, puff: float) -> None:
    """The lower face as a ring between the static inner jaw and this frame's outline, drawn in
    overlapping pieces: filling the whole jaw every frame would cost 4x more."""
    outer = px(jaw_outline(drop, jaw_side, puff))
    inner = px(_RING_INNER)
    for first in range(0, len(outer) - 2, _RING_CHUNK - 2):  # pieces overlap by a segment
        last = min(first + _RING_CHUNK, len(outer))
        image.fill(np.concatenate([outer[first:last], inner[first:last][::-1]]), COLOURS["skin"])


def _draw_cheek(image: YuvImage, px, g, side: int, suffix: str) -> None:
    """A blush that cheekSquint and smile lift and cheekPuff swells; it stays inside the jaw
    ring (and its part's box, _BASE_PARTS) at every pose."""
    lift = 0.07 * g(f"cheekSquint{suffix}") + 0.04 * g(f"mouthSmile{suffix}")
    puff = g("cheekPuff")
    blush = ellipse(side * 0.5, 0.27 - lift, 0.13 * (1 + 0.15 * puff), 0.075 * (1 + 0.3 * puff), 20)
    image.fill(px(blush), COLOURS["blush"], alpha=0.35)


def _draw_nose(image: YuvImage, px, g) -> None:
    """Nostrils and their wings rise with noseSneer, which also creases the bridge."""
    nostrils, wings, creases = [], [], []
    for side, suffix in ((1, "Left"), (-1, "Right")):
        sneer = g(f"noseSneer{suffix}")
        lift = 0.05 * sneer
        nostrils.append(px(ellipse(side * 0.075, 0.255 - lift, 0.04, 0.022, 14)))
        wing = np.array([[0.07, 0.19], [0.13, 0.2], [0.15, 0.25], [0.11, 0.29]])
        wing[:, 1] -= lift
        wing[:, 0] *= side
        wings.append(px(stroke(wing, 0.016)))
        if sneer > 0.02:
            creases.append(px(stroke(np.array([[0.03, 0.07], [0.07, 0.1], [0.1, 0.12]])
                                     * [side, 1], 0.012 * min(1.0, 2 * sneer))))  # fmt: skip
    image.fill_layers([(nostrils, COLOURS["nostril"]), (wings + creases, COLOURS["skin_shade"])])


def _sided(t: np.ndarray, left: float, right: float) -> np.ndarray:
    """A per-side value spread over the mouth: ``left`` for t > 0 (subject-left), ``right``
    for t < 0, growing from the middle (0) to the corners."""
    return np.where(t >= 0, left, right) * np.abs(t) ** 1.5


def _draw_mouth(image: YuvImage, px, g, drop: float, jaw_side: float,
                tongue) -> tuple[int, int, int, int] | None:  # fmt: skip
    """Lips, teeth, tongue and the mouth's inside: opening from the jaw (less mouthClose),
    rounding from funnel/pucker, corners from smile/frown/stretch/dimple, lip shapes from
    roll/shrug/press/lowerDown/upperUp. Returns the box it drew over."""
    t = _T
    pucker, funnel = g("mouthPucker"), g("mouthFunnel")
    shift = 0.1 * (g("mouthLeft") - g("mouthRight"))
    corner = {}
    for suffix in ("Left", "Right"):
        out = (0.05 * g(f"mouthSmile{suffix}") + 0.06 * g(f"mouthStretch{suffix}")
               + 0.035 * g(f"mouthDimple{suffix}") - 0.02 * g(f"mouthPress{suffix}"))  # fmt: skip
        up = (0.07 * g(f"mouthSmile{suffix}") - 0.06 * g(f"mouthFrown{suffix}")
              - 0.02 * g(f"mouthStretch{suffix}") + 0.01 * g(f"mouthDimple{suffix}"))  # fmt: skip
        corner[suffix] = (MOUTH_HALF_WIDTH * (1 - 0.38 * pucker - 0.25 * funnel) + out, up)
    half_width = np.where(t >= 0, corner["Left"][0], corner["Right"][0])
    x = shift + t * half_width + jaw_side * 0.5 * (1 - t**2)
    centre = MOUTH_Y - _sided(t, corner["Left"][1], corner["Right"][1])
    middle = (1.0 - t**2) ** 0.7
    jaw_gap = 0.85 * JAW_DROP * max(0.0, g("jawOpen") - g("mouthClose"))
    # lowerDown/upperUp bare the teeth on their side, most between the middle and the corner
    side_hump = np.sin(np.pi * np.abs(t)) ** 0.5
    lower_down = np.where(t >= 0, g("mouthLowerDownLeft"), g("mouthLowerDownRight")) * side_hump
    upper_up = np.where(t >= 0, g("mouthUpperUpLeft"), g("mouthUpperUpRight")) * side_hump
    round_gap = 0.05 * funnel + 0.012 * pucker
    upper_inner = (centre - middle * (0.35 * jaw_gap + round_gap + 0.02 * g("mouthShrugUpper"))
                   - 0.07 * upper_up * middle - 0.02 * (g("noseSneerLeft") + g("noseSneerRight")) * middle)  # fmt: skip
    lower_inner = (centre + middle * (0.65 * jaw_gap + round_gap - 0.03 * g("mouthShrugLower"))
                   + 0.08 * lower_down * middle)  # fmt: skip
    lower_inner = np.maximum(lower_inner, upper_inner)
    lower_inner_x = x + jaw_side * 0.6 * middle
    press = 0.5 * (g("mouthPressLeft") + g("mouthPressRight"))
    thick = (1 + 0.6 * pucker + 0.3 * funnel) * (1 - 0.4 * press)
    upper_thick = (0.012 + 0.062 * middle**0.6) * thick * (1 - 0.75 * g("mouthRollUpper"))
    lower_thick = (0.012 + 0.085 * middle**0.6) * thick * (1 - 0.75 * g("mouthRollLower"))
    upper_thick = upper_thick - 0.012 * np.exp(-(t**2) / 0.01)  # the cupid's bow
    lower_thick = lower_thick * (1 + 0.3 * g("jawForward"))
    upper = np.stack([x, upper_inner], axis=1)
    lower = np.stack([lower_inner_x, lower_inner], axis=1)
    gap = lower_inner - upper_inner
    layers: list[tuple[list[np.ndarray], tuple[int, int, int]]] = []
    if gap.max() > 0.004:
        layers.append(([px(np.concatenate([upper, lower[::-1]]))], COLOURS["cavity"]))
        layers.append(([px(_tongue_inside(lower, upper_inner, tongue))], COLOURS["tongue"]))
        teeth_top = upper_inner + np.minimum(0.055 * middle, gap)
        teeth_low = lower_inner - np.minimum(0.035 * middle, np.maximum(gap - 0.055 * middle, 0))
        layers.append(([px(np.concatenate([upper, np.stack([x, teeth_top], 1)[::-1]])),
                        px(np.concatenate([np.stack([lower_inner_x, teeth_low], 1), lower[::-1]]))],
                       COLOURS["teeth"]))  # fmt: skip
    upper_outer = np.stack([x, upper_inner - upper_thick], axis=1)
    lower_outer = np.stack([lower_inner_x, lower_inner + lower_thick], axis=1)
    layers.append(([px(np.concatenate([upper_outer, upper[::-1]])),
                    px(np.concatenate([lower, lower_outer[::-1]]))], COLOURS["lips"]))  # fmt: skip
    layers.append(([px(stroke(upper, 0.01))], COLOURS["lip_line"]))
    tongue_out = g("tongueOut")
    if tongue_out > 0.01:
        tip_x, tip_y = lower_inner_x[len(t) // 2], lower_inner[len(t) // 2] + 0.02 + 0.09 * tongue_out
        layers.append(([px(ellipse(tip_x, tip_y, 0.1 + 0.03 * tongue_out, 0.03 + 0.07 * tongue_out,
                                   20))], COLOURS["tongue"]))  # fmt: skip
        layers.append(([px(stroke(np.array([[tip_x, tip_y - 0.05], [tip_x, tip_y + 0.03]]),
                                  0.008))], COLOURS["cavity"]))  # fmt: skip
    return image.fill_layers(layers)


def _tongue_inside(lower: np.ndarray, upper_y: np.ndarray, tongue: np.ndarray | None) -> np.ndarray:
    """The tongue's back in the lower mouth (a polygon); Audio2Face's tongue poses lift, drop
    or slide it."""
    lift, slide = 0.0, 0.0
    if tongue is not None:
        k = np.clip(np.asarray(tongue, dtype=np.float64), 0.0, 1.0)
        lift = 0.05 * (k[TONGUE["tongueTipUp"]] + k[TONGUE["tongueUp"]]) \
            - 0.03 * (k[TONGUE["tongueTipDown"]] + k[TONGUE["tongueDown"]])  # fmt: skip
        slide = 0.06 * (k[TONGUE["tongueTipLeft"]] + k[TONGUE["tongueLeft"]]
                        - k[TONGUE["tongueTipRight"]] - k[TONGUE["tongueRight"]])  # fmt: skip
    t = _T
    height = np.clip((0.05 + lift) * (1 - t**2) * np.exp(-((t - slide * 4) ** 2) / 0.6), 0, None)
    top_y = np.maximum(lower[:, 1] - height, upper_y)
    top = np.stack([lower[:, 0], top_y], axis=1)
    return np.concatenate([top, lower[::-1]])


def _eye_shapes(groups: dict[str, list[np.ndarray]], px, g, side: int, suffix: str) -> None:
    """Sclera and iris under two skin-coloured lids: blink closes the upper lid, squint raises
    the lower one, wide opens; the look poses move the iris (out = away from the nose)."""
    ex, ey, rx = side * EYE_X, EYE_Y, EYE_RX
    look_x = side * 0.085 * (g(f"eyeLookOut{suffix}") - g(f"eyeLookIn{suffix}"))
    look_y = 0.05 * (g(f"eyeLookDown{suffix}") - g(f"eyeLookUp{suffix}"))
    span = np.linspace(-1.0, 1.0, 15)
    arc = np.sqrt(1.0 - span**2)
    skew = 1.0 + 0.25 * span * side  # the upper lid peaks a little outward
    open_top = (0.085 + 0.035 * g(f"eyeWide{suffix}")) * arc * skew
    closed = -0.015 * arc
    blink = g(f"eyeBlink{suffix}")
    top = ey - (open_top * (1 - blink) + closed * blink)
    squint = 0.045 * g(f"eyeSquint{suffix}") + 0.025 * g(f"cheekSquint{suffix}")
    bottom = np.maximum(ey + (0.07 - squint) * arc, top)
    lid_x = ex + span * rx
    wide_x = ex + np.array([-1.25, 1.25]) * rx
    upper_lid = np.concatenate([np.stack([lid_x, top], 1),
                                [[wide_x[1], ey], [wide_x[1], ey - 0.24], [wide_x[0], ey - 0.24],
                                 [wide_x[0], ey]]])  # fmt: skip
    lower_lid = np.concatenate([np.stack([lid_x, bottom], 1),
                                [[wide_x[1], ey], [wide_x[1], ey + 0.15], [wide_x[0], ey + 0.15],
                                 [wide_x[0], ey]]])  # fmt: skip
    shapes = {
        "sclera": [ellipse(ex, ey, rx, 0.13, 28)],
        "iris": [ellipse(ex + look_x, ey + look_y, 0.068, 0.068, 24)],
        "pupil": [ellipse(ex + look_x, ey + look_y, 0.03, 0.03, 16)],
        "skin": [upper_lid, lower_lid],
        "lash": [stroke(np.stack([lid_x, top], 1), 0.02)],
        "skin_shade": [stroke(np.stack([lid_x, bottom], 1)[2:-2], 0.008)],
    }
    for colour, polygons in shapes.items():
        groups.setdefault(colour, []).extend(px(p) for p in polygons)


def _brow_shapes(groups: dict[str, list[np.ndarray]], px, g, side: int, suffix: str) -> None:
    """Inner end: browInnerUp raises it, browDown lowers it towards the nose; outer end: browOuterUp."""
    along = np.linspace(0.0, 1.0, 9)  # 0 = inner end, 1 = outer end
    down = g(f"browDown{suffix}")
    inner_y = -0.34 - 0.09 * g("browInnerUp") + 0.07 * down
    outer_y = -0.33 - 0.09 * g(f"browOuterUp{suffix}") + 0.03 * down
    x = side * (0.17 - 0.02 * down + 0.3 * along)
    y = inner_y + (outer_y - inner_y) * along - 0.06 * np.sin(np.pi * along**0.8)
    width = 0.055 * (1.0 - 0.55 * along) + 0.01
    groups.setdefault("brow", []).append(px(stroke(np.stack([x, y], 1), width)))
