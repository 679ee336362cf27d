"""`stream-r1 compare`: t intervals against hand values, paired differences, config checks, and a tiny end-to-end
run (random teacher / ODE-init student / reward model) that resumes without redoing finished runs."""

import hashlib
import json
import math

import pytest
import yaml

from stream_r1.common.config import ConfigError, load_config
from stream_r1.common.stats import Interval, average_ranks, mean_ci, paired_difference, spearman, t_critical
from stream_r1.evaluation.compare import (
    EVAL_FILE,
    CompareSettings,
    Job,
    check_run_dir,
    plan_jobs,
    row_config,
    student_step,
)
from stream_r1.evaluation.compare_report import reward_hacking
from stream_r1.models.dit import DiT
from stream_r1.models.dit_io import save_dit
from stream_r1.reward.toy import ToyRewardConfig, ToyRewardModel, save_toy_reward

from .conftest import randomized, tiny_config


def test_t_critical_matches_the_printed_table():
    for df, table in [(1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (9, 2.262), (30, 2.042)]:
        assert t_critical(df) == pytest.approx(table, abs=1e-3)
    assert t_critical(4, 0.90) == pytest.approx(2.132, abs=1e-3)
    with pytest.raises(ValueError, match="at least 2"):
        t_critical(0)


def test_mean_ci_is_the_hand_computed_t_interval():
    iv = mean_ci([1.0, 2.0, 3.0, 4.0])
    sd = math.sqrt(((1.5**2) * 2 + (0.5**2) * 2) / 3)  # sample sd of 1..4 = 1.2910
    assert iv.mean == 2.5 and iv.n == 4
    assert iv.half_width == pytest.approx(3.18245 * sd / 2, rel=1e-5)
    assert math.isnan(mean_ci([5.0]).half_width) and mean_ci([5.0]).sign() == 0


def test_paired_difference_pairs_by_seed_and_marks_the_sign():
    row = {0: 0.80, 1: 0.70, 2: 0.90, 7: 5.0}  # seed 7 has no partner and must be ignored
    base = {0: 0.75, 1: 0.62, 2: 0.86}
    iv = paired_difference(row, base)
    diffs = [0.05, 0.08, 0.04]
    mean = sum(diffs) / 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    assert iv.n == 3 and iv.mean == pytest.approx(mean)
    assert iv.half_width == pytest.approx(4.30265 * sd / math.sqrt(3), rel=1e-5)
    assert iv.sign() == 1  # 0.0567 ± 0.0517: above zero
    assert paired_difference(base, row).sign() == -1
    assert Interval(0.01, 0.02, 3).sign() == 0
    with pytest.raises(ValueError, match="share no seed"):
        paired_difference({0: 1.0}, {1: 1.0})


def test_spearman_uses_average_ranks_for_ties():
    assert average_ranks([3.0, 1.0, 3.0, 2.0]) == [3.5, 1.0, 3.5, 2.0]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # hand-computed: ranks a = [1, 2, 3, 4], b = [2, 1, 4, 3] -> 1 - 6·4 / (4·15) = 0.6
    assert spearman([0.1, 0.2, 0.3, 0.4], [5, 1, 9, 7]) == pytest.approx(0.6)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_reward_hacking_flags_reward_up_with_toybench_flat_or_down():
    def d(mean, sign):
        return {"mean": mean, "half_width": 0.01, "n": 3, "sign": sign}

    rows = {
        "hacker": {"vs_baseline": {"reward/vq": d(0.5, 1), "toybench/vq": d(-0.02, -1),
                                   "reward/mq": d(0.4, 1), "toybench/mq": d(0.0, 0)}},
        "honest": {"vs_baseline": {"reward/vq": d(0.5, 1), "toybench/vq": d(0.03, 1),
                                   "reward/ta": d(-0.3, -1), "toybench/ta": d(-0.01, -1)}},
    }
    found = {(f["row"], f["axis"]): f["verdict"] for f in reward_hacking(None, rows)}
    assert found[("hacker", "vq")].startswith("YES:") and found[("hacker", "mq")].startswith("YES (suspected)")
    assert found[("honest", "vq")].startswith("no:") and ("honest", "ta") not in found


def test_packaged_config_rows_and_overrides():
    s = CompareSettings.from_config(load_config("toy-compare"))
    assert len(s.seeds) >= 3 and s.baseline == "dmd" and len(s.eval.prompts()) >= 64
    assert sum(r.trained for r in s.rows) == 7
    cfg = row_config(s, s.row("stream-r1 inter only"), seed=2)
    assert cfg["reweight"]["intra"] is False and cfg["reweight"]["inter"] is True
    assert cfg["train"]["seed"] == 2 and cfg["train"]["steps"] == s.train["steps"]
    assert cfg["reward"] == s.checkpoints["reward"]
    rf = row_config(s, s.row("reward-forcing"), seed=0)["reweight"]
    assert rf["inter_axes"] == ["mq"] and rf["intra"] is False
    assert "reward" not in row_config(s, s.row("dmd"), seed=0)  # the baseline never sees the reward model


@pytest.mark.parametrize("change, message", [
    ({"baseline": "nope"}, "baseline"),
    ({"seeds": [0, 0]}, "distinct seeds"),
    ({"rows": [{"name": "a", "config": "toy-dmd", "model": "teacher"}]}, "exactly one"),
    ({"rows": [{"name": "dmd", "config": "toy-dmd"}, {"name": "DMD", "config": "toy-dmd"}]}, "differ"),
    ({"bogus": 1}, "unknown compare settings"),
])
def test_bad_compare_configs_are_refused(change, message):
    with pytest.raises(ConfigError, match=message):
        CompareSettings.from_config({**load_config("toy-compare"), **change})


def test_a_run_dir_trained_with_another_config_is_refused(tiny_world, tmp_path):
    s = CompareSettings.from_config(load_config(str(tiny_world)))
    job = next(j for j in plan_jobs(s, tmp_path / "out") if j.row.name == "dmd" and j.seed == 0)
    check_run_dir(job)  # records the config
    more = Job(**{**job.__dict__, "config": {**job.config, "train": {**job.config["train"], "steps": 999}}})
    check_run_dir(more)  # more steps: a resume, allowed
    other = Job(**{**job.__dict__, "config": {**job.config, "dmd": {**job.config["dmd"], "guidance": 1.0}}})
    with pytest.raises(ConfigError, match="another config"):
        check_run_dir(other)
    teacher = tmp_path / "teacher-copy.safetensors"
    teacher.write_bytes((tmp_path / "teacher.safetensors").read_bytes())
    check_run_dir(Job(**{**job.__dict__, "config": {**job.config, "teacher": str(teacher)}}))  # same bytes: fine
    save_dit(teacher, randomized(DiT(tiny_config(num_layers=1)), seed=5))  # same name, other weights: refused
    with pytest.raises(ConfigError, match="other teacher"):
        check_run_dir(Job(**{**job.__dict__, "config": {**job.config, "teacher": str(teacher)}}))


@pytest.fixture
def tiny_world(tmp_path):
    """Random tiny teacher, causal ODE-init student and reward model, and a compare config using them."""
    meta = {"codec": {"factor": 1}, "frame_size": 16}
    save_dit(tmp_path / "teacher.safetensors", randomized(DiT(tiny_config(num_layers=1))), meta)
    save_dit(tmp_path / "ode.safetensors", randomized(DiT(tiny_config(num_layers=1, causal=True)), seed=1),
             {**meta, "sampler": {"shift": 3.0, "denoising_timesteps": [1000, 500]}})
    reward = ToyRewardModel(ToyRewardConfig(channels=(4, 8), hidden=8, map_channels=2, map_size=(2, 2, 2), groups=2))
    save_toy_reward(tmp_path / "reward.safetensors", reward)
    cfg = load_config("toy-compare")
    cfg["checkpoints"] = {k: str(tmp_path / f) for k, f in
                          [("teacher", "teacher.safetensors"), ("student_init", "ode.safetensors"),
                           ("reward", "reward.safetensors")]}
    cfg.update(seeds=[0, 1], workers=2)
    cfg["train"] = dict(steps=2, batch_size=2, micro_batch_size=2, generator_every=1, frames=6, log_every=1,
                        denoising_timesteps=[1000, 500], checkpoint_every=2, eval_every=1, eval_videos=2)
    cfg["eval"].update(per_prompt=1, max_prompts=3, frames=6, batch_size=4, fps_videos=1)
    cfg["rows"] = [{"name": "ode-init", "model": "student_init"}, {"name": "dmd", "config": "toy-dmd"},
                   {"name": "stream-r1", "config": "toy-stream-r1"}]
    path = tmp_path / "compare.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_tiny_compare_end_to_end_then_resume_skips_finished_runs(tiny_world, tmp_path):
    from stream_r1.cli import main

    out = tmp_path / "results"
    assert main(["compare", "--config", str(tiny_world), "--out", str(out)]) == 0  # two worker processes
    res = json.loads((out / "results.json").read_text())
    assert set(res["rows"]) == {"ode-init", "dmd", "stream-r1"} and res["baseline"] == "dmd"
    assert res["videos_per_run"] == 3 and res["commit"] and "compare --config" in res["command"]
    for name, row in res["rows"].items():
        assert sorted(row["seeds"]) == ["0", "1"] and not row["missing"]
        for key in ("toybench/vq", "toybench/mq", "toybench/ta", "toybench/total", "reward/vq", "reward/mq",
                    "reward/ta"):
            m = row["metrics"][key]
            assert m["n"] == 2 and len(m["values"]) == 2 and m["low"] <= m["mean"] <= m["high"]
            sd = math.sqrt(sum((v - m["mean"]) ** 2 for v in m["values"]))  # n − 1 = 1
            assert m["half_width"] == pytest.approx(12.7062 * sd / math.sqrt(2), rel=1e-4, abs=1e-12)
        assert res["speed"][name]["fps"] > 0
    assert res["speed"]["stream-r1"]["streaming"]
    assert "train_minutes" in res["rows"]["stream-r1"]["metrics"] and "train_minutes" not in res["rows"]["ode-init"]
    # the paired difference is the mean over seeds of (row − baseline) of the same seed
    row, base = res["rows"]["stream-r1"]["seeds"], res["rows"]["dmd"]["seeds"]
    diffs = [row[s]["values"]["reward/mq"] - base[s]["values"]["reward/mq"] for s in ("0", "1")]
    vs = res["rows"]["stream-r1"]["vs_baseline"]["reward/mq"]
    assert vs["mean"] == pytest.approx(sum(diffs) / 2)
    assert vs["half_width"] == pytest.approx(12.7062 * abs(diffs[0] - diffs[1]) / 2, rel=1e-4, abs=1e-12)
    assert res["rows"]["dmd"]["vs_baseline"] == {}
    # sub-scores are paired the same way, from each run's ToyBench detail
    sub = {s: row[s]["subscores"]["ta_speed"] - base[s]["subscores"]["ta_speed"] for s in ("0", "1")}
    assert res["rows"]["stream-r1"]["subscores_vs_baseline"]["ta_speed"]["mean"] == pytest.approx(sum(sub.values()) / 2)
    assert {"vq_sharpness", "mq_freeze", "ta_speed"} <= set(res["rows"]["stream-r1"]["subscores_vs_baseline"])
    assert not any(k.endswith("_ok") for k in row["0"]["subscores"])  # checks and counts are not sub-scores
    md = (out / "results.md").read_text()
    assert "| ta_speed |" in md
    for section in ("## Verdict", "## Paired difference against dmd", "## Where the differences sit",
                    "## Reward hacking check", "## Config",
                    "## Inference cost", res["commit"].split()[0]):
        assert section in md
    assert all((out / f).stat().st_size > 0 for f in ("bars.png", "curves.png", "strip.png"))
    assert (out / "weight-maps" / "stream-r1.png").exists()  # the reweighted run's sample grid with W_intra
    metrics = (out / "runs" / "stream-r1" / "seed_0" / "metrics.jsonl").read_text()
    assert '"reward/vq"' in metrics and '"toybench/total"' in metrics
    lines = (out / "runs" / "dmd" / "seed_1" / "compare_curves.jsonl").read_text().splitlines()
    curves = [json.loads(x) for x in lines]
    assert [c["step"] for c in curves] == [1, 2] and all("heldout_reward/mq" in c for c in curves)  # DMD too

    runs = sorted(out.glob("runs/*/seed_*"))
    assert len(runs) == 6
    stamps = {p: (p / EVAL_FILE).stat().st_mtime_ns for p in runs}
    students = {p: (p / "student.safetensors").stat().st_mtime_ns for p in runs if "ode-init" not in str(p)}
    assert main(["compare", "--config", str(tiny_world), "--out", str(out), "--workers", "1"]) == 0
    assert {p: (p / EVAL_FILE).stat().st_mtime_ns for p in runs} == stamps
    assert {p: (p / "student.safetensors").stat().st_mtime_ns for p in students} == students
    again = json.loads((out / "results.json").read_text())
    assert all(rec["reused"] for r in again["rows"].values() for rec in r["seeds"].values())
    assert again["rows"]["stream-r1"]["metrics"] == res["rows"]["stream-r1"]["metrics"]
    calls = again["invocations"]  # both calls are on record: the first ran every job, the second none
    assert len(calls) == 2 and len(calls[0]["to_run"]) == 6 and calls[1]["to_run"] == []
    assert "## Provenance" in (out / "results.md").read_text()
    assert all(rec["reliability"].keys() == {"vq", "mq", "ta"} for rec in again["rows"]["dmd"]["seeds"].values())


def test_more_steps_resume_the_run_from_its_checkpoint(tiny_world, tmp_path):
    from stream_r1.cli import main

    cfg = yaml.safe_load(tiny_world.read_text())
    cfg.update(seeds=[3], workers=1, rows=[{"name": "dmd", "config": "toy-dmd"}])
    cfg["eval"]["fps_videos"] = 1
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "one"
    assert main(["compare", "--config", str(path), "--out", str(out)]) == 0
    assert main(["compare", "--config", str(path), "--out", str(out), "--set", "train.steps=4"]) == 0
    run = out / "runs" / "dmd" / "seed_3"
    segments = [json.loads(x) for x in (run / "compare_time.jsonl").read_text().splitlines()]
    assert [(s["from_step"], s["to_step"]) for s in segments] == [(0, 2), (2, 4)]  # resumed, not restarted
    assert student_step(run / "student.safetensors") == 4
    assert json.loads((run / EVAL_FILE).read_text())["fingerprint"]["model"] == \
        hashlib.sha256((run / "student.safetensors").read_bytes()).hexdigest()  # the evaluation is of the new student
    res = json.loads((out / "results.json").read_text())
    assert res["rows"]["dmd"]["seeds"]["3"]["steps"] == 4 and not res["rows"]["dmd"]["seeds"]["3"]["reused"]


def test_small_compare_rows_train_with_their_own_reward():
    """toy-compare-small: a row's `reward` is what it trains with; the shared checkpoints.reward evaluates."""
    s = CompareSettings.from_config(load_config("toy-compare-small"))
    assert s.checkpoints["student_init"] == "toy-ode-init-small" and s.checkpoints["reward"] == "toy-reward-pref"
    assert row_config(s, s.row("stream-r1 full toy-reward"), seed=0)["reward"] == "toy-reward"
    faithful = row_config(s, s.row("stream-r1 faithful"), seed=1)
    assert faithful["reward"] == "toy-reward-pref" and faithful["reweight"]["weight_mode"] == "faithful"
    assert "reward" not in row_config(s, s.row("dmd"), seed=0)
    bad = load_config("toy-compare-small")
    bad["rows"] = [{"name": "dmd", "config": "toy-dmd-small", "reward": "toy-reward"}]
    with pytest.raises(ConfigError, match="trains with none"):
        row_config(CompareSettings.from_config(bad), CompareSettings.from_config(bad).rows[0], seed=0)
