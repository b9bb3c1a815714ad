"""The ``audioseq`` command, run through its installed entry point.

predict (formats, --output, --max-errors, folders, the bad-input corpus, damaged and hostile
model files), train (synthetic, folder and manifest datasets), evaluate, info and plugins, and
the validation of every registered component's parameters.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import pickle
import pty
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import safetensors.torch
import soundfile as sf
import torch
from click.testing import CliRunner

import audioseq
from audioseq.cli import cli as click_group
from audioseq.export import onnxruntime_available
from audioseq.modelfile import METADATA_KEY, read_tensors, write_tensors
from conftest import TINY_TRAIN_ARGS, cli_json, entry_point, run_cli, sweep, write_wav
from corpus import BAD_CASES

pytestmark = pytest.mark.usefixtures("one_thread")

# A directory is a folder to search on the command line, not a clip: it gives no row of its own
# (see test_folders_are_searched_recursively); the API gives it an error row.
CLI_BAD_CASES = tuple(case for case in BAD_CASES if case != "directory")


# --- predict: the bad-input corpus between good clips -------------------------------------------


@pytest.fixture(scope="module")
def corpus_inputs(bad_corpus: dict[str, tuple[Path, type]], good_wavs: list[Path]) -> list[Path]:
    """Good and bad files interleaved: good, bad, bad, good, bad, bad, ..., good."""
    bad = [bad_corpus[case][0] for case in CLI_BAD_CASES]
    inputs: list[Path] = []
    for i in range(0, len(bad), 2):
        inputs += [good_wavs[(i // 2) % len(good_wavs)], *bad[i : i + 2]]
    return inputs + [good_wavs[-1]]


@pytest.fixture(scope="module")
def csv_run(tiny_model_file: Path, corpus_inputs: list[Path]) -> Any:
    proc = run_cli("predict", tiny_model_file, *corpus_inputs, "--format", "csv", "--batch-size", "2")
    return proc, list(csv.DictReader(io.StringIO(proc.stdout)))


@pytest.fixture(scope="module")
def jsonl_run(tiny_model_file: Path, corpus_inputs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("jsonl") / "predictions.jsonl"
    proc = run_cli("predict", tiny_model_file, *corpus_inputs, "--format", "jsonl",
                   "--output", out, "--max-errors", len(CLI_BAD_CASES))
    return proc, out


def _jsonl_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("case", CLI_BAD_CASES)
def test_each_bad_input_is_one_typed_error_row_in_csv(
    case: str, csv_run: Any, bad_corpus: dict[str, tuple[Path, type]]
) -> None:
    _, rows = csv_run
    path, expected = bad_corpus[case]
    mine = [row for row in rows if row["source"] == str(path)]
    assert len(mine) == 1, rows
    assert mine[0]["error_type"] == expected.__name__
    assert mine[0]["error"] and not mine[0]["label"] and not mine[0]["confidence"]
    assert all(mine[0][key] == "" for key in mine[0] if key.startswith("p_"))


@pytest.mark.parametrize("case", CLI_BAD_CASES)
def test_each_bad_input_is_one_typed_error_row_in_jsonl(
    case: str, jsonl_run: Any, bad_corpus: dict[str, tuple[Path, type]]
) -> None:
    _, out = jsonl_run
    path, expected = bad_corpus[case]
    mine = [row for row in _jsonl_rows(out) if row["source"] == str(path)]
    assert len(mine) == 1
    assert mine[0]["error_type"] == expected.__name__
    assert mine[0]["label"] is None and mine[0]["probabilities"] == {}


def test_csv_has_one_row_per_input_in_order_and_good_clips_are_classified(
    csv_run: Any, corpus_inputs: list[Path], tiny_model_file: Path
) -> None:
    proc, rows = csv_run
    assert proc.returncode == 1  # --max-errors defaults to 0
    assert f"{len(CLI_BAD_CASES)} of {len(corpus_inputs)} input(s) failed" in proc.stderr
    assert [row["source"] for row in rows] == [str(p) for p in corpus_inputs]
    clf = audioseq.load(tiny_model_file)
    assert list(rows[0]) == ["source", "label", "confidence", "error_type", "error"] + [
        f"p_{label}" for label in clf.labels
    ]
    api = {p.source: p for p in clf.predict(corpus_inputs)}
    good = [row for row in rows if not row["error_type"]]
    assert len(good) == len(corpus_inputs) - len(CLI_BAD_CASES)
    for row in good:
        expected = api[row["source"]]
        assert row["label"] == expected.label and not row["error"]
        assert float(row["confidence"]) == pytest.approx(expected.confidence, abs=1e-6)
        cli_probs = [float(row[f"p_{label}"]) for label in clf.labels]
        assert cli_probs == pytest.approx([expected.probabilities[label] for label in clf.labels], abs=1e-6)
        assert sum(cli_probs) == pytest.approx(1.0, abs=1e-5)


def test_jsonl_to_a_file_with_enough_max_errors(jsonl_run: Any, corpus_inputs: list[Path]) -> None:
    proc, out = jsonl_run
    assert proc.returncode == 0, proc.stderr  # exactly as many failures as allowed
    assert proc.stdout == ""  # --output took the rows
    rows = _jsonl_rows(out)
    assert [row["source"] for row in rows] == [str(p) for p in corpus_inputs]
    for row in rows:
        assert set(row) == {"source", "label", "confidence", "probabilities", "error", "error_type"}
        if row["error"] is None:
            assert row["label"] == max(row["probabilities"], key=row["probabilities"].get)
            assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def _on_a_terminal(*args: Any) -> tuple[subprocess.CompletedProcess[bytes], bytes]:
    """Run the command with stderr on a pseudo-terminal 100 columns wide: the process (stdout
    captured) and what the terminal showed."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    shown = bytearray()

    def read_terminal() -> None:  # read as the command writes, so a full terminal never blocks it
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # closed: everything has been read
                return
            if not chunk:
                return
            shown.extend(chunk)

    reader = threading.Thread(target=read_terminal)
    reader.start()
    try:
        proc = subprocess.run(entry_point() + [str(a) for a in args], stdout=subprocess.PIPE, stderr=follower,
                              timeout=300)
    finally:
        os.close(follower)
        reader.join(timeout=30)
        os.close(leader)
    return proc, bytes(shown)


