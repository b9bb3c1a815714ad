"""Model files: malformed, hostile and valid safetensors files, and atomic writes."""

from __future__ import annotations

import json
import math
import os
import pathlib
import pickle
import struct
from pathlib import Path
from typing import Any, Callable

import pytest
import safetensors.torch
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audioseq.errors import ModelFileError
from audioseq.modelfile import (
    MAX_FILE_BYTES,
    MAX_HEADER_BYTES,
    METADATA_KEY,
    inspect_header,
    read_tensors,
    write_tensors,
)

DOCUMENT = {"cell": "gru", "hidden_size": 8, "labels": ["no", "yes"]}


def _tensors() -> dict[str, torch.Tensor]:
    return {
        "bias": torch.tensor([0.5, -0.0, 1e-40], dtype=torch.float32),  # -0.0 and a subnormal test bit-exactness
        "steps": torch.tensor([3, -7], dtype=torch.int64),
        "weight": torch.arange(6, dtype=torch.float32).reshape(2, 3) / 7,
    }


@pytest.fixture()
def valid(tmp_path: Path) -> Path:
    path = tmp_path / "model.safetensors"
    write_tensors(path, _tensors(), DOCUMENT)
    return path


def _split(blob: bytes) -> tuple[dict[str, Any], bytes]:
    """A safetensors file as (header, data section)."""
    (length,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8 : 8 + length]), blob[8 + length :]


def _join(header: dict[str, Any] | str | bytes, data: bytes) -> bytes:
    raw = header if isinstance(header, bytes) else (
        header if isinstance(header, str) else json.dumps(header)
    ).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def _edit(change: Callable[[dict[str, Any]], object]) -> Callable[[bytes], bytes]:
    """A corruption that edits the parsed header in place and keeps the data section."""

    def corrupt(blob: bytes) -> bytes:
        header, data = _split(blob)
        change(header)
        return _join(header, data)

    return corrupt


def _shift_middle_tensor(header: dict[str, Any]) -> None:
    """Move the second tensor (by offset) 4 bytes back, into the first one."""
    tensors = sorted((v["data_offsets"], k) for k, v in header.items() if k != "__metadata__")
    (begin, end), name = tensors[1]
    header[name]["data_offsets"] = [begin - 4, end - 4]


def _nan_in_weight(blob: bytes) -> bytes:
    header, data = _split(blob)
    begin = header["weight"]["data_offsets"][0]
    patched = data[:begin] + struct.pack("<f", math.nan) + data[begin + 4 :]
    return _join(header, patched)


MALFORMED: dict[str, Callable[[bytes], bytes]] = {
    "empty file": lambda blob: b"",
    "7 bytes": lambda blob: blob[:7],
    "header length 2**63": lambda blob: struct.pack("<Q", 2**63) + blob[8:],
    "header length over the limit": lambda blob: struct.pack("<Q", MAX_HEADER_BYTES + 1) + blob[8:],
    "header longer than the file": lambda blob: struct.pack("<Q", len(blob)) + blob[8:],
    "header not JSON": lambda blob: _join(b"{not json at all", _split(blob)[1]),
    "header not UTF-8": lambda blob: _join(b'{"\xff\xfe": 1}', _split(blob)[1]),
    "header a JSON list": lambda blob: _join("[1, 2, 3]", _split(blob)[1]),
    "header with NaN": lambda blob: _join('{"__metadata__": {}, "x": NaN}', _split(blob)[1]),
    "duplicate tensor names": lambda blob: _join(
        json.dumps(_split(blob)[0])[:-1] + ', "bias": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]}}',
        _split(blob)[1],
    ),
    "truncated in the data section": lambda blob: blob[:-5],
    "trailing junk": lambda blob: blob + b"junk",
    "gap between tensors": lambda blob: _join(
        {k: v if k == "__metadata__" else {**v, "data_offsets": [o + 4 for o in v["data_offsets"]]}
         for k, v in _split(blob)[0].items()},
        b"\0" * 4 + _split(blob)[1],
    ),
    "overlapping offsets": _edit(_shift_middle_tensor),
    "end offset beyond the data": _edit(lambda h: h["weight"].update(data_offsets=[h["weight"]["data_offsets"][0], 10_000])),
    "end offset 2**70": _edit(lambda h: h["weight"].update(data_offsets=[h["weight"]["data_offsets"][0], 2**70])),
    "begin after end": _edit(lambda h: h["weight"].update(data_offsets=h["weight"]["data_offsets"][::-1])),
    "offsets not integers": _edit(lambda h: h["weight"].update(data_offsets=[float(o) for o in h["weight"]["data_offsets"]])),
    "negative offset": _edit(lambda h: h["weight"].update(data_offsets=[-1, h["weight"]["data_offsets"][1]])),
    "shape overflow": _edit(lambda h: h["weight"].update(shape=[2**40, 2**40])),
    "shape 2**64 times 0": _edit(lambda h: h["weight"].update(shape=[2**64, 0], data_offsets=[0, 0])),
    "negative shape": _edit(lambda h: h["weight"].update(shape=[-2, -3])),
    "shape of booleans": _edit(lambda h: h["steps"].update(shape=[True, True])),
    "shape not a list": _edit(lambda h: h["weight"].update(shape="2x3")),
    "dtype F99": _edit(lambda h: h["weight"].update(dtype="F99")),
    "dtype not a string": _edit(lambda h: h["weight"].update(dtype=["F32"])),
    "dtype too small for the span": _edit(lambda h: h["weight"].update(dtype="F16")),
    "dtype too large for the span": _edit(lambda h: h["weight"].update(dtype="F64")),
    "entry with an extra key": _edit(lambda h: h["weight"].update(extra=1)),
    "entry missing a key": _edit(lambda h: h["weight"].pop("shape")),
    "entry not an object": _edit(lambda h: h.update(weight=[1, 2])),
    "metadata value not a string": _edit(lambda h: h.update(__metadata__={METADATA_KEY: {"cell": "gru"}})),
    "metadata not an object": _edit(lambda h: h.update(__metadata__=["x"])),
    "NaN weights": _nan_in_weight,
    "infinite weights": lambda blob: _nan_in_weight(blob).replace(struct.pack("<f", math.nan), struct.pack("<f", math.inf)),
    "missing document": _edit(lambda h: h.pop("__metadata__")),
    "document not JSON": _edit(lambda h: h.update(__metadata__={METADATA_KEY: "{cell: gru"})),
    "document not an object": _edit(lambda h: h.update(__metadata__={METADATA_KEY: '["gru"]'})),
    "document with duplicate keys": _edit(lambda h: h.update(__metadata__={METADATA_KEY: '{"a": 1, "a": 2}'})),
}


