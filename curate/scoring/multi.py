"""One engine per device on one machine (``--devices 0,1,…``): data parallel.

Each device gets its own worker process (spawned: CUDA cannot be forked) holding its own engine.
Every batch of sequences a scorer sends is split across the workers by token count (longest
first, each to the least-loaded device) and run at the same time; the results come back in
order. Scorers, chunk commits, resume and reuse stay in the parent, unchanged. Tensor
parallelism stays a vLLM option (``--tensor-parallel-size``).
"""

from __future__ import annotations

import multiprocessing as mp
import traceback

from ..errors import InputError
from .engine import EngineStats, ProxyEngine


def parse_devices(spec: str | None) -> list[str] | None:
    """'0,1' → ['cuda:0', 'cuda:1']; 'cpu,cpu' and 'cuda:2' are taken as they are."""
    if not spec:
        return None
    out = []
    for part in (p.strip() for p in spec.split(",")):
        if part.isdigit():
            out.append(f"cuda:{part}")
        elif part == "cpu" or part.startswith("cuda:") and part[5:].isdigit():
            out.append(part)
        else:
            raise InputError(f"--devices {spec}: '{part}' is not a GPU index, cuda:N or cpu")
    return out


def _worker(conn, make_engine, device: str) -> None:
    try:
        engine = make_engine(device)
        conn.send(("ready", None))
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        conn.send(("error", (type(e).__name__, str(e), traceback.format_exc())))
        return
    while True:
        msg = conn.recv()
        if msg is None:
            return
        method, args = msg
        try:
            conn.send(("ok", (getattr(engine, method)(*args), engine.stats)))
        except BaseException as e:  # noqa: BLE001
            conn.send(("error", (type(e).__name__, str(e), traceback.format_exc())))


class MultiDeviceEngine(ProxyEngine):
    name = "multi"

    def __init__(self, make_engine, devices: list[str]):
        ctx = mp.get_context("spawn")
        self.devices = devices
        self.conns, self.procs = [], []
        for device in devices:
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_worker, args=(child, make_engine, device), daemon=True)
            p.start()
            self.conns.append(parent)
            self.procs.append(p)
        self._stats = [EngineStats() for _ in devices]
        for device, conn in zip(devices, self.conns, strict=True):
            self._check(conn.recv(), device)

    @staticmethod
    def _check(reply, device):
        kind, value = reply
        if kind == "error":
            name, message, _ = value
            if name == "InputError":
                raise InputError(message)
            raise RuntimeError(f"engine on {device}: {name}: {message}")
        return value

    @property
    def stats(self) -> EngineStats:
        total = EngineStats()
        for s in self._stats:
            total.add(s, parallel=True)  # they run side by side
        return total

    def _split(self, seqs) -> list[list[int]]:
        shards: list[list[int]] = [[] for _ in self.devices]
        load = [0] * len(self.devices)
        for i in sorted(range(len(seqs)), key=lambda i: -len(seqs[i])):
            k = load.index(min(load))
            shards[k].append(i)
            load[k] += len(seqs[i])
        return shards

    def _call(self, method: str, seqs, *rest):
        shards = self._split(seqs)
        busy = []
        for k, idx in enumerate(shards):
            if idx:
                self.conns[k].send((method, ([seqs[i] for i in idx], *rest)))
                busy.append(k)
        results = [None] * len(seqs)
        for k in busy:
            out, stats = self._check(self.conns[k].recv(), self.devices[k])
            self._stats[k] = stats
            for i, r in zip(shards[k], out, strict=True):
                results[i] = r
        return results

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.send(None)
            except OSError:
                pass
        for p in self.procs:
            p.join(timeout=10)
