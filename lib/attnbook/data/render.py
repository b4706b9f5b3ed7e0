"""Vectorised drawing of the synthetic benchmark's part-based birds and habitat textures.

Used by ``attnbook.data.synthetic``. A whole batch is drawn at once: every coordinate a shape needs
(object, part, stripe, texture coordinates) is an *affine* function of the pixel position, so it
costs one broadcast add on ``[B, H, W]`` (``a·x`` is ``[B, 1, W]``, ``b·y + c`` is ``[B, H, 1]``).
A part is the set ``F(u, v) ≤ 1`` of a gauge in its own normalised coordinates:
round ``√(u² + v²)``, square ``max(|u|, |v|)``, diamond ``|u| + |v|``.

Determinism: only correctly rounded IEEE operations (+ − × ÷ √, abs, floor, min/max, comparisons)
touch pixel-sized tensors; transcendental functions (cos, sin) are applied by the caller to
per-image parameters it samples in fixed-size chunks. Hence a pixel's value does not depend on how
many images are drawn together (SIMD and scalar code paths agree bit for bit on these operations).
"""
from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class PartLayout:
    """Where a part sits on the bird, in object units (x towards the beak, y down)."""

    center: tuple[float, float]
    axes: tuple[float, float]  # semi-axes along the part's own x and y
    angle: float  # radians, rotation of the part's own x axis
    z: int  # drawing order: higher is drawn later (on top)
    anchor: tuple[float, float] | None = None  # landmark point; None: the centre

    @property
    def landmark(self) -> tuple[float, float]:
        """The part's landmark point: ``anchor``, else the part's centre."""
        return self.anchor or self.center


# The catalogue of parts; ``BenchmarkSpec.parts`` picks from it. The object spans about
# x ∈ [-0.78, 0.78], y ∈ [-0.53, 0.49] object units. Landmarks are part centres, except the body's
# (the wing always covers its centre): a breast point inside every body shape and off every wing.
PART_LAYOUT: dict[str, PartLayout] = {
    "head": PartLayout((0.44, -0.24), (0.17, 0.16), 0.0, 4),
    "beak": PartLayout((0.67, -0.21), (0.12, 0.06), 0.12, 5),
    "body": PartLayout((0.00, 0.00), (0.42, 0.25), -0.12, 3, anchor=(0.05, 0.17)),  # wing covers centre
    "wing": PartLayout((-0.06, -0.03), (0.26, 0.115), 0.25, 6),
    "tail": PartLayout((-0.56, -0.06), (0.22, 0.08), 0.30, 0),
    "crest": PartLayout((0.40, -0.43), (0.05, 0.10), -0.30, 2),
    "leg": PartLayout((0.03, 0.35), (0.04, 0.14), 0.0, 1),
}
EYE_CENTER, EYE_RADIUS, EYE_LIGHT = (0.50, -0.27), 0.035, 0.1  # a dark dot inside the head's mask

COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.86, 0.12, 0.12),
    "orange": (0.98, 0.55, 0.08),
    "yellow": (0.96, 0.88, 0.15),
    "green": (0.15, 0.62, 0.20),
    "blue": (0.15, 0.35, 0.90),
    "brown": (0.45, 0.28, 0.12),
    "white": (0.96, 0.96, 0.94),
    "black": (0.08, 0.08, 0.10),
}
PATTERNS = ("solid", "stripes", "dots")
SHAPES = ("round", "square", "diamond")

STRIPE_PERIOD, DOT_PERIOD = 0.13, 0.12  # object units
PATTERN_STRENGTH = 0.65  # how far a stripe / dot moves a part's colour towards its ink
OUTLINE_PX, OUTLINE_DARKEN = 1.0, 0.45  # a thin dark rim inside each part's border
MAX_HABITATS = 64  # distinct (hue, orientation, period) textures available