@pytest.mark.parametrize("corrupt", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_file_raises_model_file_error_naming_it(valid: Path, corrupt: Callable[[bytes], bytes]) -> None:
    valid.write_bytes(corrupt(valid.read_bytes()))
    with pytest.raises(ModelFileError) as caught:
        read_tensors(valid)
    assert caught.value.path == str(valid)
    assert str(valid) in str(caught.value)


@pytest.mark.parametrize(
    ("corruption", "words"),
    [
        ("header longer than the file", "header claims"),
        ("trailing junk", "4 bytes of trailing data"),
        ("overlapping offsets", "overlaps tensor"),
        ("shape overflow", "needs more than"),
        ("dtype F99", "unsupported dtype 'F99'"),
        ("NaN weights", "non-finite values in tensor 'weight'"),
        ("missing document", "not an audioseq model file"),
        ("truncated in the data section", "truncated file?"),
    ],
)
def test_error_messages_say_what_is_wrong(valid: Path, corruption: str, words: str) -> None:
    valid.write_bytes(MALFORMED[corruption](valid.read_bytes()))
    with pytest.raises(ModelFileError, match=words.replace("?", r"\?")):
        read_tensors(valid)


HEADER_ONLY = [name for name in MALFORMED if "NaN" not in name and "infinite" not in name and "document" not in name]


@pytest.mark.parametrize("corruption", HEADER_ONLY)
def test_inspect_header_rejects_every_structural_problem(valid: Path, corruption: str) -> None:
    valid.write_bytes(MALFORMED[corruption](valid.read_bytes()))
    with pytest.raises(ModelFileError, match="model.safetensors"):
        inspect_header(valid)


class _Payload:
    """Unpickling this creates ``marker``: proof that code in the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (self.marker,))


def test_pickle_payload_is_refused_without_running(tmp_path: Path) -> None:
    control = tmp_path / "control-ran"
    pickle.loads(pickle.dumps(_Payload(control)))
    assert control.exists(), "the payload must be live, or this test proves nothing"

    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(ModelFileError, match="evil.safetensors"):
        read_tensors(path)
    with pytest.raises(ModelFileError, match="evil.safetensors"):
        inspect_header(path)
    assert not marker.exists()


@pytest.mark.parametrize("content", ["weights", "payload"])
def test_torch_save_file_is_refused(tmp_path: Path, content: str) -> None:
    marker = tmp_path / "payload-ran"
    path = tmp_path / "checkpoint.safetensors"
    torch.save(_tensors() if content == "weights" else {"w": _Payload(marker)}, path)
    with pytest.raises(ModelFileError, match="checkpoint.safetensors"):
        read_tensors(path)
    assert not marker.exists()


def test_missing_path_and_folder_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no such file"):
        read_tensors(tmp_path / "absent.safetensors")
    with pytest.raises(ModelFileError, match="not a regular file"):
        read_tensors(tmp_path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_named_pipe_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(ModelFileError, match="not a regular file"):
        read_tensors(fifo)


def test_file_over_the_size_limit_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.safetensors"
    with path.open("wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)  # sparse: no gigabyte written
    with pytest.raises(ModelFileError, match=r"over the 1\.0 GiB \(1073741824 bytes\) limit"):
        read_tensors(path)


def test_round_trip_is_bit_exact_and_keeps_the_document(valid: Path) -> None:
    tensors, document = read_tensors(valid)
    expected = _tensors()
    assert tensors.keys() == expected.keys()
    for name, tensor in expected.items():
        assert tensors[name].dtype == tensor.dtype
        assert tensors[name].shape == tensor.shape
        assert tensors[name].numpy().tobytes() == tensor.numpy().tobytes()
    assert document == DOCUMENT


def test_round_trip_of_every_dtype_and_awkward_layouts(tmp_path: Path) -> None:
    base = torch.linspace(-3, 3, 12)
    shared = torch.arange(8, dtype=torch.int32)
    tensors = {
        **{str(dtype): base.to(dtype) for dtype in (torch.float64, torch.float16, torch.bfloat16,
                                                    torch.int64, torch.int16, torch.int8, torch.uint8, torch.bool)},
        "transposed": base.reshape(3, 4).t(),  # non-contiguous
        "shared": shared,
        "alias": shared,  # same storage twice: safetensors alone refuses this
        "view": shared[2:6],
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
    }
    path = tmp_path / "layouts.safetensors"
    write_tensors(path, tensors, {})
    loaded, document = read_tensors(path)
    assert document == {}
    for name, tensor in tensors.items():
        assert torch.equal(loaded[name], tensor), name
        assert loaded[name].dtype == tensor.dtype, name


def test_inspect_header_describes_tensors_and_metadata(valid: Path) -> None:
    header = inspect_header(valid)
    assert json.loads(header["__metadata__"][METADATA_KEY]) == DOCUMENT
    assert header["weight"]["dtype"] == "F32"
    assert header["weight"]["shape"] == [2, 3]
    assert sorted(header) == ["__metadata__", "bias", "steps", "weight"]


def test_plain_safetensors_file_is_accepted_when_no_document_is_required(tmp_path: Path) -> None:
    path = tmp_path / "plain.safetensors"
    safetensors.torch.save_file(_tensors(), path)
    with pytest.raises(ModelFileError, match="not an audioseq model file"):
        read_tensors(path)
    tensors, document = read_tensors(path, require_document=False)
    assert document == {}
    assert torch.equal(tensors["weight"], _tensors()["weight"])
    assert inspect_header(path)["__metadata__"] == {}


@pytest.mark.parametrize(
    ("tensors", "document", "words"),
    [
        ({"w": torch.tensor([1.0, math.nan])}, {}, "non-finite values in tensor 'w'"),
        ({"w": torch.ones(2, dtype=torch.complex64)}, {}, "do not support"),
        ({"w": torch.eye(2).to_sparse()}, {}, "do not support"),
        ({"__metadata__": torch.ones(2)}, {}, "not allowed"),
        ({"w": [1.0, 2.0]}, {}, "not a torch.Tensor"),
        ({"w": torch.ones(2)}, {"x": math.inf}, "not plain JSON"),
        ({"w": torch.ones(2)}, {"x": {1, 2}}, "not plain JSON"),
        ({"w": torch.ones(2)}, {"labels": ["caf\udce9"]}, "not plain JSON"),
    ],
)
def test_write_refuses_what_could_not_be_read_back(
    valid: Path, tensors: dict[str, Any], document: dict[str, Any], words: str
) -> None:
    before = valid.read_bytes()
    with pytest.raises(ModelFileError, match=words):
        write_tensors(valid, tensors, document)
    assert valid.read_bytes() == before
    assert os.listdir(valid.parent) == [valid.name]


@pytest.mark.parametrize("target", ["os.replace", "os.fsync", "audioseq.modelfile.tensors_to_bytes"])
def test_failed_write_leaves_the_old_file_and_no_temporary_files(
    valid: Path, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    before = valid.read_bytes()

    def fail(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(target, fail)
    with pytest.raises(OSError, match="No space left"):
        write_tensors(valid, {"other": torch.zeros(3)}, {"cell": "lstm"})
    monkeypatch.undo()
    assert valid.read_bytes() == before
    assert os.listdir(valid.parent) == [valid.name]


def test_rewrite_replaces_the_file_and_keeps_its_mode(valid: Path) -> None:
    valid.chmod(0o640)
    write_tensors(valid, {"other": torch.zeros(3)}, {"cell": "lstm"})
    tensors, document = read_tensors(valid)
    assert list(tensors) == ["other"] and document == {"cell": "lstm"}
    assert valid.stat().st_mode & 0o777 == 0o640
    assert os.listdir(valid.parent) == [valid.name]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_bytes_give_model_file_error_or_a_valid_result(valid: Path, data: st.DataObject) -> None:
    """Any single-byte change or cut either still reads cleanly or raises ModelFileError, nothing else."""
    blob = valid.read_bytes()
    position = data.draw(st.integers(0, len(blob) - 1))
    if data.draw(st.booleans()):
        damaged = blob[:position]
    else:
        damaged = blob[:position] + bytes([data.draw(st.integers(0, 255))]) + blob[position + 1 :]
    path = valid.with_name("damaged.safetensors")
    path.write_bytes(damaged)
    try:
        tensors, document = read_tensors(path)
    except ModelFileError as error:
        assert error.path == str(path)
    else:  # e.g. a changed digit inside a float, or a letter inside the document's strings
        assert all(bool(torch.isfinite(t).all()) for t in tensors.values() if t.is_floating_point())
        assert isinstance(document, dict)
