"""`stream-r1 compare`: every baseline and Stream-R1 variant trained and evaluated alike, seeds paired.

A compare config (`configs/toy-compare.yaml`) lists rows: a shipped model evaluated as it is
(`model: teacher`), or a distillation config with `--set`-style overrides (`config: toy-stream-r1`,
`set: [reweight.intra=false]`). Each distilled (row, seed) trains in RESULTS_DIR/runs/<row>/seed_<s>
(resumable), then every (row, seed) is evaluated on the same held-out prompts with the same noise as
every other row of that seed: ToyBench per axis (evaluation only, never a training signal) and the toy
reward model's z-scored heads on the same videos. Jobs run in single-threaded worker processes; a
(row, seed) whose student and cached evaluation exist is reused when the command runs again.
`compare_report` turns the cached evaluations into results.json, results.md and the plots.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import re
import statistics
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..common.config import ConfigError, from_section, load_config, resolve_config
from ..common.weights import atomic_write, resolve_checkpoint
from ..reward.base import reward_scores, videos_to_pixels
from ..toyworld.prompts import parse_prompt, split_prompts
from ..toyworld.render import NUM_FRAMES
from .compare_report import (
    CONFIG_FILE,
    CURVES_FILE,
    EVAL_FILE,
    INVOCATIONS_FILE,
    TIME_FILE,
    git_commit,
    train_seconds,
    write_report,
)

log = logging.getLogger(__name__)

ROLES = ("teacher", "student_init", "reward")  # the checkpoints every row shares
SEED_STRIDE = 100_000  # video i of seed s is generated with noise seed eval.seed + SEED_STRIDE·s + i


@dataclass
class EvalSettings:
    """The `eval` section: which held-out videos every (row, seed) is judged on, and the speed probe."""

    split: str = "heldout"
    per_prompt: int = 2  # videos per prompt (48 held-out prompts)
    max_prompts: int | None = None  # None = every prompt of the split; tests use a few
    frames: int = NUM_FRAMES
    batch_size: int = 32
    seed: int = 0
    fps_videos: int = 3  # timed batch-1 streaming generations per row (median), after one warm-up
    strip_prompt: str = "a red circle moving right on a gray background"

    def prompts(self) -> list[str]:
        """Prompt-major list of evaluation prompts (video i gets noise seed base + i)."""
        held = split_prompts(self.split)[: self.max_prompts]
        return [p.text for p in held for _ in range(self.per_prompt)]

    def identity(self) -> dict:
        """What decides the evaluation's numbers (batch size and the speed probe do not)."""
        return {k: v for k, v in asdict(self).items() if k not in ("batch_size", "fps_videos", "strip_prompt")}


@dataclass
class Row:
    """One line of the comparison: a shared model evaluated as is, or a distillation config plus overrides."""

    name: str
    model: str | None = None  # a role of `checkpoints` (teacher, student_init)
    config: str | None = None  # a distillation config, name or path
    set: list[str] = field(default_factory=list)  # `--set`-style overrides of that config
    reward: str | None = None  # the reward this row trains with (default: checkpoints.reward, which also evaluates)

    @property
    def trained(self) -> bool:
        return self.config is not None

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")


