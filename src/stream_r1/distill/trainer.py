"""Self-forcing DMD trainer (docs/method.md §2): wires rollout, DMD, optional reweighting, logging.

Two time-scale updates: the critic every step, the generator every `generator_every`-th step. Every
random draw comes from generators keyed by (seed, step, phase, global sample index), so that
  - k micro-batches of size b give the same update as one batch of k·b (gradient accumulation), and
  - a run killed at any point and resumed from its last checkpoint ends bitwise identical.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from ..common.config import from_section
from ..common.device import resolve_device
from ..diffusion.sampler import denoising_sigmas
from ..models.dit_io import save_dit
from ..reweight.reweighter import Measured, StreamR1Reweighter
from ..reweight.settings import ReweightSettings
from ..runstate.train_state import latest_checkpoint, load_training_state, save_training_state
from ..toyworld.render import NUM_FRAMES
from .components import Autocast, build_components, build_reward, dry_run_config, family_of
from .dmd import DMDSettings, critic_flow_loss, dmd_elementwise_loss, dmd_gradient
from .ema import make_ema, update_ema
from .lora import LoraSettings, add_lora, is_lora, merged
from .parallelize import DistributedSettings, Plan, parallelize
from .rollout import draw_exit_step, self_forcing_rollout

log = logging.getLogger(__name__)

PHASE_GENERATOR, PHASE_CRITIC = 1, 2


@dataclass
class DistillSettings:
    """The `train` section of a distillation config."""

    seed: int = 0
    steps: int = 300
    batch_size: int = 8
    micro_batch_size: int = 8
    generator_every: int = 5
    lr_generator: float = 2e-5
    lr_critic: float = 4e-6
    betas: tuple[float, float] = (0.0, 0.999)
    weight_decay: float = 0.01
    grad_clip: float = 10.0
    ema_decay: float = 0.99
    ema_start: int = 0
    frames: int = NUM_FRAMES
    denoising_timesteps: list[float] = field(default_factory=lambda: [1000.0, 750.0, 500.0, 250.0])
    log_every: int = 10
    checkpoint_every: int = 50
    eval_every: int = 100
    eval_videos: int = 16
    prompt_repeats: int = 1  # each drawn prompt is rolled out this many times (with its own noise) in a step
    # Long self-rollouts (method.md §2.4): the student streams this many frames and the trained `frames`-frame
    # window is drawn uniformly from them (its past streamed without grad); 0 = train on the first window.
    long_rollout_frames: int = 0
    # Memory (distill/parallelize.py): checkpoint each block's activations ("full"), every N-th block
    # ("every_n", N = activation_checkpointing_every) or none; torch.compile each block.
    activation_checkpointing: str = "none"
    activation_checkpointing_every: int = 1
    compile: bool = False
    lora: dict | None = None  # {rank, alpha, targets, base_dtype}: LoRA adapters on generator and critic (lora.py)

    @classmethod
    def from_dict(cls, d: dict) -> DistillSettings:
        s = from_section(cls, d, "train")
        if s.batch_size % s.micro_batch_size:
            raise ValueError(f"batch_size {s.batch_size} must be a multiple of micro_batch_size {s.micro_batch_size}")
        if s.prompt_repeats < 1 or s.micro_batch_size % s.prompt_repeats:
            raise ValueError(f"train.prompt_repeats={s.prompt_repeats} must be a positive divisor of "
                             f"micro_batch_size {s.micro_batch_size}, so a prompt's rollouts share a micro-batch")
        s.betas = tuple(s.betas)
        if s.long_rollout_frames and s.long_rollout_frames < s.frames:
            raise ValueError(f"train.long_rollout_frames={s.long_rollout_frames} is shorter than train.frames="
                             f"{s.frames}; set it to a multiple of frames (0 turns long rollouts off)")
        Plan(s.activation_checkpointing, s.activation_checkpointing_every)  # a bad value fails here, early
        if s.lora is not None:
            LoraSettings.from_dict(s.lora)
        return s

    def lora_settings(self) -> LoraSettings | None:
        return LoraSettings.from_dict(self.lora) if self.lora is not None else None


def sample_generators(seed: int, step: int, phase: int, indices: range) -> list[torch.Generator]:
    """One generator per global sample, keyed so that batching and resuming do not change draws."""
    return [torch.Generator().manual_seed(((seed * 1_000_003 + step) * 7 + phase) * 100_003 + i) for i in indices]


class Distiller:
    """Owns the three networks, their optimizers and one training step.

    The networks are built whole, then placed by `distill/parallelize.py`: on `device` (the config's `device`,
    default auto: this rank's GPU if there is one) or, given a DeviceMesh, sharded over it with FSDP2.
    """

    def __init__(self, config: dict, run_dir: Path, reweighter=None, dry_run: bool = False,
                 device: torch.device | None = None, mesh=None) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.family = family_of(config)  # toy | wan: who builds the networks (distill/components.py)
        self.dry_run = dry_run
        self.s = DistillSettings.from_dict(config["train"])
        self.ds = DistributedSettings.from_dict(config.get("distributed"))
        self.device = device if device is not None else resolve_device(config.get("device", "auto"))
        self.dmd = DMDSettings.from_dict(config.get("dmd", {}))
        parts = build_components(config, dry_run, empty=self.lazy_roles())
        self.sources = dict(parts.sources)  # role -> file of each network left on the meta device, read after place
        self.teacher = parts.teacher
        self.teacher.requires_grad_(False).eval()
        self.codec = parts.codec
        self.frame_hw = parts.frame_size  # pixel (height, width)
        self.frame_size = parts.metadata.get("frame_size", parts.frame_size[0])
        self.component_metadata = parts.metadata
        self.critic = parts.critic
        self.generator = parts.generator
        lora = self.s.lora_settings()
        if lora is not None:
            self.generator = add_lora(self.generator, lora, seed=self.s.seed * 2)
            self.critic = add_lora(self.critic, lora, seed=self.s.seed * 2 + 1)
        self.ema = make_ema(self.generator)
        if "generator" in self.sources:
            self.sources["ema"] = self.sources["generator"]  # the EMA starts as the student
        self.text = parts.text
        self.reweighter = reweighter if reweighter is not None else self.build_reweighter(config)
        self.place(mesh)
        self.fill_lazy()
        self.sigmas = denoising_sigmas(self.s.denoising_timesteps, self.dmd.shift).to(self.device)
        self.opt_g = torch.optim.AdamW(
            trainable(self.generator), lr=self.s.lr_generator, betas=self.s.betas, weight_decay=self.s.weight_decay
        )
        self.opt_c = torch.optim.AdamW(
            trainable(self.critic), lr=self.s.lr_critic, betas=self.s.betas, weight_decay=self.s.weight_decay
        )
        self.prompts = parts.prompts
        self.step = 0

    def lazy_roles(self) -> set[str]:
        """The Wan DiTs built on the meta device and read from file after sharding (each rank its own shard).

        Not with LoRA on generator and critic (their adapters must be initialised, not read): those load whole.
        """
        if self.family != "wan" or self.dry_run:
            return set()
        return {"teacher"} if self.s.lora is not None else {"teacher", "critic", "generator"}

    def fill_lazy(self) -> None:
        """Read every network left on the meta device from its file, now that `place` allocated it."""
        for role, source in self.sources.items():
            module = getattr(self, role)
            source.fill_(module.module if isinstance(module, Autocast) else module)
        self.sources = {}

    def plans(self, sharded: bool) -> dict[str, Plan]:
        """How `parallelize` treats each network (README "Several GPUs").

        Generator and critic: the `train` section's checkpointing and compile; bf16 precision under FSDP2 with
        `distributed.mixed_precision: bf16`, or over LoRA's bf16 bases. EMA: never runs with grad, whole-precision
        shards like the generator's. Teacher: frozen, only forwards without grad; `distributed.teacher: offload`
        keeps its shards in host memory.
        """
        s, ds, lora = self.s, self.ds, self.s.lora_settings()
        mixed = "bf16" if sharded and ds.mixed_precision == "bf16" else "fp32"
        low = lora is not None and lora.low_precision
        train = Plan(s.activation_checkpointing, s.activation_checkpointing_every, s.compile,
                     "bf16" if low else mixed, ds.reshard_after_forward)
        return {
            "generator": train, "critic": train,
            "ema": Plan(precision="bf16" if low else "fp32", reshard_after_forward=ds.reshard_after_forward),
            "teacher": Plan(compile=s.compile, precision=mixed, reshard_after_forward=ds.reshard_after_forward,
                            offload=ds.teacher == "offload"),
            "text": Plan(precision=mixed, reshard_after_forward=ds.reshard_after_forward),
        }

    def place(self, mesh=None) -> None:
        """Parallelize every network onto `self.device`, or shard it over `mesh`; frozen helpers follow."""
        plans = self.plans(sharded=mesh is not None)
        self.generator = parallelize(self.generator, plans["generator"], self.device, mesh)
        self.critic = parallelize(self.critic, plans["critic"], self.device, mesh)
        self.ema = parallelize(self.ema, plans["ema"], self.device, mesh)  # the generator's shards, fp32
        if mesh is not None and plans["teacher"].precision == "bf16":
            self.teacher.to(torch.bfloat16)  # frozen: stored in bf16 (half the memory)
        self.teacher = parallelize(self.teacher, plans["teacher"], self.device, mesh)
        if isinstance(self.text, nn.Module) and any(True for _ in self.text.parameters()):
            self.text.requires_grad_(False)
            self.text = parallelize(self.text, plans["text"], self.device, mesh)
        elif self.device.type != "cpu":
            self.text = OnDevice(self.text, self.device)
        for frozen in (self.codec, getattr(self.reweighter, "reward", None)):
            if isinstance(frozen, nn.Module):
                frozen.to(self.device)

    def build_reweighter(self, config: dict) -> StreamR1Reweighter | None:
        """Stream-R1 weights from the config's `reward` and `reweight` sections; None for plain DMD."""
        if not config.get("reweight"):
            return None
        if not config.get("reward"):
            raise ValueError("a `reweight` section needs a `reward` model (e.g. reward: toy-reward)")
        reward = build_reward(config, self.dry_run)
        reward.requires_grad_(False).eval()
        return StreamR1Reweighter(reward, self.codec.decode, ReweightSettings.from_dict(config["reweight"]),
                                  getattr(self.codec, "latent_of_pixel_frame", None))

    # -- data ------------------------------------------------------------------------------

    def latent_shape(self, batch: int) -> tuple[int, int, int, int, int]:
        f = self.codec.space_factor
        latent_frames = getattr(self.codec, "latent_frames", lambda n: n // self.codec.time_factor)(self.s.frames)
        return (batch, self.codec.latent_channels, latent_frames, self.frame_hw[0] // f, self.frame_hw[1] // f)

    def uncond(self, n: int) -> torch.Tensor:
        """The unconditional text input of CFG: the cached negative prompt where the encoder has one, else ""."""
        negative = getattr(self.text, "negative", None)
        return negative(n) if negative is not None else self.text([""] * n)

    def step_prompts(self, step: int) -> tuple[list[str], int]:
        """The global batch's prompts and the rollout's exit step, agreed for the whole step.

        With `prompt_repeats` R, B/R prompts are drawn and each fills R neighbouring slots (one micro-batch).
        """
        g = torch.Generator().manual_seed(self.s.seed * 1_000_003 + step)
        r = self.s.prompt_repeats
        idx = torch.randint(len(self.prompts), (self.s.batch_size // r,), generator=g).repeat_interleave(r)
        return [self.prompts[i] for i in idx], draw_exit_step(len(self.sigmas), g)

    def prefix_chunks(self, step: int) -> int:
        """Long self-rollouts (method.md §2.4): how many chunks the student streams before this step's trained
        window, uniform over the long rollout's window positions, agreed for the whole step (every rank)."""
        if not self.s.long_rollout_frames:
            return 0
        fpc = self.generator.cfg.frames_per_chunk
        latent = getattr(self.codec, "latent_frames", lambda n: n // self.codec.time_factor)
        spare = (latent(self.s.long_rollout_frames) - latent(self.s.frames)) // fpc
        g = torch.Generator().manual_seed((self.s.seed * 1_000_003 + step) * 31 + 18)
        return int(torch.randint(spare + 1, (1,), generator=g))

    def micro_batches(self) -> list[range]:
        m = self.s.micro_batch_size
        return [range(i, i + m) for i in range(0, self.s.batch_size, m)]

    # -- losses ----------------------------------------------------------------------------

    def generator_loss(self, prompts: list[str], exit_step: int, gens: list[torch.Generator],
                       weights: tuple[torch.Tensor, torch.Tensor | None] | None = None, prefix_chunks: int = 0):
        """DMD loss of one micro-batch, scaled to its share of the global batch, plus logs.

        `weights` (w_inter [b], W_intra [b, 1, F, h, w] or None) come from the step's pre-pass
        (`global_weights`); without them a reweighter weighs this micro-batch on its own.
        """
        cond = self.text(prompts)
        x = self_forcing_rollout(self.generator, self.latent_shape(len(prompts)), self.sigmas, cond, exit_step, gens,
                                 prefix_chunks=prefix_chunks)
        g, info = dmd_gradient(x, self.teacher, self.critic, cond, self.uncond(len(prompts)), self.dmd, gens)
        elementwise = dmd_elementwise_loss(x, g)
        w_inter = torch.ones(len(prompts), device=x.device)
        w_intra = torch.ones_like(x[:, :1])
        logs = {"dmd/grad_norm": info["grad_norm"].mean().item(), "dmd/sigma": info["sigma"].mean().item()}
        if weights is not None:
            w_inter = weights[0].to(x.device)
            w_intra = w_intra if weights[1] is None else weights[1].to(x.device)
        elif self.reweighter is not None:
            w_inter, w_intra, rw_logs = self.reweighter(x.detach(), prompts, self.step)
            logs.update(rw_logs)
        per_sample = (w_intra * elementwise).mean(dim=(1, 2, 3, 4))
        loss = (w_inter * per_sample).sum() / self.s.batch_size
        logs["loss/dmd_unweighted"] = elementwise.mean().item()
        return loss, logs

    def needs_pre_pass(self) -> bool:
        """Whether Stream-R1's weights must be normalised over more than one micro-batch (or rank)."""
        return self.reweighter is not None and (len(self.micro_batches()) > 1 or world_size() > 1)

    def global_weights(self, step: int, prompts: list[str], exit_step: int):
        """The pre-pass (method.md §3.5): every micro-batch of this rank rolled out without grad (the same keyed
        noise, so the same samples the loss pass will draw), decoded and scored; the rows of all ranks gathered
        into the global batch; the batch-wide weights computed once on it, as one batch of `batch_size` would.

        Returns (w_inter [B], W_intra [B, 1, F, h, w] or None, logs) of the global batch, by global sample index.
        """
        parts, index = [], []
        for mb in self.micro_batches():
            gens = sample_generators(self.s.seed, step, PHASE_GENERATOR, mb)
            mb_prompts = [prompts[i] for i in mb]
            with torch.no_grad():
                x = self_forcing_rollout(self.generator, self.latent_shape(len(mb)), self.sigmas,
                                         self.text(mb_prompts), exit_step, gens, grad=False,
                                         prefix_chunks=self.prefix_chunks(step))
            parts.append(self.reweighter.measure(x, mb_prompts))
            index.extend(mb)
        rows = [None] * len(prompts)
        for idx, measured in gather_over_ranks((index, Measured.cat(parts))):
            for j, i in enumerate(idx):
                rows[i] = measured.rows(slice(j, j + 1))
        if any(r is None for r in rows):
            raise RuntimeError("the ranks' micro-batches do not cover the global batch; check micro_batches()")
        return self.reweighter.combine(Measured.cat(rows), prompts, self.step)

    def critic_loss(self, prompts: list[str], exit_step: int, gens: list[torch.Generator],
                    prefix_chunks: int = 0) -> torch.Tensor:
        cond = self.text(prompts)
        with torch.no_grad():
            x = self_forcing_rollout(self.generator, self.latent_shape(len(prompts)), self.sigmas, cond, exit_step,
                                     gens, grad=False, prefix_chunks=prefix_chunks)
        return critic_flow_loss(self.critic, x, cond, self.dmd, gens) * len(prompts) / self.s.batch_size

    # -- one step --------------------------------------------------------------------------

    def train_step(self, step: int) -> dict[str, float]:
        prompts, exit_step = self.step_prompts(step)
        prefix = self.prefix_chunks(step)
        logs: dict[str, float] = {"rollout/exit_step": exit_step}
        if self.s.long_rollout_frames:
            logs["rollout/window_start_chunk"] = prefix
        if step % self.s.generator_every == 0:
            self.opt_g.zero_grad(set_to_none=True)
            total, parts = 0.0, []
            pre = self.global_weights(step, prompts, exit_step) if self.needs_pre_pass() else None
            for mb in self.micro_batches():
                gens = sample_generators(self.s.seed, step, PHASE_GENERATOR, mb)
                mb_weights = None
                if pre is not None:  # this micro-batch's rows of the global batch's weights
                    w_inter, w_intra, _ = pre
                    mb_weights = (w_inter[mb.start : mb.stop], None if w_intra is None else w_intra[mb.start : mb.stop])
                loss, mb_logs = self.generator_loss([prompts[i] for i in mb], exit_step, gens, mb_weights, prefix)
                loss.backward()
                total += loss.item()
                parts.append(mb_logs)
            logs["loss/generator"] = total
            logs["grad_norm/generator"] = torch.nn.utils.clip_grad_norm_(
                self.generator.parameters(), self.s.grad_clip
            ).item()
            self.opt_g.step()
            for k in parts[0]:
                logs[k] = float(np.mean([p[k] for p in parts]))
            if pre is not None:
                logs.update(pre[2])  # the pre-pass's weights are of the whole batch: logged once
            decay = self.s.ema_decay if step >= self.s.ema_start else 0.0
            update_ema(self.ema, self.generator, decay)
        self.opt_c.zero_grad(set_to_none=True)
        total = 0.0
        for mb in self.micro_batches():
            gens = sample_generators(self.s.seed, step, PHASE_CRITIC, mb)
            loss = self.critic_loss([prompts[i] for i in mb], exit_step, gens, prefix)
            loss.backward()
            total += loss.item()
        logs["loss/critic"] = total
        logs["grad_norm/critic"] = torch.nn.utils.clip_grad_norm_(self.critic.parameters(), self.s.grad_clip).item()
        self.opt_c.step()
        return logs

    # -- checkpoints -----------------------------------------------------------------------

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"generator": self.generator, "ema": self.ema, "critic": self.critic}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer_generator": self.opt_g, "optimizer_critic": self.opt_c}

    #: whether this process writes files, logs and the progress bar (under torchrun: rank 0 only)
    is_main = True
    progress_label = "distill"

    def _balancer(self):
        return getattr(self.reweighter, "balancer", None)

    def extra_state(self) -> dict:
        """JSON state saved beside the weights: the balancer's window, so a resumed run balances as before."""
        balancer = self._balancer()
        return {"balancer": balancer.state_dict()} if balancer is not None else {}

    def load_extra_state(self, state: dict) -> None:
        if self._balancer() is not None and "balancer" in state:
            self._balancer().load_state_dict(state["balancer"])

    def evaluation_view(self) -> contextlib.AbstractContextManager[bool]:
        """A context in which `self.ema` is the whole student; yields whether this process evaluates it."""
        return contextlib.nullcontext(True)

    def save(self) -> None:
        save_training_state(self.run_dir, self.step, self.modules(), self.optimizers(), self.extra_state())

    def resume(self) -> bool:
        ckpt = latest_checkpoint(self.run_dir)
        if ckpt is None:
            return False
        state = load_training_state(ckpt, self.modules(), self.optimizers())
        self.step = state["step"]
        self.load_extra_state(state)
        log.info("resumed %s at step %d", ckpt, self.step)
        return True

    def student_metadata(self) -> dict:
        return {
            **self.component_metadata,
            "sampler": {"shift": self.dmd.shift, "denoising_timesteps": list(self.s.denoising_timesteps)},
            "step": self.step,
        }

    def export(self) -> Path:
        """Write the student (the EMA weights; LoRA merged into them) as RUN_DIR/student.safetensors for `generate`."""
        path = self.run_dir / "student.safetensors"
        student = merged(self.ema) if is_lora(self.ema) else self.ema
        save_dit(path, student, self.student_metadata())
        return path


def trainable(model: nn.Module) -> list[nn.Parameter]:
    """The parameters an optimizer updates: all of them, or only the adapters over frozen LoRA bases."""
    return [p for p in model.parameters() if p.requires_grad]


class OnDevice:
    """Moves a host-side text encoder's outputs to the training device."""

    def __init__(self, encoder, device: torch.device) -> None:
        self.encoder, self.device = encoder, device

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        return self.encoder(prompts).to(self.device)

    def __getattr__(self, name: str):
        return getattr(self.encoder, name)


def world_size() -> int:
    """Ranks of the initialised process group (1 without one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_over_ranks(obj) -> list:
    """Every rank's `obj` in rank order (collective); [obj] in a single process."""
    if world_size() == 1:
        return [obj]
    out: list = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def distill(config: dict, run_dir: Path, resume: bool = False, reweighter=None, evaluator=None) -> Path:
    """Run (or resume) a distillation in this one process and export the student; returns its path.

    `distill/launch.py`'s `distill` is the entry point: it takes the FSDP2 path under torchrun instead.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_loop(Distiller(config, run_dir, reweighter), resume, evaluator)


def run_loop(d: Distiller, resume: bool, evaluator) -> Path:
    """The training loop of every distillation, one process or the ranks of a torchrun job.

    Resumes from RUN_DIR's latest checkpoint if asked; a toy run without an `evaluator` is judged by
    ToyBench. Every rank steps, evaluates (collectively) and checkpoints; only `d.is_main` writes
    TensorBoard, RUN_DIR/metrics.jsonl (the scalars as JSON lines, for reports) and the progress bar.
    Scalars are logged every `log_every` steps and at every generator step; ToyBench at every evaluation.
    """
    if evaluator is None and getattr(d, "family", "toy") == "toy":  # ToyBench judges toy students only
        from .monitor import evaluate_student as evaluator
    if resume and not d.resume():
        log.warning("no checkpoint in %s; starting a fresh run", d.run_dir)
    s, main = d.s, d.is_main
    writer = metrics = bar = None
    if main:
        writer = SummaryWriter(str(d.run_dir / "tb"))
        metrics = (d.run_dir / "metrics.jsonl").open("a")
        bar = tqdm(total=s.steps, initial=d.step, desc=d.progress_label, dynamic_ncols=True)
    t0, start = time.time(), d.step
    try:
        while d.step < s.steps:
            logs = d.train_step(d.step)
            d.step += 1
            record: dict[str, float] = {}
            if d.step % s.log_every == 0 or d.step == s.steps or "loss/generator" in logs:
                record = {**logs, "time/seconds_per_step": (time.time() - t0) / (d.step - start)}
            if evaluator is not None and (d.step % s.eval_every == 0 or d.step == s.steps):
                with d.evaluation_view() as here:
                    summary = evaluator(d, writer) if here else None
                if summary:
                    record.update({f"toybench/{k}": summary[k] for k in ("vq", "mq", "ta", "total")})
            if main:
                bar.update(1)
                if "loss/critic" in record:
                    for k, v in record.items():
                        if not k.startswith("toybench/"):  # the evaluator writes its own scalars
                            writer.add_scalar(k, v, d.step)
                    bar.set_postfix(critic=f"{record['loss/critic']:.4f}", exit=record["rollout/exit_step"])
                if record:
                    metrics.write(json.dumps({"step": d.step, **record}) + "\n")
                    metrics.flush()
            if d.step % s.checkpoint_every == 0 or d.step == s.steps:
                d.save()
    finally:
        if main:
            bar.close()
            writer.close()
            metrics.close()
    return d.export()


def dry_run(config: dict) -> dict[str, float]:
    """One full training step of a paper-scale config with tiny random weights of the same classes, one process.

    Nothing is downloaded or written outside a temporary directory; returns the step's logs. `launch.dry_run`
    is the entry point (under torchrun it shards the networks with FSDP2 as in a real multi-GPU run).
    """
    with tempfile.TemporaryDirectory() as tmp:
        d = Distiller(dry_run_config(config), Path(tmp), dry_run=True)
        return d.train_step(0)
