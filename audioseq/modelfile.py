"""Safe reading and atomic writing of ``.safetensors`` model files.

A model file is one safetensors file: the weights, plus a JSON document (the model's
config) stored under ``METADATA_KEY`` in the header metadata. Nothing here unpickles:
files from strangers are parsed as bytes and JSON only.

Reading validates the header structure in plain Python before the safetensors library
sees the file, so every malformed file fails with a ``ModelFileError`` that names the
file and says what is wrong, whatever the library version would have done with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import struct
import tempfile
from pathlib import Path
from typing import IO, Any, BinaryIO, Iterator, Mapping, NoReturn

from safetensors.torch import load as tensors_from_bytes  # safetensors' own format, never pickle
from safetensors.torch import save as tensors_to_bytes
import torch

from audioseq.errors import ModelFileError

MAX_FILE_BYTES: int = 1 << 30  # 1 GiB
MAX_HEADER_BYTES: int = 16 * 1024 * 1024
METADATA_KEY = "audioseq"  # the metadata entry holding our JSON document

StrPath = str | os.PathLike[str]

# The safetensors dtypes torch loads, with their item sizes in bytes.
_ITEM_SIZES: dict[str, int] = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
}
# The torch dtypes of those, in the same order: the only ones written, so every file written reads back.
_WRITABLE_DTYPES = frozenset({
    torch.float64, torch.float32, torch.float16, torch.bfloat16,
    torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool,
})
_ENTRY_KEYS = frozenset({"dtype", "shape", "data_offsets"})
_MAX_DIM = 2**63 - 1  # torch sizes are int64
# Without O_NONBLOCK a FIFO given as the model path would hang the open() forever;
# O_BINARY stops Windows from translating line endings inside the tensor data.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


def write_tensors(
    path: StrPath, tensors: Mapping[str, torch.Tensor], document: Mapping[str, Any]
) -> None:
    """Write ``tensors`` and the JSON ``document`` to ``path`` atomically.

    Tensors may live on any device and be non-contiguous or share storage: each is
    copied to a fresh contiguous CPU tensor first. The file is written to a temporary
    file in the same folder, flushed to disk and then renamed over ``path``, so a
    reader sees either the old file or the complete new one, never a partial one.

    Raises ``ModelFileError`` (before touching the disk) when the result could not be
    read back by ``read_tensors``: a name that is not a string, an unsupported dtype,
    NaN/inf values, a document that is not plain JSON, or a file over the size limits.
    I/O errors are re-raised unchanged after the temporary file is removed.
    """
    where = os.fspath(path)
    write_atomic(where, _serialise(where, tensors, document))


@contextlib.contextmanager
def atomic_writer(path: StrPath, mode: str = "wb", **open_args: Any) -> Iterator[IO[Any]]:
    """A file to write ``path`` through: a temporary file in the same folder, renamed over it when
    the block ends without an error, so a reader sees either the old file or the complete new one
    (an error leaves the old file as it was). A link is written through, not replaced; a replaced
    file keeps its mode, a new one gets the usual 0644 (less the umask)."""
    target = Path(os.path.realpath(path))
    handle = tempfile.NamedTemporaryFile(mode, dir=target.parent, prefix=f".{target.name}.", suffix=".tmp",
                                         delete=False, **open_args)
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        # NamedTemporaryFile creates mode 0600.
        os.chmod(handle.name, stat.S_IMODE(os.stat(target).st_mode) if target.is_file() else 0o666 & ~_umask())
        os.replace(handle.name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(handle.name)
        raise
    _fsync_folder(target.parent)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: StrPath, payload: bytes) -> None:
    """Write ``payload`` to ``path`` through :func:`atomic_writer`."""
    with atomic_writer(path) as handle:
        handle.write(payload)


def read_tensors(
    path: StrPath, *, require_document: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a model file: ``(tensors by name, document)``; tensors are on the CPU.

    With ``require_document=False`` a plain safetensors file without our metadata entry
    is accepted and its document is ``{}``. Raises ``ModelFileError`` naming the file
    for anything missing, malformed, inconsistent or non-finite.
    """
    where = os.fspath(path)
    with _open_model_file(where) as (handle, _):
        # One read, validated and loaded from the same bytes: the file cannot change
        # between the check and the load. The size was checked, so this is bounded.
        data = _read(where, handle, MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        _fail(where, f"the file grew past the {_size(MAX_FILE_BYTES)} limit while being read")
    header_len = _header_length(where, data[:8], len(data))
    header = _validate_header(where, data[8 : 8 + header_len], len(data) - 8 - header_len)
    try:
        tensors = tensors_from_bytes(data)
    except Exception as exc:  # the library raises its own, unspecified, error types
        _fail(where, f"the safetensors library rejected the file: {exc}", exc)
    for name in sorted(tensors):
        tensor = tensors[name]
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            _fail(where, f"non-finite values in tensor {name!r}")
    return tensors, _document(where, header["__metadata__"], require_document)


def inspect_header(path: StrPath) -> dict[str, Any]:
    """Return the validated header of a safetensors file without reading tensor data.

    The result maps each tensor name to ``{"dtype": str, "shape": list[int],
    "data_offsets": [begin, end]}`` (byte offsets into the data section) and always
    holds ``"__metadata__"``: a ``dict[str, str]``, empty when the file has none.
    """
    where = os.fspath(path)
    with _open_model_file(where) as (handle, size):
        header_len = _header_length(where, _read(where, handle, 8), size)
        raw = _read(where, handle, header_len)
    if len(raw) != header_len:
        _fail(where, "the file was truncated while its header was being read")
    return _validate_header(where, raw, size - 8 - header_len)


def _serialise(where: str, tensors: Mapping[str, torch.Tensor], document: Mapping[str, Any]) -> bytes:
    """Check everything ``read_tensors`` will check, then build the file's bytes in memory."""
    prepared: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            _fail(where, f"tensor name {name!r} is not allowed; names must be strings other than '__metadata__'")
        if not isinstance(tensor, torch.Tensor):
            _fail(where, f"{name!r} is a {type(tensor).__name__}, not a torch.Tensor")
        if tensor.dtype not in _WRITABLE_DTYPES or tensor.layout != torch.strided:
            _fail(where, f"tensor {name!r} is a {tensor.layout} {tensor.dtype} tensor, which model files do not support")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            _fail(where, f"non-finite values in tensor {name!r}")
        # A fresh copy each: safetensors refuses non-contiguous tensors and tensors that share storage.
        prepared[name] = tensor.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
    try:
        text = json.dumps(dict(document), allow_nan=False, sort_keys=True)
        _encodable(text, document)  # read_tensors refuses what it could not show
    except (TypeError, ValueError) as exc:
        _fail(where, f"the document is not plain JSON: {exc}", exc)
    payload = tensors_to_bytes(prepared, metadata={METADATA_KEY: text})
    header_len = struct.unpack("<Q", payload[:8])[0]
    if len(payload) > MAX_FILE_BYTES or header_len > MAX_HEADER_BYTES:
        _fail(where, f"the file would be {_size(len(payload))} with a {_size(header_len)} header, "
                     f"over the {_size(MAX_FILE_BYTES)} / {_size(MAX_HEADER_BYTES)} limits")
    return payload


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable; Windows cannot open folders and needs no such step."""
    if os.name != "posix":
        return
    # Best effort: the new file is already complete and in place, and some file
    # systems refuse to fsync a folder.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _open_model_file(where: str) -> Iterator[tuple[BinaryIO, int]]:
    """Open ``where`` for reading: ``(handle, size in bytes)``, a bounded regular file."""
    try:
        fd = os.open(where, _OPEN_FLAGS)
    except FileNotFoundError:
        _fail(where, "no such file")
    except OSError as exc:
        _fail(where, f"cannot open the file: {exc.strerror or exc}", exc)
    try:
        # fstat on the open descriptor, not stat on the name, so the checks and the read see one file.
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            _fail(where, "not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            _fail(where, f"the file is {_size(info.st_size)}, over the {_size(MAX_FILE_BYTES)} limit")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as handle:
        yield handle, info.st_size


def _read(where: str, handle: BinaryIO, count: int) -> bytes:
    try:
        return handle.read(count)
    except OSError as exc:
        _fail(where, f"cannot read the file: {exc.strerror or exc}", exc)


def _header_length(where: str, prefix: bytes, file_size: int) -> int:
    """Decode and bound the little-endian u64 header length at the start of the file."""
    if file_size < 8 or len(prefix) < 8:  # the second: a file cut short after its size was read
        _fail(where, f"the file has {_size(file_size)}, too short for a safetensors header (8 bytes at least)")
    header_len: int = struct.unpack("<Q", prefix)[0]
    if header_len > MAX_HEADER_BYTES:
        _fail(where, f"header claims {_size(header_len)}, over the {_size(MAX_HEADER_BYTES)} limit "
                     "(not a safetensors file?)")
    if header_len > file_size - 8:
        _fail(where, f"header claims {_size(header_len)} but the file has {_size(file_size)}, "
                     f"{_size(file_size - 8)} after the 8-byte length")
    return header_len


def _validate_header(where: str, raw: bytes, data_len: int) -> dict[str, Any]:
    """Check the header's structure against a data section of ``data_len`` bytes."""
    try:
        header = _strict_json(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        _fail(where, "the header is not UTF-8 text (not a safetensors file?)", exc)
    except (ValueError, RecursionError) as exc:
        _fail(where, f"the header is not valid JSON: {exc}", exc)
    if not isinstance(header, dict):
        _fail(where, f"the header is a JSON {type(header).__name__}, not an object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        _fail(where, "'__metadata__' must map strings to strings")
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        spans.append((*_validate_entry(where, name, entry, data_len), name))
    # Tensors must tile the data section exactly: in offset order, each begins where
    # the previous one ended. Anything else hides bytes we would never look at.
    cursor, previous = 0, None
    for begin, end, name in sorted(spans):
        if begin < cursor:
            _fail(where, f"tensor {name!r} overlaps tensor {previous!r}")
        if begin > cursor:
            after = f"after tensor {previous!r}" if previous else "at the start of the data section"
            _fail(where, f"{begin - cursor} unused bytes {after}, before tensor {name!r}")
        cursor, previous = end, name
    if cursor != data_len:
        _fail(where, f"{data_len - cursor} bytes of trailing data after the last tensor")
    return {**header, "__metadata__": metadata}


def _validate_entry(where: str, name: str, entry: Any, data_len: int) -> tuple[int, int]:
    """Check one tensor entry; return its ``(begin, end)`` byte offsets."""
    if not isinstance(entry, dict) or entry.keys() != _ENTRY_KEYS:
        found = _brief(sorted(entry)) if isinstance(entry, dict) else f"a JSON {type(entry).__name__}"
        _fail(where, f"tensor {name!r} must be an object with exactly dtype, shape and data_offsets, not {found}")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in _ITEM_SIZES:
        _fail(where, f"tensor {name!r} has unsupported dtype {_brief(dtype)}; expected one of {', '.join(_ITEM_SIZES)}")
    if not isinstance(shape, list) or not all(_is_count(d) and d <= _MAX_DIM for d in shape):
        _fail(where, f"tensor {name!r} has shape {_brief(shape)}; expected a list of non-negative 64-bit integers")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(o) for o in offsets):
        _fail(where, f"tensor {name!r} has data_offsets {_brief(offsets)}; expected [begin, end], non-negative integers")
    begin, end = offsets
    if begin > end:
        _fail(where, f"tensor {name!r} begins at byte {begin}, after its end at byte {end}")
    if end > data_len:
        _fail(where, f"tensor {name!r} ends at byte {end} but the data section has {_size(data_len)} (truncated file?)")
    # Compared step by step against the span, so a shape like [2**40, 2**40] is refused
    # before a huge product is formed (C readers would wrap around instead).
    span = end - begin
    nbytes = 0 if 0 in shape else _ITEM_SIZES[dtype]
    for dim in shape:
        nbytes *= dim
        if nbytes > span:
            _fail(where, f"tensor {name!r} ({dtype}, shape {_brief(shape)}) needs more than the {_size(span)} it spans")
    if nbytes != span:
        _fail(where, f"tensor {name!r} ({dtype}, shape {_brief(shape)}) needs {_size(nbytes)} but spans {_size(span)}")
    return begin, end


def _document(where: str, metadata: Mapping[str, str], require_document: bool) -> dict[str, Any]:
    """Parse our JSON document out of the header metadata."""
    if METADATA_KEY not in metadata:
        if require_document:
            _fail(where, f"not an audioseq model file: no {METADATA_KEY!r} entry in the metadata")
        return {}
    try:
        document = _strict_json(metadata[METADATA_KEY])
    except (ValueError, RecursionError) as exc:
        _fail(where, f"not an audioseq model file: the {METADATA_KEY!r} entry is not valid JSON: {exc}", exc)
    if not isinstance(document, dict):
        _fail(where, f"not an audioseq model file: the {METADATA_KEY!r} entry is not a JSON object")
    return document


def _strict_json(text: str) -> Any:
    """``json.loads`` that refuses duplicate keys and NaN/Infinity, which a reader could take two ways."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise ValueError(f"duplicate key {key!r}")
            result[key] = value
        return result

    def no_constants(token: str) -> NoReturn:
        raise ValueError(f"{token} is not allowed")

    value = json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constants)
    _encodable(text, value)
    return value


def _encodable(text: str, value: Any) -> None:
    """Raise ``UnicodeEncodeError`` (a ValueError) if ``value``, the JSON ``text`` holds, has a lone
    surrogate: it parses from an escape ("\\ud800"), but no such string can be printed or written.
    Only text with ``\\u`` escapes can hold one, so other text is not looked at again."""
    if "\\u" in text:
        json.dumps(value, ensure_ascii=False).encode("utf-8")


def _is_count(value: Any) -> bool:
    """A non-negative JSON integer (``bool`` is an ``int`` in Python, but not here)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _brief(value: Any) -> str:
    """``repr`` cut to a readable length: a hostile header can hold megabytes in one field."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _size(count: int) -> str:
    """``300 bytes``, ``16.0 MiB (16777217 bytes)``: readable, and exact where rounding would hide a difference."""
    if count < 1024:
        return f"{count} bytes"
    exponent = min((count.bit_length() - 1) // 10, 6)
    return f"{count / 1024**exponent:.1f} {'KMGTPE'[exponent - 1]}iB ({count} bytes)"


def _fail(where: str, message: str, cause: BaseException | None = None) -> NoReturn:
    raise ModelFileError(where, message) from cause