@dataclass
class CompareSettings:
    """A whole compare config, checked before anything runs."""

    checkpoints: dict[str, str]
    rows: list[Row]
    seeds: list[int]
    workers: int = 2
    baseline: str = "dmd"
    confidence: float = 0.95
    train: dict = field(default_factory=dict)  # applied to the `train` section of every distilled row
    eval: EvalSettings = field(default_factory=EvalSettings)

    @classmethod
    def from_config(cls, cfg: dict) -> CompareSettings:
        known = set(cls.__dataclass_fields__)
        unknown = set(cfg) - known
        if unknown:
            raise ConfigError(f"unknown compare settings {sorted(unknown)}; known: {sorted(known)}")
        missing = [r for r in ROLES if not cfg.get("checkpoints", {}).get(r)]
        if missing:
            raise ConfigError(f"checkpoints.{missing[0]} is missing; name the {missing[0]} checkpoint every row shares")
        rows = []
        for i, r in enumerate(cfg.get("rows") or []):
            row = from_section(Row, r, f"rows[{i}]")
            if (row.model is None) == (row.config is None):
                raise ConfigError(f"row {row.name!r}: give exactly one of model (teacher, student_init) or config")
            if row.model is not None and row.model not in ROLES[:2]:
                raise ConfigError(f"row {row.name!r}: model={row.model!r}; use teacher or student_init")
            rows.append(row)
        if not rows:
            raise ConfigError("the compare config lists no rows")
        slugs = [r.slug for r in rows]
        if len(set(slugs)) != len(slugs):
            raise ConfigError(f"row names must differ in letters and digits; got {[r.name for r in rows]}")
        seeds = [int(s) for s in cfg.get("seeds") or []]
        if not seeds or len(set(seeds)) != len(seeds):
            raise ConfigError(f"seeds={cfg.get('seeds')}: give distinct seeds (≥ 2 for intervals: [0, 1, 2])")
        s = cls(cfg["checkpoints"], rows, seeds, **{k: cfg[k] for k in ("workers", "baseline", "confidence", "train")
                                                     if k in cfg})
        s.eval = from_section(EvalSettings, cfg.get("eval") or {}, "eval")
        if s.baseline not in [r.name for r in rows]:
            raise ConfigError(f"baseline={s.baseline!r} is not a row; rows: {[r.name for r in rows]}")
        if s.workers < 1:
            raise ConfigError(f"workers={s.workers}; use 1 or more (2 on a 2-core machine)")
        parse_prompt(s.eval.strip_prompt)
        if not s.eval.prompts():
            raise ConfigError("eval selects no videos; raise eval.per_prompt or eval.max_prompts")
        return s

    def row(self, name: str) -> Row:
        return next(r for r in self.rows if r.name == name)


# ---------------------------------------------------------------------------------------------
# Jobs


@dataclass
class Job:
    """One (row, seed): train if the row is distilled, then evaluate. Built in the parent, run in a worker."""

    row: Row
    seed: int
    run_dir: str
    model: str  # what is evaluated: a shared checkpoint, or RUN_DIR/student.safetensors
    reward: str
    eval: EvalSettings
    config: dict | None = None  # the distillation config of a trained row
    device: str = "cpu"  # where the worker trains and generates (not part of the run's record: same results)

    @property
    def label(self) -> str:
        return f"{self.row.name} seed {self.seed}"


def load_compare_config(config: str, overrides: list[str] | None = None) -> tuple[dict, CompareSettings]:
    """A compare config by name or path, raw and checked. A row's `config:` naming a file beside it is read from
    there, as `base:` is: an experiment keeps its own row configs in its folder, experiments/<name>/."""
    raw = load_config(config, overrides)
    here = resolve_config(config).parent
    for r in raw.get("rows") or []:
        if isinstance(r, dict) and isinstance(r.get("config"), str) and (here / r["config"]).is_file():
            r["config"] = str(here / r["config"])
    return raw, CompareSettings.from_config(raw)


def row_config(s: CompareSettings, row: Row, seed: int) -> dict:
    """The distillation config of one (row, seed): base config, row overrides, shared checkpoints and train section."""
    from ..distill.trainer import DistillSettings

    cfg = load_config(row.config, row.set)
    if cfg.get("family", "toy") != "toy":
        raise ConfigError(f"row {row.name!r}: compare scores with ToyBench, so rows must be toy configs")
    cfg["teacher"], cfg["student_init"] = s.checkpoints["teacher"], s.checkpoints["student_init"]
    if cfg.get("reward"):
        cfg["reward"] = row.reward or s.checkpoints["reward"]
    elif row.reward:
        raise ConfigError(f"row {row.name!r}: reward={row.reward!r} but its config {row.config!r} trains with none")
    cfg["train"] = {**cfg.get("train", {}), **s.train, "seed": seed}
    DistillSettings.from_dict(cfg["train"])  # unknown keys fail here, before any worker starts
    return cfg


