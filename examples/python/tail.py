#!/usr/bin/env python3
"""Tail tickrelay symbols: one JSON line per tick, snapshot, gap or reset on stdout.

    python3 -m venv /tmp/tickrelay-venv && /tmp/tickrelay-venv/bin/pip install websockets
    /tmp/tickrelay-venv/bin/python examples/python/tail.py --url ws://127.0.0.1:8080/ws BTC-USD ETH-USD

Reconnects with jittered exponential backoff and resumes every symbol, so each seq is
printed exactly once, or a {"type":"gap",...} or {"type":"reset",...} line says what will
not be. It resumes with the epoch of the welcome its seqs came from: a relay serving another
history (it restarted) answers with a reset and its newest value, and a reset line is
printed instead of splicing two histories together. Against a relay without epochs it
resumes from one seq before the last printed: if that tick comes back different (another
ts_ns/recv_ns) or a lower seq arrives, the history started again, and the same reset line
is printed. A message that does not parse (json.loads gives up on deep nesting) is printed as
{"type":"undecodable",...}, with its symbol and seq when it names them, and that seq counts as
printed: the stream goes on without a gap or a reconnect. Connection changes go to stderr.
Encodings: json, gzip.
"""

import argparse
import asyncio
import json
import os
import random
import re
import sys
import urllib.parse
import zlib

import websockets

# Close codes after which reconnecting would send the same mistake again.
FATAL_CLOSE = {1002, 1003, 1007, 1009}

# The relay writes `type`, then `symbol` or `channel`, then `seq` first (docs/PROTOCOL.md: the
# field order is fixed), so a message that does not parse still names its key and seq.
NAMED = re.compile(r'\s*\{"type":"(tick|snapshot|event)","(symbol|channel)":"([^"\\]*)","seq":(\d+)[,}]')


def parse(frame):
    """One message; what json.loads refuses (too deep, not JSON) as an undecodable item."""
    try:
        return json.loads(frame)
    except (ValueError, RecursionError) as e:
        text = frame.decode(errors="replace") if isinstance(frame, bytes) else frame
        msg = {"type": "undecodable", "reason": f"{type(e).__name__}: {e}"}
        named = NAMED.match(text)
        if named:
            msg[named[2]] = named[3]
            msg["seq"] = int(named[4])
        return msg


class SeqCheck:
    """Per-symbol positions: what to print so that each seq is printed once or explained."""

    def __init__(self):
        self.last = {}  # symbol -> (seq, fingerprint or None)
        self.epoch = None  # the history the seqs in `last` belong to
        self.stale = set()  # symbols whose next item starts a new history

    def welcome(self, epoch):
        if epoch is None:
            return
        if self.epoch is not None and epoch != self.epoch:
            self.stale = set(self.last)
        self.epoch = epoch

    def item(self, msg):
        symbol, seq = msg["symbol"], msg["seq"]
        # What tells two items of one seq apart; none for an undecodable message.
        fingerprint = None if msg["type"] == "undecodable" else (msg.get("ts_ns"), msg.get("recv_ns"))
        out = []
        if symbol in self.last:
            last, known = self.last[symbol]
            if symbol in self.stale:
                self.stale.discard(symbol)
                out.append({"type": "reset", "symbol": symbol, "last_seq": last, "seq": seq,
                            "epoch": self.epoch})
            elif seq < last or (seq == last and None not in (known, fingerprint)
                                and known != fingerprint):
                out.append({"type": "reset", "symbol": symbol, "last_seq": last, "seq": seq})
            elif seq == last:
                return out  # the resume overlap: the same tick again
            elif seq > last + 1:
                out.append({"type": "gap", "symbol": symbol, "from": last + 1, "to": seq - 1,
                            "reason": "skipped"})
        self.last[symbol] = (seq, fingerprint)
        out.append(msg)
        return out

    def gap(self, msg, reason):
        symbol, start, end = msg["symbol"], msg["from"], msg["to"]
        if symbol in self.last:
            last, _ = self.last[symbol]
            if end <= last:
                return []
            start = last + 1
        self.last[symbol] = (end, None)
        return [{"type": "gap", "symbol": symbol, "from": start, "to": end, "reason": reason}]

    def resume(self):
        return ",".join(f"{s}:{max(0, seq - 1)}" for s, (seq, _) in sorted(self.last.items()))


