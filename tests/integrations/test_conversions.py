"""Conversions to GA4, Yandex Metrica and Google Ads, against a local server that captures the
requests: payloads field by field against the documented formats, nothing sent twice, skips
counted with their reason, refusals kept and not retried, network failures retried."""

from __future__ import annotations

import csv
import datetime as dt
import email.parser
import io
import json
import socket
from decimal import Decimal

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from astertrack.config import load_config
from astertrack.db.models import (
    Call,
    ConversionLog,
    ConversionRule,
    ConversionSettings,
    Enquiry,
    Lead,
    VisitorSession,
)
from astertrack.integrations.conversions import builders, export, rules, sender
from astertrack.samples.factories import add_site, add_static_source
from tests.integrations.capture import CaptureServer

NOW = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def capture():
    with CaptureServer() as server:
        yield server


def _config(db_url, url, **extra):
    return load_config(environ={}, overrides={"database": {"url": db_url},
                                              "conversions": {"ga4_url": f"{url}/mp/collect", "metrica_url": url,
                                                              "admin_url": "https://track.example.ru", **extra}})


def _site(session, **settings):
    site = add_site(session, "Shop", timezone="Europe/Moscow", target_call_seconds=30)
    source = add_static_source(session, site, "Google Ads")
    values = {"ga4_enabled": True, "ga4_measurement_id": "G-TEST1234", "ga4_api_secret": "sekret-ga4-api",
              "metrica_enabled": True, "metrica_counter_id": "987654", "metrica_token": "y0_oauth_token",
              "google_ads_enabled": True, "google_ads_conversion_name": "Phone call", "currency": "RUB"}
    values.update(settings)
    session.add(ConversionSettings(site_id=site.id, **values))
    session.add(ConversionRule(site_id=site.id, calls="answered", first_time_only=False, call_value=Decimal("1500"),
                               lead_state="won", lead_value="amount", lead_fixed_value=Decimal("100")))
    session.flush()
    return site, source


def _call(session, site, source, hours_ago=2.0, outcome="answered", talk=95.0, visit=None, now=NOW, **fields):
    started = now - dt.timedelta(hours=hours_ago)
    call = Call(site_id=site.id, source_id=source.id, caller_number="+74951234567", started_at=started,
                answered_at=started if outcome == "answered" else None, ended_at=started + dt.timedelta(minutes=3),
                state="finished", outcome=outcome, talk_seconds=talk if outcome == "answered" else 0,
                wait_seconds=7.4, is_first_call=True, session_id=visit.id if visit else None, **fields)
    session.add(call)
    session.flush()
    return call


def _visit(session, site, **fields):
    values = {"ga_client_id": "GA1.1.123456789.1700000000", "ym_client_id": "1699999999123456789",
              "gclid": "Cj0KCQ-gclid-1", "yclid": None, "landing_page": "https://shop.example.ru/?utm_source=google",
              "first_seen": NOW - dt.timedelta(hours=3)}
    values.update(fields)
    visit = VisitorSession(site_id=site.id, **values)
    session.add(visit)
    session.flush()
    return visit


def _log(session_factory):
    with session_factory() as session:
        return {(row.platform, row.subject): row for row in session.scalars(select(ConversionLog))}


def test_ga4_event_matches_the_measurement_protocol_and_is_sent_once(session_factory, db_url, capture):
    with session_factory() as session:
        site, source = _site(session, metrica_enabled=False)
        call = _call(session, site, source, visit=_visit(session, site))
        call_id, started = call.id, call.started_at
        session.commit()
    config = _config(db_url, capture.url)

    counts = sender.run(session_factory, config, now=NOW)
    assert counts.sent["ga4"] == 1 and len(capture.requests) == 1
    request = capture.requests[0]
    assert request.path == "/mp/collect"
    assert request.query == {"measurement_id": ["G-TEST1234"], "api_secret": ["sekret-ga4-api"]}
    assert request.headers["content-type"] == "application/json"
    body = json.loads(request.body)
    assert set(body) == {"client_id", "timestamp_micros", "events"}
    assert body["client_id"] == "123456789.1700000000"  # from the _ga cookie, without its GA1.1. prefix
    assert isinstance(body["timestamp_micros"], int)
    assert body["timestamp_micros"] == int(started.timestamp() * 1_000_000)  # back-dated to the call
    assert body["timestamp_micros"] < int(NOW.timestamp() * 1_000_000)
    (event,) = body["events"]
    assert event["name"] == "phone_call"
    params = event["params"]
    assert params["engagement_time_msec"] == 1 and isinstance(params["engagement_time_msec"], int)
    assert params["value"] == 1500.0 and isinstance(params["value"], float)
    assert params["currency"] == "RUB"
    assert params["call_outcome"] == "answered" and params["talk_seconds"] == 95 and params["wait_seconds"] == 7
    assert params["first_time_caller"] == 1 and params["astertrack_id"] == f"call:{call_id}"
    assert params["call_source"] == "Google Ads"
    row = _log(session_factory)[("ga4", f"call:{call_id}")]
    assert row.status == "sent" and row.response_code == 200 and row.attempts == 1
    assert "sekret" not in json.dumps(row.payload)  # the secret goes in the URL, never into the log

    again = sender.run(session_factory, config, now=NOW + dt.timedelta(minutes=15))
    assert again.sent["ga4"] == 0 and len(capture.requests) == 1  # a second run sends nothing new


