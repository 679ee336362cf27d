"""One generation in a worker thread: chunk by chunk, a cancel flag checked between chunks, then an MP4.

A prompt switch requested while it runs (`request_switch`) is taken as the next chunk starts: the sampler asks
for each chunk's prompt then, re-caching with the new text (docs/prompt-switch.md).

The worker knows nothing about the web: it reports through `emit(event)` (called from its own thread)
and `on_finish(status, chunks)`. Events are JSON-able dicts, sent to the page as they are.
"""

from __future__ import annotations

import base64
import logging
import secrets
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..generation.pipeline import VideoPipeline, to_uint8
from ..generation.video_io import write_mp4
from .limits import GenerationRequest, RequestError

log = logging.getLogger(__name__)
PLAYBACK_FPS = 8  # frames per second of the MP4 and of the page's player


class VideoStore:
    """Finished MP4s in one directory under random ids; only the newest `keep` are kept."""

    def __init__(self, keep: int, directory: Path | None = None) -> None:
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="stream-r1-serve-")  # removed with the store
            directory = Path(self._tmp.name)
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self._videos: OrderedDict[str, Path] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, frames: np.ndarray) -> str:
        """Write uint8 frames [T, H, W, 3] as an MP4 and return its id."""
        video_id = secrets.token_hex(8)
        path = self.directory / f"{video_id}.mp4"
        write_mp4(path, frames, fps=PLAYBACK_FPS)
        with self._lock:
            self._videos[video_id] = path
            while len(self._videos) > self.keep:
                _, old = self._videos.popitem(last=False)
                old.unlink(missing_ok=True)
        return video_id

    def path(self, video_id: str) -> Path | None:
        with self._lock:
            return self._videos.get(video_id)


class GenerationJob:
    """Generate one request chunk by chunk; `cancel` stops it before the next chunk starts."""

    def __init__(
        self,
        pipe: VideoPipeline,
        request: GenerationRequest,
        store: VideoStore,
        emit: Callable[[dict], None],
        on_finish: Callable[[str, int], None],
        chunk_delay: float = 0.0,
    ) -> None:
        self.pipe = pipe
        self.request = request
        self.store = store
        self.emit = emit
        self.on_finish = on_finish
        self.chunk_delay = chunk_delay
        self.cancel = threading.Event()
        self.chunks_done = 0
        self.timeline = [{"frame": 0, "prompt": request.prompt}]  # the prompts streamed, as `generate` records
        self._pending: str | None = None
        self._lock = threading.Lock()

    @property
    def frames_per_chunk(self) -> int:
        """Frames per streamed chunk; a bidirectional checkpoint sends the whole clip as one chunk."""
        return self.pipe.frames_per_chunk if self.pipe.model.cfg.causal else self.request.frames

    @property
    def num_chunks(self) -> int:
        return self.request.frames // self.frames_per_chunk

    def request_switch(self, prompt: str) -> None:
        """Switch to a checked `prompt` at the next chunk boundary (a later request replaces an untaken one)."""
        if not self.pipe.model.cfg.causal:
            raise RequestError("this checkpoint is bidirectional: the whole clip is one chunk, so there is no "
                               "chunk boundary to switch the prompt at")
        with self._lock:
            self._pending = prompt

    def _prompt_at(self, k: int) -> list[str]:
        """Chunk k's prompt, asked as it starts; a pending switch is taken here and reported."""
        with self._lock:
            prompt, self._pending = self._pending, None
        if prompt is not None and prompt != self.timeline[-1]["prompt"]:
            frame = k * self.frames_per_chunk
            if frame == 0:  # asked for before the first chunk started: the stream starts with it
                self.timeline.clear()
            self.timeline.append({"frame": frame, "prompt": prompt})
            self.emit({"type": "switch", "index": k, "frame": frame, "prompt": prompt})
        return [self.timeline[-1]["prompt"]]

    def run(self) -> None:
        """Run to the end, to a cancel, or to an error; always ends with one final event and `on_finish`."""
        status = "failed"
        try:
            status = self._generate()
        except Exception as err:  # a failed generation must not take the server down
            log.exception("generation failed for %r", self.request)
            self.emit({"type": "error", "message": f"generation failed on the server: {err}"})
        finally:
            self.on_finish(status, self.chunks_done)

    def _generate(self) -> str:
        req = self.request
        start = time.perf_counter()
        parts: list[np.ndarray] = []
        first_chunk = None
        causal = self.pipe.model.cfg.causal
        stream = self.pipe.stream([req.prompt], req.frames, req.seed, prompt_at=self._prompt_at if causal else None)
        try:
            for index, chunk in enumerate(stream):
                if self.cancel.wait(self.chunk_delay):  # the test-only delay; a cancel cuts it short
                    break
                frames = to_uint8(chunk[0]).numpy()
                parts.append(frames)
                self.chunks_done += 1
                elapsed = time.perf_counter() - start
                first_chunk = elapsed if first_chunk is None else first_chunk
                t, h, w, _ = frames.shape
                self.emit({
                    "type": "chunk", "index": index, "chunks": self.num_chunks, "frames": t, "height": h,
                    "width": w, "seconds": round(elapsed, 4), "rgb": base64.b64encode(frames.tobytes()).decode(),
                })
                if self.cancel.is_set():
                    break
        finally:
            stream.close()  # stops the sampler; no further chunk is computed
        if self.cancel.is_set():
            self.emit({"type": "cancelled", "chunks_done": self.chunks_done})
            return "cancelled"
        if self._pending is not None:
            self.emit({"type": "switch_refused", "message": "the switch came after the last chunk had started"})
        video = np.concatenate(parts)
        seconds = time.perf_counter() - start
        video_id = self.store.add(video)
        self.emit({
            "type": "done", "video_id": video_id, "mp4": f"/videos/{video_id}.mp4", "frames": int(video.shape[0]),
            "seconds": round(seconds, 4), "first_chunk_seconds": round(first_chunk, 4),
            "fps": round(video.shape[0] / seconds, 2), "timeline": self.timeline,
        })
        return "completed"
