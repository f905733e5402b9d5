import pytest

from astertrack.phones import PhoneNumberError, format_display, normalize, try_normalize


@pytest.mark.parametrize("raw, expected", [
    ("8 (495) 123-45-67", "+74951234567"),
    ("+7 495 1234567", "+74951234567"),
    ("74951234567", "+74951234567"),
    ("8-800-555-35-35", "+78005553535"),
    ("8 800 555 35 35", "+78005553535"),
    ("(495) 123-45-67", "+74951234567"),
    ("+7 (916) 123-45-67", "+79161234567"),
    ("79161234567", "+79161234567"),
    ("0044 20 7946 0958", "+442079460958"),
    ("+44 20 7946 0958", "+442079460958"),
    ("+1 (212) 555-0123", "+12125550123"),
    ("+49 30 901820", "+4930901820"),
])
def test_normalize_accepts_russian_and_international_formats(raw, expected):
    assert normalize(raw) == expected


def test_normalize_uses_the_given_region_for_national_numbers():
    assert normalize("(212) 555-0123", region="US") == "+12125550123"


@pytest.mark.parametrize("raw, words", [
    ("", "empty"),
    (None, "no phone"),
    ("anonymous", "not a phone number"),
    ("<script>", "not a phone number"),
    ("12", "3 to 15 digits"),
    ("+7 495 123", "not a valid"),
    ("1" * 80, "too long"),
    ("+7 495 123 45 67 89 01 23", "3 to 15 digits"),
])
def test_normalize_rejects_garbage_with_a_clear_error(raw, words):
    with pytest.raises(PhoneNumberError, match=words):
        normalize(raw)


def test_try_normalize_returns_none_for_unusable_caller_ids():
    assert try_normalize("unknown") is None
    assert try_normalize("8 (495) 123-45-67") == "+74951234567"


@pytest.mark.parametrize("template, expected", [
    ("8 (XXX) XXX-XX-XX", "8 (495) 123-45-67"),
    ("+7 (XXX) XXX-XX-XX", "+7 (495) 123-45-67"),
    ("+7 XXX XXX XX XX", "+7 495 123 45 67"),
    ("XXX-XX-XX", "123-45-67"),
])
def test_format_display_fills_the_site_template(template, expected):
    assert format_display("+74951234567", template) == expected


def test_format_display_falls_back_to_international_format_when_template_does_not_fit():
    assert format_display("+74951234567", "") == "+7 495 123-45-67"
    assert format_display("+4930901820", "8 (XXX) XXX-XX-XX-XX-XX") == "+49 30 901820"