def test_a_progress_bar_counts_the_clips_on_a_terminal(tiny_model_file: Path, corpus_inputs: list[Path],
                                                      tmp_path: Path) -> None:
    """With --output the rows go to the file and stderr, when it is a terminal, shows progress;
    when it is not (as in the test above), stderr stays free of it."""
    out = tmp_path / "rows.jsonl"
    proc, shown = _on_a_terminal("predict", tiny_model_file, *corpus_inputs, "--format", "jsonl", "--output", out,
                                 "--max-errors", "1000")
    assert proc.returncode == 0 and proc.stdout == b""
    count = len(corpus_inputs)
    assert b"predicting" in shown and f"{count}/{count}".encode() in shown, shown[-500:]
    assert len(_jsonl_rows(out)) == count


def test_one_failure_over_max_errors_exits_1_and_table_format_works(
    tiny_model_file: Path, corpus_inputs: list[Path], bad_corpus: dict[str, tuple[Path, type]]
) -> None:
    proc = run_cli("predict", tiny_model_file, *corpus_inputs, "--max-errors", len(CLI_BAD_CASES) - 1)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["source", "label", "confidence"]
    assert len(lines) == 1 + len(corpus_inputs)
    labels = set(audioseq.load(tiny_model_file).labels)
    for line, path in zip(lines[1:], corpus_inputs):
        assert str(path)[-30:] in line.split()[0]  # long paths are shortened from the left
        bad = [case for case in CLI_BAD_CASES if bad_corpus[case][0] == path]
        if bad:
            assert line.split()[1] == "-" and len(line.split()) > 3, line
        else:
            assert line.split()[1] in labels and 0 <= float(line.split()[2]) <= 1


def test_decoding_in_worker_processes_gives_the_same_rows(
    tiny_model_file: Path, corpus_inputs: list[Path], csv_run: Any
) -> None:
    proc = run_cli("predict", tiny_model_file, *corpus_inputs, "--format", "csv", "--batch-size", "2",
                   "--workers", "2", "--max-errors", "1000")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert rows == csv_run[1]


def test_folders_are_searched_recursively(tiny_model_file: Path, tmp_path: Path) -> None:
    root = tmp_path / "clips"
    expected_good = [
        write_wav(root / "a" / "one.wav", sweep(0.5, 8000, seed=1), 8000),
        write_wav(root / "a" / "b" / "deep" / "two.WAV", sweep(0.4, 16000, seed=2), 16000),
        write_wav(root / "three.wav", sweep(0.3, 22050, seed=3), 22050),
    ]
    flac = root / "b" / "four.flac"
    flac.parent.mkdir(parents=True)
    sf.write(flac, sweep(0.6, 8000, seed=4), 8000, format="FLAC")
    broken = root / "a" / "b" / "broken.wav"
    broken.write_text("not audio")
    (root / "a" / "notes.txt").write_text("not a clip, and not named like one")
    (root / "empty_dir.wav").mkdir()
    dangling = root / "b" / "gone.wav"
    dangling.symlink_to(root / "deleted.wav")  # a link whose clip was deleted: a row, not nothing
    (root / "a" / "._one.wav").write_bytes(b"\x00\x05\x16\x07 macOS metadata")  # hidden: not the user's audio
    write_wav(root / "__MACOSX" / "a" / "one.wav", sweep(0.5, 8000, seed=1), 8000)
    proc = run_cli("predict", tiny_model_file, root, "--format", "jsonl", "--max-errors", "2")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [row["source"] for row in rows] == sorted(str(p) for p in [*expected_good, flac, broken, dangling])
    by_source = {row["source"]: row for row in rows}
    assert by_source[str(broken)]["error_type"] == "UnreadableAudioError"
    assert (by_source[str(dangling)]["error_type"], by_source[str(dangling)]["error"]) == (
        "UnreadableAudioError", "no such file")
    assert all(by_source[str(p)]["label"] for p in [*expected_good, flac])


def test_a_folder_that_cannot_be_listed_is_an_error_row(
    tiny_model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "clips"
    good = write_wav(root / "one.wav", sweep(0.5, 8000, seed=1), 8000)
    locked = root / "locked"
    write_wav(locked / "inside.wav", sweep(0.5, 8000, seed=2), 8000)
    listing = os.scandir

    def scandir(path: Any = ".") -> Any:  # as for a folder without read permission (root would read it)
        if Path(os.fsdecode(path)) == locked:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return listing(path)

    monkeypatch.setattr(os, "scandir", scandir)
    result = CliRunner().invoke(click_group, ["predict", str(tiny_model_file), str(root), "--format", "jsonl",
                                              "--workers", "0"])
    assert result.exit_code == 1, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["source"] for row in rows] == [str(locked), str(good)]
    assert (rows[0]["error_type"], rows[0]["error"]) == ("UnreadableAudioError",
                                                         "is a folder that cannot be listed (Permission denied)")
    assert rows[1]["label"]
    [alone] = audioseq.load(tiny_model_file).predict([locked])
    assert alone.error == "is a folder that cannot be listed (Permission denied)"


