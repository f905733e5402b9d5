"""Follow Asterisk's CDR file (asterisk-conf/cdr_custom_astertrack.conf) from a saved position.

The position (inode, byte offset) is stored in the database in the same transaction as the lines
read, so a crash between reading and storing reads the same lines again and never skips one.
A partly written last line waits for its newline.  When the file was rotated (another inode) the
rest of the old file is read first if it sits beside it as ``<name>.1`` (logrotate's default),
then the new file from its start; a file that shrank (truncated) is read again from its start.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

log = logging.getLogger(__name__)

READ_LIMIT = 4 * 1024 * 1024  # bytes per call: a long backlog is read over several passes


@dataclass(frozen=True)
class Position:
    inode: int
    offset: int


NOT_YET = Position(0, 0)  # the file did not exist yet when we first looked


def _read_from(path: str, offset: int, limit: int) -> tuple[list[str], int]:
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(limit)
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    chunk = data[:end + 1]
    return chunk.decode("utf-8", errors="replace").splitlines(), offset + len(chunk)


def read_new_lines(path: str, position: Position | None, limit: int = READ_LIMIT) -> tuple[list[str], Position | None]:
    """Complete lines written since ``position`` and the position after them.

    ``position`` None (the first run on this box): from the file's start.  The file is ours (it
    holds lines only since install.sh added the mapping), and a call routed before the listener's
    first start may already be in it.  A file that does not exist yet (Asterisk creates it with its
    first CDR) will be read from its start too.
    """
    position = position or NOT_YET
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return [], position  # not written yet: when it appears, every line of it is new
    lines: list[str] = []
    if stat.st_ino != position.inode:
        rotated = f"{path}.1"
        try:
            if position != NOT_YET and os.stat(rotated).st_ino == position.inode:
                lines, _ = _read_from(rotated, position.offset, limit)
        except FileNotFoundError:
            pass
        if position != NOT_YET:
            log.info("CDR file %s was rotated: reading the new one from its start", path)
        position = Position(stat.st_ino, 0)
    elif stat.st_size < position.offset:
        log.warning("CDR file %s shrank (truncated): reading it again from its start", path)
        position = Position(stat.st_ino, 0)
    if stat.st_size == position.offset:
        return lines, position
    new, offset = _read_from(path, position.offset, limit)
    return lines + new, Position(stat.st_ino, offset)
