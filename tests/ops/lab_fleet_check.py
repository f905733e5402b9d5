#!/usr/bin/env python3
"""Two real PBXs, one PostgreSQL: the lab's chan_sip and chan_pjsip instances as nodes of one fleet.

Each PBX gets its own ``astertrack-agi`` and ``astertrack-ami`` (nodes ``pbx-sip`` and
``pbx-pj``), all writing to one fresh PostgreSQL database.  The same tracking numbers ring on
both boxes; each rule's group holds the phones of both (``SIP/101`` and ``PJSIP/101``): the
AGI asks its own Asterisk for device states, and another box's endpoint is never "free"
there, so each PBX only dials its own phones.  Calls are placed on both PBXs at the same time.

    python tests/ops/lab_fleet_check.py [--pg postgresql://postgres@127.0.0.1:5432/postgres]

Needs the lab built with PJSIP (the lab kit, passed as --kit; see its README).  Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from astertrack.db.engine import make_engine, make_session_factory  # noqa: E402
from astertrack.db.models import Base, Call  # noqa: E402
from astertrack.samples.factories import add_did_route, add_managers, add_site, add_static_source  # noqa: E402
from astertrack.samples.processes import start_daemon, stop_process, throwaway_postgres  # noqa: E402
from tests.ops.lab_check import REPO, place  # noqa: E402

FLOWS = [  # (call.py arguments, outcome, missed_reason, answering extension, hangup side)
    ("--did 74950000101 --caller 79161234567 --hangup-after-answer 4", "answered", None, "101", "caller"),
    ("--did 74950000103 --caller 74957654321", "busy", "all_busy", None, "pbx"),
    ("--did 74950000102 --caller 79031112233 --hangup-after 4", "missed", "caller_hangup", None, "caller"),
    ("--did 74950000104 --caller 79031112233 --phone 104=2/4", "answered", None, "104", "manager"),
]
NODES = {"pbx-sip": ("sip", "SIP", 4573, 5038), "pbx-pj": ("pjsip", "PJSIP", 4574, 5040)}


def seed(url: str) -> None:
    """Site, one static source, phones 101..104 on both PBXs, one rule per DID ringing both boxes' phone."""
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    with make_session_factory(engine)() as s:
        site = add_site(s, "fleet", timezone="UTC")
        source = add_static_source(s, site, "Google Ads")
        extensions = ("101", "102", "103", "104")
        phones = {tech: add_managers(s, extensions, tech=tech, names=[f"{tech} {ext}" for ext in extensions])
                  for tech in ("SIP", "PJSIP")}
        for ext, sip, pjsip in zip(extensions, phones["SIP"], phones["PJSIP"], strict=True):
            add_did_route(s, source, f"+74950000{ext}", [sip, pjsip], group_name=f"ext {ext}", sticky=False,
                          ring_timeout=10, max_attempts=2)
        s.commit()
    engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", type=Path, default=Path.home() / "asterisk-lab")
    parser.add_argument("--prefix", type=Path, default=Path.home() / "asterisk-build" / "asterisk")
    parser.add_argument("--prefix-pj", type=Path, default=Path.home() / "asterisk-build" / "asterisk-pj")
    parser.add_argument("--kit", type=Path, required=True, help="the lab kit: the folder with up.sh (not in this repository)")
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    args.lab.mkdir(parents=True, exist_ok=True)
    (args.lab / "pids.txt").touch()
    subprocess.run([str(args.kit / "up.sh"), str(args.prefix), str(args.lab), "--pjsip", str(args.prefix_pj),
                    "--dialplan", str(REPO / "asterisk-conf" / "extensions_astertrack.conf"),
                    "--trunk-context", "astertrack-inbound"], check=True, capture_output=True)
    for instance, prefix, agi in (("pbx", args.prefix, 4573), ("pbxpj", args.prefix_pj, 4574)):
        cli = [str(prefix / "sbin" / "asterisk"), "-C", str(args.lab / instance / "etc" / "asterisk.conf"), "-rx"]
        subprocess.run(cli + [f"dialplan set global ASTERTRACK_AGI 127.0.0.1:{agi}"], check=True, capture_output=True)
        subprocess.run(cli + ["channel request hangup all"], capture_output=True)

    scratch = contextlib.ExitStack()  # the throw-away PostgreSQL database, dropped at the end
    url = scratch.enter_context(throwaway_postgres(args.pg, "astertrack_fleet_lab"))
    work = Path(tempfile.mkdtemp(prefix="astertrack-fleet-"))
    procs = []
    try:
        seed(url)
        for node, (_pbx, _tech, agi_port, ami_port) in NODES.items():
            conf = work / f"{node}.conf"
            conf.write_text(f"[general]\nnode = {node}\n[database]\nurl = {url}\n[agi]\nlisten_port = {agi_port}\n"
                            f"metrics_port = 0\n[ami]\nport = {ami_port}\nusername = calltrack\n"
                            f"secret = calltrack-secret\nmetrics_port = 0\n")
            conf.chmod(0o600)
            procs += [start_daemon("astertrack-agi", conf, log=work / f"{node}-agi.log"),
                      start_daemon("astertrack-ami", conf, log=work / f"{node}-ami.log")]
        time.sleep(3)
        placed: dict[str, list[dict]] = {node: [] for node in NODES}
        with ThreadPoolExecutor(2) as pool:
            for flow in FLOWS:  # the same flow on both PBXs at the same time
                for node, seen in zip(NODES, pool.map(lambda pbx, f=flow: _place(args, f[0], pbx),
                                                      ("sip", "pjsip")), strict=True):
                    placed[node].append(seen)
        time.sleep(4)
        engine = make_engine(url)
        with make_session_factory(engine)() as s:
            calls = s.scalars(select(Call).order_by(Call.id)).all()
        engine.dispose()
    finally:
        for proc in procs:
            stop_process(proc)
        scratch.close()

    problems, lab_failures = [], []
    for node, (_pbx, tech, _a, _m) in NODES.items():
        by_uid = {c.call_uid: c for c in calls if c.node == node}
        for (call_args, outcome, reason, ext, side), seen in zip(FLOWS, placed[node], strict=True):
            if seen.get("error"):  # the call never reached the PBX: the lab failed, not the product
                lab_failures.append(f"{node} {call_args}: {seen['error']}")
                print(f"LAB  {node} {call_args.split()[1]}: {seen['error']}", file=sys.stderr)
                continue
            row = by_uid.get(seen.get("agi", {}).get("CT_CALL_ID"))  # matched by call id, not by row order
            got = (row.outcome, row.missed_reason, row.answered_by, row.hangup_side, row.state) if row else None
            want = (outcome, reason, f"{tech}/{ext}" if ext else None, side, "finished")
            status = "ok  " if got == want else "FAIL"
            print(f"{status} {node} {call_args.split()[1]}: {got}", file=sys.stderr)
            if got != want:
                problems.append(f"{node} {call_args}: {got} != {want}")
    print(json.dumps({"check": "lab_fleet", "nodes": list(NODES), "calls": len(calls),
                      "distinct_call_uids": len({c.call_uid for c in calls}), "problems": problems,
                      "lab_failures": lab_failures}))
    return 0 if not problems and not lab_failures else 1


def _place(args, call_args: str, pbx: str) -> dict:
    try:
        return place(args.kit, args.lab, call_args, pbx)
    except (RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
        return {"error": f"call.py: {exc}"}


if __name__ == "__main__":
    sys.exit(main())