def url_for(base, symbols, encoding, seq_check):
    params = {"symbols": ",".join(symbols), "encoding": encoding}
    resume = seq_check.resume()
    if resume:
        params["resume"] = resume
        if seq_check.epoch is not None:
            params["epoch"] = seq_check.epoch
    query = urllib.parse.urlencode(params, safe=",:*/")
    return f"{base}{'&' if '?' in base else '?'}{query}"


class StdoutClosed(Exception):
    """Whoever reads our output has gone (e.g. `| head`): stop, do not reconnect."""


def emit(line):
    try:
        sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
        sys.stdout.flush()
    except BrokenPipeError as e:
        raise StdoutClosed from e


def status(**fields):
    print(json.dumps(fields, separators=(",", ":")), file=sys.stderr, flush=True)


async def tail(base, symbols, encoding, max_backoff):
    seq_check = SeqCheck()
    attempt = 0
    while True:
        resuming = set(seq_check.last)
        try:
            # websockets pings every 5 s and gives the connection up after 10 s without a pong.
            async with websockets.connect(url_for(base, symbols, encoding, seq_check),
                                          ping_interval=5, ping_timeout=10, open_timeout=10,
                                          max_size=None) as ws:
                inflate = zlib.decompressobj(31) if encoding == "gzip" else None
                async for frame in ws:
                    if inflate is not None and isinstance(frame, bytes):
                        frame = inflate.decompress(frame)  # one gzip stream per connection
                    msg = parse(frame)
                    kind = msg.get("type")
                    if kind == "welcome":
                        attempt = 0
                        seq_check.welcome(msg.get("epoch"))
                        status(type="connected", session=msg.get("session"), resumed=len(resuming))
                    elif kind in ("tick", "snapshot"):
                        resuming.discard(msg["symbol"])
                        for line in seq_check.item(msg):
                            emit(line)
                    elif kind == "gap":
                        reason = "not_replayable" if msg["symbol"] in resuming else "relay_conflated"
                        resuming.discard(msg["symbol"])
                        for line in seq_check.gap(msg, reason):
                            emit(line)
                    elif kind == "undecodable" and "symbol" in msg and "seq" in msg:
                        # Counted at its seq: the next tick follows it without a gap.
                        resuming.discard(msg["symbol"])
                        for line in seq_check.item(msg):
                            emit(line)
                    elif kind == "error" or (kind == "undecodable" and "channel" not in msg):
                        emit(msg)
        except websockets.InvalidStatus as e:
            if e.response.status_code != 503:
                raise SystemExit(f"tail.py: the relay refused: {e.response.status_code} "
                                 f"{e.response.body.decode(errors='replace')}")
            status(type="disconnected", reason=f"HTTP {e.response.status_code}")
        except websockets.ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd else None
            if code in FATAL_CLOSE:
                raise SystemExit(f"tail.py: the relay closed with {code}: {e.rcvd.reason}")
            status(type="disconnected", code=code, reason=str(e))
        # zlib.error: the gzip stream is broken, nothing after it can be inflated: start over.
        except (OSError, asyncio.TimeoutError, websockets.InvalidHandshake, zlib.error) as e:
            status(type="disconnected", reason=str(e) or type(e).__name__)
        delay = min(max_backoff, 0.1 * 2 ** min(attempt, 20)) * random.uniform(0.5, 1.0)
        attempt += 1
        await asyncio.sleep(delay)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8080/ws")
    parser.add_argument("--encoding", choices=["json", "gzip"], default="json")
    parser.add_argument("--max-backoff", type=float, default=5.0, help="seconds")
    parser.add_argument("symbols", nargs="+")
    args = parser.parse_args()
    try:
        asyncio.run(tail(args.url, args.symbols, args.encoding, args.max_backoff))
    except (KeyboardInterrupt, StdoutClosed):
        # Python would complain once more flushing stdout at exit: point it at /dev/null.
        sys.stdout = open(os.devnull, "w")


if __name__ == "__main__":
    main()
