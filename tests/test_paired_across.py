"""tools/paired_across.py: rows of different compare results pair seed by seed, and merged files must agree."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "paired_across.py"


def load_tool():
    spec = importlib.util.spec_from_file_location("paired_across", TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def write_results(path: Path, row: str, seeds: dict[str, float]) -> str:
    recs = {s: {"values": {"toybench/vq": v, "toybench/mq": v, "toybench/ta": v, "toybench/total": v},
                "subscores": {"mq_track": v, "vq_shape": 2 * v}} for s, v in seeds.items()}
    path.write_text(json.dumps({"rows": {row: {"seeds": recs}}}))
    return str(path)


def test_seeds_merge_across_files_and_pair(tmp_path):
    tool = load_tool()
    a1 = write_results(tmp_path / "a1.json", "x", {"0": 1.0, "1": 2.0})
    a2 = write_results(tmp_path / "a2.json", "x", {"1": 2.0, "2": 3.0})
    b = write_results(tmp_path / "b.json", "y", {"0": 0.5, "1": 1.5, "2": 2.5, "3": 9.0})
    assert set(tool.row_seeds(f"{a1},{a2}", "x")) == {"0", "1", "2"}
    text = tool.table(tool.load_pairs([f"{a1},{a2}", "x", b, "y"]), ["toybench/vq", "vq_shape"], ["VQ", "shape"])
    assert "| x − y (3) | +0.500 ± 0.000 ▲ | +1.000 ± 0.000 ▲ |" in text  # seed 3 has no partner: left out


def test_a_seed_recorded_twice_must_agree(tmp_path):
    tool = load_tool()
    a1 = write_results(tmp_path / "a1.json", "x", {"0": 1.0})
    a2 = write_results(tmp_path / "a2.json", "x", {"0": 1.5})
    with pytest.raises(SystemExit, match="seed 0 differs"):
        tool.row_seeds(f"{a1},{a2}", "x")
    with pytest.raises(SystemExit, match="no row 'z'"):
        tool.row_seeds(a1, "z")


def test_pairs_can_be_cut_to_named_seeds(tmp_path):
    tool = load_tool()
    a = write_results(tmp_path / "a.json", "x", {"0": 1.0, "1": 2.0, "2": 4.0})
    b = write_results(tmp_path / "b.json", "y", {"0": 0.0, "1": 0.0, "2": 0.0})
    pairs = tool.load_pairs([a, "x", b, "y"], only={"0", "1"})
    assert "| x − y (2) | +1.500 ±" in tool.table(pairs, ["toybench/vq"], ["VQ"])


def test_means_summarise_each_row_with_its_reward_reliability(tmp_path):
    tool = load_tool()
    a = write_results(tmp_path / "a.json", "x", {"0": 1.0, "1": 3.0})
    rows = json.loads(Path(a).read_text())
    for s, rec in rows["rows"]["x"]["seeds"].items():
        rec["reliability"] = {"vq": 0.2, "mq": 0.4 + int(s) * 0.2, "ta": -0.1}
    Path(a).write_text(json.dumps(rows))
    text = tool.means_table([("x", tool.row_seeds(a, "x"))])
    assert "| x (2) | 2.000 ± 12.706 |" in text  # s = √2, n = 2: half-width = t(0.975, df 1) = 12.706
    assert text.rstrip().endswith("| 0.20 / 0.50 / -0.10 |")


def test_reward_scores_pair_like_toybench(tmp_path):
    tool = load_tool()
    a = write_results(tmp_path / "a.json", "x", {"0": 1.0, "1": 2.0})
    b = write_results(tmp_path / "b.json", "y", {"0": 0.0, "1": 0.0})
    for path, bump in ((a, 0.5), (b, 0.0)):
        rows = json.loads(Path(path).read_text())
        for rec in next(iter(rows["rows"].values()))["seeds"].values():
            rec["values"] |= {"reward/vq": bump, "reward/mq": bump, "reward/ta": bump}
        Path(path).write_text(json.dumps(rows))
    text = tool.table(tool.load_pairs([a, "x", b, "y"]), list(tool.REWARD_METRICS), ["rVQ", "rMQ", "rTA"])
    assert "| x − y (2) | +0.500 ± 0.000 ▲ | +0.500 ± 0.000 ▲ | +0.500 ± 0.000 ▲ |" in text


def test_forest_plot_draws_one_point_per_pair_and_axis(tmp_path):
    tool = load_tool()
    a = write_results(tmp_path / "a.json", "x", {"0": 1.0, "1": 2.0})
    b = write_results(tmp_path / "b.json", "y", {"0": 0.5, "1": 1.0})
    out = tmp_path / "pairs.png"
    drawn = tool.forest_plot(tool.load_pairs([a, "x", b, "y", b, "y", a, "x"]), out)
    assert [iv.mean for iv in drawn["toybench/vq"]] == [0.75, -0.75] and len(drawn) == 4
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
