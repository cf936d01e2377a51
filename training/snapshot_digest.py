"""A content digest for the snapshots train.py writes, verified before a byte of the pickle is parsed.

A snapshot is `<pickle bytes><trailer>`, the trailer being one fixed-length line
`\\n#fakeclr-sha256:<64 hex digits>\\n` holding the SHA-256 of every byte before it. Every unpickler
stops at the pickle's STOP opcode and never reads the trailer, so the file stays an ordinary
pickle for older versions of this code and for upstream-shaped loaders. A file without the
trailer (older snapshots, upstream pickles, torch.save files) loads as before, unverified.

Why a trailer rather than a sidecar file or a key inside the pickle: it cannot be separated from
the bytes it covers, it covers every byte (tensors, init arguments, training_set_kwargs and the
resume state alike) without a canonical form to keep in step with the pickle's contents, and it
is checked before the unpickler runs, so an edited or damaged file is refused unread.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, BinaryIO, Callable, Optional

TRAILER_MAGIC = b"\n#fakeclr-sha256:"
_HEX_LENGTH = 64
TRAILER_LENGTH = len(TRAILER_MAGIC) + _HEX_LENGTH + 1
_HEX_RE = re.compile(rb"^[0-9a-f]{64}\n$")


class DigestMismatch(ValueError):
    """The file's bytes differ from those its trailer's digest was computed over; str() is one line."""


class _HashingWriter:
    """A write-only file wrapper that hashes everything passing through it."""

    def __init__(self, f: BinaryIO):
        self._f = f
        self.sha256 = hashlib.sha256()

    def write(self, data: Any) -> int:
        self.sha256.update(data)
        return self._f.write(data)


def write_with_digest(f: BinaryIO, dump: Callable[[Any], None]) -> None:
    """`dump(writer)` writes the payload (e.g. pickle.dump); the digest trailer follows it. Streams: no copy."""
    writer = _HashingWriter(f)
    dump(writer)
    f.write(trailer(writer.sha256.hexdigest()))


def trailer(hex_digest: str) -> bytes:
    return TRAILER_MAGIC + hex_digest.encode("ascii") + b"\n"


def recorded_digest(data: bytes) -> Optional[str]:
    """The digest in `data`'s trailer; None when the file has no trailer (not written with a digest)."""
    if len(data) < TRAILER_LENGTH:
        return None
    tail = bytes(data[-TRAILER_LENGTH:])
    digits = tail[len(TRAILER_MAGIC):]
    if not tail.startswith(TRAILER_MAGIC):
        # A pickle ends in its STOP opcode ".", never in 64 hex digits and a newline: such a tail is a trailer
        # whose marker was damaged, and must not pass as "no digest".
        return "" if _HEX_RE.match(digits) else None
    if _HEX_RE.match(digits) is None:
        return ""  # a trailer whose digits were damaged: never matches
    return digits[:_HEX_LENGTH].decode("ascii")


def verify(data: bytes, source: str) -> bool:
    """True when `data` carries a digest and it matches; False when it carries none (loads unverified).
    Raises DigestMismatch (one line naming `source`) when the bytes were changed after writing."""
    expected = recorded_digest(data)
    if expected is None:
        return False
    actual = hashlib.sha256(memoryview(data)[:len(data) - TRAILER_LENGTH]).hexdigest()
    if actual != expected:
        raise DigestMismatch(
            f"{source}: content digest mismatch (the file was changed or damaged after train.py wrote it), so it "
            f"is refused unread; use an intact copy, or --resume=latest, which resumes from the newest intact "
            f"snapshot of the run")
    return True
