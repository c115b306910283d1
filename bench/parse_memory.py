"""Peak memory of parse(), and of the whole way in, on a ~30 MB message, as a multiple of its size.

Why: the gateway accepts mail up to 40 MiB, and a worker that needs many times a message's size
to read it is the one that gets killed first. Aim: peak growth under 3x the message size.

Each measurement runs in a fresh child process (so ru_maxrss, a high-water mark, starts clean),
after the raw bytes are already in memory; only growth caused by parsing is counted. The baseline,
measured in the same run, is the stdlib alone: parse with compat32 and decode every leaf part.

    .venv/bin/python bench/parse_memory.py [--mb 30] [--broken-base64]

With --broken-base64 every attachment has a stray letter after its base64 padding, as a
careless or hostile sender writes it: the decoder's slow path, which reads on past the padding.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_message(target_mb: float, seed: int = 30, broken: bool = False) -> bytes:
    """A multipart/mixed mail: text, HTML and several base64 attachments summing to target_mb."""
    rng = random.Random(seed)
    boundary = "=_bench_boundary_0123456789"
    text = ("Hello support, the files you asked for are attached.\r\n" * 2000).encode()
    html = ("<p>Hello <b>support</b>, see <a href='https://example.test'>this</a>.</p>\r\n"
            * 2000).encode()
    sizes = [0.3, 0.25, 0.2, 0.15, 0.1]  # shares of the attachment budget
    budget = target_mb * 1024 * 1024 * 3 / 4 - len(text) - len(html)  # base64 grows by 4/3
    out = [b"From: Big Sender <big@customer.test>\r\nTo: support@acme.test\r\n"
           b"Subject: Large files\r\nMessage-ID: <bench@customer.test>\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="' + boundary.encode() + b'"\r\n\r\n',
           b"--" + boundary.encode() + b"\r\nContent-Type: multipart/alternative; "
           b'boundary="alt"\r\n\r\n--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n',
           text, b"\r\n--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n", html,
           b"\r\n--alt--\r\n"]
    for i, share in enumerate(sizes):
        data = rng.randbytes(int(budget * share))
        encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
        out.append(b"--" + boundary.encode() + b"\r\nContent-Type: application/octet-stream\r\n"
                   b"Content-Transfer-Encoding: base64\r\n"
                   b'Content-Disposition: attachment; filename="part%d.bin"\r\n\r\n' % i)
        out.append(encoded + (b"x\r\n" if broken else b""))
    out.append(b"--" + boundary.encode() + b"--\r\n")
    return b"".join(out)


CHILD = r"""
import gc, json, resource, sys, tracemalloc
sys.path.insert(0, sys.argv[3])
mode, path = sys.argv[1], sys.argv[2]
if mode.startswith("parse"):
    from gateway.inbound.parse import parse
    def run(raw):
        mail = parse(raw)
        return len(mail.attachments)
elif mode.startswith("pipeline"):
    # The whole way in: spooled into its row, then processed into a ticket with attachments.
    import tempfile
    from pathlib import Path
    from gateway.config import Settings
    from gateway.demo import seed_demo
    from gateway.inbound.spool import Spool
    from gateway.services import build_services
    data = Path(tempfile.mkdtemp())
    svc = build_services(Settings(data_dir=data, database_url=f"sqlite:///{data}/w.db",
                                  public_url="http://x", secret_key="bench-secret-0123456789"))
    seed_demo(svc.store)
    spool = Spool(svc.store, svc.blobs)
    def run(raw):
        if len(raw) < 1000:
            return 0
        inbound_id = spool.accept(raw, mail_from="jane@customer.test",
                                  rcpt_tos=["support@acme.test"])
        mail = svc.pipeline.process(inbound_id)
        assert mail is not None and mail.outcome == "new_ticket", mail
        return len(mail.parsed.attachments)

else:
    from email import message_from_bytes
    from email.policy import compat32
    def run(raw):
        msg = message_from_bytes(raw, policy=compat32)
        kept = [p.get_payload(decode=True) for p in msg.walk() if not p.is_multipart()]
        return len(kept) - 2
raw = open(path, "rb").read()
run(b"From: a@b.c\r\n\r\nwarm-up")  # imports and caches are not the message's cost
gc.collect()
if mode.endswith("tracemalloc"):
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    n = run(raw)
    peak = tracemalloc.get_traced_memory()[1] - before
else:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    n = run(raw)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
print(json.dumps({"peak": peak, "attachments": n}))
"""


def measure(mode: str, path: Path) -> dict[str, int]:
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(path), str(ROOT)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=30.0, help="message size in MiB (default 30)")
    ap.add_argument("--broken-base64", action="store_true",
                    help="a stray letter after each attachment's base64 (the slow path)")
    args = ap.parse_args()
    raw = build_message(args.mb, broken=args.broken_base64)
    size = len(raw)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.eml"
        path.write_bytes(raw)
        del raw
        print(f"message: {size / 2**20:.1f} MiB")
        results = {}
        for mode in ("stdlib-tracemalloc", "parse-tracemalloc", "pipeline-tracemalloc",
                     "stdlib-rss", "parse-rss", "pipeline-rss"):
            r = measure(mode, path)
            results[mode] = r["peak"]
            print(f"{mode:20s} peak growth {r['peak'] / 2**20:7.1f} MiB = "
                  f"{r['peak'] / size:4.2f}x message  ({r['attachments']} attachments)")
    for kind in ("tracemalloc", "rss"):
        ratio = results[f"parse-{kind}"] / max(results[f"stdlib-{kind}"], 1)
        print(f"parse/stdlib ({kind}): {ratio:.2f}")
    for what in ("parse", "pipeline"):
        verdict = "ok" if results[f"{what}-tracemalloc"] < 3 * size else "OVER"
        print(f"{what}: target < 3x message size (tracemalloc): {verdict}")


if __name__ == "__main__":
    main()
