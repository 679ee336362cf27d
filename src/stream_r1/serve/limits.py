"""Request limits of the streaming server: what a request may ask for and how many may run at once.

Every refusal is a RequestError carrying a one-line message for the page, the HTTP status for the
HTTP endpoint and the close code for the WebSocket, so both transports report the same problem.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from ..toyworld.prompts import PromptError, parse_prompt

MAX_SEED = 2**31 - 1  # seeds travel through JavaScript numbers; keep them exact
WS_POLICY = 1008  # WebSocket close code: the request broke a rule
WS_TRY_AGAIN = 1013  # WebSocket close code: the server is busy, try again later
WS_SERVER_ERROR = 1011  # WebSocket close code: generation failed on the server


class RequestError(ValueError):
    """A request the server refuses; `status` is the HTTP status and `ws_code` the WebSocket close code."""

    def __init__(self, message: str, status: int = 400, ws_code: int = WS_POLICY) -> None:
        super().__init__(message)
        self.status = status
        self.ws_code = ws_code


@dataclass(frozen=True)
class ServeLimits:
    """Bounds of one server. `chunk_delay` slows every chunk (tests and demos only)."""

    max_prompt_chars: int = 200
    max_frames: int = 96
    max_concurrent: int = 2
    keep_videos: int = 16  # finished MP4s kept for download, oldest dropped first
    chunk_delay: float = 0.0

    def __post_init__(self) -> None:
        for name in ("max_prompt_chars", "max_frames", "max_concurrent", "keep_videos"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1")
        if self.chunk_delay < 0:
            raise ValueError(f"chunk_delay={self.chunk_delay} must not be negative")


@dataclass(frozen=True)
class GenerationRequest:
    """One checked request: a prompt in the toy grammar, a whole number of chunks, a seed."""

    prompt: str
    frames: int
    seed: int


def check_request(data: object, limits: ServeLimits, frames_per_chunk: int) -> GenerationRequest:
    """Validate a decoded JSON request {prompt, frames, seed}; raise RequestError naming the problem."""
    if not isinstance(data, dict):
        raise RequestError('send a JSON object like {"prompt": "...", "frames": 12, "seed": 0}')
    prompt, frames, seed = data.get("prompt"), data.get("frames"), data.get("seed", 0)
    prompt = check_prompt(prompt, limits)
    if not _is_int(frames) or frames < 1:
        raise RequestError(f"frames={frames!r} is not a positive whole number; use a multiple of {frames_per_chunk}")
    if frames > limits.max_frames:
        raise RequestError(f"{frames} frames is over this server's limit of {limits.max_frames}; ask for fewer")
    if frames % frames_per_chunk:
        raise RequestError(f"{frames} frames is not a whole number of chunks; use a multiple of {frames_per_chunk}")
    if not _is_int(seed) or not 0 <= seed <= MAX_SEED:
        raise RequestError(f"seed={seed!r} must be a whole number from 0 to {MAX_SEED}")
    return GenerationRequest(prompt, int(frames), int(seed))


def check_prompt(prompt: object, limits: ServeLimits) -> str:
    """A prompt text within the length limit and the toy grammar (stripped); RequestError naming the problem."""
    if not isinstance(prompt, str):
        raise RequestError("the request has no prompt text; type a prompt")
    if len(prompt) > limits.max_prompt_chars:
        raise RequestError(
            f"prompt is {len(prompt)} characters, over the limit of {limits.max_prompt_chars}; shorten it"
        )
    try:
        parse_prompt(prompt)
    except PromptError as err:
        raise RequestError(str(err)) from err
    return prompt.strip()


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Slots:
    """At most `limit` generations at once; a request over the limit is refused at once, never queued."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            if self.active >= self.limit:
                raise RequestError(
                    f"the server is busy with {self.active} generations (limit {self.limit}); "
                    "try again when one finishes",
                    status=429,
                    ws_code=WS_TRY_AGAIN,
                )
            self.active += 1

    def release(self) -> None:
        with self._lock:
            if self.active <= 0:
                raise RuntimeError("released a generation slot that was not held")
            self.active -= 1
