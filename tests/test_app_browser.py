"""The app in a real browser: Debian's Chromium, driven by Playwright, against ``audioseq app``.

Each test drives the pages as a person would: a WAV through the file input, a spoken digit
through the microphone (Chromium's fake capture device playing an FSDD clip), a model taught
from uploads. A failing test leaves a screenshot in ``test-artifacts/``; with
``AUDIOSEQ_SCREENSHOTS=1`` every page is also saved to ``docs/screenshots/`` for the README.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import soundfile as sf

import audioseq
from conftest import REPO

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--headless",
]
ARTIFACTS = REPO / "test-artifacts"
SCREENSHOTS = REPO / "docs" / "screenshots"
WAIT_MS = 60_000  # a cold app imports torch and trains in the same process as the browser's server

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="the browser tests need Playwright's Python package (pip install playwright)"
)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
]


# --- the server and the model it starts on ------------------------------------------------------


@pytest.fixture(scope="module")
def model(fsdd: Path, tmp_path_factory: pytest.TempPathFactory, one_thread: Any) -> tuple[Path, dict[str, Path]]:
    """(--models folder, digit -> clip the default model gets right).

    The default model is a ready-trained digits model when there is one (``digits``, or the
    speech-embedding plugin's ``digits-speech-embedding`` when it is installed); otherwise the
    tiny 0/1 model of test_app, the only one offered.
    """
    from test_app import train_digit_model

    tiny = train_digit_model(fsdd, tmp_path_factory.mktemp("browser-models"))
    if "digits" in audioseq.bundled_models():
        from test_app import BUNDLED_CLIPS

        return tiny.folder, {digit: fsdd / name for digit, name in BUNDLED_CLIPS.items()}
    return tiny.folder, tiny.clips


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _command() -> list[str]:
    script = Path(sys.executable).with_name("audioseq")
    return [str(script)] if script.is_file() else [sys.executable, "-c", "from audioseq.cli import main; main()"]


@pytest.fixture(scope="module")
def server(model: tuple[Path, dict[str, Path]], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``audioseq app --port <free port> --models <folder>``, stopped with its process group."""
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "streamlit.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            _command() + ["app", "--port", str(port), "--models", str(model[0])],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env=dict(os.environ, OMP_NUM_THREADS="1"),  # tiny networks: one thread is faster (see one_thread)
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"`audioseq app` did not start:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            time.sleep(0.3)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        yield p


def _launch(playwright: Any, *extra: str) -> Any:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS + list(extra), headless=True)


@contextlib.contextmanager
def new_page(browser: Any, name: str, **context_options: Any) -> Iterator[Any]:
    """A fresh page; if the test fails while using it, its screenshot goes to test-artifacts/."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, **context_options)
    page = context.new_page()
    try:
        yield page
    except BaseException:
        ARTIFACTS.mkdir(exist_ok=True)
        with contextlib.suppress(Exception):
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        raise
    finally:
        context.close()


# --- reading and driving the pages ---------------------------------------------------------------


def predicted_label(page: Any) -> str:
    value = page.locator('[data-testid="stMetric"]', has_text="Prediction").locator('[data-testid="stMetricValue"]')
    value.wait_for(timeout=WAIT_MS)
    return value.inner_text().strip()


def main_file_input(page: Any, label: str, nth: int = 0) -> Any:
    uploader = page.locator('[data-testid="stMain"] [data-testid="stFileUploader"]').filter(has_text=label).nth(nth)
    return uploader.locator('input[type="file"]')


def choose_model(page: Any, label: str) -> None:
    """Pick ``label`` in the sidebar's model picker and wait for the page to run again."""
    page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').click()
    page.get_by_role("option", name=label, exact=True).click()
    settle(page)


def settle(page: Any) -> None:
    """Wait until the script run is over and the charts are drawn."""
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached", timeout=WAIT_MS)
    page.wait_for_timeout(1500)


def save_screenshot(page: Any, name: str) -> None:
    """The whole page (the main area scrolls inside the window, so the window grows to fit it)."""
    if os.environ.get("AUDIOSEQ_SCREENSHOTS") != "1":
        return
    settle(page)
    height = page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": 1400, "height": int(height) + 40})
    page.wait_for_timeout(2000)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


