"""Take the README's picture of `stream-r1 serve` (docs/serve.png): one prompt streamed in headless chromium.

    python tools/serve_screenshot.py --checkpoint toy-stream-r1 --out docs/serve.png

Needs the serve extra and Debian's chromium (/usr/bin/chromium).
"""

from __future__ import annotations

import argparse

from playwright.sync_api import sync_playwright

from stream_r1.serve import ServeLimits
from stream_r1.serve.app import create_app
from stream_r1.serve.server import background_server, load_pipeline

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="toy-stream-r1")
    parser.add_argument("--prompt", default="a yellow circle moving right on a black background")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="slow each chunk to film the stream")
    parser.add_argument("--out", default="docs/serve.png")
    args = parser.parse_args()

    app = create_app(load_pipeline(args.checkpoint), ServeLimits(chunk_delay=args.chunk_delay), args.checkpoint)
    with background_server(app) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1000, "height": 640})
        page.goto(url)
        page.wait_for_function("document.getElementById('frames').value !== ''")
        page.fill("#prompt", args.prompt)
        page.fill("#frames", str(args.frames))
        page.fill("#seed", str(args.seed))
        page.click("#go")
        page.wait_for_function("window.streamLog.done !== null || window.streamLog.error !== null", timeout=60_000)
        page.wait_for_timeout(1000 * args.frames / 8 + 500)  # let the player reach the last frame
        page.screenshot(path=args.out, full_page=True)
        browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
