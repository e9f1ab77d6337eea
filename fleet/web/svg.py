"""Charts drawn by the server as SVG markup (no script, no CDN, nothing fetched at run time).

Every text placed in the SVG goes through the template's autoescaping as Markup built here only
from numbers and escaped labels (``markupsafe.escape``).
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape


def equity_curve(points: Sequence[tuple[str, float]], *, width: int = 640, height: int = 180) -> Markup:
    """A line of (label, value) points, oldest first; labels of the first and last point shown."""
    if len(points) < 2:
        return Markup('<p class="muted">not enough equity points yet</p>')
    pad_l, pad_r, pad_t, pad_b = 70, 10, 10, 22
    values = [float(v) for _, v in points]
    lo, hi = min(values), max(values)
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1
    w, h = width - pad_l - pad_r, height - pad_t - pad_b

    def xy(i: int, v: float) -> tuple[float, float]:
        return pad_l + w * i / (len(points) - 1), pad_t + h * (1 - (v - lo) / (hi - lo))

    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, v) for i, v in enumerate(values)))
    first, last = escape(points[0][0]), escape(points[-1][0])
    colour = "#1a7f37" if values[-1] >= values[0] else "#cf222e"
    return Markup(  # noqa: S704 (numbers and escaped labels only)
        f'<svg class="equity" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="equity curve">'
        f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{pad_t + h}" stroke="#999"/>'
        f'<line x1="{pad_l}" y1="{pad_t + h}" x2="{pad_l + w}" y2="{pad_t + h}" stroke="#999"/>'
        f'<text x="{pad_l - 4}" y="{pad_t + 10}" text-anchor="end">{hi:,.0f}</text>'
        f'<text x="{pad_l - 4}" y="{pad_t + h}" text-anchor="end">{lo:,.0f}</text>'
        f'<text x="{pad_l}" y="{height - 4}">{first}</text>'
        f'<text x="{pad_l + w}" y="{height - 4}" text-anchor="end">{last}</text>'
        f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/></svg>'
    )


def distance_bar(ltp: float | None, stop: float | None, level: float | None, *, width: int = 180,
                 height: int = 22) -> Markup:
    """Where the last price stands above the stop and the watchdog's level: a scale from the lower
    of the two (left) to a little above the price, with a mark for each."""
    ltp, stop, level = (None if v is None else float(v) for v in (ltp, stop, level))
    marks = [v for v in (stop, level) if v is not None and v > 0]
    if ltp is None or ltp <= 0 or not marks:
        return Markup('<span class="muted">-</span>')
    lo = min(*marks, ltp) * 0.99
    hi = max(*marks, ltp) * 1.01
    span = hi - lo

    def x(v: float) -> float:
        return 4 + (width - 8) * (v - lo) / span

    parts = [f'<svg class="bar" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'aria-label="distance of the last price to stop and level">',
             f'<rect x="4" y="8" width="{width - 8}" height="6" fill="#eee"/>',
             f'<rect x="{x(min(marks)):.1f}" y="8" width="{max(0.0, x(ltp) - x(min(marks))):.1f}" height="6" '
             f'fill="{"#8fd19e" if ltp > max(marks) else "#f5a3a3"}"/>']
    if stop is not None and stop > 0:
        parts.append(f'<line x1="{x(stop):.1f}" y1="2" x2="{x(stop):.1f}" y2="20" stroke="#cf222e" stroke-width="2">'
                     f'<title>stop {stop:.2f}</title></line>')
    if level is not None and level > 0:
        parts.append(f'<line x1="{x(level):.1f}" y1="2" x2="{x(level):.1f}" y2="20" stroke="#bf8700" '
                     f'stroke-width="2" stroke-dasharray="3 2"><title>watchdog level {level:.2f}</title></line>')
    parts.append(f'<circle cx="{x(ltp):.1f}" cy="11" r="4" fill="#0969da"><title>LTP {ltp:.2f}</title></circle>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (numbers only)


def percent_above(ltp: float | None, mark: float | None) -> str:
    if ltp is None or mark is None or mark <= 0:
        return "-"
    return f"{(ltp - mark) / mark * 100:+.1f}%"
