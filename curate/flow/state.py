"""What `curate run` remembers between runs (OUT/run.json) and what it decides from it.

A stage is skipped when its fingerprint (its options with defaults filled in, the fingerprint
of the stage it reads, and the size and modification time of every file it reads: read's
inputs, or a local file or folder an option names) equals
the one recorded when it last completed, and its output folder still holds the manifest it
committed then (by hash). Anything else reruns it, and through the fingerprint chain every
stage after it. A resumable stage (score) that started with the same fingerprint and did not
finish is resumed from its last committed chunk; any other interrupted stage starts over, and
the plan says so. A stage that started with other settings is replaced.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..errors import InputError
from ..io import folder as F

STATE = "run.json"
LOCK = ".run.lock"
FORMAT = 1


@contextlib.contextmanager
def locked(out: Path):
    """One `curate run` at a time per OUT: a second one would interleave stage folders and
    run.json. A lock left by a killed run (its pid is gone) is taken over."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(path.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and F.alive(pid):
                raise InputError(f"{out}: another curate run (pid {pid}) is running in this "
                                 f"folder; wait for it, or remove {path} if it is gone") from None
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        break
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def basis(options: dict, upstream: str | None, inputs: list | None) -> dict:
    """What a stage's output depends on: its options (defaults filled in), the fingerprint of
    the stage it reads, and the stats of the files it reads directly (read's inputs)."""
    digest = None if inputs is None else hashlib.sha256(
        json.dumps(inputs, default=str).encode()).hexdigest()[:16]
    return {"options": options, "upstream": upstream, "inputs": digest}


def fingerprint(stage: str, basis: dict) -> str:
    doc = {"stage": stage, **basis}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def input_stats(inputs: list[str], **source_args) -> list:
    """Size and mtime of every file the read stage will read (resolved as `curate read` does,
    so a README or config beside the data does not count); a hub dataset as its name. Cheap:
    stat calls only. Raises InputError for an input that does not exist."""
    from ..io.sources import resolve_inputs

    out: list = []
    for src in resolve_inputs(inputs, **source_args):
        if src.kind == "hub":
            out.append(["hub", src.path, src.split, src.config, src.revision])
            continue
        for f in src.files or [src.path]:
            st = os.stat(f)
            out.append([f, st.st_size, st.st_mtime_ns])
    return out


def path_stats(options: dict, run_folder: Path) -> list | None:
    """Size and mtime of the local files an option names (a benchmark file for decontam, a
    reward model folder, a student, held-out data): a changed file reruns the stage even though
    its options read the same. Paths inside the run's own folder are left out: the stages
    write them during the run, and the fingerprint chain already covers them. None when no
    option names a local path."""
    out: list = []
    own = os.path.abspath(run_folder)
    for key, value in sorted(options.items()):
        for item in value if isinstance(value, list) else [value]:
            if not isinstance(item, str) or not item or not os.path.exists(item):
                continue
            full = os.path.abspath(item)
            if full == own or full.startswith(own + os.sep):
                continue
            files = [item] if os.path.isfile(item) else sorted(
                os.path.join(d, f) for d, _, fs in os.walk(item) for f in fs)
            for f in files:
                try:
                    st = os.stat(f)
                except OSError:
                    continue
                out.append([key, f, st.st_size, st.st_mtime_ns])
    return out or None


def manifest_hash(folder: Path) -> str | None:
    path = F.manifest_path(folder)
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path else None
    except OSError:
        return None


@dataclass
class Decision:
    stage: str
    action: str          # run, resume, skip
    reason: str
    overwrite: bool      # the run owns an existing output folder it may replace


class RunState:
    """OUT/run.json: per stage its fingerprint, options, status, timing and summary."""

    def __init__(self, out: Path):
        self.out = out
        self.path = out / STATE
        self.doc = {"curate": {"version": __version__, "kind": "run", "format": FORMAT},
                    "stages": {}}
        if self.path.is_file():
            try:
                old = json.loads(self.path.read_text())
                if isinstance(old.get("stages"), dict):
                    self.doc["stages"] = old["stages"]
            except (OSError, ValueError):
                pass  # a damaged state file only costs a rerun

    def entry(self, stage: str) -> dict | None:
        return self.doc["stages"].get(stage)

    def decide(self, stage: str, fp: str, basis: dict, folder: Path | None,
               force: str | None = None, resumable: bool = False) -> Decision:
        """Skip, resume or run ``stage``; ``force`` (a reason) rules out skipping. A stage is
        skipped only when its folder still holds what the run committed: the same manifest,
        and every part with its row count and content hash."""
        e = self.entry(stage)
        owned = e is not None
        if e is None:
            return Decision(stage, "run", "not run yet", False)
        if force == "--from":
            return Decision(stage, "run", "--from", owned)
        if e.get("fingerprint") == fp:
            if e.get("status") == "complete" and force:
                return Decision(stage, "run", force, owned)
            if e.get("status") == "complete":
                if folder is None:
                    return Decision(stage, "skip", "complete, config unchanged", owned)
                if e.get("manifest") is None or manifest_hash(folder) != e.get("manifest"):
                    return Decision(stage, "run", f"{folder} changed or is gone since the "
                                                  "run wrote it", owned)
                damage = F.check_parts(folder, hashes=True)
                if damage is not None:
                    return Decision(stage, "run", f"part {damage.part} {damage.problem}",
                                    owned)
                return Decision(stage, "skip", "complete, config unchanged", owned)
            if resumable:
                return Decision(stage, "resume", "interrupted, same config", False)
            return Decision(stage, "run", "interrupted; starts over (this stage does not "
                                          "resume)", owned)
        return Decision(stage, "run", _why_changed(e, basis), owned)

    def started(self, stage: str, fp: str, basis: dict, command: str) -> None:
        self.doc["stages"][stage] = {"fingerprint": fp, "status": "started", **basis,
                                     "command": command, "started": _now()}
        self.save()

    def finished(self, stage: str, seconds: float, folder: Path | None,
                 summary: dict | None, exit_code: int) -> None:
        e = self.doc["stages"][stage]
        e.update(status="complete", seconds=round(seconds, 3), finished=_now(),
                 exit_code=exit_code,
                 manifest=manifest_hash(folder) if folder is not None else None)
        if summary is not None and folder is None:
            e["summary"] = summary  # a stage without an output folder (validate)
        self.save()

    def set_order(self, stages: list[str]) -> None:
        self.doc["order"] = list(stages)

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{STATE}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(self.doc, indent=2, default=str) + "\n")
        os.replace(tmp, self.path)


def _why_changed(entry: dict, basis: dict) -> str:
    old, new = entry.get("options") or {}, basis["options"]
    changed = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if changed:
        k = changed[0]
        more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
        return f"config changed: {k} {old.get(k)!r} → {new.get(k)!r}{more}"
    if entry.get("upstream") != basis["upstream"]:
        return "the stage before it changed"
    return "its input files changed"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
