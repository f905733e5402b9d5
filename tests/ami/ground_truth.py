"""Expected call records, typed from the ground-truth tables in tests/fixtures/asterisk.

Sources (in tests/fixtures/asterisk): README.md (Local set table), EXPECTED-sip.md and EXPECTED-pjsip.md ("Ground truth" and
"Event counts and AGI sessions" tables).  Values are the documents', not the listener's output:
ring/wait and talk seconds, outcome + reason, who answered, who hung up, the trunk's hangup
cause, the call id the AGI set and the recording path (`/var/spool/asterisk/monitor/<CT_RECORDING>.wav`;
in the Local set MixMonitor used `${UNIQUEID}` of the inbound `;2` channel).

``busy`` calls: the documents say "missed: busy"; astertrack stores ``outcome=busy``,
``missed_reason=all_busy`` (busy is a kind of missed call, counted as such by the reports).
"""

from __future__ import annotations

from dataclasses import dataclass

MONITOR = "/var/spool/asterisk/monitor"


@dataclass(frozen=True)
class Expected:
    capture: str
    did: str
    caller: str | None
    outcome: str
    reason: str | None
    answered_ext: str | None  # extension of the manager who answered first
    wait: float
    talk: float
    hangup_side: str | None
    cause: int | None
    call_uid: str | None
    recording: str | None  # file name under MONITOR, None = no recording
    transferred_to_ext: str | None = None


def _answered(capture, did, caller, ext, wait, talk, side, cause, uid, rec, xfer=None):
    return Expected(capture, did, caller, "answered", None, ext, wait, talk, side, cause, uid, rec, xfer)


def _missed(capture, did, caller, outcome, reason, wait, side, cause, uid, rec):
    return Expected(capture, did, caller, outcome, reason, None, wait, 0.0, side, cause, uid, rec)


LOCAL = [
    _answered("a_answered_101", "74950000101", "79161234567", "101", 2, 3, "caller", None, None, "1795388790.5.wav"),
    _missed("b_noanswer_102", "74950000102", "79161234567", "missed", "no_answer", 8, None, None, None,
            "1795388801.9.wav"),
    _missed("c_busy_103", "74950000103", "79161234567", "busy", "all_busy", 0, None, None, None,
            "1795388815.13.wav"),
    _missed("d_caller_hangup_ringing", "74950000102", "79161234567", "missed", "caller_hangup", 4, "caller", 19,
            None, "1795388822.17.wav"),
    _answered("f_queue_answered", "74950000200", "79161234567", "101", 2, 4, None, None, None,
              "1795388846.29.wav"),
]


def _driver_set(prefix: str, first_id: int, cancel_cause: int, b_wait: float) -> list[Expected]:
    uid = [f"ct-20261123-{first_id + n}" for n in range(9)]
    return [
        _answered(f"{prefix}_a_answered_101", "74950000101", "79161234567", "101", 3.0, 5.0, "caller", 16, uid[0],
                  f"{uid[0]}.wav"),
        _answered(f"{prefix}_b_noanswer_then_next", "74950000400", "79031112233", "101", b_wait, 4.0, "caller", 16,
                  uid[1], f"{uid[1]}.wav"),
        _missed(f"{prefix}_c_busy_103", "74950000103", "74957654321", "busy", "all_busy", 0.0, "pbx", 17, uid[2],
                f"{uid[2]}.wav"),
        _missed(f"{prefix}_d_caller_hangup_ringing", "74950000102", "79161234567", "missed", "caller_hangup", 5.0,
                "caller", cancel_cause, uid[3], f"{uid[3]}.wav"),
        _answered(f"{prefix}_e_manager_hangs_up", "74950000104", "79031112233", "104", 2.0, 4.0, "manager", 16,
                  uid[4], f"{uid[4]}.wav"),
        _answered(f"{prefix}_f_ringgroup_102_answers", "74950000300", "74957654321", "102", 3.0, 4.0, "caller", 16,
                  uid[5], f"{uid[5]}.wav"),
        _answered(f"{prefix}_g_queue_answered", "74950000200", "79161234567", "101", 3.0, 5.0, "caller", 16, uid[6],
                  f"{uid[6]}.wav"),
        _missed(f"{prefix}_h_queue_abandon", "74950000200", "79031112233", "missed", "queue_abandon", 6.0, "caller",
                cancel_cause, uid[7], f"{uid[7]}.wav"),
        _answered(f"{prefix}_i_blind_transfer", "74950000101", "74957654321", "101", 3.0, 7.0, "caller", 16, uid[8],
                  f"{uid[8]}.wav", xfer="102"),
        _answered(f"{prefix}_k_agi_down_fallback", "74950000101", "79161234567", "101", 3.0, 3.0, "caller", 16, None,
                  None),
    ]


SIP = _driver_set("sip", 38302, cancel_cause=0, b_wait=11.1)
PJSIP = _driver_set("pjsip", 39731, cancel_cause=127, b_wait=11.0)
ALL = {e.capture: e for e in LOCAL + SIP + PJSIP}


def technology(capture: str) -> str:
    if capture.startswith("pjsip_"):
        return "PJSIP"
    if capture.startswith("sip_"):
        return "SIP"
    return "Local"


def endpoint(capture: str, ext: str) -> str:
    tech = technology(capture)
    return f"Local/{ext}@agents" if tech == "Local" else f"{tech}/{ext}"
