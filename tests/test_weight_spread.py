"""tools/weight_spread.py: the rollout-weight spread and balancer activity a run's metrics.jsonl records."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "weight_spread.py"


def load_tool():
    spec = importlib.util.spec_from_file_location("weight_spread", TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_spread_summarises_weights_and_how_often_lambda_moved(tmp_path):
    tool = load_tool()
    recs = [{"step": 1, "inter/w_mean": 1.0, "inter/w_max": 2.0, "inter/w_min": 0.5, "balance/lambda_mq": 1 / 3},
            {"step": 2, "loss/critic": 0.3},  # critic steps log no weights
            {"step": 3, "inter/w_mean": 1.0, "inter/w_max": 3.0, "inter/w_min": 0.25, "balance/lambda_mq": 0.6}]
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    s = tool.spread(path)
    assert s["steps"] == 3 and s["w_max"] == 2.5 and s["max_over_min"] == 8.0  # median of 4x and 12x
    assert s["lambda_moved"] == 0.5 and s["lambda_mq_max"] == 0.6
    assert "w_mean" not in tool.spread(_only_critic(tmp_path)) and "penalty_on" not in s


def test_spread_reports_the_global_penalty_when_it_fires(tmp_path):
    tool = load_tool()
    recs = [{"step": 1, "balance/global_penalty": 0.0}, {"step": 3, "balance/global_penalty": 0.08},
            {"step": 5, "balance/global_penalty": 0.04}, {"step": 7, "balance/global_penalty": 0.0}]
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    s = tool.spread(path)
    assert s["penalty_on"] == 0.5 and s["penalty_max"] == 0.08 and abs(s["penalty_mean"] - 0.03) < 1e-12
    assert "above 0 on 50% of steps" in tool.line(Path("run"), s)


def _only_critic(tmp_path: Path) -> Path:
    path = tmp_path / "dmd.jsonl"
    path.write_text(json.dumps({"step": 1, "loss/critic": 0.3}) + "\n")
    return path
