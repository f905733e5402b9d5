"""Following Asterisk's CDR file: nothing read twice, nothing skipped, whatever happens to the file."""

from __future__ import annotations

import os

from ami_listener.cdr_file import NOT_YET, Position, read_new_lines


def test_first_run_reads_the_file_from_its_start(tmp_path):
    """The file holds lines only since install.sh added our mapping: a call routed before the
    listener first started may be in it already."""
    path = tmp_path / "astertrack.csv"
    path.write_text("line 1\nline 2\n")
    lines, position = read_new_lines(str(path), None)
    assert lines == ["line 1", "line 2"] and position == Position(os.stat(path).st_ino, path.stat().st_size)
    with path.open("a") as f:
        f.write("new line\n")
    lines, _ = read_new_lines(str(path), position)
    assert lines == ["new line"]


def test_a_file_asterisk_has_not_created_yet_is_read_from_its_first_line(tmp_path):
    path = tmp_path / "astertrack.csv"
    lines, position = read_new_lines(str(path), None)
    assert (lines, position) == ([], NOT_YET)
    path.write_text("first\nsecond\n")
    lines, position = read_new_lines(str(path), position)
    assert lines == ["first", "second"] and position.offset == path.stat().st_size


def test_a_partly_written_line_waits_for_its_newline(tmp_path):
    path = tmp_path / "astertrack.csv"
    path.write_text("")
    _, position = read_new_lines(str(path), None)
    with path.open("a") as f:
        f.write('"at1","1.0","1.0","SIP/tr')
    lines, after = read_new_lines(str(path), position)
    assert lines == [] and after == position
    with path.open("a") as f:
        f.write('unk-1"\nnext')
    lines, after = read_new_lines(str(path), after)
    assert lines == ['"at1","1.0","1.0","SIP/trunk-1"'] and after.offset == len(lines[0]) + 1


def test_rotation_reads_the_rest_of_the_old_file_then_the_new_one_from_its_start(tmp_path):
    path = tmp_path / "astertrack.csv"
    path.write_text("a\n")
    _, position = read_new_lines(str(path), None)
    with path.open("a") as f:
        f.write("b\n")  # written before logrotate moved the file, not read yet
    os.rename(path, f"{path}.1")
    path.write_text("c\n")
    lines, position = read_new_lines(str(path), position)
    assert lines == ["b", "c"]
    assert position == Position(os.stat(path).st_ino, 2)


def test_a_truncated_file_is_read_again_from_its_start(tmp_path):
    path = tmp_path / "astertrack.csv"
    path.write_text("a much longer first line\n")
    _, position = read_new_lines(str(path), None)
    with path.open("w") as f:  # copytruncate
        f.write("x\n")
    lines, position = read_new_lines(str(path), position)
    assert lines == ["x"] and position.offset == 2


def test_a_long_backlog_is_read_in_bounded_passes(tmp_path):
    path = tmp_path / "astertrack.csv"
    path.write_text("")
    _, position = read_new_lines(str(path), None)
    path.write_text("".join(f"line {n:04d}\n" for n in range(1000)))
    seen: list[str] = []
    for _ in range(100):
        lines, position = read_new_lines(str(path), position, limit=1000)
        if not lines:
            break
        seen += lines
    assert seen == [f"line {n:04d}" for n in range(1000)]
