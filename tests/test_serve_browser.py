"""`stream-r1 serve` in a real headless browser (Debian's chromium driven by Playwright).

The server slows each chunk by DELAY seconds, and the page records when each chunk arrived, so a
server or page that only showed the video once it was whole fails these tests.
"""

import base64
import os

import numpy as np
import pytest

CHROMIUM = "/usr/bin/chromium"
NO_EXTRA = "the serve extra is not installed: pip install -e '.[serve]'"
pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason=f"Debian's chromium is absent ({CHROMIUM}); apt-get install chromium"
)
pytest.importorskip("fastapi", reason=NO_EXTRA)
sync_api = pytest.importorskip("playwright.sync_api", reason=NO_EXTRA)

from stream_r1.generation.pipeline import VideoPipeline, to_uint8  # noqa: E402
from stream_r1.models.dit import DiT  # noqa: E402
from stream_r1.models.dit_io import save_dit  # noqa: E402
from stream_r1.serve import ServeLimits  # noqa: E402
from stream_r1.serve.app import create_app  # noqa: E402
from stream_r1.serve.server import background_server  # noqa: E402

from .conftest import randomized, tiny_config  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DELAY = 0.3  # seconds added to every chunk by the server (its test-only option)
PROMPT = "a green triangle moving right quickly on a gray background"


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "student.safetensors"
    save_dit(path, randomized(DiT(tiny_config(causal=True))),
             {"codec": {"factor": 1}, "sampler": {"shift": 3.0, "denoising_timesteps": [1000, 500]}})
    return VideoPipeline.from_checkpoint(path)


@pytest.fixture(scope="module")
def url(pipe, tmp_path_factory):
    limits = ServeLimits(max_frames=30, chunk_delay=DELAY)
    app = create_app(pipe, limits, checkpoint="tiny-random", videos_dir=tmp_path_factory.mktemp("videos"))
    with background_server(app) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, url):
    page = browser.new_page(viewport={"width": 1000, "height": 720})
    page.goto(url)
    page.wait_for_function("document.getElementById('frames').value !== ''")  # /api/info has loaded
    yield page
    page.close()


def submit(page, prompt: str, frames: int) -> None:
    page.fill("#prompt", prompt)
    page.fill("#frames", str(frames))
    page.click("#go")


def test_chunks_appear_before_the_last_is_done(page, url, tmp_path):
    submit(page, PROMPT, 12)  # 4 chunks of 3 frames
    # Streaming is judged from the page's own arrival times, not by polling the page mid-stream: a busy
    # machine can delay the poll until every chunk is in (CI saw that).
    page.wait_for_function("window.streamLog && window.streamLog.done !== null", timeout=30_000)
    log = page.evaluate("() => window.streamLog")
    times = [c["t"] for c in log["chunks"]]
    assert [c["index"] for c in log["chunks"]] == [0, 1, 2, 3] and log["error"] is None
    assert times[1] < times[-1] - DELAY, times  # two chunks arrived at least one chunk-time before the last
    assert page.inner_text("#chunks") == "4 / 4" and page.inner_text("#nframes") == "12"
    assert float(page.inner_text("#latency").split()[0]) >= DELAY  # first-chunk latency includes one delay
    drawn = page.evaluate("""() => {
        const ctx = document.getElementById('strip').getContext('2d');
        return [[1, 1], [11 * 42 + 3 * 6 + 1, 1]].map(([x, y]) => ctx.getImageData(x, y, 1, 1).data[3]);
    }""")  # the first tile and the twelfth (one row: 40 px tiles, 2 px gaps, 6 px more between chunks) are painted
    assert drawn == [255, 255]
    href = page.get_attribute("#download", "href")
    assert page.is_visible("#download")
    mp4 = page.request.get(url + href)
    assert mp4.status == 200 and mp4.headers["content-type"] == "video/mp4" and len(mp4.body()) > 1000
    page.screenshot(path=str(tmp_path / "serve.png"))
    assert (tmp_path / "serve.png").stat().st_size > 10_000


def test_bad_requests_show_a_message_and_the_page_still_works(page):
    assert not page.is_visible("#error")
    submit(page, "a purple circle moving left on a black background", 6)
    page.wait_for_selector("#error", state="visible", timeout=10_000)
    assert "unknown word" in page.inner_text("#error") and "purple" in page.inner_text("#error")
    assert page.evaluate("() => window.streamLog.closeCode") == 1008
    submit(page, "a red circle moving left on a black background", 99)
    page.wait_for_function("window.streamLog.error !== null", timeout=10_000)
    assert "over this server's limit of 30" in page.inner_text("#error")
    submit(page, "a red circle moving left on a black background", 3)
    page.wait_for_function("window.streamLog.done !== null", timeout=20_000)
    assert not page.is_visible("#error")


def test_the_prompt_switches_mid_stream_at_a_chunk_boundary(page, pipe):
    submit(page, PROMPT, 30)  # 10 chunks of 3 frames, DELAY apart
    page.wait_for_function("window.streamLog && window.streamLog.chunks.length >= 2", timeout=30_000)
    assert page.is_enabled("#switch")
    page.select_option("#colour", "blue")  # the dropdowns rewrite the prompt box
    switched = page.input_value("#prompt")
    assert "blue" in switched
    page.click("#switch")
    page.wait_for_function("window.streamLog.done !== null", timeout=30_000)
    log = page.evaluate("() => window.streamLog")
    assert log["error"] is None and log["switchRefused"] == [] and len(log["switchSent"]) == 1
    assert len(log["switches"]) == 1, log["switches"]
    k = log["switches"][0]["index"]
    sent_after = log["switchSent"][0]["afterChunks"]
    assert log["switches"][0] == {**log["switches"][0], "frame": 3 * k, "prompt": switched}  # a chunk boundary
    assert sent_after <= k < 10  # at a boundary not yet started when it was sent, with chunks still to come
    assert [c["index"] for c in log["chunks"]] == list(range(10))  # every chunk, those after the switch too
    assert log["timeline"] == [{"frame": 0, "prompt": PROMPT}, {"frame": 3 * k, "prompt": switched}]
    assert page.inner_text("#switches") == f"from frame {3 * k}: {switched}"
    assert not page.is_enabled("#switch")  # nothing to switch once the stream is done
    # Nothing else changed: the chunks before the switch are the unswitched stream's, those after are not.
    streamed = np.concatenate([np.frombuffer(base64.b64decode(c["rgb"]), np.uint8) for c in log["chunks"]])
    plain = to_uint8(pipe.generate([PROMPT], 30, 0)[0]).numpy().reshape(-1)
    cut = 3 * k * 16 * 16 * 3
    assert np.array_equal(streamed[:cut], plain[:cut]) and not np.array_equal(streamed[cut:], plain[cut:])