def plan_jobs(s: CompareSettings, out: Path) -> list[Job]:
    """Every (row, seed), seed-major: partial results hold whole seeds, which is what pairing needs."""
    jobs = []
    for seed in s.seeds:
        for row in s.rows:
            run_dir = out / "runs" / row.slug / f"seed_{seed}"
            if row.trained:
                cfg = row_config(s, row, seed)
                jobs.append(Job(row, seed, str(run_dir), str(run_dir / "student.safetensors"),
                                s.checkpoints["reward"], s.eval, cfg))
            else:
                jobs.append(Job(row, seed, str(run_dir), s.checkpoints[row.model], s.checkpoints["reward"], s.eval))
    return jobs


def checkpoint_step(run_dir: Path) -> int:
    """The step of a run's latest training checkpoint (0 for none)."""
    from ..runstate.train_state import latest_checkpoint

    ckpt = latest_checkpoint(run_dir)
    return json.loads((ckpt / "state.json").read_text())["step"] if ckpt is not None else 0


def student_step(path: Path) -> int | None:
    """The step recorded in an exported student's metadata, or None if there is no student."""
    from safetensors import safe_open

    if not path.exists():
        return None
    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get("extra", "{}")).get("step")


def file_sha256(name_or_path: str) -> str:
    """Content hash of a checkpoint (short name or path): what a model is, wherever it lies and whatever its mtime."""
    digest = hashlib.sha256()
    with resolve_checkpoint(name_or_path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def eval_fingerprint(job: Job) -> dict:
    """What an evaluation's numbers depend on: seed, eval settings, the evaluated model and the reward model."""
    return {"seed": job.seed, "eval": job.eval.identity(), "model": file_sha256(job.model),
            "reward": file_sha256(job.reward)}


def run_record(job: Job) -> dict:
    """What a training run depends on, train.steps aside: its config and the content of its input checkpoints."""
    cfg = json.loads(json.dumps(job.config))
    cfg["train"].pop("steps", None)
    inputs = {k: file_sha256(cfg.pop(k)) for k in ("teacher", "student_init", "critic_init", "reward") if cfg.get(k)}
    return {"config": cfg, "inputs": inputs}  # checkpoints by content: moving or re-copying a file changes nothing


def check_run_dir(job: Job) -> None:
    """Refuse to resume a run directory trained with another config or other inputs (only train.steps may change)."""
    run_dir = Path(job.run_dir)
    stored, record = run_dir / CONFIG_FILE, run_record(job)
    if stored.exists() and json.loads(stored.read_text()) != record:
        raise ConfigError(f"{run_dir} was trained with another config or other teacher/student/reward weights than "
                          f"row {job.row.name!r} uses now; delete that directory or use another --out")
    step = checkpoint_step(run_dir)
    if step > job.config["train"]["steps"]:
        raise ConfigError(f"{run_dir} is already at step {step}, beyond train.steps={job.config['train']['steps']}; "
                          "use another --out")
    atomic_write(stored, lambda p: Path(p).write_text(json.dumps(record, indent=1)))


def is_finished(job: Job) -> bool:
    """A trained student at the configured step (if the row trains) and an evaluation of exactly it."""
    if job.config is not None and student_step(Path(job.model)) != job.config["train"]["steps"]:
        return False
    cached = Path(job.run_dir) / EVAL_FILE
    if not cached.exists():
        return False
    return json.loads(cached.read_text()).get("fingerprint") == eval_fingerprint(job)


# ---------------------------------------------------------------------------------------------
# What a worker does


def evaluate_model(model: str, reward_path: str, ev: EvalSettings, seed: int, device: str = "cpu") -> dict:
    """Generate the evaluation videos of one seed (on `device`), score them with ToyBench and the reward model."""
    from ..generation.pipeline import VideoPipeline, generate_uint8
    from ..reward.toy import load_toy_reward
    from ..toyworld.bench import score_video, summarize

    prompts = ev.prompts()
    pipe = VideoPipeline.from_checkpoint(model, device)
    videos, seconds = generate_uint8(pipe, prompts, ev.seed + SEED_STRIDE * seed, ev.frames, ev.batch_size)
    bench = [score_video(v, p) for v, p in zip(videos, prompts, strict=True)]
    summary = summarize(bench)
    rewards = reward_scores(load_toy_reward(reward_path), videos, prompts, ev.batch_size)
    return {
        "videos": len(videos),
        "seconds_per_video": seconds,
        "toybench": {k: summary[k] for k in ("vq", "mq", "ta", "total")},
        "toybench_detail": summary,
        "reward": {a: float(np.mean(v)) for a, v in rewards.items()},
        "per_video": {**{f"toybench/{k}": [getattr(b, k) for b in bench] for k in ("vq", "mq", "ta", "total")},
                      **{f"reward/{a}": v for a, v in rewards.items()}},
    }


class HeldoutMonitor:
    """In-run evaluator: the trainer's ToyBench monitor, plus the reward model on the same held-out EMA videos.

    Every row (the DMD baseline too, which logs no reward of its own) gets comparable reward and ToyBench curves
    in RUN_DIR/compare_curves.jsonl. Measurement only: nothing here reaches a loss.
    """

    def __init__(self, reward_path: str, run_dir: Path) -> None:
        from ..reward.toy import load_toy_reward

        self.reward, self.path = load_toy_reward(reward_path), Path(run_dir) / CURVES_FILE

    def __call__(self, d, writer) -> dict[str, float]:
        from ..distill.monitor import evaluate_student, heldout_videos

        videos, prompts = heldout_videos(d)
        summary = evaluate_student(d, writer, heldout=(videos, prompts))
        scores = reward_scores(self.reward, videos, prompts, len(videos))
        line = {"step": d.step, **{f"heldout_reward/{a}": float(np.mean(v)) for a, v in scores.items()},
                **{f"toybench/{k}": summary[k] for k in ("vq", "mq", "ta", "total")}}
        for k, v in line.items():
            if k.startswith("heldout_reward/"):
                writer.add_scalar(k, v, d.step)
        with self.path.open("a") as f:
            f.write(json.dumps(line) + "\n")
        return summary


def run_job(job: Job) -> dict:
    """Train (resuming) if needed, evaluate, cache the evaluation; returns a short record for the log."""
    torch.set_num_threads(1)
    run_dir = Path(job.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {"row": job.row.name, "seed": job.seed, "trained_steps": 0}
    if job.config is not None:
        steps = job.config["train"]["steps"]
        if student_step(Path(job.model)) != steps:
            from ..distill.launch import distill

            start_step, start = checkpoint_step(run_dir), time.perf_counter()
            with (run_dir / "train.log").open("a") as bar_log, contextlib.redirect_stderr(bar_log):
                # the progress bar goes to RUN_DIR/train.log; the compare log keeps one line per finished job
                distill({**job.config, "device": job.device}, run_dir, resume=start_step > 0,
                        evaluator=HeldoutMonitor(job.reward, run_dir))
            seconds = time.perf_counter() - start
            with (run_dir / TIME_FILE).open("a") as f:
                f.write(json.dumps({"from_step": start_step, "to_step": steps, "seconds": seconds}) + "\n")
            record["trained_steps"] = steps - start_step
        record["train_seconds"] = train_seconds(run_dir, steps)
    start = time.perf_counter()
    result = evaluate_model(job.model, job.reward, job.eval, job.seed, job.device)
    result["eval_seconds"] = time.perf_counter() - start
    result["fingerprint"] = eval_fingerprint(job)
    atomic_write(run_dir / EVAL_FILE, lambda p: Path(p).write_text(json.dumps(result)))
    return {**record, **{k: result[k] for k in ("toybench", "reward", "eval_seconds")}}


def _init_worker() -> None:
    """Worker processes: one thread each (two jobs share a 2-core machine)."""
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING, format=f"worker {os.getpid()} %(levelname)s %(name)s: %(message)s")


@contextlib.contextmanager
def single_threaded_env():
    """Environment of the worker processes spawned inside the block: one OMP/MKL thread each."""
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # read when torch loads
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_jobs(jobs: list[Job], workers: int) -> list[str]:
    """Run jobs on `workers` processes (in this process if 1), logging a line per finished job; returns failures."""
    failures, start = [], time.perf_counter()

    def report(i: int, job: Job, rec: dict) -> None:
        trained = (f"trained {rec['trained_steps']} steps" if rec["trained_steps"] else
                   "reused the trained student" if job.config is not None else "shared checkpoint")
        minutes = (time.perf_counter() - start) / 60
        eta = minutes / i * (len(jobs) - i)
        log.info("[%d/%d] %s: %s, evaluated in %.0f s; ToyBench total %.3f, reward VQ/MQ/TA %+.2f/%+.2f/%+.2f; "
                 "%.1f min elapsed, ~%.0f min left", i, len(jobs), job.label, trained, rec["eval_seconds"],
                 rec["toybench"]["total"], *(rec["reward"][a] for a in ("vq", "mq", "ta")), minutes, eta)

    if workers == 1:
        for i, job in enumerate(jobs, 1):
            try:
                report(i, job, run_job(job))
            except Exception as err:  # keep going: the other rows still make a (partial) report
                log.exception("%s failed: %s", job.label, err)
                failures.append(f"{job.label}: {err}")
        return failures
    with single_threaded_env(), ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker
    ) as pool:
        pending = {pool.submit(run_job, job): job for job in jobs}
        done_count = 0
        try:
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    job = pending.pop(fut)
                    done_count += 1
                    try:
                        report(done_count, job, fut.result())
                    except Exception as err:
                        log.error("%s failed: %s", job.label, err)
                        failures.append(f"{job.label}: {err}")
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return failures


