"""Thumbnails as good at every scale factor, not only at the ones our samples happen to hit.

A JPEG's draft decode (libjpeg's DCT scaling by 1/2, 1/4, 1/8) and the whole-factor box reduce are shortcuts; when
they leave the resampler only a little left to do (a 4608 px photo's 1/4 draft is 1152 px for a 1024 px box: a
1.125x bicubic step), the thumbnail comes out blurred. libvips leaves the resampler at least 2x (its thumbnail
operation's shrink-on-load, then vips_resize's gap); the engine leaves RESAMPLE_HEADROOM (1.5, for speed). Here
that may cost at most 0.2 dB at any scale factor: the engine is judged against itself under libvips' rule, both
against a full decode resized with Lanczos, after encoding as the stage stores them. Source widths sweep across
the draft's powers of two at half the default sizes (512, 256, 64: the same ratios, four times fewer pixels).

The marked test holds the engine to sharp itself over the bench's full-size sweep (`make test-scale`: Node.js and
sharp's pinned lock, installed as `make bench` installs them).
"""
from __future__ import annotations

import pytest

from bench import engines
from handlers import imaging

SIZES = (512, 256, 64)
# Across 1/1, 1/2, 1/4 and 1/8 drafts and either side of each step (x2 of these is the bench's 1025-4700 sweep).
WIDTHS = (513, 580, 660, 760, 880, 1025, 1080, 1200, 1300, 1400, 1520, 2049, 2140, 2350)
TOLERANCE_DB = 0.2
# Judged after encoding, as the stage stores them.
QUALITY = 82
LIBVIPS_GAP = 2.0


@pytest.mark.parametrize("width", WIDTHS)
def test_the_engines_shortcuts_cost_at_most_0_2_db_against_libvips_rule_at_every_scale_factor(width, monkeypatch):
    data = engines.sweep_source(width)
    reference = engines.Reference(data)
    ours = reference.judge(engines.engine(data, SIZES, "jpeg", QUALITY))
    monkeypatch.setattr(imaging, "RESAMPLE_HEADROOM", LIBVIPS_GAP)
    theirs = reference.judge(engines.engine(data, SIZES, "jpeg", QUALITY))
    for mine, careful in zip(ours, theirs, strict=True):
        assert mine["side"] == careful["side"]
        assert mine["psnr_db"] >= careful["psnr_db"] - TOLERANCE_DB, (
            f"{width} px wide -> {mine['side']} px: {mine['psnr_db']} dB, {careful['psnr_db']} dB leaving 2x")


@pytest.mark.scale
def test_every_size_is_within_0_2_db_of_sharp_at_every_scale_factor(tmp_path):
    """The bench's sweep (engines.SWEEP_WIDTHS, 1025-4700 px) at the default sizes, as the stage writes them."""
    modules, why_not = engines.sharp_ready()
    assert modules is not None, why_not  # make test-scale installs Node.js; a run without it is not a pass
    failures = []
    for width in engines.SWEEP_WIDTHS:
        gaps = engines.sweep_gaps(modules, engines.sweep_source(width), (1024, 512, 128), "jpeg", QUALITY, tmp_path)
        failures += [f"{width} px -> {side} px: {gap:+.2f} dB" for side, gap in gaps.items() if gap < -TOLERANCE_DB]
    assert not failures, "under sharp's PSNR by more than 0.2 dB: " + "; ".join(failures)
