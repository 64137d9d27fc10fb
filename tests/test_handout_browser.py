"""The HTML handout rendered by a real browser: headless Chromium takes a screenshot of the file
(opened via file://, no network) and the picture must not be blank. A blank page is screenshotted too,
to show the check can fail."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from labctl.handout import render
from labctl.plan import build_plan
from labctl.spec import LabSpec

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--window-size=1200,1600",
)


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("CHROMIUM MISSING: apt-get install chromium (listed in .ci/run) to run the screenshot test")


def screenshot(page: Path, tmp: Path) -> Path:
    png = tmp / f"{page.stem}.png"
    cmd = [
        chromium(),
        *CHROMIUM_FLAGS,
        f"--user-data-dir={tmp / 'profile'}",
        f"--screenshot={png}",
        page.resolve().as_uri(),
    ]
    res = subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, env={"HOME": str(tmp), "PATH": "/usr/bin:/bin"}
    )
    assert png.exists(), f"chromium wrote no screenshot (exit {res.returncode}): {res.stderr[-1500:]}"
    return png


def decode_png(data: bytes) -> tuple[int, int, int, bytes]:
    """A tiny PNG decoder (8-bit RGB/RGBA, non-interlaced — what Chromium writes): width, height,
    bytes per pixel, raw pixel rows with the filters undone."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    width = height = bpp = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
            bpp = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
    raw = zlib.decompress(idat)
    stride = width * bpp
    out = bytearray()
    prev = bytearray(stride)
    for y in range(height):
        ftype, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if ftype == 1:
                line[x] = (line[x] + a) & 0xFF
            elif ftype == 2:
                line[x] = (line[x] + b) & 0xFF
            elif ftype == 3:
                line[x] = (line[x] + (a + b) // 2) & 0xFF
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        out += line
        prev = line
    return width, height, bpp, bytes(out)


def ink_fraction(png: Path) -> float:
    """Share of pixels that are clearly not white (text, code backgrounds, rules)."""
    width, height, bpp, pixels = decode_png(png.read_bytes())
    dark = sum(1 for i in range(0, len(pixels), bpp) if min(pixels[i : i + 3]) < 200)
    return dark / (width * height)


def test_html_handout_renders_in_chromium_and_is_not_blank(tmp_path: Path) -> None:
    spec = LabSpec.default()
    page = tmp_path / "handout.html"
    page.write_text(render(spec, build_plan(spec), "html"), encoding="utf-8")
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>", encoding="utf-8")

    handout_ink = ink_fraction(screenshot(page, tmp_path))
    blank_ink = ink_fraction(screenshot(blank, tmp_path))
    assert blank_ink < 0.001, f"a blank page should have no ink, got {blank_ink:.4f}"  # the check can fail
    assert handout_ink > 0.01, f"the handout screenshot is (nearly) blank: {handout_ink:.4f} of pixels inked"