# ---------------------------------------------------------------------------------------------
# Speed and the frame strip, measured in this process for every row


def timed_stream(pipe, ev: EvalSettings, noise_seed: int) -> tuple[float, float, torch.Tensor]:
    """One batch-1 generation of the strip prompt: (total seconds, seconds to the first chunk, pixels [T, 3, H, W])."""
    chunks, t0 = [], time.perf_counter()
    first = 0.0
    for chunk in pipe.stream([ev.strip_prompt], ev.frames, noise_seed):
        if not chunks:
            first = time.perf_counter() - t0
        chunks.append(chunk)
    return time.perf_counter() - t0, first, torch.cat(chunks, dim=1)[0]


def measure_speeds(models: dict[str, str], ev: EvalSettings, seed: int, device: str = "cpu") -> tuple[dict, dict]:
    """Frames per second of one streamed video at batch 1 for every model, in this process.

    After one warm-up each, the timed runs go round-robin over the models (`fps_videos` rounds, median per
    model), so a slow spell of the machine touches every row alike. Also returns each model's video (uint8).
    """
    from ..generation.pipeline import VideoPipeline, to_uint8

    pipes = {name: VideoPipeline.from_checkpoint(path, device) for name, path in models.items()}
    noise_seed = ev.seed + SEED_STRIDE * seed
    videos = {name: to_uint8(timed_stream(pipe, ev, noise_seed)[2]).numpy() for name, pipe in pipes.items()}
    totals: dict[str, list[float]] = {name: [] for name in pipes}
    firsts: dict[str, list[float]] = {name: [] for name in pipes}
    for _ in range(max(1, ev.fps_videos)):
        for name, pipe in pipes.items():
            total, first, _ = timed_stream(pipe, ev, noise_seed)
            totals[name].append(total)
            firsts[name].append(first)
    speed = {}
    for name, pipe in pipes.items():
        seconds = statistics.median(totals[name])
        speed[name] = {"fps": ev.frames / seconds, "seconds_per_video": seconds, "runs": len(totals[name]),
                       "first_chunk_seconds": statistics.median(firsts[name]), "streaming": bool(pipe.model.cfg.causal)}
    return speed, videos


