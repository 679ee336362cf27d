"""Bradley-Terry training of the toy reward model on clean-vs-degraded pairs, one family per axis.

Per step and prompt: a clean video and, for each axis, a degraded copy from that axis' family (toyworld.degrade)
at a random strength; loss -log σ(r_a(clean) - r_a(degraded)) on axis a's head. The TA head also sees
wrong-prompt pairs: the clean video with its own prompt vs with a prompt one attribute away. Optionally
("graded" pairs) the same corruption draw at a higher strength must score lower still, so scores order
clean > mildly > strongly degraded rather than only clean > degraded. Batches come from a
generator seeded by (seed, step), so a resumed run sees exactly the batches of an uninterrupted one. At the end the
z-score statistics are measured on training-split videos and the judge is scored on held-out-split pairs.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from ..runstate.train_state import latest_checkpoint, load_training_state, save_training_state
from ..toyworld.degrade import DEGRADATIONS
from ..toyworld.prompts import split_prompts
from ..toyworld.render import render_spec, sample_spec
from .base import AXES
from .pairs import PAIR_KINDS, PairBatch, batch_for_step, degrade, make_pairs
from .toy import ToyRewardConfig, ToyRewardModel, num_parameters, save_toy_reward

log = logging.getLogger(__name__)

def pair_margins(model: ToyRewardModel, batch: PairBatch) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """r(preferred) - r(rejected) per pair kind (graded ones as "<axis>_graded"), and every raw score."""
    p = len(batch.prompts)
    groups = [batch.clean, *(batch.degraded[a] for a in AXES)]
    if batch.stronger is not None:
        groups += [batch.stronger[a] for a in AXES]
    videos = torch.cat(groups)
    feats = model.video_features(videos)
    text = model.text_features(batch.prompts, videos.device)
    raw = model.heads(feats, text.repeat(len(groups), 1))
    wrong = model.ta_score(feats[:p], model.text_features(batch.wrong_prompts, videos.device))

    def group(axis: str, g: int) -> torch.Tensor:
        return raw[axis][g * p : (g + 1) * p]

    margins = {a: group(a, 0) - group(a, i + 1) for i, a in enumerate(AXES)}
    margins["ta_prompt"] = group("ta", 0) - wrong
    if batch.stronger is not None:
        for i, a in enumerate(AXES):
            margins[f"{a}_graded"] = group(a, i + 1) - group(a, i + 1 + len(AXES))
    return margins, torch.cat([*raw.values(), wrong])


def lr_at(step: int, tcfg: dict) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < tcfg["warmup_steps"]:
        return tcfg["lr"] * (step + 1) / tcfg["warmup_steps"]
    progress = (step - tcfg["warmup_steps"]) / max(1, tcfg["steps"] - tcfg["warmup_steps"])
    return tcfg["lr"] * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, progress))))


@torch.no_grad()
def raw_in_chunks(model: ToyRewardModel, videos: torch.Tensor, prompts: list[str], chunk: int = 64) -> dict:
    """Raw scores of many videos without building a graph."""
    parts = [model.raw_scores(videos[i : i + chunk], prompts[i : i + chunk]) for i in range(0, len(prompts), chunk)]
    return {a: torch.cat([p[a] for p in parts]) for a in AXES}


@torch.no_grad()
def fit_statistics(model: ToyRewardModel, seed: int, videos: int,
                   exclude_families: tuple[str, ...] = ()) -> tuple[dict[str, float], dict[str, float]]:
    """Per-axis mean/std of raw scores over a fixed mix of clean and degraded training-split videos."""
    gen = torch.Generator().manual_seed(seed)
    train = split_prompts("train")
    attrs = [train[i] for i in torch.randint(len(train), (videos,), generator=gen).tolist()]
    batch = make_pairs(attrs, gen, (0.0, 1.0), exclude_families=exclude_families)
    pool = torch.cat([batch.clean, *(batch.degraded[a] for a in AXES)])
    raw = raw_in_chunks(model, pool, batch.prompts * (len(AXES) + 1))
    return {a: float(raw[a].mean()) for a in AXES}, {a: float(raw[a].std().clamp_min(1e-6)) for a in AXES}


@torch.no_grad()
def evaluate_pairs(model: ToyRewardModel, split: str, seed: int, pairs_per_axis: int,
                   strength: tuple[float, float]) -> dict:
    """Pairwise accuracy per axis (and per family) on fresh pairs of a split; families are balanced."""
    gen = torch.Generator().manual_seed(seed)
    pool = split_prompts(split)
    attrs = [pool[i] for i in torch.randint(len(pool), (pairs_per_axis,), generator=gen).tolist()]
    batch = make_pairs(attrs, gen, strength, allowed=None, cycle_families=True)  # wrong prompts: any combo
    raw_clean = raw_in_chunks(model, batch.clean, batch.prompts)
    result: dict = {"accuracy": {}, "family_accuracy": {}, "pairs": {}, "noop_pairs_dropped": {}}
    for axis in AXES:
        ok = batch.valid(axis)
        wins = raw_clean[axis] > raw_in_chunks(model, batch.degraded[axis], batch.prompts)[axis]
        result["accuracy"][axis] = float(wins[ok].float().mean())
        result["pairs"][axis] = int(ok.sum())
        result["noop_pairs_dropped"][axis] = int((~ok).sum())
        for family in DEGRADATIONS[axis]:
            sel = ok & torch.tensor([f == family for f in batch.families[axis]])
            result["family_accuracy"][f"{axis}/{family}"] = float(wins[sel].float().mean())
    wrong = raw_in_chunks(model, batch.clean, batch.wrong_prompts)["ta"]
    result["accuracy"]["ta_prompt"] = float((raw_clean["ta"] > wrong).float().mean())
    result["pairs"]["ta_prompt"] = pairs_per_axis
    return result


@torch.no_grad()
def ordering_check(model: ToyRewardModel, split: str, seed: int, videos: int,
                   strengths: tuple[float, ...] = (0.0, 0.3, 0.6, 1.0)) -> dict:
    """Mean z-score per axis at growing strength (one corruption draw, scaled) and how often it falls monotonically."""
    gen = torch.Generator().manual_seed(seed)
    pool = split_prompts(split)
    attrs = [pool[i] for i in torch.randint(len(pool), (videos,), generator=gen).tolist()]
    specs = [sample_spec(a, gen) for a in attrs]
    clean = [render_spec(s) for s in specs]
    prompts = [a.text for a in attrs]
    out: dict = {"strengths": list(strengths), "mean_z": {}, "monotone_fraction": {}}
    for axis in AXES:
        names = list(DEGRADATIONS[axis])
        seeds = torch.randint(2**62, (videos,), generator=gen).tolist()
        levels = []
        for s in strengths:
            vids = torch.stack([
                degrade(axis, names[i % len(names)], spec, video, s, torch.Generator().manual_seed(seeds[i]))
                for i, (spec, video) in enumerate(zip(specs, clean, strict=True))
            ])
            z = (raw_in_chunks(model, vids, prompts)[axis] - model.z_mean[AXES.index(axis)]) / model.z_std[
                AXES.index(axis)]
            levels.append(z)
        stacked = torch.stack(levels, dim=1)  # [N, S]
        out["mean_z"][axis] = [round(float(v), 3) for v in stacked.mean(0)]
        out["monotone_fraction"][axis] = float((stacked[:, :-1] > stacked[:, 1:]).all(dim=1).float().mean())
    return out


def train_reward(config: dict, out: Path, resume: bool = False) -> Path:
    """Train the toy reward model; writes out/reward.safetensors and out/metrics.json and returns the weights path."""
    out = Path(out)
    tcfg = config["train"]
    excluded = tuple(tcfg.get("exclude_families", ()))
    known = {name for families in DEGRADATIONS.values() for name in families}
    if set(excluded) - known:  # checked before any model, anchor bank or checkpoint is touched
        raise ValueError(f"train.exclude_families names {sorted(set(excluded) - known)}, which is no degradation "
                         f"family; choose from {sorted(known)}")
    model_cfg = ToyRewardConfig.from_dict(config.get("model", {}))
    torch.manual_seed(tcfg["seed"])
    model = ToyRewardModel(model_cfg)
    if tcfg.get("init_from"):  # fine-tuning: start from a trained judge (its config must match model:)
        from .toy import load_toy_reward

        init = load_toy_reward(tcfg["init_from"])
        if init.cfg.to_dict() != model_cfg.to_dict():
            raise ValueError(f"train.init_from {tcfg['init_from']} has another model config than model:; copy its "
                             "model section into this config")
        model.load_state_dict(init.state_dict())
    anchors = tcfg.get("anchors")
    if anchors:
        from .anchors import anchor_pairs, concat_pairs, load_or_build_anchor_bank, preference_pairs

        bank, bank_prompts, preferred = load_or_build_anchor_bank(out, anchors, anchors.get("frames", 12))
    prefs = None
    if tcfg.get("preferences"):  # annotated pairs of generated videos (reward/preference.py)
        from .preference import (
            PreferenceSettings,
            annotator_agreement,
            draw_training_pairs,
            load_or_build_preferences,
            preference_loss,
        )

        prefs = PreferenceSettings.from_dict(tcfg["preferences"])
        pref_set = load_or_build_preferences(out, prefs)
    opt = torch.optim.AdamW(model.parameters(), lr=tcfg["lr"], betas=tuple(tcfg["betas"]),
                            weight_decay=tcfg["weight_decay"])
    step = 0
    ckpt = latest_checkpoint(out) if resume else None
    if resume and ckpt is None:
        log.warning("no checkpoint in %s; starting a fresh run", out)
    if ckpt is not None:
        step = load_training_state(ckpt, {"model": model}, {"optimizer": opt})["step"]
        log.info("resumed from %s at step %d", ckpt, step)
    strength = tuple(tcfg["strength"])
    writer = SummaryWriter(str(out / "tb"))
    total = tcfg["steps"]
    bar = tqdm(total=total, initial=step, desc="train reward", dynamic_ncols=True)
    graded = bool(tcfg.get("graded_weight", 0))
    kinds = [*PAIR_KINDS, *(f"{a}_graded" for a in AXES if graded)]
    pref_keys = [f"{m}_pref_{a}" for m in ("loss", "acc") for a in AXES] if prefs else []
    window = {k: [] for k in ("loss", *(f"loss_{k}" for k in kinds), *(f"acc_{k}" for k in kinds), *pref_keys)}
    t0, start_step = time.time(), step
    model.train()
    while step < total:
        lr = lr_at(step, tcfg)
        for g in opt.param_groups:
            g["lr"] = lr
        batch = batch_for_step(tcfg["seed"], step, tcfg["pairs_per_step"], strength, graded,
                               tcfg.get("family_weights"), excluded)
        if anchors:  # student-anchored pairs (reward/anchors.py), from their own (seed, step) stream
            gen = torch.Generator().manual_seed(anchors["seed"] * 1_000_003 + step)
            if anchors.get("per_step"):
                batch = concat_pairs(batch, anchor_pairs(bank, bank_prompts, anchors["per_step"], gen, strength,
                                                         graded, tcfg.get("family_weights")))
            if preferred is not None:
                batch = concat_pairs(batch, preference_pairs(bank, preferred, bank_prompts,
                                                             anchors["preferred_per_step"], gen))
        margins, raw = pair_margins(model, batch)
        weights = {k: torch.ones_like(m) for k, m in margins.items()}
        weights.update({a: batch.valid(a).float() for a in AXES})  # no-op "degradations" make no pair
        if graded:  # near-equal strengths make no pair
            weights.update({f"{a}_graded": (batch.gaps[a] >= tcfg["graded_min_gap"]).float() for a in AXES})
        losses = {k: (F.softplus(tcfg["margin"] - m) * weights[k]).sum() / weights[k].sum().clamp_min(1)
                  for k, m in margins.items()}
        loss = sum(losses[k] for k in PAIR_KINDS) + tcfg["score_reg"] * raw.pow(2).mean()
        if graded:
            loss = loss + tcfg["graded_weight"] * sum(losses[f"{a}_graded"] for a in AXES)
        if prefs:
            pref_losses, pref_acc = preference_loss(model, pref_set,
                                                    draw_training_pairs(pref_set, prefs.per_step, prefs.seed, step))
            loss = loss + prefs.weight * sum(pref_losses.values())
            for a in AXES:
                window[f"loss_pref_{a}"].append(pref_losses[a].item())
                window[f"acc_pref_{a}"].append(pref_acc[a])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg["grad_clip"])
        opt.step()
        step += 1
        bar.update(1)
        window["loss"].append(loss.item())
        for k in kinds:
            window[f"loss_{k}"].append(losses[k].item())
            if weights[k].sum() > 0:
                window[f"acc_{k}"].append(float(((margins[k] > 0).float() * weights[k]).sum() / weights[k].sum()))
        if step % tcfg["log_every"] == 0 or step == total:
            means = {k: sum(v) / len(v) for k, v in window.items() if v}
            for k, v in means.items():
                writer.add_scalar(f"reward/{k}", v, step)
            writer.add_scalar("reward/lr", lr, step)
            bar.set_postfix(loss=f"{means['loss']:.3f}", **{k: f"{means[f'acc_{k}']:.2f}" for k in PAIR_KINDS},
                            it_s=f"{(step - start_step) / max(time.time() - t0, 1e-9):.2f}")
            window = {k: [] for k in window}
        if step % tcfg["checkpoint_every"] == 0 or step == total:
            save_training_state(out, step, {"model": model}, {"optimizer": opt}, {})
    bar.close()
    model.eval()
    mean, std = fit_statistics(model, tcfg["stats_seed"], tcfg["stats_videos"], excluded)
    model.set_statistics(mean, std)
    strength_eval = tuple(tcfg["eval_strength"])
    heldout = evaluate_pairs(model, "heldout", tcfg["eval_seed"], tcfg["eval_pairs"], strength_eval)
    train_acc = evaluate_pairs(model, "train", tcfg["eval_seed"] + 1, tcfg["eval_pairs"], strength_eval)
    ordering = ordering_check(model, "heldout", tcfg["eval_seed"] + 2, tcfg["eval_pairs"] // 2)
    for k, v in heldout["accuracy"].items():
        writer.add_scalar(f"reward_eval/heldout_acc_{k}", v, step)
    writer.close()
    metrics = {
        "heldout_accuracy": heldout["accuracy"],
        "heldout_family_accuracy": heldout["family_accuracy"],
        "heldout_pairs": heldout["pairs"],
        "heldout_noop_pairs_dropped": heldout["noop_pairs_dropped"],
        "train_split_accuracy": train_acc["accuracy"],
        "ordering_heldout": ordering,
        "eval_strength": list(strength_eval),
        "zscore": {"mean": mean, "std": std},
        "steps": step,
        "parameters": num_parameters(model),
        "seconds_this_run": round(time.time() - t0, 1),
        **({"annotator_agreement_heldback": annotator_agreement(model, pref_set),
            "preference_pairs_labelled": {a: int((v >= 0).sum()) for a, v in pref_set.labels.items()}}
           if prefs else {}),
        "config": config,
    }
    weights = out / "reward.safetensors"
    save_toy_reward(weights, model, {"step": step, "heldout_accuracy": heldout["accuracy"]})
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    log.info("held-out pairwise accuracy: %s", heldout["accuracy"])
    return weights
