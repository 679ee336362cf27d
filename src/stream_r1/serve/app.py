"""The FastAPI app: the page, the WebSocket that streams chunks, an HTTP endpoint, and MP4 downloads.

WebSocket protocol (/ws/generate): the client sends one JSON request {prompt, frames, seed}; the
server answers `start`, one `chunk` per generated chunk (base64 RGB frames), then `done` (with the
MP4's address), `cancelled` or `error`, and closes. A refused request gets `error` and close code 1008
(bad request) or 1013 (busy). The client may send {"type": "cancel"}; disconnecting also cancels. It may send
{"type": "switch", "prompt": "..."} while the stream runs: the worker takes it as the next chunk starts and
the server answers `switch` {index, frame, prompt} before that chunk (or `switch_refused` {message}); `done`
carries the `timeline` streamed.
POST /api/generate takes the same JSON and returns the MP4; it runs to the end (bounded by max_frames).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from ..generation.pipeline import VideoPipeline
from ..toyworld.prompts import BACKGROUNDS, COLOURS, DIRECTIONS, SHAPES, SPEEDS
from ..toyworld.render import NUM_FRAMES
from .limits import WS_SERVER_ERROR, RequestError, ServeLimits, Slots, check_prompt, check_request
from .worker import PLAYBACK_FPS, GenerationJob, VideoStore

log = logging.getLogger(__name__)
CLOSE_CODES = {"done": 1000, "cancelled": 1000, "error": WS_SERVER_ERROR}
REQUEST_TIMEOUT = 60  # seconds a WebSocket may stay open before sending its request


class ServerState:
    """What the routes share: the pipeline, the limits, the generation slots, the videos and counters."""

    def __init__(self, pipe: VideoPipeline, limits: ServeLimits, checkpoint: str, videos_dir: Path | None) -> None:
        self.pipe = pipe
        self.limits = limits
        self.checkpoint = checkpoint
        self.slots = Slots(limits.max_concurrent)
        self.store = VideoStore(limits.keep_videos, videos_dir)
        self.counts = {"completed": 0, "cancelled": 0, "failed": 0, "chunks": 0}
        self._lock = threading.Lock()

    def start_job(self, data: object, emit) -> GenerationJob:
        """Check a request and take a slot (RequestError if either fails); the job frees the slot when it ends."""
        request = check_request(data, self.limits, self.pipe.frames_per_chunk)
        self.slots.acquire()
        return GenerationJob(self.pipe, request, self.store, emit, self._finish, self.limits.chunk_delay)

    def _finish(self, status: str, chunks: int) -> None:
        with self._lock:
            self.counts[status] += 1
            self.counts["chunks"] += chunks
        self.slots.release()

    def status(self) -> dict:
        with self._lock:
            return {"active": self.slots.active, "max_concurrent": self.limits.max_concurrent, **self.counts}

    def info(self) -> dict:
        fpc = self.pipe.frames_per_chunk
        return {
            "checkpoint": self.checkpoint,
            "causal": self.pipe.model.cfg.causal,
            "device": str(getattr(self.pipe, "device", "cpu")),
            "frames_per_chunk": fpc,
            "default_frames": min(self.limits.max_frames // fpc, -(-NUM_FRAMES // fpc)) * fpc,
            "max_frames": self.limits.max_frames,
            "max_prompt_chars": self.limits.max_prompt_chars,
            "max_concurrent": self.limits.max_concurrent,
            "frame_size": self.pipe.frame_size,
            "playback_fps": PLAYBACK_FPS,
            "vocabulary": {
                "colour": list(COLOURS), "shape": list(SHAPES), "direction": list(DIRECTIONS),
                "speed": [s for s in SPEEDS if s], "background": list(BACKGROUNDS),
            },
        }


def create_app(
    pipe: VideoPipeline, limits: ServeLimits | None = None, checkpoint: str = "", videos_dir: Path | None = None
) -> FastAPI:
    """The streaming app around one loaded pipeline."""
    state = ServerState(pipe, limits or ServeLimits(), checkpoint, videos_dir)
    page = (files(__package__) / "page.html").read_text(encoding="utf-8")
    app = FastAPI(title="stream-r1", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.serve = state

    @app.exception_handler(RequestError)
    async def refused(_: Request, err: RequestError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=err.status)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return page

    @app.get("/api/info")
    async def info() -> dict:
        return state.info()

    @app.get("/api/status")
    async def status() -> dict:
        return state.status()

    @app.get("/videos/{video_id}.mp4")
    async def video(video_id: str) -> FileResponse:
        path = state.store.path(video_id)
        if path is None:
            raise RequestError(f"no video {video_id!r}: unknown, or dropped after newer videos; generate it again", 404)
        return FileResponse(path, media_type="video/mp4", filename=f"stream-r1-{video_id}.mp4")

    @app.post("/api/generate")
    async def generate(request: Request) -> FileResponse:
        """The whole video as one MP4 (no streaming); the same limits and messages as the WebSocket."""
        events: list[dict] = []
        job = state.start_job(_decode(await request.body()), events.append)
        await run_in_threadpool(job.run)
        if events[-1]["type"] != "done":
            raise RequestError(events[-1].get("message", "generation did not finish"), 500)
        return FileResponse(state.store.path(events[-1]["video_id"]), media_type="video/mp4")

    @app.websocket("/ws/generate")
    async def ws_generate(ws: WebSocket) -> None:
        await ws.accept()
        try:
            text = await asyncio.wait_for(ws.receive_text(), REQUEST_TIMEOUT)
        except (WebSocketDisconnect, RuntimeError, KeyError):  # gone, or sent bytes
            return
        except asyncio.TimeoutError:
            await _send_and_close(ws, {"type": "error", "message": f"no request within {REQUEST_TIMEOUT} s"}, 1008)
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict] = asyncio.Queue()
        try:
            job = state.start_job(_decode(text), lambda event: _put_threadsafe(loop, queue, event))
        except RequestError as err:
            await _send_and_close(ws, {"type": "error", "message": str(err), "status": err.status}, err.ws_code)
            return
        threading.Thread(target=job.run, name="stream-r1-generate", daemon=True).start()
        def switch(prompt: object) -> None:
            try:
                job.request_switch(check_prompt(prompt, state.limits))
            except RequestError as err:
                queue.put_nowait({"type": "switch_refused", "message": str(err)})

        watcher = asyncio.create_task(_cancel_on_client(ws, job.cancel, switch))
        try:
            req = job.request
            await ws.send_json({"type": "start", "prompt": req.prompt, "frames": req.frames, "seed": req.seed,
                                "chunks": job.num_chunks, "frames_per_chunk": job.frames_per_chunk})
            while True:
                event = await queue.get()
                if event["type"] in CLOSE_CODES:
                    await _send_and_close(ws, event, CLOSE_CODES[event["type"]])
                    break
                await ws.send_json(event)
        except (WebSocketDisconnect, RuntimeError, OSError):
            log.info("client left; generation cancelled")
        finally:
            job.cancel.set()
            watcher.cancel()

    return app


def _decode(text: str | bytes) -> object:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RequestError(f'the request is not JSON ({err.msg}); send {{"prompt": "...", "frames": 12}}') from err


def _put_threadsafe(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue, event: dict) -> None:
    try:
        loop.call_soon_threadsafe(queue.put_nowait, event)
    except RuntimeError:  # the event loop has closed: the server is shutting down
        pass


async def _send_and_close(ws: WebSocket, event: dict, code: int) -> None:
    try:
        await ws.send_json(event)
        await ws.close(code=code, reason=event.get("message", "")[:120])
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass


async def _cancel_on_client(ws: WebSocket, cancel: threading.Event, switch) -> None:
    """Set `cancel` when the client disconnects or sends {"type": "cancel"}; pass {"type": "switch"} prompts on."""
    try:
        while not cancel.is_set():
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            try:
                data = json.loads(message.get("text") or "{}")
                kind = data.get("type")
            except (json.JSONDecodeError, AttributeError):
                continue
            if kind == "cancel":
                break
            if kind == "switch":
                switch(data.get("prompt"))
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass
    finally:
        cancel.set()