def test_a_folder_s_message_looks_at_no_more_files_than_it_needs(tmp_path: Path) -> None:
    from audioseq.suffixes import has_audio

    for i in range(5):
        (tmp_path / f"{i}.txt").write_text("not audio")
    assert has_audio(tmp_path, look_at=3) is None  # gave up looking: a huge tree is not walked for a message
    assert has_audio(tmp_path) is False
    write_wav(tmp_path / "deep" / "a.wav", sweep(0.2, 8000), 8000)
    assert has_audio(tmp_path) is True


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the worker processes in /proc")
def test_sigterm_stops_predict_and_its_decoding_workers(tiny_model_file: Path, tmp_path: Path) -> None:
    wave = sweep(0.2, 8000)
    for i in range(3000):
        write_wav(tmp_path / "clips" / f"{i:04d}.wav", wave, 8000)
    proc = subprocess.Popen(entry_point() + ["predict", str(tiny_model_file), str(tmp_path / "clips"), "--workers",
                                             "2", "--batch-size", "1", "--output", str(tmp_path / "out.csv")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(workers := _children(proc.pid)) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, "the decoding workers never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    try:
        _, stderr = proc.communicate(timeout=60)  # an orphaned worker would hold the pipes open: a timeout here
        assert proc.returncode == 1 and "Aborted!" in stderr, stderr[-2000:]
        deadline = time.monotonic() + 30
        while any(Path(f"/proc/{w}").exists() for w in workers):
            assert time.monotonic() < deadline, "a decoding worker outlived the command"
            time.sleep(0.1)
    finally:  # a failed check leaves no process behind
        for pid in [proc.pid, *workers]:
            try:
                if "audioseq" in Path(f"/proc/{pid}/cmdline").read_text():
                    os.kill(pid, signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass
    assert not (tmp_path / "out.csv").exists()  # a run that was stopped writes no partial result


def test_a_reader_that_stops_early_ends_predict_quietly(tiny_model_file: Path, tmp_path: Path) -> None:
    wave = sweep(0.2, 8000)
    for i in range(1500):  # rows well beyond a pipe's buffer
        write_wav(tmp_path / "clips" / f"{i:04d}.wav", wave, 8000)
    proc = subprocess.Popen(entry_point() + ["predict", str(tiny_model_file), str(tmp_path / "clips"), "--format",
                                             "csv"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().startswith(b"source,label")  # as `| head -1` does
    proc.stdout.close()
    stderr = proc.communicate(timeout=120)[1].decode()
    assert proc.returncode == 1 and "Error" not in stderr and "Traceback" not in stderr, stderr[-2000:]


def test_python_m_audioseq_is_the_command_and_completion_sees_the_lazy_names() -> None:
    proc = subprocess.run([sys.executable, "-m", "audioseq", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "predict" in proc.stdout
    assert {"load", "train", "Classifier", "list_cells"} <= set(dir(audioseq))


def test_the_table_lines_up_when_every_source_is_short(
    tiny_model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_wav(tmp_path / "a.wav", sweep(0.5, 8000), 8000)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(click_group, ["predict", str(tiny_model_file), "a.wav"])
    header, row = result.stdout.splitlines()[:2]
    assert header.startswith("source  label")
    assert row.startswith("a.wav ") and row[header.index("label"):].split()[0] in ("a", "b", "c")


def test_the_plugins_listing_shows_markdown_code_not_rest() -> None:
    listing = CliRunner().invoke(click_group, ["plugins"]).output
    assert "manifest" in listing and "``" not in listing


def test_output_dash_is_stdout_and_a_device_is_written_not_replaced(tiny_model_file: Path, good_wavs: list[Path]) -> None:
    dash = CliRunner().invoke(click_group, ["predict", str(tiny_model_file), str(good_wavs[0]), "--format", "jsonl",
                                            "--output", "-"])
    assert dash.exit_code == 0 and json.loads(dash.stdout)["source"] == str(good_wavs[0])
    assert not Path("-").exists()
    null = CliRunner().invoke(click_group, ["predict", str(tiny_model_file), str(good_wavs[0]), "--output", "/dev/null"])
    assert null.exit_code == 0 and Path("/dev/null").is_char_device()
    if Path("/dev/full").exists():
        full = CliRunner().invoke(click_group, ["predict", str(tiny_model_file), str(good_wavs[0]), "--output", "/dev/full"])
        assert full.exit_code == 1 and "OSError: [Errno 28] No space left on device" in full.output


def test_a_folder_without_audio_is_an_error_row(tiny_model_file: Path, tmp_path: Path) -> None:
    (tmp_path / "only.txt").write_text("nothing to hear")
    proc = run_cli("predict", tiny_model_file, tmp_path, "--format", "jsonl")
    assert proc.returncode == 1
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [row["source"] for row in rows] == [str(tmp_path)]
    assert rows[0]["error_type"] == "UnreadableAudioError" and rows[0]["label"] is None
    assert rows[0]["error"].startswith("is a folder with no audio file in it (looked for .aif, .aiff")
    assert "1 of 1 input(s) failed" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("option", [["--batch-size", "0"], ["--workers", "-1"], ["--max-errors", "-1"]],
                         ids=["batch-size", "workers", "max-errors"])
def test_a_bad_predict_option_is_refused_before_the_output_is_touched(
    option: list[str], tiny_model_file: Path, good_wavs: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "predictions.csv"
    out.write_text("yesterday's predictions\n")
    result = CliRunner().invoke(click_group, ["predict", str(tiny_model_file), str(good_wavs[0]), "--format", "csv",
                                              "--output", str(out), *option])
    assert result.exit_code == 2 and f"Invalid value for '{option[0]}'" in result.output
    assert out.read_text() == "yesterday's predictions\n"


def test_predict_reads_more_inputs_from_a_list_as_it_goes(tiny_model_file: Path, good_wavs: list[Path],
                                                           tmp_path: Path) -> None:
    """--files-from - : the paths on stdin, one a line, after the command line's; folders are
    searched, blank lines skipped, a missing file is an error row."""
    folder = tmp_path / "more"
    for i, wav in enumerate(good_wavs[:2]):
        (folder / f"sub{i}").mkdir(parents=True)
        (folder / f"sub{i}" / wav.name).write_bytes(wav.read_bytes())
    missing = tmp_path / "gone.wav"
    listed = f"{good_wavs[1]}\n\n{folder}\r\n{missing}\n"
    proc = subprocess.run(entry_point() + ["predict", str(tiny_model_file), str(good_wavs[0]), "--files-from", "-",
                                           "--format", "jsonl"], input=listed, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [row["source"] for row in rows] == [str(good_wavs[0]), str(good_wavs[1]),
                                               str(folder / "sub0" / good_wavs[0].name),
                                               str(folder / "sub1" / good_wavs[1].name), str(missing)]
    assert all(row["label"] is not None for row in rows[:4]) and rows[4]["error_type"] == "UnreadableAudioError"
    assert proc.returncode == 1 and "1 of 5 input(s) failed" in proc.stderr


def test_predict_needs_inputs_or_a_list(tiny_model_file: Path) -> None:
    result = CliRunner().invoke(click_group, ["predict", str(tiny_model_file)])
    assert result.exit_code == 2 and "give the files or folders to classify, as INPUTS or with --files-from" in result.output


def test_a_list_naming_the_output_leaves_it_whole(tiny_model_file: Path, good_wavs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "predictions.csv"
    out.write_text("yesterday's predictions\n")
    listing = tmp_path / "list.txt"
    listing.write_text(f"{good_wavs[0]}\n{out}\n")
    result = CliRunner().invoke(click_group, ["predict", str(tiny_model_file), "--files-from", str(listing),
                                              "--format", "csv", "--output", str(out)])
    assert result.exit_code == 2 and f"{out} is also an input" in result.output
    assert out.read_text() == "yesterday's predictions\n"


def test_predict_refuses_to_write_over_one_of_its_inputs(tiny_model_file: Path, good_wavs: list[Path]) -> None:
    before = good_wavs[0].read_bytes()
    result = CliRunner().invoke(click_group, ["predict", str(tiny_model_file), str(good_wavs[0].parent), "--format",
                                              "csv", "--output", str(good_wavs[0])])
    assert result.exit_code == 2 and "is also an input" in result.output and "would destroy it" in result.output
    assert good_wavs[0].read_bytes() == before


def test_a_predict_run_that_fails_leaves_the_old_output_whole(
    tiny_model_file: Path, good_wavs: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "predictions.csv"
    out.write_text("yesterday's predictions\n")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio")
    proc = run_cli("predict", tiny_model_file, good_wavs[0], junk, "--format", "csv", "--output", out)
    assert proc.returncode == 1 and "1 of 2 input(s) failed" in proc.stderr
    assert out.read_text().startswith("source,label,confidence")  # the whole result replaced the old file
    assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def test_predict_output_through_a_link_writes_the_file_and_keeps_its_mode(
    tiny_model_file: Path, good_wavs: list[Path], tmp_path: Path
) -> None:
    (tmp_path / "real").mkdir()
    real = tmp_path / "real" / "predictions.csv"
    real.write_text("yesterday's predictions\n")
    real.chmod(0o600)
    link = tmp_path / "predictions.csv"
    link.symlink_to(real)
    result = CliRunner().invoke(click_group, ["predict", str(tiny_model_file), str(good_wavs[0]), "--format", "csv",
                                              "--output", str(link)])
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and real.read_text().startswith("source,label,confidence")
    assert oct(real.stat().st_mode & 0o777) == oct(0o600)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_a_predict_run_that_breaks_off_leaves_the_old_output_whole(
    tiny_model_file: Path, good_wavs: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from audioseq.classifier import Classifier

    original = Classifier.predict_iter

    def breaks_off(self: Classifier, *args: Any, **kwargs: Any) -> Any:
        yield next(iter(original(self, *args, **kwargs)))
        raise OSError("the disk holding the clips went away")

    monkeypatch.setattr(Classifier, "predict_iter", breaks_off)
    out = tmp_path / "predictions.csv"
    out.write_text("yesterday's predictions\n")
    result = CliRunner().invoke(click_group, ["predict", str(tiny_model_file), *map(str, good_wavs), "--format", "csv",
                                              "--output", str(out)])
    assert result.exit_code == 1 and "OSError: the disk holding the clips went away" in result.output
    assert out.read_text() == "yesterday's predictions\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.csv"]  # no temporary file left


def test_a_silent_clip_is_an_error_row_not_a_label(tiny_model_file: Path, good_wavs: list[Path], tmp_path: Path) -> None:
    silent = write_wav(tmp_path / "silent.wav", np.zeros(8000, dtype=np.float32), 8000)
    whisper = write_wav(tmp_path / "whisper.wav", 10 ** (-70 / 20) * sweep(0.5, 8000, seed=5), 8000)
    # A microphone's DC bias over silence: loud samples, nothing that changes.
    offset = write_wav(tmp_path / "offset.wav", 0.3 + 10 ** (-70 / 20) * sweep(0.5, 8000, seed=6), 8000)
    proc = run_cli("predict", tiny_model_file, good_wavs[0], silent, whisper, offset, "--format", "jsonl",
                   "--max-errors", "3")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert rows[0]["label"] and [row["error_type"] for row in rows[1:]] == ["SilentAudioError"] * 3
    assert rows[1]["error"] == "the clip is silent (its loudest sample is below -60 dBFS)"
    assert rows[3]["error"] == ("the clip is silent: apart from a constant offset, its loudest sample is below "
                                "-60 dBFS")


# --- predict: damaged and hostile model files ---------------------------------------------------


class _Payload:
    """Unpickling this creates ``marker``: proof that a pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (Path.touch, (self.marker,))


def _pickle_file(folder: Path, marker: Path) -> Path:
    path = folder / "model.safetensors"
    path.write_bytes(pickle.dumps(_Payload(marker)))
    return path


def _torch_save_file(folder: Path, marker: Path) -> Path:
    path = folder / "model.safetensors"
    torch.save({"weights": _Payload(marker)}, path)
    return path


def _edited(source: Path, folder: Path, edit: Callable[[dict[str, Any]], Any]) -> Path:
    tensors, document = read_tensors(source)
    edit(document)
    path = folder / "model.safetensors"
    write_tensors(path, tensors, document)
    return path


def _non_finite(source: Path, folder: Path) -> Path:
    tensors, document = read_tensors(source)
    tensors["head.bias"] = torch.full_like(tensors["head.bias"], float("nan"))
    path = folder / "model.safetensors"
    path.write_bytes(safetensors.torch.save(tensors, metadata={METADATA_KEY: json.dumps(document)}))
    return path


BAD_MODELS: dict[str, tuple[Callable[[Path, Path, Path], Path], str]] = {
    "pickle renamed .safetensors": (lambda src, d, m: _pickle_file(d, m), "ModelFileError"),
    "torch.save zip renamed .safetensors": (lambda src, d, m: _torch_save_file(d, m), "ModelFileError"),
    "cell from a missing plugin": (
        lambda src, d, m: _edited(src, d, lambda doc: doc["network"].update(cell="nope-cell")), "nope-cell"),
    "format version from the future": (
        lambda src, d, m: _edited(src, d, lambda doc: doc.update(format_version=99)), "format version 99"),
    "hidden size that does not match": (
        lambda src, d, m: _edited(src, d, lambda doc: doc["network"].update(hidden_size=9)), "ModelFileError"),
    "non-finite weights": (lambda src, d, m: _non_finite(src, d), "non-finite"),
}


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_a_bad_model_file_exits_1_with_a_clear_message(
    case: str, tiny_model_file: Path, good_wavs: list[Path], tmp_path: Path
) -> None:
    marker = tmp_path / "payload-ran"
    make, words = BAD_MODELS[case]
    model = make(tiny_model_file, tmp_path, marker)
    proc = run_cli("predict", model, good_wavs[0])
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert words in proc.stderr
    assert "Traceback" not in proc.stderr
    assert str(model) in proc.stderr or "nope-cell" in proc.stderr
    assert not marker.exists(), "the model file's pickle payload ran"


def test_the_pickle_payload_is_live(tmp_path: Path) -> None:
    """The hostile files above would really run code if unpickled: the test above can fail."""
    marker = tmp_path / "ran"
    pickle.loads(_pickle_file(tmp_path, marker).read_bytes())
    assert marker.exists()


# --- train, evaluate, info ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_cli(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    folder = tmp_path_factory.mktemp("cli_train")
    out = folder / "m.safetensors"
    proc = run_cli("train", "--dataset", "synthetic", "--out", out, "--epochs", "2", *TINY_TRAIN_ARGS, cwd=folder)
    return proc, out


def _check_scores(scores: dict[str, Any], labels: list[str]) -> None:
    cm = np.array(scores["confusion_matrix"])
    assert cm.shape == (len(labels), len(labels))
    assert cm.sum() > 0
    assert scores["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    assert 0.0 <= scores["macro_f1"] <= 1.0


def test_train_writes_the_model_and_its_metrics(trained_cli: tuple[Any, Path]) -> None:
    proc, out = trained_cli
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stdout and "test accuracy" in proc.stdout
    assert not Path(str(out) + ".ckpt.safetensors").exists()  # the checkpoint goes once the model is written
    metrics = json.loads(out.with_suffix(".metrics.json").read_text())
    clf = audioseq.load(out)
    assert clf.labels == sorted(["tone", "chirp-up", "chirp-down", "noise-burst", "pulse-train"])
    for split in ("valid", "test"):
        _check_scores(metrics[split], clf.labels)
    assert [row["epoch"] for row in metrics["history"]] == [1, 2]
    assert metrics["test"]["count"] == 5 * 1  # per_class=12: index 9 of every 10 is test
    assert clf.metrics["valid"]["accuracy"] == metrics["valid"]["accuracy"]


def test_evaluate_json_reproduces_the_test_scores(trained_cli: tuple[Any, Path]) -> None:
    _, out = trained_cli
    result = cli_json("evaluate", out, "--dataset", "synthetic", "--dataset-opt", "per_class=12", "--json")
    assert {"accuracy", "macro_f1", "confusion_matrix", "labels", "per_class_recall"} <= set(result)
    assert result["split"] == "test"
    assert result["labels"] == audioseq.load(out).labels
    assert list(result["per_class_recall"]) == result["labels"]
    _check_scores(result, result["labels"])
    cm = np.array(result["confusion_matrix"])
    for i, label in enumerate(result["labels"]):
        support = cm[i].sum()
        assert result["per_class_recall"][label] == (pytest.approx(cm[i, i] / support) if support else None)
    stored = json.loads(out.with_suffix(".metrics.json").read_text())["test"]
    assert result["confusion_matrix"] == stored["confusion_matrix"]
    assert result["accuracy"] == stored["accuracy"]


def test_evaluate_leaves_out_the_recall_of_labels_without_clips(trained_cli: tuple[Any, Path], tmp_path: Path) -> None:
    _, out = trained_cli
    clips = tmp_path / "clips"
    for label, seed in (("tone", 1), ("tone", 2), ("noise-burst", 3)):
        write_wav(clips / label / f"{seed}.wav", sweep(0.5, 8000, seed=seed), 8000)
    result = cli_json("evaluate", out, "--dataset", "folder", "--data", clips, "--json")
    assert result["count"] == 3
    assert {label for label, recall in result["per_class_recall"].items() if recall is not None} == {"tone", "noise-burst"}
    text = run_cli("evaluate", out, "--dataset", "folder", "--data", clips).stdout
    assert "  tone " in text and "noise-burst" in text and "chirp-up" not in text


@pytest.mark.parametrize(("data", "message"), [
    ({"hum": 2, "hiss": 1}, "none of the 3 clips of the dataset could be scored: 3 have labels the model does not "
                            "know ('hiss', 'hum')"),
    ({"test/tone": 0, "train/tone": 2}, "split 'test' has no clips"),
])
def test_evaluate_with_nothing_to_score_is_an_error(
    trained_cli: tuple[Any, Path], tmp_path: Path, data: dict[str, int], message: str
) -> None:
    _, out = trained_cli
    clips = tmp_path / "clips"
    for folder, count in data.items():
        (clips / folder).mkdir(parents=True)
        for i in range(count):
            write_wav(clips / folder / f"{i}.wav", sweep(0.5, 8000, seed=i), 8000)
    split = ["--split", "test"] if "test/tone" in data else []
    proc = run_cli("evaluate", out, "--dataset", "folder", "--data", clips, *split)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"Error: EvaluationError: {message}" in proc.stderr


def test_evaluate_shows_progress_on_a_terminal_and_keeps_stdout_for_the_report(trained_cli: tuple[Any, Path]) -> None:
    _, out = trained_cli
    proc, shown = _on_a_terminal("evaluate", out, "--dataset", "synthetic", "--dataset-opt", "per_class=12", "--json")
    assert proc.returncode == 0 and b"evaluating" in shown, shown[-500:]
    assert json.loads(proc.stdout)["accuracy"] == cli_json("evaluate", out, "--dataset", "synthetic", "--dataset-opt",
                                                           "per_class=12", "--json")["accuracy"]


def test_info_json_describes_the_model(trained_cli: tuple[Any, Path]) -> None:
    _, out = trained_cli
    info = cli_json("info", out, "--json")
    clf = audioseq.load(out)
    assert info["path"] == str(out)
    assert info["labels"] == clf.labels and info["sample_rate"] == 8000
    assert info["network"]["cell"] == "lstm" and info["network"]["hidden_size"] == 16
    assert info["network"]["num_layers"] == 1
    assert info["feature"]["name"] == "mfcc"
    assert info["parameters"] == clf.num_parameters() > 0
    assert info["metrics"]["test"]["accuracy"] == clf.metrics["test"]["accuracy"]
    assert info["runtime"] == clf.runtime == ("onnxruntime" if onnxruntime_available() else "torch")


def test_info_of_a_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    proc = run_cli("info", tmp_path / "absent.safetensors")
    assert proc.returncode == 1
    assert "absent.safetensors" in proc.stderr and "Traceback" not in proc.stderr


def test_an_unknown_model_name_lists_the_ready_trained_ones(tmp_path: Path) -> None:
    proc = run_cli("predict", "digitz", tmp_path / "clip.wav", cwd=tmp_path)
    assert proc.returncode == 1
    ready = ", ".join(audioseq.bundled_models())
    assert f"ModelFileError: digitz: no such file, nor a ready-trained model of that name (ready-trained: {ready})" \
        in proc.stderr


def test_info_describes_a_model_whose_plugin_is_missing(tiny_model_file: Path, tmp_path: Path) -> None:
    model = _edited(tiny_model_file, tmp_path, lambda doc: doc["network"].update(cell="quantum-lstm"))
    proc = run_cli("info", model)
    assert proc.returncode == 1
    assert "  cell: quantum-lstm" in proc.stdout and f"labels: {', '.join(audioseq.load(tiny_model_file).labels)}" \
        in proc.stdout
    assert "Error: cannot run here: UnknownComponentError: unknown cell 'quantum-lstm'" in proc.stderr
    described = json.loads(run_cli("info", model, "--json").stdout)
    assert described["network"]["cell"] == "quantum-lstm" and described["runtime"] is None
    assert described["error"].startswith("UnknownComponentError: unknown cell 'quantum-lstm'")


def _wav_tree(root: Path) -> dict[str, list[Path]]:
    """Two sound classes, eight clips each, as 8 kHz WAVs: {label: [paths]}."""
    out: dict[str, list[Path]] = {"hum": [], "hiss": []}
    rng = np.random.default_rng(7)
    for i in range(8):
        n = int(rng.uniform(0.25, 0.5) * 8000)
        t = np.arange(n) / 8000
        hum = 0.4 * np.sin(2 * np.pi * rng.uniform(150, 300) * t) + 0.01 * rng.standard_normal(n)
        hiss = 0.2 * rng.standard_normal(n)
        out["hum"].append(write_wav(root / "hum" / f"hum_{i}.wav", hum.astype(np.float32), 8000))
        out["hiss"].append(write_wav(root / "hiss" / "nested" / f"hiss_{i}.wav", hiss.astype(np.float32), 8000))
    return out


def test_train_on_a_folder_dataset(tmp_path: Path) -> None:
    clips = _wav_tree(tmp_path / "clips")
    out = tmp_path / "folder.safetensors"
    proc = run_cli("train", "--dataset", "folder", "--data", tmp_path / "clips", "--out", out,
                   "--epochs", "1", "--hidden", "8", "--layers", "1", "--no-utterance-norm")
    assert proc.returncode == 0, proc.stderr
    clf = audioseq.load(out)
    assert clf.labels == ["hiss", "hum"] and clf.sample_rate == 8000
    assert clf.spec.network.utterance_norm is False  # the default (True) is in the defaults test
    metrics = json.loads(out.with_suffix(".metrics.json").read_text())
    assert metrics["train_clips"] + metrics["valid"]["count"] == sum(len(v) for v in clips.values())
    assert "test" not in metrics  # the folder has no test/ split


def test_train_on_a_manifest_with_relative_paths_splits_and_groups(tmp_path: Path) -> None:
    clips = _wav_tree(tmp_path / "data" / "audio")
    manifest = tmp_path / "data" / "manifest.csv"
    with open(manifest, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "split", "group"])
        for label, paths in clips.items():
            for i, path in enumerate(paths):
                split = "test" if i < 2 else "train"
                writer.writerow([path.relative_to(manifest.parent).as_posix(), label, split, f"speaker{i % 3}"])
    out = tmp_path / "manifest.safetensors"
    proc = run_cli("train", "--dataset", "manifest", "--data", manifest, "--out", out,
                   "--epochs", "1", "--hidden", "8", "--layers", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(out.with_suffix(".metrics.json").read_text())
    assert metrics["test"]["count"] == 4 and metrics["test"]["errors"] == []
    assert metrics["train_clips"] + metrics["valid"]["count"] == 12
    assert audioseq.load(out).labels == ["hiss", "hum"]


def test_train_refuses_a_manifest_without_its_columns(tmp_path: Path) -> None:
    manifest = tmp_path / "bad.csv"
    manifest.write_text("file,class\nx.wav,a\n")
    proc = run_cli("train", "--dataset", "manifest", "--data", manifest, "--out", tmp_path / "m.safetensors")
    assert proc.returncode == 1
    assert "path,label" in proc.stderr and "Traceback" not in proc.stderr


# --- plugins and the validation of component parameters -----------------------------------------

COMPONENTS = [(kind, name) for kind, names in (
    ("cell", audioseq.list_cells()), ("feature", audioseq.list_features()), ("dataset", audioseq.list_datasets())
) for name in names]


@pytest.fixture(scope="module")
def plugins_json() -> list[dict[str, Any]]:
    return cli_json("plugins", "--json")


@pytest.mark.parametrize(("kind", "name"), COMPONENTS)
def test_plugins_json_lists_every_component_with_its_parameters(
    kind: str, name: str, plugins_json: list[dict[str, Any]]
) -> None:
    found = [(plugin, c) for plugin in plugins_json for c in plugin["components"]
             if c["kind"] == kind and c["name"] == name]
    assert len(found) == 1
    plugin, component = found[0]
    assert component["plugin"] == plugin["name"] and plugin["error"] is None
    assert [(p["name"], p["type"], p["default"]) for p in component["params"]] == [
        (p["name"], p["type"], p["default"]) for p in audioseq.component_params(kind, name)
    ]


def test_plugins_json_shows_the_built_ins(plugins_json: list[dict[str, Any]]) -> None:
    by_name = {plugin["name"]: plugin for plugin in plugins_json}
    cells = {c["name"] for c in by_name["audioseq.default_plugins.cells"]["components"]}
    datasets = {c["name"] for c in by_name["audioseq.default_plugins.datasets"]["components"]}
    features = {c["name"] for c in by_name["audioseq.default_plugins.features"]["components"]}
    assert cells >= {"rnn", "lstm", "gru"}
    assert datasets >= {"folder", "manifest", "synthetic"}
    assert features >= {"logmel", "mfcc", "spectrogram"}
    synthetic = next(c for c in by_name["audioseq.default_plugins.datasets"]["components"] if c["name"] == "synthetic")
    assert {"name": "per_class", "type": "int", "default": 40}.items() <= synthetic["params"][0].items()


_BAD_VALUES = {"int": "1.5x", "float": "abc", "bool": "maybe", "choice": "not-a-choice",
               "int | None": "1.5x", "float | None": "abc", "list[int]": "a,b", "list[float]": "a,b"}
_OPTION = {"cell": "--cell-opt", "feature": "--feature-opt", "dataset": "--dataset-opt"}

BAD_OPTIONS = [
    (kind, name, p["name"], _BAD_VALUES[p["type"]])
    for kind, name in COMPONENTS for p in audioseq.component_params(kind, name) if p["type"] in _BAD_VALUES
] + [(kind, name, "no_such_param", "1") for kind, name in COMPONENTS]


def _train_args(kind: str, name: str, option: str) -> list[str]:
    args = ["train", "--out", "never-written.safetensors", "--epochs", "1"]
    args += ["--dataset", name if kind == "dataset" else "synthetic"]
    args += ["--cell", name] if kind == "cell" else []
    args += ["--features", name] if kind == "feature" else []
    return args + [_OPTION[kind], option]


@pytest.mark.parametrize(("kind", "name", "param", "value"), BAD_OPTIONS,
                         ids=[f"{k}-{n}-{p}" for k, n, p, _ in BAD_OPTIONS])
def test_a_bad_component_option_is_refused_naming_the_parameter(
    kind: str, name: str, param: str, value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(click_group, _train_args(kind, name, f"{param}={value}"))
    assert result.exit_code != 0
    assert param in result.output and "Error" in result.output
    assert not (tmp_path / "never-written.safetensors").exists()


@pytest.mark.parametrize(("option", "words"), [
    (["--cell", "rnn", "--cell-opt", "nonlinearity=sigmoid"], "nonlinearity"),
    (["--dataset-opt", "per_class=lots"], "per_class"),
    (["--cell-opt", "forget_bias"], "key=value"),
], ids=["cell", "dataset", "not-key-value"])
def test_bad_options_through_the_installed_command(option: list[str], words: str, tmp_path: Path) -> None:
    proc = run_cli("train", "--dataset", "synthetic", "--out", tmp_path / "m.safetensors", *option)
    assert proc.returncode != 0
    assert words in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize("option", [
    ["--epochs", "0"], ["--layers", "0"], ["--hidden", "-3"], ["--batch-size", "0"], ["--patience", "0"],
    ["--sample-rate", "0"], ["--lr", "0"], ["--dropout", "1"],
], ids=lambda option: option[0])
def test_a_training_setting_that_cannot_train_is_refused_before_the_data_is_read(
    option: list[str], tmp_path: Path
) -> None:
    result = CliRunner().invoke(click_group, ["train", "--dataset", "folder", "--data", str(tmp_path / "absent"),
                                              "--out", str(tmp_path / "m.safetensors"), *option])
    assert result.exit_code == 2 and f"Invalid value for '{option[0]}'" in result.output
    assert list(tmp_path.iterdir()) == []


def test_an_out_folder_that_does_not_exist_is_refused_before_training(tmp_path: Path) -> None:
    result = CliRunner().invoke(click_group, ["train", "--dataset", "synthetic", "--out",
                                              str(tmp_path / "missing" / "m.safetensors")])
    assert result.exit_code == 2
    assert "Invalid value for '--out': the folder" in result.output and "missing does not exist" in result.output


def test_export_refuses_to_write_over_the_model(tiny_model_file: Path) -> None:
    before = tiny_model_file.read_bytes()
    result = CliRunner().invoke(click_group, ["export", str(tiny_model_file), str(tiny_model_file)])
    assert result.exit_code == 2 and "is the model itself" in result.output
    assert tiny_model_file.read_bytes() == before


def test_export_into_a_missing_folder_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(click_group, ["export", "digits", str(tmp_path / "missing" / "d.onnx")])
    assert result.exit_code == 2 and "Invalid value for 'OUT': the folder" in result.output
    assert not (tmp_path / "missing").exists()


def test_the_valid_fraction_option_sets_the_validation_share(tmp_path: Path) -> None:
    clips = _wav_tree(tmp_path / "clips")  # 16 clips
    out = tmp_path / "m.safetensors"
    proc = run_cli("train", "--dataset", "folder", "--data", tmp_path / "clips", "--out", out, "--epochs", "1",
                   "--hidden", "8", "--layers", "1", "--valid-fraction", "0.5")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(out.with_suffix(".metrics.json").read_text())
    assert metrics["valid"]["count"] == metrics["train_clips"] == sum(map(len, clips.values())) // 2


def test_training_warnings_are_one_line_and_resume_says_what_it_found(tmp_path: Path) -> None:
    clips = _wav_tree(tmp_path / "clips")
    (clips["hum"][0].parent / "broken.wav").write_text("not audio")
    out = tmp_path / "model.v1"  # not .safetensors: its metrics must not be "model.metrics.json"
    args = ["train", "--dataset", "folder", "--data", tmp_path / "clips", "--out", out,
            "--epochs", "1", "--hidden", "8", "--layers", "1"]
    proc = run_cli(*args, "--resume")
    assert proc.returncode == 0, proc.stderr
    assert f"no checkpoint at {out}.ckpt.safetensors: training from the start" in proc.stderr
    assert "warning: decoding training clips: left out 1 clip(s) that cannot be used (1 UnreadableAudioError), e.g. " \
        in proc.stderr
    assert "UserWarning" not in proc.stderr and ".py:" not in proc.stderr
    assert (tmp_path / "model.v1.metrics.json").is_file() and not (tmp_path / "model.metrics.json").exists()


def test_metrics_file_is_strict_json_when_no_validation_clip_can_be_read(tmp_path: Path) -> None:
    rows = ["path,label,split"]
    t = np.arange(2400) / 8000
    for label, freq in (("a", 300.0), ("b", 900.0)):
        for i in range(4):
            write_wav(tmp_path / f"{label}{i}.wav", 0.5 * np.sin(2 * np.pi * freq * (1 + 0.05 * i) * t), 8000)
            rows.append(f"{label}{i}.wav,{label},train")
        write_wav(tmp_path / f"{label}v.wav", np.zeros(2400), 8000)  # silent: no validation clip is readable
        rows.append(f"{label}v.wav,{label},valid")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "m.safetensors"
    proc = run_cli("train", "--dataset", "manifest", "--data", tmp_path / "m.csv", "--out", out, "--epochs", "1",
                   "--hidden", "4", "--layers", "1", "--no-augment")
    assert proc.returncode == 0, proc.stderr
    assert "validation accuracy unknown (no validation clip could be read)" in proc.stdout

    def refuse(token: str) -> None:
        raise ValueError(f"{token} is not JSON")

    metrics = json.loads(out.with_suffix(".metrics.json").read_text(), parse_constant=refuse)
    assert metrics["history"][0]["valid_accuracy"] is None


def test_train_defaults_are_the_engine_defaults() -> None:
    """The CLI spells its defaults out (so that --help needs no torch); they must be TrainConfig's."""
    from audioseq.cli import train as train_command
    from audioseq.training import TrainConfig

    option = {p.name: p.default for p in train_command.params}
    engine = TrainConfig()
    pairs = {"feature": "feature", "cell": "cell", "hidden": "hidden_size", "layers": "num_layers",
             "bidirectional": "bidirectional", "pooling": "pooling", "epochs": "epochs", "patience": "patience",
             "batch_size": "batch_size", "lr": "lr", "dropout": "dropout", "sample_rate": "sample_rate",
             "seed": "seed", "device": "device", "utterance_norm": "utterance_norm", "valid_fraction": "valid_fraction"}
    assert {k: option[k] for k in pairs} == {k: getattr(engine, v) for k, v in pairs.items()}
