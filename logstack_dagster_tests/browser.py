"""The system's Chromium for the tests, headless and kept off the network.

Its flags turn off everything that would reach out on its own (updates, sync, field
trials, QUIC probes); every test profile is a fresh folder. Command-line tests pass
`CHROMIUM_FLAGS` themselves; pages that need a script run use `chromium_page`
(Playwright, driving this Chromium rather than a browser of its own).
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parent.parent

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)
NO_CHROMIUM = "no Chromium on PATH; on Debian: apt-get install -y chromium"

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)


def artifact_dir() -> Path:
    """Where tests keep what a person may want to look at afterwards (screenshots)."""
    folder = REPO / ".logstack" / "test-artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextmanager
def chromium_page(width: int = 1600, height: int = 1000) -> Iterator:
    """A Playwright page in the system's Chromium with a throwaway profile."""
    from playwright.sync_api import sync_playwright

    if CHROMIUM is None:
        raise RuntimeError(NO_CHROMIUM)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile, \
            sync_playwright() as playwright:
        # Playwright adds the headless flag itself, and its own spelling of it.
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True,
            args=[f for f in CHROMIUM_FLAGS if f != "--headless"],
            viewport={"width": width, "height": height})
        try:
            yield context.new_page()
        finally:
            context.close()
