"""Working hours in the site's time zone."""

from __future__ import annotations

import datetime as dt

import pytest

from astertrack.routing.schedule import ScheduleError, is_open, local_day_start, validate

MSK = "Europe/Moscow"
OFFICE = {"mon": [["09:00", "13:00"], ["14:00", "18:00"]], "tue": [["09:00", "18:00"]],
          "fri": [["22:00", "02:00"]]}


def msk(day: int, hour: int, minute: int = 0) -> dt.datetime:
    """2026-11-23 is a Monday; day 0 = Monday.  Returned as aware UTC, as the server has it."""
    local = dt.datetime(2026, 11, 23 + day, hour, minute, tzinfo=dt.timezone(dt.timedelta(hours=3)))
    return local.astimezone(dt.UTC)


@pytest.mark.parametrize("when, expected", [
    (msk(0, 9, 0), True), (msk(0, 8, 59), False), (msk(0, 13, 0), False), (msk(0, 13, 30), False),
    (msk(0, 14, 0), True), (msk(0, 17, 59), True), (msk(0, 18, 0), False),
    (msk(1, 12), True), (msk(2, 12), False),  # Wednesday absent: closed
    (msk(4, 23), True), (msk(5, 1, 30), True), (msk(5, 2, 0), False),  # Friday night into Saturday
    (msk(3, 1), False),  # Thursday 01:00 is not Wednesday night
])
def test_office_hours_are_read_in_the_sites_time_zone(when, expected):
    assert is_open(OFFICE, when, MSK) is expected


def test_same_instant_differs_by_time_zone():
    instant = msk(0, 9, 30)  # 06:30 UTC
    assert is_open(OFFICE, instant, MSK)
    assert not is_open(OFFICE, instant, "UTC")


def test_empty_schedule_is_always_open_and_closed_dates_win():
    assert is_open({}, msk(2, 3), MSK)
    assert not is_open({**OFFICE, "closed_dates": ["2026-11-23"]}, msk(0, 10), MSK)
    assert not is_open({"closed_dates": ["2026-11-25"]}, msk(2, 10), MSK)
    assert is_open({"closed_dates": ["2026-11-25"]}, msk(3, 10), MSK)
    # a night shift that started the day before a holiday still ends as planned
    assert is_open({"fri": [["22:00", "02:00"]], "closed_dates": ["2026-11-28"]}, msk(5, 1), MSK)


def test_unknown_time_zone_falls_back_to_utc_instead_of_failing_the_call():
    assert is_open({"mon": [["06:00", "07:00"]]}, msk(0, 9, 30), "Mars/Olympus")


def test_whole_day_with_2400():
    assert is_open({"sun": [["00:00", "24:00"]]}, msk(6, 23, 59), MSK)


@pytest.mark.parametrize("bad", [{"monday": []}, {"mon": [["9", "18:00"]]}, {"mon": [["09:00"]]},
                                 {"mon": [["25:00", "26:00"]]}, {"closed_dates": ["tomorrow"]}])
def test_validate_names_the_bad_entry(bad):
    with pytest.raises(ScheduleError):
        validate(bad)


def test_local_day_start_is_local_midnight_in_utc():
    assert local_day_start(msk(0, 1), MSK) == dt.datetime(2026, 11, 22, 21, 0, tzinfo=dt.UTC)
