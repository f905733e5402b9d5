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
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from astertrack.db.engine import make_engine, make_session_factory  # noqa: E402
from astertrack.db.models import Base  # noqa: E402
from astertrack.samples.factories import add_did_route, add_managers, add_site, add_static_source  # noqa: E402
from astertrack.samples.processes import start_daemon, stop_process  # noqa: E402

# flow name, call.py arguments, expected row ("@" in answered_by = the channel technology)
FLOWS = [
    ("answered", "--did 74950000101 --caller 79161234567 --hangup-after-answer 5",
     dict(outcome="answered", missed_reason=None, answered_by="@/101", wait=3, talk=5, side="caller")),
    ("no answer, then next", "--did 74950000400 --caller 79031112233 --phone 101=3/0 --hangup-after-answer 4",
     dict(outcome="answered", missed_reason=None, answered_by="@/101", wait=13, talk=4, side="caller",
          attempts=2)),
    ("busy", "--did 74950000103 --caller 74957654321",
     dict(outcome="busy", missed_reason="all_busy", answered_by=None, wait=0, talk=0)),
    ("caller hangs up while ringing", "--did 74950000102 --caller 79161234567 --hangup-after 5",
     dict(outcome="missed", missed_reason="caller_hangup", answered_by=None, wait=5, talk=0, side="caller")),
    ("manager hangs up", "--did 74950000104 --caller 79031112233 --phone 104=2/4",
     dict(outcome="answered", answered_by="@/104", wait=2, talk=4, side="manager")),
    ("ring group, 102 answers",
     "--did 74950000300 --caller 74957654321 --phone 101=never --phone 102=3/0 --hangup-after-answer 4",
     dict(outcome="answered", answered_by="@/102", wait=3, talk=4)),
    ("queue answered", "--did 74950000200 --caller 79161234567 --hangup-after-answer 5",
     dict(outcome="answered", answered_by="@/101", wait=3, talk=5)),
    ("queue abandoned", "--did 74950000200 --caller 79031112233 --phone 101=never --hangup-after 6",
     dict(outcome="missed", missed_reason="queue_abandon", answered_by=None, wait=6, talk=0)),
    ("blind transfer", "--did 74950000101 --caller 74957654321 --phone 101=xfer:3:102 --phone 102=2/0 "
     "--hangup-after-answer 10", dict(outcome="answered", answered_by="@/101", transferred=1)),
]
AGI_DOWN = ("AGI down -> dialplan fallback", "--did 74950000101 --caller 79161234567 --hangup-after-answer 3",
            dict(outcome="answered", answered_by="@/101", talk=3))
TOLERANCE = 1.5


def seed(url: str, tech: str) -> None:
    """Site, one static source, managers 101..105 and one routing rule per DID of FLOWS."""
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    with make_session_factory(engine)() as s:
        site = add_site(s, "lab", domains=["lab.example"], timezone="UTC")
        source = add_static_source(s, site, "Yandex Direct")
        managers = dict(zip(range(101, 106), add_managers(s, range(101, 106), tech=tech), strict=True))

        def route(did, exts, **rule):
            add_did_route(s, source, did, [managers[e] for e in exts], sticky=False, ring_timeout=10, **rule)

        for ext in (101, 102, 103, 104):
            route(f"+749500001{ext - 100:02d}", [ext])
        route("+74950000400", [101, 102], rr_cursor=managers[101].id)  # 102 first, then 101
        route("+74950000300", [101, 102], strategy="ring_all")
        route("+74950000200", [101, 102], strategy="queue", queue_name="sales")
        s.commit()
    engine.dispose()


def place(kit: Path, lab: Path, args: str, pbx: str) -> dict:
    out = subprocess.run([sys.executable, str(kit / "call.py"), "--lab", str(lab), "--pbx", pbx, *args.split()],
                         capture_output=True, text=True, timeout=180)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"printed no result (exit {out.returncode}): {out.stderr.strip()[-300:]}")
    return json.loads(lines[-1])


def newest_call(db: Path, after_id: int, timeout: float = 20.0) -> dict | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        con = sqlite3.connect(db)
        con.row_factory = sqlite3.Row
        row = con.execute("SELECT * FROM calls WHERE id > ? AND state = 'finished' ORDER BY id DESC LIMIT 1",
                          (after_id,)).fetchone()
        con.close()
        if row is not None:
            return dict(row)
        time.sleep(0.5)
    return None


def compare(row: dict | None, want: dict, tech: str) -> list[str]:
    if row is None:
        return ["no finished call row"]
    problems = []
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
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", type=Path, default=Path.home() / "asterisk-lab")
    parser.add_argument("--prefix", type=Path, default=Path.home() / "asterisk-build" / "asterisk")
    parser.add_argument("--prefix-pj", type=Path, default=Path.home() / "asterisk-build" / "asterisk-pj")
    parser.add_argument("--pbx", choices=("sip", "pjsip"), default="sip")
    parser.add_argument("--kit", type=Path, required=True, help="the lab kit: the folder with up.sh (not in this repository)")
    parser.add_argument("--skip-up", action="store_true", help="the lab already runs our dialplan")
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
[recordings]
dir = {args.lab / instance / 'spool' / 'monitor'}
""")
    conf.chmod(0o600)
    seed(f"sqlite:///{db}", tech)
    agi = start_daemon("astertrack-agi", conf, log=work / "agi.log")
    ami = start_daemon("astertrack-ami", conf, log=work / "ami.log")
    time.sleep(3)
    results = []
    try:
        for name, call_args, want in FLOWS + [AGI_DOWN]:
            if name.startswith("AGI down"):
                stop_process(agi)
            # A call left over from a failed flow would keep a phone busy for the next ones.
            subprocess.run(asterisk + ["channel request hangup all"], capture_output=True)
            time.sleep(1)
            last = sqlite3.connect(db).execute("SELECT coalesce(max(id), 0) FROM calls").fetchone()[0]
            try:
                seen = place(args.kit, args.lab, call_args, args.pbx)
            except (RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
                seen, problems = {}, [f"call.py: {exc}"]
            else:
                problems = []
            row = newest_call(db, last)
            problems += compare(row, want, tech)
            if name.startswith("AGI down") and seen.get("agi", {}).get("AGISTATUS") != "FAILURE":
                problems.append(f"AGISTATUS {seen.get('agi')} (expected FAILURE)")
            results.append({"flow": name, "ok": not problems, "problems": problems,
                            "asterisk": {"dialstatus": seen.get("dialstatus"), "answered_by": seen.get("answered_by"),
                                         "agi": seen.get("agi", {}).get("CT_ROUTED_BY")},
                            "row": {k: (row or {}).get(k) for k in ("outcome", "missed_reason", "answered_by",
                                                                    "wait_seconds", "talk_seconds", "hangup_side")}})
            print(f"{'ok  ' if not problems else 'FAIL'} {name}: {results[-1]['row']}"
                  + (f"  <- {'; '.join(problems)}" if problems else ""), file=sys.stderr)
    finally:
        stop_process(agi)
        stop_process(ami)
    print(json.dumps({"check": "lab_e2e", "pbx": args.pbx, "flows": len(results), "passed": sum(r["ok"] for r in results),
                      "failed": [r["flow"] for r in results if not r["ok"]], "workdir": str(work)}))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