# --- the tests ----------------------------------------------------------------------------------


def test_uploaded_wav_is_classified(server: str, playwright: Any, model: tuple[Path, dict[str, Path]]) -> None:
    browser = _launch(playwright)
    try:
        with new_page(browser, "upload") as page:
            page.goto(server)
            digit, clip = next(iter(model[1].items()))
            main_file_input(page, "upload audio files").set_input_files(str(clip))
            assert predicted_label(page) == digit
            save_screenshot(page, "classify")
    finally:
        browser.close()


def _fake_microphone_clip(clip: Path, out: Path) -> Path:
    """The clip between stretches of silence, so a few seconds of the looping file hold it once."""
    wave, rate = sf.read(clip, dtype="float32")
    silence = np.zeros(int(0.5 * rate), dtype=np.float32)
    sf.write(out, np.concatenate([silence, wave, silence, silence, silence, silence]), rate, subtype="PCM_16")
    return out


def test_spoken_digit_through_the_microphone_is_classified(
    server: str, playwright: Any, model: tuple[Path, dict[str, Path]], tmp_path: Path
) -> None:
    digit, clip = list(model[1].items())[-1]
    capture = _fake_microphone_clip(clip, tmp_path / "microphone.wav")
    browser = _launch(playwright, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                      f"--use-file-for-fake-audio-capture={capture}")
    try:
        with new_page(browser, "microphone", permissions=["microphone"]) as page:
            page.goto(server)
            recorder = page.locator('[data-testid="stMain"] [data-testid="stAudioInput"]').first
            recorder.get_by_role("button", name="Record").click()
            page.wait_for_timeout(2500)
            recorder.get_by_role("button", name="Stop recording").click()
            assert predicted_label(page) == digit
    finally:
        browser.close()


def test_teach_and_inside_pages_work_in_the_browser(
    server: str, playwright: Any, model: tuple[Path, dict[str, Path]], fsdd: Path
) -> None:
    browser = _launch(playwright)
    try:
        with new_page(browser, "teach") as page:
            page.goto(f"{server}/teach")
            for i, (name, digit) in enumerate((("zero", "0"), ("one", "1"))):
                field = page.get_by_label(f"Name of class {i + 1}")
                field.fill(name)
                field.press("Enter")
                settle(page)
                examples = sorted(fsdd.glob(f"{digit}_george_*.wav"))[:4]
                main_file_input(page, "upload audio files", nth=i).set_input_files([str(p) for p in examples])
                page.get_by_text("4 examples").nth(i).wait_for(timeout=WAIT_MS)
            page.get_by_role("button", name="Train").click()
            page.get_by_text("How well it learned").wait_for(timeout=WAIT_MS)
            page.get_by_role("button", name="Download the model (.safetensors)").wait_for(timeout=WAIT_MS)
            save_screenshot(page, "teach")
        with new_page(browser, "inside") as page:
            page.goto(f"{server}/inside")
            digit, clip = next(iter(model[1].items()))
            main_file_input(page, "upload an audio file").set_input_files(str(clip))
            assert predicted_label(page) == digit
            page.get_by_role("heading", name="The vanishing gradient").wait_for(timeout=WAIT_MS)
            if "digits-speech-embedding" in audioseq.bundled_models():
                # The app starts on it; its 80 ms frames unroll a digit into a few steps, and the
                # page points to a bundled model on 10 ms frames, the LSTM: follow it.
                page.get_by_text("unrolls into only").wait_for(timeout=WAIT_MS)
                named = "digits-lstm" if "digits-lstm" in audioseq.bundled_models() else "digits"
                page.get_by_text(f"{named} reads one every 10 ms").wait_for(timeout=WAIT_MS)
                choose_model(page, named)
                assert predicted_label(page) == digit
                page.get_by_role("heading", name="Gates").wait_for(timeout=WAIT_MS)
                assert page.get_by_text("unrolls into only").count() == 0
            assert page.locator('[data-testid="stException"]').count() == 0
            save_screenshot(page, "inside")
    finally:
        browser.close()