def color_table() -> tuple[Tensor, Tensor]:
    """RGB of each colour ``[n_colors, 3]`` and the ink its patterns use (dark on light, light on dark)."""
    rgb = torch.tensor(list(COLORS.values()), dtype=torch.float32)
    luminance = rgb @ torch.tensor([0.299, 0.587, 0.114])
    ink = torch.where(luminance[:, None] > 0.3, 0.08, 0.92).expand(-1, 3).contiguous()
    return rgb, ink


@dataclass(frozen=True)
class HabitatTable:
    """K background textures: tint + oriented grating (+ faint cross grating)."""

    names: tuple[str, ...]
    tint: Tensor  # [K, 3]
    angle: Tensor  # [K] grating orientation (radians)
    period: Tensor  # [K] grating period as a fraction of the image size


def habitat_table(count: int) -> HabitatTable:
    """Texture ``k``: hue ``k mod h`` of ``h = min(K, 8)`` evenly spaced hues; orientation (4) and
    period (2) cycle with ``k // h`` so every texture differs from every other for ``K ≤ 64``."""
    if not 2 <= count <= MAX_HABITATS:
        raise ValueError(f"number of habitats must be in [2, {MAX_HABITATS}], got {count}")
    hues = min(count, 8)
    tints, angles, periods = [], [], []
    for k in range(count):
        hue, cycle = k % hues, k // hues
        tints.append(colorsys.hsv_to_rgb(hue / hues + 0.05, 0.5, 0.78))
        angles.append(((cycle + k) % 4) * math.pi / 4)
        periods.append((1 / 7, 1 / 11)[(cycle // 4 + k // 4) % 2])
    return HabitatTable(
        names=tuple(f"habitat_{k:02d}" for k in range(count)),
        tint=torch.tensor(tints, dtype=torch.float32),
        angle=torch.tensor(angles, dtype=torch.float32),
        period=torch.tensor(periods, dtype=torch.float32),
    )


# ---------------------------------------------------------------------------------------------
# Affine coordinates: an affine map is a tensor [B, 3] = (a_x, a_y, c), value = a_x·x + a_y·y + c.


@dataclass(frozen=True)
class Grid:
    """Pixel-centre coordinates of an ``size × size`` image."""

    x: Tensor  # [1, 1, W]
    y: Tensor  # [1, H, 1]

    @staticmethod
    def of(size: int) -> Grid:
        """The pixel centres of a ``size`` × ``size`` image."""
        centres = torch.arange(size, dtype=torch.float32) + 0.5
        return Grid(x=centres.view(1, 1, size), y=centres.view(1, size, 1))

    def eval(self, affine: Tensor) -> Tensor:
        """The affine maps ``a_x·x + a_y·y + c`` at every pixel centre. ``[B, 3] -> [B, H, W]``."""
        ax, ay, c = affine[:, 0, None, None], affine[:, 1, None, None], affine[:, 2, None, None]
        return ax * self.x + (ay * self.y + c)


def combine(first: Tensor, second: Tensor, w1: Tensor | float, w2: Tensor | float,
            offset: Tensor | float) -> Tensor:
    """The affine map ``w1·first + w2·second + offset`` (weights per image ``[B]`` or scalars)."""
    w1, w2 = _column(w1), _column(w2)
    out = w1 * first + w2 * second
    out[:, 2] += offset if isinstance(offset, float) else offset
    return out


def _column(w: Tensor | float) -> Tensor | float:
    return w[:, None] if isinstance(w, Tensor) else w


@dataclass(frozen=True)
class Pose:
    """Per-image placement of one object: centre (px), scale (px per object unit), rotation, flip."""

    cx: Tensor  # [B]
    cy: Tensor  # [B]
    scale: Tensor  # [B]
    cos: Tensor  # [B]
    sin: Tensor  # [B]
    flip: Tensor  # [B] +1 facing right, -1 mirrored
    present: Tensor  # [B] bool: slot holds an object (multi-label images have 1–3)

    def object_axes(self) -> tuple[Tensor, Tensor]:
        """Object coordinates as affine maps of pixels: ``o = R(-θ)(p - c) / s``, x mirrored by flip."""
        ax, ay = self.flip * self.cos / self.scale, self.flip * self.sin / self.scale
        bx, by = -self.sin / self.scale, self.cos / self.scale
        ox = torch.stack([ax, ay, -(ax * self.cx + ay * self.cy)], dim=1)  # [B, 3]
        oy = torch.stack([bx, by, -(bx * self.cx + by * self.cy)], dim=1)
        return ox, oy

    def to_pixels(self, point: tuple[float, float]) -> Tensor:  # -> [B, 2] (x, y)
        """Inverse of :meth:`object_axes` for one object-space point."""
        px, py = self.flip * point[0] * self.scale, point[1] * self.scale
        return torch.stack([self.cx + self.cos * px - self.sin * py,
                            self.cy + self.sin * px + self.cos * py], dim=1)


@dataclass(frozen=True)
class Look:
    """Per-image, per-part appearance (index ``k`` follows the benchmark's part list)."""

    color: Tensor  # [B, P, 3]
    ink: Tensor  # [B, P, 3]
    pattern: Tensor  # [B, P] long, index into PATTERNS
    shape: Tensor  # [B, P] long, index into SHAPES


def square_wave(t: Tensor, sharpness: float = 4.0) -> Tensor:
    """A soft square wave of period 1 in [0, 1], from the triangle wave ``|2·frac(t) − 1|``."""
    tri = (t - t.floor()).mul_(2).sub_(1).abs_()
    return tri.sub_(0.5).mul_(sharpness).add_(0.5).clamp_(0, 1)


def pattern_fields(grid: Grid, ox: Tensor, oy: Tensor) -> tuple[Tensor, Tensor]:
    """Diagonal stripes and a dot lattice in object coordinates, each ``[B, H, W]`` in [0, 1]."""
    diag = 1 / (STRIPE_PERIOD * math.sqrt(2))
    stripes = square_wave(grid.eval(combine(ox, oy, diag, diag, 0.0)))
    dx = grid.eval(combine(ox, oy, 1 / DOT_PERIOD, 0.0, 0.5))
    dy = grid.eval(combine(ox, oy, 0.0, 1 / DOT_PERIOD, 0.5))
    tx = (dx - dx.floor()).sub_(0.5)  # offset from the nearest lattice point, in periods
    ty = (dy - dy.floor()).sub_(0.5)
    radius2 = tx.mul_(tx).add_(ty.mul_(ty))
    dots = radius2.mul_(-40).add_(0.09 * 40 + 0.5).clamp_(0, 1)  # dots of radius 0.3 period
    return stripes, dots


def part_gauge(grid: Grid, ox: Tensor, oy: Tensor, layout: PartLayout, shape: Tensor) -> Tensor:
    """The part's gauge ``F`` (``F ≤ 1`` inside) for each image's shape index. ``[B, H, W]``"""
    (mx, my), (a, b), phi = layout.center, layout.axes, layout.angle
    c, s = math.cos(phi), math.sin(phi)
    u = grid.eval(combine(ox, oy, c / a, s / a, -(c * mx + s * my) / a)).abs_()
    v = grid.eval(combine(ox, oy, -s / b, c / b, (s * mx - c * my) / b)).abs_()
    shape = shape[:, None, None]
    round_ = torch.sqrt(u * u + v * v)
    return torch.where(shape == SHAPES.index("round"), round_,
                       torch.where(shape == SHAPES.index("square"), torch.maximum(u, v), u + v))


def draw_object(canvas: Tensor, grid: Grid, pose: Pose, look: Look,
                parts: tuple[str, ...], keep: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Paint one object per image onto ``canvas`` ``[B, 3, H, W]`` (in place), parts in z order.

    Returns each part's *visible* mask ``[B, P, H, W]`` (inside the part and not covered by a part
    drawn later; disjoint) and their union, the object's foreground ``[B, H, W]``. ``keep``
    ``[B, P]`` bool (interventions, ``attnbook.data.interventions``) leaves out the parts it marks
    False: they are not drawn and their masks are empty, so what they covered shows through.
    """
    ox, oy = pose.object_axes()
    stripes, dots = pattern_fields(grid, ox, oy)
    present = pose.present[:, None, None]
    masks: list[Tensor] = [torch.empty(0)] * len(parts)
    order = sorted(range(len(parts)), key=lambda k: PART_LAYOUT[parts[k]].z)
    for k in order:
        layout = PART_LAYOUT[parts[k]]
        gauge = part_gauge(grid, ox, oy, layout, look.shape[:, k])
        shown = present if keep is None else present & keep[:, k, None, None]  # x·1.0 is exact: same bits
        masks[k] = (gauge <= 1) & shown
        edge_px = (min(layout.axes) * pose.scale)[:, None, None]  # px per gauge unit (minor axis)
        alpha = ((1 - gauge) * edge_px + 0.5).clamp_(0, 1).mul_(shown.float())  # ~1 px soft border
        pattern = look.pattern[:, k, None, None]
        strength = torch.where(pattern == PATTERNS.index("solid"), 0.0, PATTERN_STRENGTH)
        ink_amount = torch.where(pattern == PATTERNS.index("stripes"), stripes, dots).mul_(strength)
        light = torch.where(gauge > 1 - OUTLINE_PX / edge_px, 1 - OUTLINE_DARKEN, 1.0)  # dark rim
        if parts[k] == "head":
            light.masked_fill_(_eye(grid, ox, oy, masks[k]), EYE_LIGHT)
        _blend(canvas, alpha, look.color[:, k], look.ink[:, k], ink_amount, light)
    covered = torch.zeros_like(masks[0])
    for k in reversed(order):
        masks[k], covered = masks[k] & ~covered, covered | masks[k]
    return torch.stack(masks, dim=1), covered


def _blend(canvas: Tensor, alpha: Tensor, color: Tensor, ink: Tensor, ink_amount: Tensor,
           light: Tensor) -> None:
    """``canvas += α·(target − canvas)``, ``target = (color + ink_amount·(ink − color))·light``."""
    color, ink = color[:, :, None, None], ink[:, :, None, None]  # [B, 3, 1, 1]
    target = (ink - color) * ink_amount[:, None] + color
    target.mul_(light[:, None]).sub_(canvas).mul_(alpha[:, None])
    canvas.add_(target)


def _eye(grid: Grid, ox: Tensor, oy: Tensor, head: Tensor) -> Tensor:  # [B, H, W] bool
    ex = grid.eval(combine(ox, oy, 1.0, 0.0, -EYE_CENTER[0]))
    ey = grid.eval(combine(ox, oy, 0.0, 1.0, -EYE_CENTER[1]))
    return (ex.mul_(ex).add_(ey.mul_(ey)) <= EYE_RADIUS**2) & head


def paint_texture(grid: Grid, tint: Tensor, cos: Tensor, sin: Tensor, period_px: Tensor,
                  phase: Tensor) -> Tensor:
    """Habitat background ``[B, 3, H, W]``: tint × (oriented grating + faint cross grating).

    ``tint`` [B, 3]; ``cos``/``sin`` the grating direction, ``period_px`` its period and ``phase``
    [B, 2] the offsets of the main and the cross grating (in periods).
    """
    along = torch.stack([cos / period_px, sin / period_px, phase[:, 0]], dim=1)
    cross_period = period_px * 2.7
    across = torch.stack([-sin / cross_period, cos / cross_period, phase[:, 1]], dim=1)
    light = square_wave(grid.eval(along), sharpness=2.0).mul_(0.5).add_(0.5)
    light.add_(square_wave(grid.eval(across), sharpness=1.0).mul_(0.18))
    return tint[:, :, None, None] * light[:, None]
