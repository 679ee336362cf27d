"""One forward call, eager vs `torch.compile`, student chunk vs teacher clip (not a test).

An upper bound on what compiling could do for the batch-1 speed-up: the student's call here is one
3-frame chunk without KV-cache context (less work than a real streamed call), the teacher's is its
whole 12-frame clip with the CFG pair batched. A video is 19 student calls against 25 teacher calls.

    OMP_NUM_THREADS=1 python benchmarks/compiled_call.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from stream_r1.generation.pipeline import VideoPipeline

STUDENT_CALLS, TEACHER_CALLS = 19, 25  # per 12-frame video: 4 chunks x 4 steps + 3 cache writes; 25 Euler steps


def ms_per_call(fn: Callable[[], torch.Tensor], calls: int = 30) -> float:
    """Milliseconds per call after three warm-up calls (the first compiled call compiles)."""
    with torch.inference_mode():
        for _ in range(3):
            fn()
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - start) / calls * 1000


def main() -> None:
    torch.set_num_threads(1)
    student = VideoPipeline.from_checkpoint("toy-dmd").model.eval()
    teacher = VideoPipeline.from_checkpoint("toy-teacher").model.eval()
    chunk, clip = torch.randn(1, 3, 3, 16, 16), torch.randn(2, 3, 12, 16, 16)
    t1, t2 = torch.full((1,), 500.0), torch.full((2,), 500.0)
    text1, text2 = torch.randn(1, 10, 32), torch.randn(2, 10, 32)
    for label, s_model, t_model in (
        ("eager", student, teacher),
        ("compiled", torch.compile(student, dynamic=False), torch.compile(teacher, dynamic=False)),
    ):
        s_ms = ms_per_call(lambda m=s_model: m(chunk, t1, text1))
        t_ms = ms_per_call(lambda m=t_model: m(clip, t2, text2), calls=10)
        ratio = TEACHER_CALLS * t_ms / (STUDENT_CALLS * s_ms)
        print(f"{label}: student chunk call {s_ms:.2f} ms, teacher call {t_ms:.2f} ms, per-video ratio {ratio:.1f}x")


if __name__ == "__main__":
    main()
