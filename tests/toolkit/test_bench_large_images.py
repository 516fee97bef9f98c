"""The large-photo benchmark runs end to end on small sizes and records both chains alike."""

import json
from pathlib import Path

from toolkit.dev.bench_large_images import main


def test_the_benchmark_times_both_chains_on_every_kind_and_finds_the_same_faces(
    portraits_dir: Path, tmp_path
):
    out = tmp_path / "large.json"
    report = main(
        ["--portraits", str(portraits_dir), "--megapixels", "0.3", "--repeats", "1", "--json", str(out)]
        + ["--plot", str(tmp_path / "large.png")]
    )

    assert json.loads(out.read_text()) == report and (tmp_path / "large.png").stat().st_size > 0
    rows = {row["kind"]: row for row in report["rows"]}
    assert set(rows) == {"faceless", "close_up", "portrait"}
    assert rows["faceless"]["faces_fill_view"] == rows["faceless"]["faces_full_image"] == 0
    for kind in ("close_up", "portrait"):
        assert rows[kind]["faces_fill_view"] == rows[kind]["faces_full_image"] == 1
    assert all(row["fill_view_s"] > 0 and row["full_image_s"] > 0 for row in rows.values())
    strip = report["faceless_strip_3.5to1"]
    assert strip["faces"] == 0 and strip["peak_rss_mb"] > 0 and strip["size"][0] > 3 * strip["size"][1]