def test_ga4_skips_old_calls_calls_without_client_id_and_calls_the_rule_leaves_out(session_factory, db_url,
                                                                                    capture):
    with session_factory() as session:
        site, source = _site(session, metrica_enabled=False)
        old = _call(session, site, source, hours_ago=73, visit=_visit(session, site))
        anonymous = _call(session, site, source, visit=_visit(session, site, ga_client_id=None))
        missed = _call(session, site, source, outcome="missed", visit=_visit(session, site))
        ids = old.id, anonymous.id, missed.id
        session.commit()
    counts = sender.run(session_factory, _config(db_url, capture.url), now=NOW)
    assert capture.requests == [] and counts.sent["ga4"] == 0
    assert counts.skipped["ga4"] == {"too_old": 1, "no_client_id": 1, "rule": 1}
    log = _log(session_factory)
    assert [log[("ga4", f"call:{i}")].reason for i in ids] == ["too_old", "no_client_id", "rule"]
    assert {row.status for row in log.values()} == {"skipped"}


def test_a_won_lead_goes_to_ga4_with_the_deal_amount(session_factory, db_url, capture):
    with session_factory() as session:
        site, source = _site(session, metrica_enabled=False)
        lead = Lead(site_id=site.id, phone="+74950000001", status="won", amount=Decimal("25000.50"), currency="USD",
                    created_at=NOW - dt.timedelta(days=2), updated_at=NOW - dt.timedelta(hours=1), source_id=source.id)
        session.add(lead)
        session.flush()
        # a web form carries its own ids; the lead has no visit
        session.add(Enquiry(lead_id=lead.id, site_id=site.id, channel="form", at=lead.created_at,
                            ga_client_id="555.666", gclid="form-gclid"))
        open_lead = Lead(site_id=site.id, phone="+74950000002", status="qualified", updated_at=NOW)
        session.add(open_lead)
        session.commit()
        lead_id = lead.id
    sender.run(session_factory, _config(db_url, capture.url), now=NOW)
    (request,) = capture.requests  # the qualified lead has not reached "won"
    body = json.loads(request.body)
    assert body["client_id"] == "555.666"
    assert body["events"][0]["name"] == "close_convert_lead"
    assert body["events"][0]["params"]["value"] == 25000.5 and body["events"][0]["params"]["currency"] == "USD"
    assert _log(session_factory)[("ga4", f"lead:{lead_id}@won")].status == "sent"


def _multipart_file(request):
    message = email.parser.BytesParser().parsebytes(
        b"Content-Type: " + request.headers["content-type"].encode() + b"\r\n\r\n" + request.body)
    assert message.is_multipart()
    (part,) = message.get_payload()
    return part.get_param("name", header="content-disposition"), part.get_filename(), part.get_payload(decode=True)


