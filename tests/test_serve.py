"""`stream-r1 serve` without a browser: streaming order, limits and errors, cancel on disconnect."""

import base64
import io
import json
import socket
import time

import imageio.v3 as iio
import numpy as np
import pytest
import torch

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e '.[serve]'")

from fastapi.testclient import TestClient  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

from stream_r1.cli import main  # noqa: E402
from stream_r1.generation.pipeline import VideoPipeline, to_uint8  # noqa: E402
from stream_r1.models.dit import DiT  # noqa: E402
from stream_r1.models.dit_io import save_dit  # noqa: E402
from stream_r1.serve import ServeLimits  # noqa: E402
from stream_r1.serve import server as serve_server  # noqa: E402
from stream_r1.serve.app import create_app  # noqa: E402

from .conftest import randomized, tiny_config  # noqa: E402

PROMPT = "a red circle moving left on a black background"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny randomly initialised causal student (3 frames per chunk), so tests need no shipped weights."""
    path = tmp_path_factory.mktemp("ckpt") / "student.safetensors"
    model = randomized(DiT(tiny_config(causal=True)))
    save_dit(path, model, {"codec": {"factor": 1}, "sampler": {"shift": 3.0, "denoising_timesteps": [1000, 500]}})
    return path


@pytest.fixture(scope="module")
def pipe(ckpt):
    return VideoPipeline.from_checkpoint(ckpt)


def client_for(pipe, tmp_path, **limits) -> TestClient:
    return TestClient(create_app(pipe, ServeLimits(**limits), checkpoint="tiny", videos_dir=tmp_path / "videos"))


def frames_of(event: dict) -> np.ndarray:
    raw = np.frombuffer(base64.b64decode(event["rgb"]), np.uint8)
    return raw.reshape(event["frames"], event["height"], event["width"], 3)


def receive_all(ws) -> tuple[list[dict], int]:
    """Every message until the server closes; returns them and the close code."""
    events = []
    while True:
        try:
            events.append(ws.receive_json())
        except WebSocketDisconnect as closed:
            return events, closed.code


def wait_idle(client: TestClient, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while (status := client.get("/api/status").json())["active"]:
        assert time.monotonic() < deadline, f"generations still running after {timeout} s: {status}"
        time.sleep(0.02)
    return status


def test_page_and_info(pipe, tmp_path):
    client = client_for(pipe, tmp_path, max_frames=30)
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text and "/ws/generate" in page.text
    info = client.get("/api/info").json()
    assert info["frames_per_chunk"] == 3 and info["max_frames"] == 30 and info["default_frames"] == 12
    assert "red" in info["vocabulary"]["colour"] and info["causal"] is True


def test_streamed_frames_are_the_pipelines_and_the_mp4_downloads(pipe, tmp_path):
    client = client_for(pipe, tmp_path)
    with client.websocket_connect("/ws/generate") as ws:
        ws.send_json({"prompt": PROMPT, "frames": 9, "seed": 4})
        events, code = receive_all(ws)
    assert code == 1000
    assert [e["type"] for e in events] == ["start", "chunk", "chunk", "chunk", "done"]
    assert [e["index"] for e in events[1:4]] == [0, 1, 2]
    streamed = np.concatenate([frames_of(e) for e in events[1:4]])
    expected = to_uint8(pipe.generate([PROMPT], frames=9, seed=4)[0]).numpy()
    assert np.array_equal(streamed, expected)
    done = events[-1]
    assert done["frames"] == 9 and done["first_chunk_seconds"] <= done["seconds"]
    video = client.get(done["mp4"])
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert iio.imread(io.BytesIO(video.content), extension=".mp4").shape[0] == 9
    assert client.get("/videos/0123456789abcdef.mp4").status_code == 404


def test_chunks_arrive_before_the_last_is_generated(pipe, tmp_path):
    """With each chunk slowed by `delay`, chunk 1 must reach the client well before the last chunk does."""
    delay = 0.2
    client = client_for(pipe, tmp_path, chunk_delay=delay)
    arrivals = []
    with client.websocket_connect("/ws/generate") as ws:
        ws.send_json({"prompt": PROMPT, "frames": 12, "seed": 0})
        assert ws.receive_json()["type"] == "start"
        for _ in range(4):
            assert ws.receive_json()["type"] == "chunk"
            arrivals.append(time.monotonic())
        assert ws.receive_json()["type"] == "done"
    assert arrivals[1] < arrivals[-1] - delay  # a buffered (non-streaming) server sends them all at once


BAD_REQUESTS = [
    ({"prompt": PROMPT + " and" * 60, "frames": 6}, "over the limit of 200"),
    ({"prompt": "a purple circle moving left on a black background", "frames": 6}, "unknown word"),
    ({"prompt": "a red circle moving left", "frames": 6}, "not in the toy form"),
    ({"prompt": PROMPT, "frames": 99}, "over this server's limit of 30"),
    ({"prompt": PROMPT, "frames": 7}, "whole number of chunks"),
    ({"prompt": PROMPT, "frames": "six"}, "not a positive whole number"),
    ({"prompt": PROMPT, "frames": 6, "seed": -1}, "seed=-1"),
    ({"frames": 6}, "no prompt"),
    ("not json {", "not JSON"),
]


def test_bad_requests_get_a_message_and_an_error_and_the_server_keeps_serving(pipe, tmp_path):
    client = client_for(pipe, tmp_path, max_frames=30)
    for request, message in BAD_REQUESTS:
        body = request if isinstance(request, str) else json.dumps(request)
        with client.websocket_connect("/ws/generate") as ws:
            ws.send_text(body)
            events, code = receive_all(ws)
        assert code == 1008, request
        assert [e["type"] for e in events] == ["error"] and message in events[0]["message"], (request, events)
        assert len(events[0]["message"].splitlines()) == 1
        http = client.post("/api/generate", content=body)
        assert http.status_code == 400 and message in http.json()["detail"]
    assert client.get("/api/status").json()["active"] == 0
    good = client.post("/api/generate", json={"prompt": PROMPT, "frames": 6, "seed": 1})
    assert good.status_code == 200 and good.headers["content-type"] == "video/mp4"


def test_too_many_concurrent_generations_are_refused(pipe, tmp_path):
    client = client_for(pipe, tmp_path, max_concurrent=1, chunk_delay=0.1)
    with client.websocket_connect("/ws/generate") as first:
        first.send_json({"prompt": PROMPT, "frames": 30, "seed": 0})
        assert first.receive_json()["type"] == "start"
        with client.websocket_connect("/ws/generate") as second:
            second.send_json({"prompt": PROMPT, "frames": 3, "seed": 0})
            events, code = receive_all(second)
        assert code == 1013 and "busy" in events[0]["message"]
        http = client.post("/api/generate", json={"prompt": PROMPT, "frames": 3})
        assert http.status_code == 429 and "busy" in http.json()["detail"]
        first.send_json({"type": "cancel"})
        events, code = receive_all(first)
        assert events[-1]["type"] == "cancelled" and code == 1000
    wait_idle(client)
    with client.websocket_connect("/ws/generate") as again:
        again.send_json({"prompt": PROMPT, "frames": 3, "seed": 0})
        assert receive_all(again)[0][-1]["type"] == "done"


def test_disconnect_stops_the_generation(pipe, tmp_path):
    client = client_for(pipe, tmp_path, chunk_delay=0.1, max_frames=60)
    with client.websocket_connect("/ws/generate") as ws:
        ws.send_json({"prompt": PROMPT, "frames": 60, "seed": 0})  # 20 chunks, at least 2 s if not stopped
        assert ws.receive_json()["type"] == "start"
        assert ws.receive_json()["type"] == "chunk"
        ws.close()
        closed_at = time.monotonic()
    status = wait_idle(client)
    assert time.monotonic() - closed_at < 1.5
    assert status["cancelled"] == 1 and status["completed"] == 0
    assert 1 <= status["chunks"] <= 3  # stopped between chunks, not run to the 20th


def test_two_clients_each_get_their_own_stream(pipe, tmp_path):
    client = client_for(pipe, tmp_path, chunk_delay=0.05)
    with client.websocket_connect("/ws/generate") as a, client.websocket_connect("/ws/generate") as b:
        a.send_json({"prompt": PROMPT, "frames": 6, "seed": 1})
        b.send_json({"prompt": "a blue square moving up on a white background", "frames": 9, "seed": 2})
        assert client.get("/api/status").json()["active"] == 2
        events_a, _ = receive_all(a)
        events_b, _ = receive_all(b)
    got_a = np.concatenate([frames_of(e) for e in events_a if e["type"] == "chunk"])
    got_b = np.concatenate([frames_of(e) for e in events_b if e["type"] == "chunk"])
    assert np.array_equal(got_a, to_uint8(pipe.generate([PROMPT], 6, 1)[0]).numpy())
    assert np.array_equal(got_b, to_uint8(pipe.generate(["a blue square moving up on a white background"], 9, 2)[0]))
    assert events_a[-1]["video_id"] != events_b[-1]["video_id"]


def test_a_failing_generation_reports_an_error_and_frees_its_slot(pipe, tmp_path, monkeypatch):
    client = client_for(pipe, tmp_path, max_concurrent=1)

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")
        yield

    with monkeypatch.context() as m:
        m.setattr(pipe, "stream", broken)
        with client.websocket_connect("/ws/generate") as ws:
            ws.send_json({"prompt": PROMPT, "frames": 3})
            events, code = receive_all(ws)
    assert code == 1011 and "out of memory" in events[-1]["message"]
    assert wait_idle(client)["failed"] == 1
    assert client.post("/api/generate", json={"prompt": PROMPT, "frames": 3}).status_code == 200


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="max_concurrent=0"):
        ServeLimits(max_concurrent=0)


def test_cli_missing_shipped_student_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(serve_server, "WEIGHTS_DIR", tmp_path)  # as if toy-stream-r1 were not shipped yet
    assert main(["serve"]) == 2
    err = capsys.readouterr().err.strip()
    assert "'toy-stream-r1' is not shipped" in err and "--checkpoint PATH" in err and len(err.splitlines()) == 1


def test_cli_port_in_use_is_one_line(ckpt, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--checkpoint", str(ckpt), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"cannot listen on 127.0.0.1:{port}" in err and len(err.splitlines()) == 1


SWITCHED = "a blue square moving up on a white background"


def test_a_live_switch_lands_on_a_chunk_boundary_and_equals_the_offline_timeline(pipe, tmp_path):
    client = client_for(pipe, tmp_path, chunk_delay=0.2)
    with client.websocket_connect("/ws/generate") as ws:
        ws.send_json({"prompt": PROMPT, "frames": 18, "seed": 5})
        assert ws.receive_json()["type"] == "start"
        first = ws.receive_json()
        ws.send_json({"type": "switch", "prompt": "a purple circle"})  # refused, and the stream goes on
        ws.send_json({"type": "switch", "prompt": SWITCHED})
        rest, code = receive_all(ws)
    events = [first, *rest]
    assert code == 1000 and events[-1]["type"] == "done"
    refused = [e for e in events if e["type"] == "switch_refused"]
    assert len(refused) == 1 and "purple" in refused[0]["message"]
    switches = [(i, e) for i, e in enumerate(events) if e["type"] == "switch"]
    assert len(switches) == 1
    at, switch = switches[0]
    k = switch["index"]
    assert k >= 1 and switch["frame"] == 3 * k and switch["prompt"] == SWITCHED
    chunks = [e for e in events if e["type"] == "chunk"]
    assert [e["index"] for e in chunks] == list(range(6)) and events[at + 1]["index"] == k  # sent before chunk k
    assert events[-1]["timeline"] == [{"frame": 0, "prompt": PROMPT}, {"frame": 3 * k, "prompt": SWITCHED}]
    streamed = np.concatenate([frames_of(e) for e in chunks])
    offline = pipe.stream([PROMPT], 18, 5, prompt_at=lambda c: [PROMPT if c < k else SWITCHED])
    assert np.array_equal(streamed, to_uint8(torch.cat(list(offline), dim=1)[0]).numpy())
    plain = to_uint8(pipe.generate([PROMPT], 18, 5)[0]).numpy()
    assert np.array_equal(streamed[: 3 * k], plain[: 3 * k]) and not np.array_equal(streamed, plain)


def test_a_bidirectional_stream_refuses_a_switch(tmp_path):
    path = tmp_path / "teacher.safetensors"
    save_dit(path, randomized(DiT(tiny_config())), {"codec": {"factor": 1}, "sampler": {"steps": 2}})
    client = client_for(VideoPipeline.from_checkpoint(path), tmp_path, chunk_delay=0.3)
    with client.websocket_connect("/ws/generate") as ws:
        ws.send_json({"prompt": PROMPT, "frames": 6, "seed": 0})
        assert ws.receive_json()["type"] == "start"
        ws.send_json({"type": "switch", "prompt": SWITCHED})
        events, _ = receive_all(ws)
    types = [e["type"] for e in events]
    assert types[-1] == "done" and sorted(types[:-1]) == ["chunk", "switch_refused"]
    assert "bidirectional" in next(e for e in events if e["type"] == "switch_refused")["message"]
