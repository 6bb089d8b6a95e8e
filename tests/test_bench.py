"""The benchmark keeps working: one tiny input, end to end. Nothing about speed is asserted here."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from infra import packaging

ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmark_writes_every_figure(tmp_path):
    out = tmp_path / "results.json"
    run = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads(out.read_text())
    [row] = results["inputs"].values()
    assert {"engine_ms", "naive_ms", "pyvips_ms", "floor_ms", "psnr_db", "peak_rss_mb"} <= set(row)
    assert row["engine_ms"] > 0 and row["psnr_db"] > 20
    cold = results["cold_start"]
    assert set(cold["import_ms"]) == set(cold["archive_bytes"]) == set(packaging.FUNCTIONS)
    assert cold["loads_pillow"]["intake"] is False
    assert results["pipeline"]["pipeline_images_per_s"] > 0 and results["pipeline"]["engine_images_per_s"] > 0
    assert results["usd_per_million"]["total"] > 0 and results["prices_date"]
    for formats in results["formats"].values():
        assert set(formats) == {"jpeg", "webp", "png"} and formats["png"]["psnr_db"] == 100.0
    # Every engine's outputs judged after encoding, size by size, against the same reference.
    engines = {"engine", "pyvips"} | ({"sharp", "sharp_once"} if results["sharp"]["measured"] else set())
    assert set(row["quality"]) == engines
    for judged in row["quality"].values():
        assert [j["side"] for j in judged] == [j["side"] for j in row["quality"]["engine"]]
        assert all(j["bytes"] > 0 and 20 < j["psnr_db"] <= 100 for j in judged)
    if results["sharp"]["measured"]:
        assert row["sharp_ms"] > 0 and row["sharp_once_ms"] > 0
        assert len(row["engine_bytes_at_sharp_psnr"]) == len(row["quality"]["sharp"])
        [swept] = results["scale_sweep"]["widths"].values()  # --quick: one width of the sweep
        assert set(swept["psnr_vs_sharp_db"]) == {str(size) for size in results["settings"]["sizes"]}
        assert swept["engine_ms"] > 0 and swept["sharp_ms"] > 0 and swept["sharp_once_ms"] > 0
    else:  # no Node here: said, not guessed
        assert "not measured" in results["sharp"]["note"] and results["scale_sweep"] == {}
    [first] = results["first_thumbnail"].values()
    assert first["first_ms"] > 0 and first["warm_ms"] > 0
    assert set(first["plugins"]) >= {"PIL.JpegImagePlugin", "PIL.TiffImagePlugin"}
    # the formats part: the qualities matched to the JPEG's SSIM, each format's bytes and time by size
    matched = results["output_formats"]["qualities"]["82"]
    assert set(matched) == {"jpeg", "webp", "avif"} and matched["jpeg"]["quality"] == 82
    assert all(row["ssim"] >= matched["jpeg"]["ssim"] and row["bytes"] > 0 for row in matched.values())
    if results["sharp"]["measured"]:
        assert {"sharp_webp", "sharp_avif_effort0"} <= set(results["output_formats"]["sharp"])
