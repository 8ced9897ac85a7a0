"""The try-it page (GET /) in a real browser: Debian's headless Chromium driven by selenium through the
system chromedriver, against a real ``python -m server`` (uvicorn) serving the shipped adapter sets on
the real Whisper base encoder.

Chromium's fake microphone plays a generated espeak-ng command, the test records it through the page
and reads what the page shows; uploads are compared with the API's own answers for the same files;
errors must appear as the server's message. The page draws its cards from the registered tasks'
description (server/ui.py): every task with a set in the store, the language task included, gets one.
Waits are on DOM conditions, never sleeps.
``ELP_UI_SCREENSHOT=docs/images/ui.png`` also saves the page with its answers (README's screenshot).
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from tests.reliability.support import server_args
from tests.server.helpers import REPO_ROOT, free_port, server_process
from training.metrics import cer

BACKBONE = REPO_ROOT / "models" / "whisper-base"
STORE = REPO_ROOT / "adapters_store"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
COMMAND = "turn on the lights in the kitchen"
OTHER_SENTENCE = "please play some music in the bedroom"
API_KEY = "ui-test-key"
ANSWER_WAIT_S = 120  # four tasks on two shared CPU cores, first calls warm the model up

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="needs Debian's chromium and chromium-driver (scripts/run_tests.sh installs them)"),
    pytest.mark.skipif(not (BACKBONE / "model.safetensors").exists(), reason="run scripts/setup_default_backbone.sh"),
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed"),
]
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the dev extra")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


def espeak(path: Path, text: str, voice: str = "en-us") -> Path:
    """Fixed voice, speed and pitch: espeak-ng is deterministic for the same arguments."""
    subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-p", "50", "-w", str(path), text], check=True)
    return path


def fake_microphone_file(speech: Path, target: Path, lead_s: float = 1.0, tail_s: float = 8.0) -> float:
    """The speech at 48 kHz stereo 16-bit (what Chromium's fake device captures) between silences long
    enough that a recording stopped soon after the speech never hears the file loop. Returns when the
    speech ends, in seconds."""
    samples, rate = sf.read(speech, dtype="float32")
    samples = resample_poly(samples, 48000, rate).astype(np.float32)
    padded = np.concatenate([np.zeros(int(lead_s * 48000), np.float32), samples,
                             np.zeros(int(tail_s * 48000), np.float32)])
    sf.write(target, np.stack([padded, padded], axis=1), 48000, subtype="PCM_16")
    return lead_s + len(samples) / 48000


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path | float]:
    folder = tmp_path_factory.mktemp("ui-clips")
    command = espeak(folder / "command.wav", COMMAND)
    other = espeak(folder / "other.wav", OTHER_SENTENCE, voice="en-us+f3")
    microphone = folder / "microphone.wav"
    speech_end_s = fake_microphone_file(command, microphone)
    (folder / "notes.txt").write_text("not audio\n")
    return {"command": command, "other": other, "microphone": microphone, "speech_end_s": speech_end_s,
            "not_audio": folder / "notes.txt"}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> tuple[str, Path]:
    """(base URL, its store): a copy of the shipped store plus a spare emotion set the error test removes."""
    root = tmp_path_factory.mktemp("ui-server")
    store = Path(shutil.copytree(STORE, root / "adapters", ignore=shutil.ignore_patterns("speakers*")))
    shutil.copytree(store / "emotion-default", store / "emotion-spare")
    port = free_port()
    with server_process(server_args(BACKBONE, store, root, port, "--api-key", API_KEY), port=port, timeout_s=180):
        yield f"http://127.0.0.1:{port}", store


@pytest.fixture(scope="module")
def browser(clips):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1000,1400", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-audio-capture={clips['microphone']}"):
        options.add_argument(flag)
    with tempfile.TemporaryDirectory(prefix="elp-chromium-") as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
        try:
            yield driver
        finally:
            driver.quit()


def open_page(browser, url: str) -> None:
    browser.get(url + "/")
    WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.ID, "adapter-emotion"))


def wait_for_cards(browser, tasks: list[str]) -> dict[str, object]:
    """Wait until every task's card is answered (done or error); return the cards."""

    def settled(b):
        cards = {task: b.find_elements(By.ID, f"result-{task}") for task in tasks}
        if all(found and found[0].get_attribute("data-state") in ("done", "error") for found in cards.values()):
            return {task: found[0] for task, found in cards.items()}
        return False

    return WebDriverWait(browser, ANSWER_WAIT_S).until(settled)


def shown_slots(card) -> dict[str, str]:
    return {dd.get_attribute("data-key"): dd.text
            for dd in card.find_elements(By.CSS_SELECTOR, "[data-field=slots] dd")}


def shown_field(card, field: str) -> str:
    """The exact value the page keeps of one answer field (the headline or a listed scalar)."""
    return card.find_element(By.CSS_SELECTOR, f"[data-field={field}]").get_attribute("data-value")


def shown_scores(card) -> dict[str, float]:
    return {bar.get_attribute("data-label"): float(bar.get_attribute("data-score"))
            for bar in card.find_elements(By.CSS_SELECTOR, ".bar")}


def api_answer(url: str, endpoint: str, clip: Path, **fields) -> httpx.Response:
    files = {"file": (clip.name, clip.read_bytes(), "audio/wav")}
    reference = fields.pop("reference", None)
    if reference is not None:
        files["reference"] = (reference.name, reference.read_bytes(), "audio/wav")
    return httpx.post(f"{url}/{endpoint}", files=files, data=fields, timeout=ANSWER_WAIT_S)


def test_a_command_spoken_into_the_microphone_is_answered_by_every_task(server, browser, clips) -> None:
    url, _ = server
    open_page(browser, url)
    browser.find_element(By.ID, "record-clip").click()
    clock = browser.find_element(By.ID, "record-clip-time")
    WebDriverWait(browser, 30).until(
        lambda _: float(clock.get_attribute("data-elapsed")) >= clips["speech_end_s"] + 1.0)
    browser.find_element(By.ID, "record-clip").click()  # stop
    WebDriverWait(browser, 30).until(lambda b: "recorded" in b.find_element(By.ID, "status-clip").text)
    browser.find_element(By.ID, "run").click()
    cards = wait_for_cards(browser, ["asr", "intent", "emotion", "language"])
    assert {task: card.get_attribute("data-state") for task, card in cards.items()} == dict.fromkeys(cards, "done")

    transcript = cards["asr"].find_element(By.CSS_SELECTOR, ".answer").text
    assert cer(COMMAND, transcript) <= 0.1, transcript
    assert cards["intent"].find_element(By.CSS_SELECTOR, ".answer").text == "activate_lights_kitchen"
    assert shown_slots(cards["intent"]) == {"action": "activate", "object": "lights", "location": "kitchen"}
    emotion = shown_scores(cards["emotion"])
    assert len(emotion) == 4 and sum(emotion.values()) == pytest.approx(1.0, abs=1e-4), emotion
    languages = shown_scores(cards["language"])
    assert len(languages) >= 6 and sum(languages.values()) == pytest.approx(1.0, abs=1e-4), languages
    assert cards["language"].find_element(By.CSS_SELECTOR, ".answer").text in languages
    for card in cards.values():
        assert "ms in the server" in card.find_element(By.CSS_SELECTOR, ".timings").text


def test_an_uploaded_clip_shows_the_apis_own_answers(server, browser, clips) -> None:
    url, _ = server
    open_page(browser, url)
    browser.find_element(By.ID, "file-clip").send_keys(str(clips["command"]))
    browser.find_element(By.ID, "file-verification-reference").send_keys(str(clips["other"]))
    unlabelled = browser.execute_script(
        "return [...document.querySelectorAll('input, select, button')].filter(e => !(e.labels && e.labels.length)"
        " && !e.textContent.trim() && !e.getAttribute('aria-label')).map(e => e.id || e.outerHTML);")
    assert unlabelled == []  # every control has a name a screen reader can say
    browser.find_element(By.ID, "run").click()
    described = browser.execute_script("return JSON.parse(document.getElementById('elp-tasks').textContent)")
    in_store = {row["task"] for row in httpx.get(f"{url}/adapters").json()}
    with_sets = [task for task in described if task["set_task"] in in_store]  # diarization: verification's
    served = [task["name"] for task in with_sets if not task["enrolled_gallery"]]  # no key typed in: not sent
    assert {"asr", "intent", "emotion", "language", "verification", "diarization"} <= set(served)
    cards = wait_for_cards(browser, served)  # a card per described task with a set, and no other
    assert len(browser.find_elements(By.CSS_SELECTOR, "article.card")) == len(with_sets)
    assert all(card.get_attribute("data-state") == "done" for card in cards.values())
    keyless = browser.find_element(By.ID, "result-identification")  # says what it needs instead of a 403
    assert keyless.get_attribute("data-state") == "skipped" and "API key" in keyless.text

    asr = api_answer(url, "asr", clips["command"]).json()
    intent = api_answer(url, "intent", clips["command"]).json()
    emotion = api_answer(url, "emotion", clips["command"]).json()
    verify = api_answer(url, "verify", clips["command"], reference=clips["other"]).json()
    language = api_answer(url, "language", clips["command"]).json()
    assert cards["asr"].find_element(By.CSS_SELECTOR, ".answer").text == asr["text"]
    assert cards["intent"].find_element(By.CSS_SELECTOR, ".answer").text == intent["intent"]
    assert shown_slots(cards["intent"]) == intent["slots"]
    assert cards["emotion"].find_element(By.CSS_SELECTOR, ".answer").text == emotion["label"]
    assert shown_scores(cards["emotion"]) == pytest.approx(emotion["scores"], abs=1e-4)
    assert cards["language"].find_element(By.CSS_SELECTOR, ".answer").text == language["label"]
    assert shown_scores(cards["language"]) == pytest.approx(language["scores"], abs=1e-4)
    top_intents = shown_scores(cards["intent"])
    assert top_intents == pytest.approx({k: intent["scores"][k] for k in top_intents}, abs=1e-4)
    assert shown_field(cards["verification"], "same_speaker") == str(verify["same_speaker"]).lower()
    assert float(shown_field(cards["verification"], "score")) == pytest.approx(verify["score"], abs=1e-3)
    assert float(shown_field(cards["verification"], "threshold")) == pytest.approx(verify["threshold"])
    diarization = api_answer(url, "diarize", clips["command"]).json()
    assert cards["diarization"].find_element(By.CSS_SELECTOR, ".answer").text == \
        f"speaker count: {diarization['speaker_count']}"
    answers = {"asr": asr, "intent": intent, "emotion": emotion, "verification": verify, "language": language,
               "diarization": diarization}
    for task, answer in answers.items():
        assert answer["adapter"] in cards[task].find_element(By.CSS_SELECTOR, ".timings").text

    if screenshot := os.environ.get("ELP_UI_SCREENSHOT"):
        save_screenshot(browser, Path(screenshot))


def test_a_long_recording_shows_its_segments(server, browser, clips, tmp_path) -> None:
    """A recording over one ASR segment (20 s): the page shows the API's segments as a table, row for row,
    and its words folded."""
    url, _ = server
    sentences = ["turn on the lights in the kitchen.", "please play some music in the bedroom.",
                 "what is the weather like today?", "set an alarm for seven in the morning.",
                 "call my sister and tell her I am late.", "the quick brown fox jumps over the lazy dog."]
    recording = espeak(tmp_path / "long.wav", "  ".join(sentences * 2))
    duration = sf.info(recording).duration
    assert 20.0 < duration < 30.0, duration  # split by /asr, still a clip for the other tasks
    open_page(browser, url)
    browser.find_element(By.ID, "file-clip").send_keys(str(recording))
    browser.find_element(By.ID, "file-verification-reference").send_keys(str(clips["other"]))
    browser.find_element(By.ID, "run").click()
    cards = wait_for_cards(browser, ["asr"])
    asr = api_answer(url, "asr", recording).json()
    assert len(asr["segments"]) >= 2 and asr["segments"][-1]["end_s"] == pytest.approx(duration, abs=1e-3)
    assert cards["asr"].find_element(By.CSS_SELECTOR, ".answer").text == asr["text"]
    rows = [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
            for row in cards["asr"].find_elements(By.CSS_SELECTOR, "[data-field=segments] tbody tr")]
    assert [row[2] for row in rows] == [segment["text"] for segment in asr["segments"]]
    assert [float(row[1]) for row in rows] == pytest.approx([s["end_s"] for s in asr["segments"]], abs=1e-3)
    # the words (dozens) are folded under a summary line; unfolded, they are the API's, row for row
    folded = cards["asr"].find_element(By.CSS_SELECTOR, "details.records")
    assert len(asr["words"]) > 12 and not folded.find_element(By.CSS_SELECTOR, "table").is_displayed()
    folded.find_element(By.TAG_NAME, "summary").click()
    shown = [row.find_element(By.TAG_NAME, "td").text
             for row in folded.find_elements(By.CSS_SELECTOR, "[data-field=words] tbody tr")]
    assert shown == [word["word"] for word in asr["words"]]


def save_screenshot(browser, path: Path, width: int = 1000) -> None:
    """The page from its top down to the verification answer (Chromium's full-page capture, so the
    window height does not matter), at a laptop width that keeps the PNG small."""
    browser.set_window_size(width, 1400)
    bottom = browser.execute_script(
        "return Math.ceil(document.getElementById('results-verification').getBoundingClientRect().bottom"
        " + window.scrollY + 16);")
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": int(bottom), "scale": 1}})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


def test_errors_show_the_servers_message(server, browser, clips) -> None:
    url, store = server
    open_page(browser, url)
    # an adapter set removed from the store after the page listed it: 404 adapter_not_found
    browser.find_element(By.ID, "file-clip").send_keys(str(clips["command"]))
    Select(browser.find_element(By.ID, "adapter-emotion")).select_by_value("emotion-spare")
    shutil.rmtree(store / "emotion-spare")
    browser.find_element(By.ID, "run").send_keys(Keys.ENTER)  # keyboard: a real <button> takes Enter
    cards = wait_for_cards(browser, ["asr", "intent", "emotion", "language"])
    expected = api_answer(url, "emotion", clips["command"], adapter="emotion-spare")
    assert expected.status_code == 404
    error = expected.json()["error"]
    assert cards["emotion"].get_attribute("data-state") == "error"
    assert cards["emotion"].find_element(By.CSS_SELECTOR, ".error").text == \
        f"404 {error['code']}: {error['message']}"
    assert cards["asr"].get_attribute("data-state") == "done"

    # a file that is not audio: every task answers 400 invalid_audio, shown as the server says it
    browser.find_element(By.ID, "file-clip").send_keys(str(clips["not_audio"]))
    Select(browser.find_element(By.ID, "adapter-emotion")).select_by_value("emotion-default")
    browser.find_element(By.ID, "run").click()
    WebDriverWait(browser, ANSWER_WAIT_S).until(
        lambda b: b.find_element(By.ID, "result-asr").get_attribute("data-state") == "error")
    cards = wait_for_cards(browser, ["asr", "intent", "emotion", "language"])
    expected = api_answer(url, "asr", clips["not_audio"]).json()["error"]
    for card in cards.values():
        assert card.find_element(By.CSS_SELECTOR, ".error").text == f"400 {expected['code']}: {expected['message']}"


def test_enrolling_needs_the_key_typed_into_the_page_and_verifies_against_the_speaker(server, browser, clips):
    url, _ = server
    open_page(browser, url)
    browser.find_element(By.ID, "file-clip").send_keys(str(clips["command"]))
    browser.find_element(By.ID, "enrol-id").send_keys("alice")
    status = browser.find_element(By.ID, "admin-status")
    browser.find_element(By.ID, "enrol").click()
    WebDriverWait(browser, ANSWER_WAIT_S).until(lambda _: status.text)
    keyless = httpx.post(f"{url}/speakers/alice", files={"file": ("c.wav", clips["command"].read_bytes())})
    assert keyless.status_code in (401, 403)
    error = keyless.json()["error"]
    assert status.text == f"{keyless.status_code} {error['code']}: {error['message']}"

    browser.find_element(By.ID, "api-key").send_keys(API_KEY)
    browser.find_element(By.ID, "enrol").click()
    WebDriverWait(browser, ANSWER_WAIT_S).until(lambda _: status.text.startswith("Enrolled alice"))
    stored = browser.execute_script("return [sessionStorage.getItem('elp-api-key'), localStorage.length]")
    assert stored == [API_KEY, 0]  # this tab only, nothing that outlives it

    browser.find_element(By.CSS_SELECTOR, "input[name=verification-reference-kind][value=enrolled]").click()
    WebDriverWait(browser, 30).until(lambda b: Select(b.find_element(By.ID, "enrolled-verification"))
                                     .first_selected_option.get_attribute("value") == "alice")
    browser.find_element(By.ID, "run-verification").click()
    card = wait_for_cards(browser, ["verification"])["verification"]
    assert shown_field(card, "same_speaker") == "true"
    assert shown_field(card, "speaker") == "alice"

    browser.find_element(By.ID, "run").click()  # with the key typed in, the clip is also identified
    card = wait_for_cards(browser, ["identification"])["identification"]
    assert card.find_element(By.CSS_SELECTOR, ".answer").text == "alice"  # the very clip alice was enrolled with
    ranked = [row.find_element(By.TAG_NAME, "td").text
              for row in card.find_elements(By.CSS_SELECTOR, "[data-field=candidates] tbody tr")]
    assert ranked[0] == "alice"


def test_talking_live_lists_each_utterance_when_its_pause_is_heard(server, browser, clips) -> None:
    url, _ = server
    open_page(browser, url)
    WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#live-task option"))
    streamable = [o.get_attribute("value") for o in browser.find_elements(By.CSS_SELECTOR, "#live-task option")]
    assert set(streamable) == {"asr", "intent", "emotion", "language"}  # verification takes two clips: no stream
    Select(browser.find_element(By.ID, "live-task")).select_by_value("asr")
    live = browser.find_element(By.ID, "live")
    live.click()
    WebDriverWait(browser, ANSWER_WAIT_S).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#live-results li"))
    live.click()  # stop: the server answers what is left and ends the stream
    WebDriverWait(browser, 60).until(lambda _: live.get_attribute("data-state") == "ended")
    first = browser.find_elements(By.CSS_SELECTOR, "#live-results li")[0]
    assert cer(COMMAND, first.get_attribute("data-value")) <= 0.1, first.text
    assert "Ended:" in browser.find_element(By.ID, "live-status").text
