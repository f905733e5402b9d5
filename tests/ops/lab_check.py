#!/usr/bin/env python3
"""End to end on a real Asterisk: the lab kit, our dialplan, our daemons, real SIP calls.

Not a pytest test (the lab needs a built Asterisk and minutes; CI has neither).  Run it on a
machine where the lab kit is built and up (see its README)::

    python tests/ops/lab_check.py --kit PATH/TO/lab --lab ~/asterisk-lab --prefix ~/asterisk-build/asterisk
    python tests/ops/lab_check.py --kit PATH/TO/lab --pbx pjsip --prefix ~/asterisk-build/asterisk --prefix-pj ~/asterisk-build/asterisk-pj

It (1) re-renders the lab with this checkout's ``asterisk-conf/extensions_astertrack.conf`` as
the trunk's context, (2) seeds a throw-away SQLite database (site, numbers, SIP managers
101..105, one routing rule per DID), (3) starts ``astertrack-agi`` and ``astertrack-ami`` as
processes, (4) places one call per flow with the kit's ``call.py`` and (5) compares each
resulting ``calls`` row with what the flow must give.  It also stops the FastAGI server for
one call to check the dialplan fallback.  The last printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from astertrack.db.engine import begin_write, make_engine, make_session_factory  # noqa: E402
from astertrack.db.models import Base  # noqa: E402
from astertrack.samples.factories import (  # noqa: E402
    add_did_route,
    add_group,
    add_managers,
    add_rule,
    add_site,
    add_static_source,
)
from astertrack.samples.processes import start_daemon, stop_process  # noqa: E402

# flow name, call.py arguments, expected row ("@" in answered_by = the channel technology), and what
# to do to our listener during the call: (signal or "outage", seconds after the call starts, seconds down)
FLOWS = [
    ("answered", "--did 74950000101 --caller 79161234567 --hangup-after-answer 5",
     dict(outcome="answered", missed_reason=None, answered_by="@/101", wait=3, talk=5, side="caller"), None),
    ("no answer, then next", "--did 74950000400 --caller 79031112233 --phone 101=3/0 --hangup-after-answer 4",
     dict(outcome="answered", missed_reason=None, answered_by="@/101", wait=13, talk=4, side="caller",
          attempts=2), None),
    ("busy", "--did 74950000103 --caller 74957654321",
     dict(outcome="busy", missed_reason="all_busy", answered_by=None, wait=0, talk=0), None),
    ("caller hangs up while ringing", "--did 74950000102 --caller 79161234567 --hangup-after 5",
     dict(outcome="missed", missed_reason="caller_hangup", answered_by=None, wait=5, talk=0, side="caller"), None),
    ("manager hangs up", "--did 74950000104 --caller 79031112233 --phone 104=2/4",
     dict(outcome="answered", answered_by="@/104", wait=2, talk=4, side="manager"), None),
    ("ring group, 102 answers",
     "--did 74950000300 --caller 74957654321 --phone 101=never --phone 102=3/0 --hangup-after-answer 4",
     dict(outcome="answered", answered_by="@/102", wait=3, talk=4), None),
    ("queue answered", "--did 74950000200 --caller 79161234567 --hangup-after-answer 5",
     dict(outcome="answered", answered_by="@/101", wait=3, talk=5), None),
    ("queue abandoned", "--did 74950000200 --caller 79031112233 --phone 101=never --hangup-after 6",
     dict(outcome="missed", missed_reason="queue_abandon", answered_by=None, wait=6, talk=0), None),
    ("queue timeout", "--did 74950000201 --caller 79031112233 --phone 101=never --phone 102=never",
     dict(outcome="missed", missed_reason="queue_timeout", answered_by=None, wait=8, talk=0), None),
    ("blind transfer", "--did 74950000101 --caller 74957654321 --phone 101=xfer:3:102 --phone 102=2/0 "
     "--hangup-after-answer 10", dict(outcome="answered", answered_by="@/101", transferred=1), None),
    ("listener SIGTERM during the talk, back 2 s later",
     "--did 74950000101 --caller 79161234567 --phone 101=3/0 --hangup-after-answer 10",
     dict(outcome="answered", answered_by="@/101", wait=3, talk=10, closed_by="cdr"), ("SIGTERM", 6.0, 2.0)),
    ("listener SIGKILL during the talk, back 2 s later",
     "--did 74950000101 --caller 79031112233 --phone 101=3/0 --hangup-after-answer 10",
     dict(outcome="answered", answered_by="@/101", wait=3, talk=10, closed_by="cdr"), ("SIGKILL", 6.0, 2.0)),
    ("listener down for a whole call",
     "--did 74950000104 --caller 74957654321 --phone 104=2/0 --hangup-after-answer 6",
     dict(outcome="answered", answered_by="@/104", wait=2, talk=6, closed_by="cdr"), ("outage", 0.0, 12.0)),
]
AGI_DOWN = ("AGI down -> dialplan fallback, nothing recorded",
            "--did 74950000101 --caller 79161234567 --hangup-after-answer 3",
            dict(outcome="answered", answered_by="@/101", talk=3, recording_path=None), None)
TOLERANCE = 1.5  # against the flow's script (phones answer on a timer)
# Callbacks (issue #22): astertrack-ami originates to a manager's phone, then [astertrack-callback]
# dials the visitor.  The lab's stand-in for the visitor's phone is world's phone 105, reached through
# the carrier trunk by a lab-only context (any number -> 105); PH105 = 2/5: it answers after 2 s and
# hangs up after 5 s of talk.  (flow, how, expected row)
VISITOR_PHONE = "2/5"
CALLBACK_FLOWS = [
    ("callback request: manager 101 answers, then the visitor", "request",
     dict(outcome="answered", missed_reason=None, answered_by="@/101", wait=5, talk=5, side="caller",
          lead_channel="callback", utm_campaign="lab-callback")),
    ("missed call callback: 102 never answered the call, answers the callback, then the visitor", "missed",
     dict(outcome="answered", missed_reason=None, answered_by="@/102", wait=5, talk=5, side="caller",
          lead_channel="missed_call_callback")),
]
CDR_TOLERANCE = 1.0  # against Asterisk's own CDR of the call


def seed(url: str, tech: str) -> None:
    """Site, one static source, managers 101..105 and one routing rule per DID of FLOWS."""
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    with make_session_factory(engine)() as s:
        site = add_site(s, "lab", domains=["lab.example"], timezone="UTC")
        source = add_static_source(s, site, "Yandex Direct")
        managers = dict(zip(range(101, 106), add_managers(s, range(101, 106), tech=tech), strict=True))

        def route(did, exts, ring_timeout=10, **rule):
            add_did_route(s, source, did, [managers[e] for e in exts], sticky=False, ring_timeout=ring_timeout,
                          **rule)

        for ext in (101, 102, 103, 104):
            route(f"+749500001{ext - 100:02d}", [ext])
        route("+74950000400", [101, 102], rr_cursor=managers[101].id)  # 102 first, then 101
        route("+74950000300", [101, 102], strategy="ring_all")
        route("+74950000200", [101, 102], strategy="queue", queue_name="sales")
        route("+74950000201", [101, 102], strategy="queue", queue_name="sales", ring_timeout=8)
        # callbacks (no DID) match no DID rule: this site-wide rule rings 101, the last one tried
        add_rule(s, "callbacks", add_group(s, "callback managers", [managers[101]]), site=site, priority=1000,
                 strategy="least_recent", sticky=False)
        s.commit()
    engine.dispose()


def place(kit: Path, lab: Path, args: str, pbx: str, record: Path | None = None) -> dict:
    extra = ["--record-ami", str(record)] if record else []
    out = subprocess.run([sys.executable, str(kit / "call.py"), "--lab", str(lab), "--pbx", pbx, *args.split(), *extra],
                         capture_output=True, text=True, timeout=180)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"printed no result (exit {out.returncode}): {out.stderr.strip()[-300:]}")
    return json.loads(lines[-1])


def call_row(db: Path, seen: dict, timeout: float = 45.0) -> tuple[dict | None, int]:
    """The row of the placed call - by the AGI's call id, else by Asterisk's linkedid - once it is
    finished and reconciled; and how many rows name that call (a duplicate is a failure)."""
    call_uid = seen.get("agi", {}).get("CT_CALL_ID")
    key, value = ("call_uid", call_uid) if call_uid else ("linkedid", seen.get("linkedid"))
    deadline = time.monotonic() + timeout
    row, count = None, 0
    while time.monotonic() < deadline:
        con = sqlite3.connect(db)
        con.row_factory = sqlite3.Row
        rows = [dict(r) for r in con.execute(f"SELECT * FROM calls WHERE {key} = ?", (value,))]
        count = len(rows) if call_uid is None else con.execute(
            "SELECT count(*) FROM calls WHERE linkedid = ?", (seen.get("linkedid"),)).fetchone()[0]
        con.close()
        row = rows[0] if rows else None
        if row is not None and row["state"] == "finished" and row.get("reconcile_state") != "pending":
            return row, count
        time.sleep(0.5)
    return row, count


def cdr_lines(lab: Path, instance: str, linkedid: str) -> list[list[str]]:
    path = lab / instance / "log" / "cdr-custom" / "astertrack.csv"
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [r for r in csv.reader(f) if len(r) > 10 and r[1] == linkedid]


def cdr_truth(lines: list[list[str]]) -> dict | None:
    """Wait and talk as Asterisk's CDR gives them (fields of asterisk-conf/cdr_custom_astertrack.conf):
    from the first start of the caller's channel to the first answer; talk = the answered rows' billsec."""
    if not lines:
        return None
    linkedid = lines[0][1]
    caller = [r for r in lines if r[2] == linkedid] or lines
    started = min(float(r[8]) for r in caller)
    answered = [r for r in caller if r[4] and r[7] == "ANSWERED" and float(r[9]) > 0]
    if answered:
        return {"wait": min(float(r[9]) for r in answered) - started,
                "talk": sum(float(r[10]) - float(r[9]) for r in answered)}
    return {"wait": max(float(r[10]) for r in caller) - started, "talk": 0.0}


def compare(row: dict | None, want: dict, tech: str, cdr: dict | None, count: int) -> list[str]:
    if row is None:
        return ["no call row"]
    problems = [] if count == 1 else [f"{count} rows for one call"]
    if row["state"] != "finished" or row.get("reconcile_state") == "pending":
        problems.append(f"not finished: state {row['state']}, reconcile {row.get('reconcile_state')}")
    columns = {"wait": "wait_seconds", "talk": "talk_seconds", "side": "hangup_side", "attempts": "routing_attempts"}
    for key, expected in want.items():
        if isinstance(expected, str):
            expected = expected.replace("@", tech)
        got = row.get(columns.get(key, key))
        if key in ("wait", "talk"):
            if got is None or abs(got - expected) > TOLERANCE:
                problems.append(f"{key} {got} != {expected}±{TOLERANCE}")
        elif got != expected:
            problems.append(f"{key} {got!r} != {expected!r}")
    if cdr is None:
        problems.append("no CDR line for the call")
    else:
        # After a blind transfer Asterisk's CDR bills the new party from the transfer on, its
        # ringing included; the events give the time somebody really talked (the flow's script).
        for key in ("wait",) if want.get("transferred") else ("wait", "talk"):
            got = row.get(columns[key])
            if got is None or abs(got - cdr[key]) > CDR_TOLERANCE:
                problems.append(f"{key} {got} != CDR {cdr[key]:.2f}±{CDR_TOLERANCE}")
    return problems


class AmiRecorder:
    """Every byte of one AMI session (banner .. Goodbye), as the fixture recorder keeps it."""

    def __init__(self, port: int, path: Path):
        import socket
        self.path = path
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.data = bytearray()
        self.sock.sendall(b"Action: Login\r\nActionID: capture-login\r\nUsername: calltrack\r\n"
                          b"Secret: calltrack-secret\r\nEvents: on\r\n\r\n")
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        self.sock.settimeout(None)
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            self.data += chunk

    def stop(self) -> None:
        try:
            self.sock.sendall(b"Action: Logoff\r\nActionID: capture-logoff\r\n\r\n")
        except OSError:
            pass
        self.thread.join(5)
        self.sock.close()
        self.path.write_bytes(bytes(self.data))


def request_callback(db: Path, campaign: str) -> int:
    """A visitor's callback request, as the website's button would make it (with its visit)."""
    import datetime as dt

    from astertrack.db.models import Site, Source, VisitorSession
    from astertrack.leads.callbacks import request_callback as request

    engine = make_engine(f"sqlite:///{db}")
    try:
        with make_session_factory(engine)() as s:
            # the write lock first: reads then an insert in a deferred transaction fail at once
            # ("database is locked") when the AMI listener commits in between
            begin_write(s)
            site = s.query(Site).one()
            visit = VisitorSession(site_id=site.id, source_id=s.query(Source).first().id, utm_source="lab",
                                   utm_campaign=campaign, landing_page="https://lab.example/")
            s.add(visit)
            s.flush()
            row = request(s, site, "+79161234567", visitor_session=visit, now=dt.datetime.now(dt.UTC))
            s.commit()
            return row.id
    finally:
        engine.dispose()


def callback_row(db: Path, kind: str, timeout: float = 90.0) -> tuple[dict | None, dict | None]:
    """The callback request of ``kind`` once it ended (connected or failed), and its last call."""
    deadline = time.monotonic() + timeout
    request = row = None
    while time.monotonic() < deadline:
        con = sqlite3.connect(db)
        con.row_factory = sqlite3.Row
        found = con.execute("SELECT * FROM callback_requests WHERE kind = ? ORDER BY id DESC LIMIT 1", (kind,)).fetchone()
        request = dict(found) if found else None
        if request and request["call_id"]:
            found = con.execute("SELECT * FROM calls WHERE id = ?", (request["call_id"],)).fetchone()
            row = dict(found) if found else None
        con.close()
        if request and request["state"] in ("connected", "failed") and row and row["state"] == "finished":
            return request, row
        time.sleep(0.5)
    return request, row


def run_callbacks(args, asterisk: list[str], world: list[str], db: Path, tech: str, ami_port: int,
                  instance: str) -> list[dict]:
    """The callback flows: a request from a visit, and a missed call called back by its manager."""
    visitor = f"Dial,{tech}/105@trunk" if tech == "PJSIP" else "Dial,SIP/trunk/105"
    for command in (f"dialplan add extension _X.,1,{visitor} into astertrack-lab-visitor replace",
                    "dialplan set global ASTERTRACK_CALLBACK_TRUNK Local/",
                    "dialplan set global ASTERTRACK_CALLBACK_SUFFIX @astertrack-lab-visitor"):
        subprocess.run(asterisk + [command], check=True, capture_output=True)
    results = []
    for name, how, want in CALLBACK_FLOWS:
        if args.only and args.only not in name:
            continue
        subprocess.run(asterisk + ["channel request hangup all"], capture_output=True)
        slug = "callback_request" if how == "request" else "missed_call_callback"
        record = args.record / f"{args.pbx}_{slug}.ami.txt" if args.record else None
        recorder = AmiRecorder(ami_port, record) if record else None
        problems: list[str] = []
        missed = None
        if how == "request":
            for ext, mode in (("101", "3/0"), ("105", VISITOR_PHONE)):
                subprocess.run(world + [f"dialplan set global PH{ext} {mode}"], check=True, capture_output=True)
            request_callback(db, "lab-callback")
            kind = "callback"
        else:
            # the missed call itself (the site does not call back yet, so 102 can be set to answer first)
            seen = place(args.kit, args.lab, "--did 74950000102 --caller 79161234567 --hangup-after 5", args.pbx)
            missed, _ = call_row(db, seen)
            if not missed or missed["outcome"] != "missed":
                problems.append(f"the inbound call was not missed: {missed and missed['outcome']}")
            for ext, mode in (("102", "3/0"), ("105", VISITOR_PHONE)):
                subprocess.run(world + [f"dialplan set global PH{ext} {mode}"], check=True, capture_output=True)
            con = sqlite3.connect(db)
            # the earlier flows' missed calls are taken as handled: only this one is called back
            con.execute("INSERT INTO callback_requests (kind, phone, missed_call_id, state, attempts, max_attempts, "
                        "created_at) SELECT 'missed_call_callback', coalesce(caller_number, ''), id, 'cancelled', 0, 0, "
                        "CURRENT_TIMESTAMP FROM calls WHERE outcome IN ('missed', 'busy') AND id != ?",
                        (missed["id"] if missed else -1,))
            con.execute("UPDATE sites SET missed_call_callback = 1")
            con.commit()
            con.close()
            kind = "missed_call_callback"
        request, row = callback_row(db, kind)
        time.sleep(2)  # the last Cdr events
        if recorder:
            recorder.stop()
        if request is None:
            problems.append("no callback request")
        elif request["state"] != "connected":
            problems.append(f"request {request['state']} ({request['last_result']}) after {request['attempts']} calls")
        # Asterisk's CDR bills the manager's leg from the manager's answer (the visitor still ringing):
        # its times are kept with the fixture, not compared; the row must match the flow's script
        problems += [p for p in compare(row, want, tech, None, 1) if p != "no CDR line for the call"]
        lines = cdr_lines(args.lab, instance, (row or {}).get("linkedid") or "")
        if not lines:
            problems.append("no CDR line for the call")
        if row and row.get("recording_path") and not Path(row["recording_path"]).exists():
            problems.append(f"no recording file {row['recording_path']}")
        elif row and row.get("recording_path") and Path(row["recording_path"]).stat().st_size <= 44 + 16000:
            problems.append(f"recording of {Path(row['recording_path']).stat().st_size} bytes: nothing bridged")
        if missed and row and (row["source_id"], row["routed_manager_id"]) != (missed["source_id"],
                                                                               missed["routed_manager_id"]):
            problems.append("the callback lost the missed call's source or manager")
        if args.record:
            with (args.record / f"{args.pbx}_{slug}.cdr.csv").open("w", newline="") as f:
                csv.writer(f, lineterminator="\n").writerows(lines)
            truth = {"request": request, "call": row, "missed_call": missed}
            (args.record / f"{args.pbx}_{slug}.call.json").write_text(json.dumps(truth, indent=1, default=str) + "\n")
        results.append({"flow": name, "ok": not problems, "problems": problems,
                        "row": {k: (row or {}).get(k) for k in ("outcome", "missed_reason", "answered_by", "wait_seconds",
                                                               "talk_seconds", "lead_channel", "recording_path")}})
        print(f"{'ok  ' if not problems else 'FAIL'} {name}: {results[-1]['row']}"
              + (f"  <- {'; '.join(problems)}" if problems else ""), file=sys.stderr)
    return results


class ListenerControl:
    """Starts, stops, kills and restarts our AMI listener around a call (the flows of issue #19)."""

    def __init__(self, conf: Path, log: Path, db: Path):
        self.conf, self.log, self.db = conf, log, db
        self.proc = start_daemon("astertrack-ami", conf, log=log)
        self.notes: list[str] = []

    def stop(self, how: str) -> None:
        if how == "SIGKILL":
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        else:
            stop_process(self.proc)

    def start(self) -> None:
        self.proc = start_daemon("astertrack-ami", self.conf, log=self.log)

    def during_call(self, how: str, at: float, down: float, caller: str) -> None:
        """In a thread while the call runs: stop the listener at ``at`` s, start it ``down`` s later,
        then check that the live row recovered (state up, manager known) while the call still talks."""
        time.sleep(at)
        self.stop(how)
        time.sleep(down)
        self.start()
        time.sleep(3)
        con = sqlite3.connect(self.db)
        row = con.execute("SELECT state, answered_by FROM calls WHERE caller_number LIKE ? ORDER BY id DESC LIMIT 1",
                          (f"%{caller[-7:]}",)).fetchone()
        con.close()
        if row is None or row[0] != "up" or not row[1]:
            self.notes.append(f"live row after the restart: {row} (expected state up with the manager)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", type=Path, default=Path.home() / "asterisk-lab")
    parser.add_argument("--prefix", type=Path, default=Path.home() / "asterisk-build" / "asterisk")
    parser.add_argument("--prefix-pj", type=Path, default=Path.home() / "asterisk-build" / "asterisk-pj")
    parser.add_argument("--pbx", choices=("sip", "pjsip"), default="sip")
    parser.add_argument("--kit", type=Path, required=True, help="the lab kit: the folder with up.sh (not in this repository)")
    parser.add_argument("--skip-up", action="store_true", help="the lab already runs our dialplan")
    parser.add_argument("--only", default="", help="run only the flows whose name contains this text")
    parser.add_argument("--outage-seconds", type=float, default=None,
                        help="how long the listener stays down after the 'down for a whole call' flow (default 12)")
    parser.add_argument("--record", type=Path, default=None,
                        help="keep each flow's AMI stream, CDR lines and call.py result here (new fixtures)")
    args = parser.parse_args()
    pj = args.pbx == "pjsip"
    tech, instance = ("PJSIP", "pbxpj") if pj else ("SIP", "pbx")
    agi_port, ami_port = (4574, 5040) if pj else (4573, 5038)
    prefix = args.prefix_pj if pj else args.prefix
    asterisk = [str(prefix / "sbin" / "asterisk"), "-C", str(args.lab / instance / "etc" / "asterisk.conf"), "-rx"]
    if not args.skip_up:
        args.lab.mkdir(parents=True, exist_ok=True)  # a fresh machine has no lab directory yet
        (args.lab / "pids.txt").touch()  # up.sh reads it before the first start
        subprocess.run([str(args.kit / "up.sh"), str(args.prefix), str(args.lab), "--dialplan",
                        str(REPO / "asterisk-conf" / "extensions_astertrack.conf"),
                        "--trunk-context", "astertrack-inbound", *(["--pjsip", str(args.prefix_pj)] if pj else [])],
                       check=True, capture_output=True)
    subprocess.run(asterisk + [f"dialplan set global ASTERTRACK_DEFAULT_DIAL {tech}/101"], check=True,
                   capture_output=True)
    if pj:
        subprocess.run(asterisk + [f"dialplan set global ASTERTRACK_AGI 127.0.0.1:{agi_port}"], check=True,
                       capture_output=True)
    # Asterisk's own record of each call, as install.sh sets it up (asterisk-conf/cdr_custom_astertrack.conf)
    shutil.copy(REPO / "asterisk-conf" / "cdr_custom_astertrack.conf", args.lab / instance / "etc" / "cdr_custom.conf")
    (args.lab / instance / "log" / "cdr-custom").mkdir(parents=True, exist_ok=True)  # Asterisk does not create it
    loaded = subprocess.run(asterisk + ["module show like cdr_custom"], capture_output=True, text=True).stdout
    subprocess.run(asterisk + ["module reload cdr_custom.so" if "cdr_custom.so" in loaded else "module load cdr_custom.so"],
                   check=True, capture_output=True)
    work = Path(tempfile.mkdtemp(prefix="astertrack-lab-"))
    db = work / "lab.db"
    conf = work / "astertrack.conf"
    conf.write_text(f"""[general]
node = lab
data_dir = {work}
[database]
url = sqlite:///{db}
[agi]
listen_port = {agi_port}
metrics_port = 0
[ami]
port = {ami_port}
username = calltrack
secret = calltrack-secret
metrics_port = 0
cdr_file = {args.lab / instance / 'log' / 'cdr-custom' / 'astertrack.csv'}
[recordings]
dir = {args.lab / instance / 'spool' / 'monitor'}
[callbacks]
originate_timeout = 20
""")
    conf.chmod(0o600)
    seed(f"sqlite:///{db}", tech)
    if args.record:
        args.record.mkdir(parents=True, exist_ok=True)
    agi = start_daemon("astertrack-agi", conf, log=work / "agi.log")
    listener = ListenerControl(conf, work / "ami.log", db)
    time.sleep(3)
    results = []
    try:
        for name, call_args, want, action in FLOWS + [AGI_DOWN]:
            if args.only and args.only not in name:
                continue
            if name.startswith("AGI down"):
                stop_process(agi)
            # A call left over from a failed flow would keep a phone busy for the next ones.
            subprocess.run(asterisk + ["channel request hangup all"], capture_output=True)
            time.sleep(1)
            slug = re.sub(r"[^a-z0-9]+", "_", name.lower().replace("->", " ")).strip("_")[:48]
            record = args.record / f"{args.pbx}_{slug}.ami.txt" if args.record else None
            listener.notes = []
            helper = None
            if action and action[0] == "outage":
                listener.stop("SIGTERM")
            elif action:
                caller = call_args.split("--caller ")[1].split()[0]
                helper = threading.Thread(target=listener.during_call, args=(*action, caller), daemon=True)
                helper.start()
            lab_problems: list[str] = []
            try:
                seen = place(args.kit, args.lab, call_args, args.pbx, record)
            except (RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
                seen, lab_problems = {}, [f"call.py: {exc}"]
            if seen.get("error"):
                lab_problems.append(f"call.py: {seen['error']}")
            if helper is not None:
                helper.join(60)
            if action and action[0] == "outage":
                time.sleep(args.outage_seconds if args.outage_seconds is not None else action[2])
                listener.start()
            if lab_problems:  # the call never reached the PBX: the lab failed, not the product
                results.append({"flow": name, "ok": False, "lab_failure": True, "problems": lab_problems})
                print(f"LAB  {name}: {'; '.join(lab_problems)}", file=sys.stderr)
                continue
            row, count = call_row(db, seen)
            lines = cdr_lines(args.lab, instance, seen.get("linkedid") or "")
            problems = compare(row, want, tech, cdr_truth(lines), count) + listener.notes
            if name.startswith("AGI down") and seen.get("agi", {}).get("AGISTATUS") != "FAILURE":
                problems.append(f"AGISTATUS {seen.get('agi')} (expected FAILURE)")
            if args.record:
                with (args.record / f"{args.pbx}_{slug}.cdr.csv").open("w", newline="") as f:
                    csv.writer(f, lineterminator="\n").writerows(lines)
                (args.record / f"{args.pbx}_{slug}.call.json").write_text(json.dumps(seen, indent=1) + "\n")
            results.append({"flow": name, "ok": not problems, "problems": problems,
                            "asterisk": {"dialstatus": seen.get("dialstatus"), "answered_by": seen.get("answered_by"),
                                         "agi": seen.get("agi", {}).get("CT_ROUTED_BY")},
                            "row": {k: (row or {}).get(k) for k in ("outcome", "missed_reason", "answered_by",
                                                                    "wait_seconds", "talk_seconds", "hangup_side",
                                                                    "closed_by")}})
            print(f"{'ok  ' if not problems else 'FAIL'} {name}: {results[-1]['row']}"
                  + (f"  <- {'; '.join(problems)}" if problems else ""), file=sys.stderr)
        if not args.only or any(args.only in flow[0] for flow in CALLBACK_FLOWS):
            if agi.poll() is not None:  # the AGI-down flow stopped it: the missed call needs routing
                agi = start_daemon("astertrack-agi", conf, log=work / "agi.log")
                time.sleep(2)
            world = [str(args.prefix / "sbin" / "asterisk"), "-C", str(args.lab / "world" / "etc" / "asterisk.conf"),
                     "-rx"]
            results += run_callbacks(args, asterisk, world, db, tech, ami_port, instance)
    finally:
        stop_process(agi)
        stop_process(listener.proc)
    product = [r for r in results if not r.get("lab_failure")]
    print(json.dumps({"check": "lab_e2e", "pbx": args.pbx, "flows": len(results), "passed": sum(r["ok"] for r in results),
                      "failed": [r["flow"] for r in product if not r["ok"]],
                      "lab_failures": [r["flow"] for r in results if r.get("lab_failure")], "workdir": str(work)}))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
