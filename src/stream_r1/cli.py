"""The `stream-r1` command line: one subcommand per job, each a thin wrapper over the library."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .common.config import ConfigError, load_config
from .common.weights import CheckpointError
from .toyworld.prompts import PromptError
from .toyworld.render import NUM_FRAMES

WAN_FRAMES = 81  # the default clip at paper scale: 21 latent frames = 7 chunks of 3
USER_ERRORS = (CheckpointError, ConfigError, PromptError, FileNotFoundError)


def run_config(args: argparse.Namespace) -> dict:
    """The run's config with the command line's device and dtype written in as top-level `device:` / `dtype:`.

    `--device` (else the config's `device`, else auto) is resolved here, so a GPU asked for on a machine
    without one is a one-line error before anything loads; `--dtype` replaces the config's `dtype` if given.
    """
    from .common.device import resolve_device

    config = load_config(args.config, args.set)
    config["device"] = args.device or config.get("device") or "auto"
    resolve_device(config["device"])
    if args.dtype:
        config["dtype"] = args.dtype
    return config


def cmd_pretrain(args: argparse.Namespace) -> None:
    from .distill.pretrain import pretrain

    config = run_config(args)
    path = pretrain(config, Path(args.out), resume=args.resume)
    print(f"teacher weights: {path}")


def cmd_generate(args: argparse.Namespace) -> None:
    from .generation.generate import generate_to_dir, read_prompts
    from .generation.pipeline import VideoPipeline
    from .generation.timeline import timeline_from_cli

    timeline = timeline_from_cli(args.prompt, args.prompts, args.switch_at, args.timeline)
    pipe = VideoPipeline.from_checkpoint(args.checkpoint, args.device or "auto", args.dtype)
    prompts = [timeline.segments[0][1]] if timeline else read_prompts(args.prompt, args.prompts,
                                                                     grammar=pipe.family == "toy")
    frames = args.frames if args.frames is not None else (WAN_FRAMES if pipe.family == "wan" else NUM_FRAMES)
    init = None
    if args.init_video:
        from .generation.video_io import read_video

        init = read_video(args.init_video, pipe.frame_size)
    manifest = generate_to_dir(pipe, prompts, frames, args.seed, Path(args.out), steps=args.steps, init_video=init,
                               timeline=timeline, switch=args.switch)
    print(f"wrote {len(manifest)} videos to {args.out} (manifest.json, i.mp4, i.npz)")


def cmd_convert(args: argparse.Namespace) -> None:
    from .models.wan_convert import convert

    student = {k: v for k, v in (("frames_per_chunk", args.frames_per_chunk),
                                 ("local_attn_frames", args.local_attn_frames),
                                 ("sink_frames", args.sink_frames)) if v is not None}
    path = convert(args.source, args.out, args.components, args.which, (args.height, args.width),
                   args.max_length, args.negative_prompt, **student)
    import json

    from safetensors import safe_open

    from .models.dit import DiTConfig

    with safe_open(str(path), framework="pt") as f:  # what generate will read, without loading the weights again
        meta = f.metadata()
    c, extra = DiTConfig.from_dict(json.loads(meta["config"])), json.loads(meta["extra"])
    kind = "causal student" if c.causal else "bidirectional model"
    window = ("global causal attention" if c.local_attn_frames == -1 else
              f"{c.local_attn_frames}-frame window, {c.sink_frames} sink frames") if c.causal else "full attention"
    sampler = ", ".join(f"{k} {v}" for k, v in extra["sampler"].items())
    print(f"{path}: {kind} ({c.num_layers} layers, dim {c.dim}), {window}; sampler: {sampler}\n"
          f"  generate with: stream-r1 generate --checkpoint {path} --prompt TEXT --out DIR")


def cmd_ode_init(args: argparse.Namespace) -> None:
    from .distill.ode_init import ode_init

    path = ode_init(run_config(args), Path(args.out), resume=args.resume)
    print(f"ODE-initialised student: {path}")


def cmd_distill(args: argparse.Namespace) -> None:
    from .distill.launch import distill, dry_run

    config = run_config(args)
    if args.dry_run:
        logs = dry_run(config)
        if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 reports
            return
        print("dry run: one Stream-R1 step with tiny random weights of the paper-scale classes")
        print("\n".join(f"  {k}: {v:.6g}" for k, v in sorted(logs.items())))
        return
    if not args.out:
        raise ConfigError("distill needs --out RUN_DIR (or --dry-run)")
    path = distill(config, Path(args.out), resume=args.resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 reports
        print(f"distilled student: {path}")


def cmd_memory(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from .distill.memory import LORA_TARGETS, RunSettings, build_plan, format_plan, model_spec, smallest_gpu_count

    config = load_config(args.config, args.set)
    spec = model_spec(config, args.dry_run)
    settings = RunSettings.from_config(config, args.dry_run)
    print(format_plan(build_plan(spec, settings, args.gpus, args.gpu_memory, args.gpus_per_host)))
    lora = settings.lora or {"rank": 64, "alpha": 64, "targets": LORA_TARGETS}
    full = smallest_gpu_count(spec, replace(settings, lora=None), args.gpu_memory)
    low = smallest_gpu_count(spec, replace(settings, lora=lora), args.gpu_memory)
    say = lambda n: f"{n}" if n else "more than 64"  # noqa: E731
    print(f"\nsmallest number of {args.gpu_memory:g} GB GPUs that fits: {say(full)} without LoRA, "
          f"{say(low)} with LoRA rank {lora.get('rank', 16)}")


def cmd_train_reward(args: argparse.Namespace) -> None:
    from .reward.train import train_reward

    path = train_reward(load_config(args.config, args.set), Path(args.out), resume=args.resume)
    print(f"toy reward model: {path}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    import json

    from .evaluation.evaluate import (
        evaluate_checkpoint,
        markdown_table,
        over_time_table,
        save_comparison_strip,
        save_curve_plot,
    )
    from .toyworld.bench import evaluate_dir

    if bool(args.videos) == bool(args.checkpoint):
        raise ConfigError("give exactly one of --videos DIR or --checkpoint NAME_OR_PATH")
    if args.videos:
        result = evaluate_dir(args.videos, args.world or "toy")
        print(markdown_table({args.videos: result["summary"]}))
    else:
        frames = args.frames or NUM_FRAMES
        if frames % NUM_FRAMES:
            raise ConfigError(f"--frames {frames}: ToyBench over time scores {NUM_FRAMES}-frame segments; "
                              f"use a multiple of {NUM_FRAMES}")
        result = evaluate_checkpoint(args.checkpoint, args.split, args.per_prompt, args.seed, subset=args.subset,
                                     frames=frames, world=args.world,
                                     device=args.device or "auto", dtype=args.dtype)
        if args.strip:
            shown = save_comparison_strip(Path(args.strip), result)
            print(f"{args.strip}: each video above its ground truth; prompts from the top: " + "; ".join(shown))
        result = {k: v for k, v in result.items() if not k.startswith("_")}
        print(markdown_table({args.checkpoint: result["model"], "ground truth": result["ground_truth"]}))
        ratio = ", ".join(f"{k.upper()} {v:.3f}" for k, v in result["ratio"].items())
        print(f"\nratio to ground truth: {ratio}; {result['videos']} videos, "
              f"{result['seconds_per_video']:.3f} s per video")
    if "over_time" in result:
        print("\nToyBench over time (per 12-frame segment):\n" + over_time_table(result["over_time"]))
        if args.plot:
            save_curve_plot(Path(args.plot), result["over_time"], args.checkpoint or args.videos)
            print(f"{args.plot}: VQ, MQ and TA per segment")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


def cmd_reward_reliability(args: argparse.Namespace) -> None:
    import json

    from .reward.reliability import reward_reliability

    result = reward_reliability(args.checkpoint, args.reward, args.split, args.subset, args.per_prompt, args.seed,
                                device=args.device or "auto")
    print(f"Spearman rho of each reward head against its ToyBench axis, {result['videos']} videos of "
          f"{args.checkpoint} ({args.split} split)\n")
    print("| reward | VQ | MQ | TA |\n|---|---|---|---|")
    for name, rho in result["spearman"].items():
        print(f"| {name} | " + " | ".join(f"{rho[a]:.3f}" for a in ("vq", "mq", "ta")) + " |")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


def cmd_reward_speed(args: argparse.Namespace) -> None:
    import json

    from .reward.reliability import speed_response

    result = speed_response(args.reward, args.scales, args.split, args.seed)
    print(f"Mean z-score per head on {result['videos']} ground-truth videos ({args.split} split) moving at k x the "
          "prompt's speed\n")
    names = list(result["mean_z"])
    print("| k | ToyBench speed | " + " | ".join(f"{n} {a.upper()}" for n in names for a in ("mq", "ta")) + " |")
    print("|---" * (2 + 2 * len(names)) + "|")
    for i, k in enumerate(result["scales"]):
        cells = [f"{result['mean_z'][n][a][i]:+.3f}" for n in names for a in ("mq", "ta")]
        print(f"| {k:g} | {result['toybench_ta_speed'][i]:.3f} | " + " | ".join(cells) + " |")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


def cmd_diagnose(args: argparse.Namespace) -> None:
    import json

    from .evaluation.diagnose import diagnose, plot_profiles

    reweight = load_config(args.config, args.set).get("reweight")
    if not reweight:
        raise ConfigError(f"config {args.config!r} has no `reweight` section; pass a Stream-R1 config "
                          "(e.g. --config toy-stream-r1)")
    result = diagnose(args.checkpoint, args.reward, reweight, args.split, args.subset, args.per_prompt, args.seed,
                      steps=args.steps, device=args.device or "auto")
    steps = f", {args.steps} sampling steps" if args.steps else ""
    print(f"{result['videos']} videos ({args.split} split{steps}), reward {args.reward}\n")
    for name, p in result["profiles"].items():
        print(f"{name}\n  step / prompt speed by gap: " + " ".join(f"{v:.2f}" for v in p["step_over_speed"]))
        print("  stall fraction by gap:      " + " ".join(f"{v:.2f}" for v in p["stall_fraction"]))
        print("  temporal weight by frame:   " + " ".join(f"{v:.2f}" for v in p["temporal_weight"]))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    if args.plot:
        plot_profiles(result, args.plot)
        print(f"\nplot: {args.plot}")


def cmd_serve(args: argparse.Namespace) -> None:
    from .serve.server import ServeError, load_pipeline, run_server

    # checkpoint problems first: they need no web packages
    pipe = load_pipeline(args.checkpoint, args.device or "auto", args.dtype)
    try:
        from .serve import ServeLimits
        from .serve.app import create_app
    except ImportError as err:
        raise ServeError(f"stream-r1 serve needs the web packages ({err.name} is missing); "
                         "install them with pip install -e '.[serve]'") from err
    limits = ServeLimits(max_prompt_chars=args.max_prompt_chars, max_frames=args.max_frames,
                         max_concurrent=args.max_concurrent, chunk_delay=args.chunk_delay)
    run_server(create_app(pipe, limits, checkpoint=str(args.checkpoint)), args.host, args.port)


def cmd_demo(args: argparse.Namespace) -> None:
    from .evaluation.demo import run_demo

    print(f"report: {run_demo(Path(args.out), args.per_prompt, args.seed, args.config, args.set)}")


def cmd_compare(args: argparse.Namespace) -> None:
    import shlex

    from .evaluation.compare import run_compare

    command = " ".join(["stream-r1 compare", "--config", args.config, "--out", args.out,
                        *(f"--set {shlex.quote(x)}" for x in args.set),
                        *([f"--workers {args.workers}"] if args.workers else []),
                        *([f"--device {args.device}"] if args.device else [])])
    try:
        report = run_compare(args.config, Path(args.out), args.set, command=command, workers=args.workers,
                             device=args.device or "auto")
    except RuntimeError as err:  # some jobs failed; the partial report is written
        print(f"stream-r1 compare: {err}", file=sys.stderr)
        sys.exit(1)
    print(f"report: {report}")


def add_device_args(p: argparse.ArgumentParser, dtype: bool = True, where: str = "") -> None:
    """--device (and --dtype) of a command that runs a model."""
    p.add_argument("--device", metavar="auto|cpu|cuda|cuda:N",
                   help="where the models run (default auto: this rank's GPU if there is one, else the CPU"
                   f"{where})")
    if dtype:
        p.add_argument("--dtype", metavar="auto|float32|bfloat16|float16",
                       help="compute dtype (default auto: float32, bfloat16 for a paper-scale model on a GPU"
                       f"{where})")


def add_run_args(p: argparse.ArgumentParser, default_config: str, out_required: bool = True,
                 device: bool = True) -> None:
    p.add_argument("--config", default=default_config, help="YAML path or packaged config name")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--out", required=out_required, help="run directory (checkpoints, TensorBoard, weights)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's latest checkpoint")
    if device:
        add_device_args(p, where="; or the config's device: / dtype:")


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive whole number")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stream-r1", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pretrain", help="train the bidirectional toy teacher with flow matching")
    add_run_args(p, "toy-teacher")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("ode-init", help="initialise the causal student by regressing teacher ODE trajectories")
    add_run_args(p, "toy-ode")
    p.set_defaults(func=cmd_ode_init)

    p = sub.add_parser("distill", help="self-forcing DMD distillation of the streaming student")
    add_run_args(p, "toy-dmd", out_required=False)
    p.add_argument("--dry-run", action="store_true",
                   help="paper-scale configs: one step with tiny random weights on the CPU, no downloads")
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser("memory", help="per-GPU and per-host memory of a distillation run, and whether it fits")
    p.add_argument("--config", default="wan2.1-1.3b-stream-r1", help="YAML path or packaged config name")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--gpus", type=positive_int, default=8, help="GPUs the run shards over (FSDP2 when > 1)")
    p.add_argument("--gpu-memory", type=float, default=80.0, metavar="GB", help="memory of one GPU in GB")
    p.add_argument("--gpus-per-host", type=positive_int, default=8, help="GPUs per machine (host memory)")
    p.add_argument("--dry-run", action="store_true", help="plan the tiny random networks of `distill --dry-run`")
    p.set_defaults(func=cmd_memory)

    p = sub.add_parser("generate", help="generate videos (streamed chunk by chunk for causal checkpoints)")
    p.add_argument("--checkpoint", default="toy-teacher", help="short name (toy-teacher, ...) or safetensors path")
    p.add_argument("--prompt", action="append", default=[], help="a prompt; repeat for several")
    p.add_argument("--prompts", help="file with one prompt per line")
    p.add_argument("--frames", type=positive_int,
                   help=f"frames per video, a multiple of the chunk size (default {NUM_FRAMES})")
    p.add_argument("--steps", type=positive_int, help="sampling steps (default: the checkpoint's own)")
    p.add_argument("--seed", type=int, default=0, help="prompt i uses seed+i")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--init-video", help="continue this video (.npz from `generate`, or .mp4): its frames go into "
                   "the cache first and --frames new ones follow (causal toy checkpoints)")
    p.add_argument("--switch-at", type=int, action="append", default=[], metavar="FRAME",
                   help="switch to the next --prompt at this frame, a chunk boundary (--prompt A --switch-at 36 "
                   "--prompt B: one video; causal toy checkpoints)")
    p.add_argument("--timeline", help="a JSON or YAML list of {frame, prompt}: one video whose prompt switches")
    p.add_argument("--switch", choices=["recache", "keep"], default="recache", help="at a switch, re-write the "
                   "cache with the new text (recache, default) or keep the old cache (keep)")
    add_device_args(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("convert", help="a Wan 2.1 / Self-Forcing / diffusers download as a stream-r1 checkpoint "
                       "that generate and serve load")
    p.add_argument("source", help="a Self-Forcing .pt, an original Wan 2.1 folder, a diffusers pipeline folder, "
                   "or one transformer file")
    p.add_argument("--out", required=True, help="the stream-r1 checkpoint to write (.safetensors)")
    p.add_argument("--components", help="a Wan2.1-T2V-*-Diffusers folder whose vae/ text_encoder/ tokenizer/ the "
                   "checkpoint uses (default: SOURCE, when it is one)")
    p.add_argument("--which", help="the sub-dict of a .pt (default generator_ema, else generator; critic: the "
                   "bidirectional fake score)")
    p.add_argument("--height", type=positive_int, default=480, help="pixel height generated (default 480)")
    p.add_argument("--width", type=positive_int, default=832, help="pixel width generated (default 832)")
    p.add_argument("--max-length", type=positive_int, default=512, help="UMT5 tokens per prompt (Wan: 512)")
    p.add_argument("--negative-prompt", default="", help="the negative prompt of guidance (bidirectional models)")
    p.add_argument("--frames-per-chunk", type=positive_int, help="causal student: latent frames a chunk (default 3)")
    p.add_argument("--local-attn-frames", type=int,
                   help="causal student: attention window in latent frames (default -1, global, as Self-Forcing)")
    p.add_argument("--sink-frames", type=int, help="causal student: sink frames kept in the window (default 0)")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("train-reward", help="train the toy video reward model (Bradley-Terry on degraded pairs)")
    add_run_args(p, "toy-reward", device=False)  # a small CPU model trained on rendered pairs
    p.set_defaults(func=cmd_train_reward)

    p = sub.add_parser("evaluate", help="ToyBench scores of generated videos or of a checkpoint on held-out prompts")
    p.add_argument("--videos", help="a directory written by `stream-r1 generate`")
    p.add_argument("--checkpoint", help="generate and score with this checkpoint")
    p.add_argument("--split", default="heldout", choices=["heldout", "train"])
    p.add_argument("--per-prompt", type=positive_int, default=2, help="videos per prompt (48 held-out prompts)")
    p.add_argument("--subset", type=positive_int, help="a fixed random subset of N prompts of the split "
                   "(choose checkpoints on `--split train --subset 48 --per-prompt 1`, never on held-out)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="write the full result as JSON here")
    p.add_argument("--strip", help="with --checkpoint: a PNG of six videos, each above its ground truth")
    p.add_argument("--frames", type=positive_int, help=f"with --checkpoint: frames per video, a multiple of "
                   f"{NUM_FRAMES} (default {NUM_FRAMES}); longer videos are also scored per {NUM_FRAMES}-frame segment")
    p.add_argument("--world", choices=["toy", "long"], help="the toy world to score in (default: the checkpoint's "
                   "own; 'toy' for --videos)")
    p.add_argument("--plot", help="a PNG of ToyBench over time (VQ/MQ/TA per segment) for videos longer than a segment")
    add_device_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("reward-reliability", help="how well toy reward models rank one generator's videos "
                       "(Spearman rho against ToyBench, per axis)")
    p.add_argument("--checkpoint", required=True, help="the generator whose videos are ranked (e.g. toy-dmd)")
    p.add_argument("--reward", action="append", required=True, help="a toy reward model; repeat to compare")
    p.add_argument("--split", default="train", choices=["heldout", "train"])
    p.add_argument("--subset", type=positive_int, default=48, help="a fixed random subset of N prompts")
    p.add_argument("--per-prompt", type=positive_int, default=2)
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--out", help="write the result as JSON here")
    add_device_args(p, dtype=False, where="; the generator's videos, the toy rewards score on the CPU")
    p.set_defaults(func=cmd_reward_reliability)

    p = sub.add_parser("reward-speed", help="each toy reward head's score on ground truth moving k times its "
                       "prompt's speed (does TA peak at the right speed?)")
    p.add_argument("--reward", action="append", required=True, help="a toy reward model; repeat to compare")
    p.add_argument("--scales", type=float, nargs="+", default=[0.6, 0.8, 0.9, 1.0, 1.1, 1.2, 1.4])
    p.add_argument("--split", default="train", choices=["heldout", "train"])
    p.add_argument("--seed", type=int, default=0, help="seed of the videos' placements")
    p.add_argument("--out", help="write the result as JSON here")
    p.set_defaults(func=cmd_reward_speed)

    p = sub.add_parser("diagnose", help="where in the stream motion breaks and where Stream-R1's temporal "
                       "weights land, per frame")
    p.add_argument("--checkpoint", action="append", required=True,
                   help="a generator (repeat to compare); 'ground-truth' adds the rendered videos")
    p.add_argument("--reward", default="toy-reward", help="the toy reward model whose saliency gives the weights")
    p.add_argument("--config", default="toy-stream-r1", help="distillation config whose `reweight` section is used")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--split", default="train", choices=["heldout", "train"])
    p.add_argument("--subset", type=positive_int, default=48, help="a fixed random subset of N prompts")
    p.add_argument("--per-prompt", type=positive_int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="write the profiles as JSON here")
    p.add_argument("--steps", type=positive_int, help="sampling steps for every model (default: its own schedule)")
    p.add_argument("--plot", help="write a PNG of the motion and weight profiles here")
    add_device_args(p, dtype=False, where="; the generators' videos, the toy reward scores on the CPU")
    p.set_defaults(func=cmd_diagnose)

    p = sub.add_parser("serve", help="a web page that streams a video chunk by chunk as it is generated")
    p.add_argument("--checkpoint", default="toy-stream-r1", help="short name or safetensors path (a causal student)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (0 picks a free one)")
    p.add_argument("--max-frames", type=positive_int, default=96, help="most frames one request may ask for")
    p.add_argument("--max-concurrent", type=positive_int, default=2, help="generations running at once")
    p.add_argument("--max-prompt-chars", type=positive_int, default=200, help="longest prompt accepted")
    p.add_argument("--chunk-delay", type=float, default=0.0, metavar="S",
                   help="sleep S seconds before sending each chunk (tests and demos only)")
    add_device_args(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("demo", help="the main job on the toy world: Stream-R1 distillation, samples, report")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--config", default="toy-stream-r1", help="distillation config (name or path)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--per-prompt", type=positive_int, default=1, help="held-out videos per prompt (48 prompts)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("compare", help="train and evaluate every baseline and Stream-R1 variant, paired by seed")
    p.add_argument("--config", default="toy-compare", help="compare config (name or path)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--out", required=True, help="results directory (runs/, results.md, results.json, plots)")
    p.add_argument("--workers", type=positive_int, help="worker processes, one thread each (default: the config's)")
    add_device_args(p, dtype=False, where="; every worker trains and generates there")
    p.set_defaults(func=cmd_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (*USER_ERRORS, ValueError) as err:
        print(f"stream-r1 {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
