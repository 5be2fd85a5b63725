# Appended by e2e/receiving_test.go after a Python snippet of
# docs/receiving.md. Reads a JSON array of cases on stdin, calls the
# snippet's verify or decrypt on each, and prints a JSON array of
# {"result": ...} or {"error": "..."}.
import base64 as _b64
import json as _json
import sys as _sys


def _run(case):
    body = _b64.b64decode(case["body_b64"])
    args = case.get("args") or []
    if case["fn"] == "verify":
        return verify(case["headers"], body, case["secret"], *args)
    if case["fn"] == "decrypt":
        return decrypt(case["headers"], body, case["key_b64"], *args)
    raise ValueError("unknown fn " + case["fn"])


_out = []
for _case in _json.load(_sys.stdin):
    try:
        _out.append({"result": _run(_case)})
    except Exception as _e:  # reported to the test, which decides
        _out.append({"error": f"{type(_e).__name__}: {_e}"})
_json.dump(_out, _sys.stdout)