def test_metrica_upload_is_a_multipart_csv_in_the_offline_calls_format(session_factory, db_url, capture):
    with session_factory() as session:
        site, source = _site(session, ga4_enabled=False)
        answered = _call(session, site, source, visit=_visit(session, site))
        yclid_only = _call(session, site, source, visit=_visit(session, site, ym_client_id=None, yclid="777888"))
        nothing = _call(session, site, source, visit=_visit(session, site, ym_client_id=None))
        ids = answered.id, yclid_only.id, nothing.id
        started = answered.started_at
        session.commit()
    counts = sender.run(session_factory, _config(db_url, capture.url), now=NOW)
    assert counts.sent["metrica"] == 2 and counts.skipped["metrica"] == {"no_client_id": 1}
    assert len(capture.requests) == 2  # one file per id column: ClientId, then Yclid
    first = capture.requests[0]
    assert first.path == "/management/v1/counter/987654/offline_conversions/upload_calls"
    assert first.headers["authorization"] == "OAuth y0_oauth_token"
    assert first.headers["content-type"].startswith("multipart/form-data; boundary=")
    name, filename, content = _multipart_file(first)
    assert name == "file" and filename.endswith(".csv")
    lines = list(csv.reader(io.StringIO(content.decode("utf-8"))))
    assert lines[0] == ["ClientId", "DateTime", "Price", "Currency", "PhoneNumber", "TalkDuration", "HoldDuration",
                        "CallMissed", "Tag", "FirstTimeCaller", "URL", "CallTrackerURL"]
    assert lines[1] == ["1699999999123456789", str(int(started.timestamp())), "1500.00", "RUB", "+74951234567", "95",
                        "7", "0", "Google Ads", "1", "https://shop.example.ru/?utm_source=google",
                        f"https://track.example.ru/calls/{ids[0]}"]
    _, _, content = _multipart_file(capture.requests[1])
    yclid_lines = list(csv.reader(io.StringIO(content.decode("utf-8"))))
    assert yclid_lines[0][0] == "Yclid" and yclid_lines[1][0] == "777888"
    log = _log(session_factory)
    assert log[("metrica", f"call:{ids[2]}")].reason == "no_client_id"

    sender.run(session_factory, _config(db_url, capture.url), now=NOW + dt.timedelta(minutes=15))
    assert len(capture.requests) == 2  # nothing new


def test_a_refused_upload_keeps_the_answer_and_is_not_retried(session_factory, db_url, capture):
    with session_factory() as session:
        site, source = _site(session, ga4_enabled=False)
        call_id = _call(session, site, source, visit=_visit(session, site)).id
        session.commit()
    capture.answers.append((400, b'{"errors":[{"error_type":"invalid_parameter","message":"Wrong <ClientId>"}]}'))
    config = _config(db_url, capture.url)
    counts = sender.run(session_factory, config, now=NOW)
    assert counts.refused["metrica"] == 1
    row = _log(session_factory)[("metrica", f"call:{call_id}")]
    assert (row.status, row.reason, row.response_code) == ("refused", "validation", 400)
    assert "Wrong <ClientId>" in row.response_excerpt
    for minutes in (15, 30):
        sender.run(session_factory, config, now=NOW + dt.timedelta(minutes=minutes))
    assert len(capture.requests) == 1  # a refusal is final


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_network_failure_is_retried_on_the_next_run_and_given_up_after_max_attempts(session_factory, db_url,
                                                                                     capture):
    with session_factory() as session:
        site, source = _site(session, metrica_enabled=False)
        call_id = _call(session, site, source, visit=_visit(session, site)).id
        other_id = _call(session, site, source, visit=_visit(session, site, ga_client_id="9.9")).id
        session.commit()
    down = _config(db_url, f"http://127.0.0.1:{_closed_port()}", max_attempts="3")
    counts = sender.run(session_factory, down, now=NOW)
    assert counts.failed["ga4"] == 2
    row = _log(session_factory)[("ga4", f"call:{call_id}")]
    assert (row.status, row.reason, row.attempts, row.response_code) == ("failed", "network", 1, None)

    counts = sender.run(session_factory, _config(db_url, capture.url, max_attempts="3"),
                        now=NOW + dt.timedelta(minutes=15))
    assert counts.sent["ga4"] == 2 and len(capture.requests) == 2
    row = _log(session_factory)[("ga4", f"call:{call_id}")]
    assert (row.status, row.attempts, row.response_code) == ("sent", 2, 200)
    assert json.loads(capture.requests[0].body)["client_id"] == "123456789.1700000000"

    # A platform that stays unreachable: given up after max_attempts, then left alone.
    with session_factory() as session:
        session.get(ConversionLog, _log(session_factory)[("ga4", f"call:{other_id}")].id).status = "failed"
        session.commit()
    for minutes in (30, 45, 60, 75):
        sender.run(session_factory, down, now=NOW + dt.timedelta(minutes=minutes))
    row = _log(session_factory)[("ga4", f"call:{other_id}")]
    assert (row.status, row.reason, row.attempts) == ("refused", "gave_up", 3)


def test_dry_run_counts_and_writes_nothing(session_factory, db_url, capture):
    with session_factory() as session:
        site, source = _site(session, metrica_enabled=False)
        _call(session, site, source, visit=_visit(session, site))
        _call(session, site, source, visit=_visit(session, site, ga_client_id=None))
        session.commit()
    counts = sender.run(session_factory, _config(db_url, capture.url), now=NOW, dry_run=True)
    assert counts.sent["ga4"] == 1 and counts.skipped["ga4"] == {"no_client_id": 1}
    assert capture.requests == [] and _log(session_factory) == {}