def weight_maps(job: Job, video: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Heat maps of the fused saliency and W_intra the row's own reweighter gives this video (None without intra)."""
    from ..distill.monitor import heat
    from ..models.codec import SpaceToDepthCodec
    from ..reward.toy import load_toy_reward
    from ..reweight.reweighter import StreamR1Reweighter
    from ..reweight.settings import ReweightSettings

    section = (job.config or {}).get("reweight")
    if not section or not section.get("intra", True):
        return None
    codec = SpaceToDepthCodec(1)
    rw = StreamR1Reweighter(load_toy_reward(job.reward), codec.decode, ReweightSettings.from_dict(section))
    rw(codec.encode(videos_to_pixels([video])), [job.eval.strip_prompt], 0)
    size = video.shape[1]
    return heat(rw.last["saliency"][0], size), heat(rw.last["w_intra"][0, 0], size)


# ---------------------------------------------------------------------------------------------
# The command


def run_compare(config: str, out: Path, overrides: list[str] | None = None, command: str | None = None,
                workers: int | None = None, device: str = "cpu") -> Path:
    """Train and evaluate every row (resuming), then write results.json, results.md and plots; returns results.md.

    `device` (auto | cpu | cuda | cuda:N): where every worker trains and generates and the speed probe runs.
    """
    from ..common.device import resolve_device

    device = str(resolve_device(device))  # a GPU asked for on a machine without one fails before anything runs
    commit = git_commit()  # the code this invocation trains with, before anyone commits on top of it
    raw, s = load_compare_config(config, overrides)
    if workers is not None:
        s.workers = workers
    for role in ROLES:  # a missing checkpoint fails here, not in every worker
        resolve_checkpoint(s.checkpoints[role])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = plan_jobs(s, out)
    for job in jobs:
        job.device = device
    for job in jobs:
        if job.config is not None:
            check_run_dir(job)
    todo = [j for j in jobs if not is_finished(j)]
    reused = {j.label for j in jobs} - {j.label for j in todo}
    log.info("compare: %d rows x %d seeds = %d (row, seed) jobs; %d reused, %d to run on %d worker(s)",
             len(s.rows), len(s.seeds), len(jobs), len(reused), len(todo), s.workers)
    with (out / INVOCATIONS_FILE).open("a") as f:  # provenance of a results dir built over several invocations
        f.write(json.dumps({"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "commit": commit, "command": command,
                            "to_run": [j.label for j in todo], "workers": s.workers}) + "\n")
    failures = run_jobs(todo, s.workers) if todo else []

    torch.set_num_threads(1)  # the speed probe: every row single-threaded in this one process
    first = {j.row.name: j for j in jobs if j.seed == s.seeds[0] and (Path(j.run_dir) / EVAL_FILE).exists()}
    log.info("speed probe: %d rows at batch 1, %d timed rounds", len(first), s.eval.fps_videos)
    speed, videos = measure_speeds({name: job.model for name, job in first.items()}, s.eval, s.seeds[0], device)
    strip = [(name, videos[name], weight_maps(job, videos[name])) for name, job in first.items()]
    report = write_report(s, raw, out, jobs, reused, speed, strip, command or f"stream-r1 compare --config {config}",
                          failures, commit)
    if failures:
        raise RuntimeError(f"{len(failures)} job(s) failed (see the log; rerun to resume): " + "; ".join(failures))
    return report
