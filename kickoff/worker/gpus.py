"""The GPUs a worker hands out (SPEC §10): declared with `--resources gpu=N`, or found with
`nvidia-smi -L` when it declares no `gpu` amount (`gpu=0` turns that off), always within
its own CUDA_VISIBLE_DEVICES when that is set. Ids are device indices, as
CUDA_VISIBLE_DEVICES takes them (a UUID there is mapped to its index by `nvidia-smi -L`).
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from kickoff.defaults import MAX_GPUS
from kickoff.errors import InvalidInput
from kickoff.resources import GPU, Resources

logger = logging.getLogger(__name__)

NVIDIA_SMI = "nvidia-smi"
DETECT_TIMEOUT_S = 10.0
_LISTED = re.compile(r"GPU\s+([0-9]+):.*?(?:\(UUID:\s*([^)\s]+)\))?\s*$")


@dataclass(frozen=True, slots=True)
class Gpus:
    """What the worker declares: its resources with `gpu` set (or left out), the device
    ids it hands out, and how it came to them (for the start-up line)."""

    resources: Resources
    gpu_ids: tuple[int, ...]
    note: str | None = None


def listed(text: str) -> list[tuple[int, str | None]]:
    """`nvidia-smi -L`'s lines (`GPU 0: NVIDIA A100 (UUID: GPU-...)`) -> (index, uuid)."""
    found = []
    for line in text.splitlines():
        match = _LISTED.match(line.strip())
        if match is not None:
            found.append((int(match[1]), match[2]))
    return found


def detect(path: str | None = None) -> list[tuple[int, str | None]] | None:
    """The GPUs `nvidia-smi -L` lists (None: there is no nvidia-smi, or it failed)."""
    program = shutil.which(NVIDIA_SMI, path=path)
    if program is None:
        return None
    try:
        done = subprocess.run(
            [program, "-L"], capture_output=True, text=True, timeout=DETECT_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.warning("%s -L failed: %s; no GPUs detected", program, exc)
        return None
    if done.returncode != 0:
        logger.warning(
            "%s -L exited with %d; no GPUs detected: %s",
            program,
            done.returncode,
            done.stderr.strip()[:200],
        )
        return None
    return listed(done.stdout)


def visible(text: str, devices: list[tuple[int, str | None]] | None) -> list[int]:
    """CUDA_VISIBLE_DEVICES as device indices (`1,3`; a UUID, or its prefix, by `devices`).

    Raises:
        InvalidInput: an entry that is neither an index nor a UUID nvidia-smi lists.
    """
    out: list[int] = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        if entry.isascii() and entry.isdigit():
            index = int(entry)
        else:
            known = [i for i, uuid in devices or () if uuid and uuid.startswith(entry)]
            if len(known) != 1:
                raise InvalidInput(
                    f"CUDA_VISIBLE_DEVICES: {entry[:60]!r} is not a device index, nor the "
                    "UUID of one GPU nvidia-smi -L lists; give indices (CUDA_VISIBLE_DEVICES=0,2)"
                )
            index = known[0]
        if index not in out:
            out.append(index)
    return out


def declare(resources: Resources, env: Mapping[str, str], *, path: str | None = None) -> Gpus:
    """The worker's resources and devices: `resources` as given when they name `gpu`
    (with CUDA_VISIBLE_DEVICES set, the first N devices it lists), else with the GPUs
    nvidia-smi finds (capped by CUDA_VISIBLE_DEVICES). `path`: where to look for
    nvidia-smi (default PATH).

    Raises:
        InvalidInput: `gpu=N` with fewer devices visible, or a CUDA_VISIBLE_DEVICES entry
            that names no device.
    """
    given = dict(resources)
    shown = env.get("CUDA_VISIBLE_DEVICES")
    if GPU in given:
        wanted = given[GPU]
        if wanted == 0:
            return Gpus(resources, ())
        if shown is None:
            return Gpus(resources, tuple(range(wanted)))
        devices = None if shown.replace(",", "").strip().isdigit() else detect(path)
        allowed = visible(shown, devices)
        if len(allowed) < wanted:
            raise InvalidInput(
                f"--resources gpu={wanted}, but CUDA_VISIBLE_DEVICES={shown} lets this worker "
                f"hand out {len(allowed)}"
            )
        return Gpus(resources, tuple(allowed[:wanted]))
    found = detect(path)
    if not found:
        return Gpus(resources, ())
    ids = [index for index, _ in found]
    if shown is not None:
        allowed = visible(shown, found)
        ids = [i for i in allowed if i in ids]
    ids = ids[:MAX_GPUS]
    if not ids:
        note = f"nvidia-smi lists {len(found)} GPUs, none of them in CUDA_VISIBLE_DEVICES"
        return Gpus(resources, (), note)
    declared = tuple(sorted({**given, GPU: len(ids)}.items()))
    within = "" if shown is None else f" (CUDA_VISIBLE_DEVICES={shown})"
    note = (
        f"detected {len(ids)} GPUs with nvidia-smi -L{within}: declaring gpu={len(ids)}, "
        f"devices {','.join(map(str, ids))} (--resources gpu=0 turns this off)"
    )
    return Gpus(declared, tuple(ids), note)