def test_google_ads_file_follows_the_template_skips_calls_without_gclid_and_marks_only_when_asked(session_factory):
    with session_factory() as session:
        site, source = _site(session)
        with_click = _call(session, site, source, visit=_visit(session, site))
        _call(session, site, source, visit=_visit(session, site, gclid=None))
        _call(session, site, source)  # no visit at all
        session.commit()
        started = with_click.started_at
        site_id = site.id

        result = export.build(session, site_id, "google_ads", NOW)
        lines = result.text.splitlines()
        assert lines[0] == "Parameters:TimeZone=Europe/Moscow"
        assert lines[1] == "Google Click ID,Conversion Name,Conversion Time,Conversion Value,Conversion Currency"
        local = started.astimezone(dt.timezone(dt.timedelta(hours=3)))  # Moscow: UTC+3 all year
        assert lines[2] == f"Cj0KCQ-gclid-1,Phone call,{local:%Y-%m-%d %H:%M:%S},1500.00,RUB"
        assert len(lines) == 3 and result.rows == 1 and result.skipped == {"no_gclid": 2}
        session.rollback()
    assert _log(session_factory) == {}  # a file without --mark records nothing

    with session_factory() as session:
        marked = export.build(session, site_id, "google_ads", NOW, mark=True)
        session.commit()
    assert marked.rows == 1
    statuses = sorted((row.status, row.reason) for row in _log(session_factory).values())
    assert statuses == [("exported", None), ("skipped", "no_gclid"), ("skipped", "no_gclid")]
    with session_factory() as session:
        later = export.build(session, site_id, "google_ads", NOW)
    assert later.rows == 0 and later.text.splitlines()[2:] == []


def test_cli_send_export_and_log(session_factory, db_url, capture, tmp_path):
    from astertrack.cli.main import main

    with session_factory() as session:
        site, source = _site(session)
        now = dt.datetime.now(dt.UTC)  # the command runs at the real time
        _call(session, site, source, visit=_visit(session, site), now=now)
        _call(session, site, source, visit=_visit(session, site, gclid=None), now=now)
        session.commit()
        site_id = site.id
    conf = tmp_path / "astertrack.conf"
    conf.touch(mode=0o640)
    conf.write_text(f"[database]\nurl = {db_url}\n[conversions]\nga4_url = {capture.url}/mp/collect\n"
                    f"metrica_url = {capture.url}\n", encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(main, ["-c", str(conf), "conversions", "send"])
    assert result.exit_code == 0, result.output
    assert "ga4: sent 2, skipped 0" in result.output and "metrica: sent 2" in result.output
    assert len(capture.requests) == 3  # one GA4 event per call, one Metrica file for both
    out = tmp_path / "ads.csv"
    result = runner.invoke(main, ["-c", str(conf), "conversions", "export", "--platform", "google_ads",
                                  "--site", str(site_id), "--out", str(out), "--mark"])
    assert result.exit_code == 0, result.output
    assert "1 rows written" in result.output and "no_gclid 1" in result.output
    assert out.read_text(encoding="utf-8").startswith("Parameters:TimeZone=Europe/Moscow\n")
    result = runner.invoke(main, ["-c", str(conf), "conversions", "log", "--platform", "google_ads"])
    assert result.exit_code == 0 and "exported" in result.output and "no_gclid" in result.output
    result = runner.invoke(main, ["-c", str(conf), "conversions", "export", "--platform", "metrica",
                                  "--site", "999", "--out", str(out)])
    assert result.exit_code != 0 and "site 999 has no conversion settings" in result.output


def test_rules_and_secrets():
    assert rules.mask("y0_AgAAAABkLongOAuthToken1234") == "••••1234"
    assert rules.mask("short") == "••••" and rules.mask(None) == ""
    assert rules.call_counts("target", False, "answered", 29, 30, True) is False
    assert rules.call_counts("target", False, "answered", 30, 30, True) is True
    assert rules.call_counts("answered", True, "answered", 60, 30, False) is False
    assert rules.call_counts("all", False, "missed", 0, 30, None) is True
    assert rules.lead_reached("won", "qualified") and not rules.lead_reached("lost", "qualified")
    with pytest.raises(rules.SettingsError):
        rules.check_measurement_id("UA-1234-1")
    with pytest.raises(rules.SettingsError):
        rules.check_timezone("Mars/Olympus")
    assert builders._text("=HYPERLINK(\"x\")") == "HYPERLINK(\"x\")"  # no formula reaches a spreadsheet
