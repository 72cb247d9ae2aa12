"""report.html, opened in a real headless Chromium: every audio player loads its file and every
spectrogram its image (slow: needs Debian's chromium; skipped with the reason where it is absent)."""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from opuslm.audio import write_wav

CHECK = """<script>
window.addEventListener('load', async () => {
  const audios = [...document.querySelectorAll('audio')];
  await Promise.all(audios.map(a => a.readyState >= 1 ? null : new Promise(done => {
    a.addEventListener('loadedmetadata', done); a.addEventListener('error', done); a.load(); })));
  const bad = [...audios.filter(a => !(a.duration > 0)).map(a => a.src),
               ...[...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)];
  const out = document.createElement('pre');
  out.id = 'check';
  out.textContent = JSON.stringify({audios: audios.length, images: document.images.length, bad: bad});
  document.body.appendChild(out);
});
</script>"""


def listening_page(folder, clip=None):
    """Two samples of noise (the second without a prompt), or with every player holding `clip`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from opuslm.eval.report import write_listening_page

    (folder / "samples").mkdir()
    rng = np.random.default_rng(0)
    samples = []
    for i in range(2):
        sample = {"text": f"sentence {i} <b>", "judge_original": "heard", "judge_resynthesis": "heard",
                  "judge_generated": "heard"}
        for key in ("prompt", "original", "resynthesis", "generated"):
            sample[key] = f"samples/{key}-{i}.wav"
            audio = 0.1 * rng.standard_normal(8000 + 1600 * i).astype(np.float32) if clip is None else clip
            write_wav(folder / sample[key], audio, 16000)
        samples.append(sample)
    samples[1]["prompt"] = None  # a sample without a prompt says so instead of a player
    return write_listening_page(folder, samples, plt), samples


def test_the_listening_page_has_a_player_and_a_spectrogram_per_clip(tmp_path):
    page, samples = listening_page(tmp_path)
    text = page.read_text()
    assert text.count("<audio") == 7 and text.count("<img") == 7 and "no speaker prompt" in text
    assert "sentence 0 &lt;b&gt;" in text  # the text is escaped
    for sample in samples:
        for key in ("original", "resynthesis", "generated"):
            assert f'src="{sample[key]}"' in text
            assert (tmp_path / sample[key].replace(".wav", ".png")).stat().st_size > 500


def test_silence_and_near_silence_are_drawn_dark_on_an_80_db_scale(tmp_path):
    """eSpeak's pauses are exact zeros (-inf dB), which matplotlib leaves unpainted (white); and scaled to
    its quietest bin, a clip's near-silence stretched the colours so that speech looked flat. Both are
    drawn as the darkest colour: the scale is the 80 dB below the clip's peak."""
    import matplotlib.image

    rng = np.random.default_rng(0)
    loud, quiet, faint = (a * rng.standard_normal(n).astype(np.float32) for a, n in ((0.1, 8000), (1e-6, 8000), (1e-12, 4000)))
    clip = np.concatenate([loud, np.zeros(8000, np.float32), quiet, faint, loud])  # 2.25 s; quiet is 100 dB down
    listening_page(tmp_path, clip)
    image = matplotlib.image.imread(tmp_path / "samples" / "original-0.png")[..., :3]
    height, width, _ = image.shape

    def brightness(seconds):  # the mean of R + G + B around that time, over the middle half of the frequencies
        x = round(width * seconds / 2.25)
        return image[height // 4: 3 * height // 4, x - 3: x + 3].sum(axis=-1)

    assert brightness(0.75).max() < 0.5, "the digital silence is left blank (white) instead of dark"
    assert brightness(1.25).max() < 0.5, "100 dB below the peak is drawn brighter than the darkest colour"
    assert brightness(0.25).mean() > 1.0


@pytest.mark.slow
def test_the_listening_page_loads_every_audio_and_image_in_chromium(tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium on this machine: `apt-get install chromium` (Debian) runs this test")
    page, _ = listening_page(tmp_path)
    check = tmp_path / "check.html"
    check.write_text(page.read_text().replace("</body>", CHECK + "</body>"))
    run = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={tmp_path / 'profile'}", "--allow-file-access-from-files",
                          "--autoplay-policy=no-user-gesture-required", "--virtual-time-budget=20000",
                          "--dump-dom", check.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="check">(.*?)</pre>', run.stdout)
    assert found, run.stderr[-2000:]
    result = json.loads(found.group(1).replace("&quot;", '"'))
    assert result == {"audios": 7, "images": 7, "bad": []}
