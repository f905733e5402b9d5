"""The Russian catalog is complete: every message the code and templates ask for (extracted as
docs/architecture.md "A new label" does) has a Russian text, none fuzzy, plurals with Russian's
three forms, counts only through plural entries, and the committed .mo says what the .po says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir, extract_from_file
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

REPO = Path(__file__).resolve().parents[2]
WEBADMIN = REPO / "webadmin"
RU = WEBADMIN / "translations" / "ru" / "LC_MESSAGES"
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "_l": None, "lazy_gettext": None, "N_": None}
CORE_FILES = ("astertrack/reporting/reports.py", "astertrack/reporting/csv_import.py",
              "astertrack/reporting/journey_pages.py")  # the core's labels


@pytest.fixture(scope="module")
def catalog():
    with (RU / "messages.po").open("rb") as handle:
        return read_po(handle, locale="ru")


def extracted() -> set[str | tuple[str, str]]:
    with (WEBADMIN / "babel.cfg").open() as handle:
        method_map, options_map = parse_mapping_cfg(handle)
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
            str(WEBADMIN), method_map, options_map, keywords=KEYWORDS):
        found.add(message)
    for path in CORE_FILES:
        for _line, message, _comments, _context in extract_from_file("python", str(REPO / path), keywords=KEYWORDS):
            found.add(message)
    return found


def test_every_entry_is_translated_and_none_is_fuzzy(catalog):
    untranslated = [m.id for m in catalog if m.id and (not m.string if isinstance(m.string, str)
                                                       else not all(m.string))]
    fuzzy = [m.id for m in catalog if m.id and m.fuzzy]
    assert untranslated == [] and fuzzy == []
    assert len(catalog) > 300  # the real catalog, not an empty file


def test_plural_entries_have_three_russian_forms_that_use_the_number(catalog):
    assert catalog.num_plurals == 3
    for message in catalog:
        if message.id and message.pluralizable:
            assert len(message.string) == 3, message.id
            for form in message.string:
                assert "%(num)" in form, (message.id, form)


def test_every_message_of_the_code_is_in_the_catalog(catalog):
    wanted = {m if isinstance(m, str) else m[0] for m in extracted() if m}
    missing = sorted(m for m in wanted if catalog.get(m) is None)
    assert missing == [], f"run pybabel extract/update (docs/architecture.md 'A new label'): {missing}"


def test_counts_go_through_plural_entries(catalog):
    """A number placeholder followed by a noun a plural entry counts ("%(n)s calls") must be a
    plural entry itself, else Russian and "1 ... calls" go wrong."""
    nouns = {form.split()[-1].strip(".,;:") for m in catalog if m.id and m.pluralizable for form in m.id}
    counted = re.compile(r"%\(\w+\)s (?:\w+ )?(" + "|".join(map(re.escape, sorted(nouns))) + r")\b")
    wrong = [m.id for m in catalog if m.id and not m.pluralizable and counted.search(m.id)]
    assert nouns and wrong == []


def test_compiled_catalog_matches_the_po(catalog):
    with (RU / "messages.mo").open("rb") as handle:
        compiled = read_mo(handle)
    for message in catalog:
        if message.id:
            assert compiled.get(message.id) is not None, f"messages.mo is stale: compile it ({message.id!r})"
            strings = compiled.get(message.id).string
            assert (strings if isinstance(strings, str) else tuple(strings)) == message.string, message.id
