"""What a worker declares of its GPUs (worker/gpus.py), with a real `nvidia-smi` script
found on a given PATH: detection, CUDA_VISIBLE_DEVICES as the cap (indices or UUIDs), the
opt-out, and what is refused."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from kickoff.errors import InvalidInput
from kickoff.worker.gpus import declare, listed

LISTING = (
    "GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-aaaa1111-0000-0000-0000-000000000000)\n"
    "GPU 1: NVIDIA A100-SXM4-80GB (UUID: GPU-bbbb2222-0000-0000-0000-000000000000)\n"
    "GPU 2: NVIDIA A100-SXM4-80GB (UUID: GPU-cccc3333-0000-0000-0000-000000000000)\n"
)


def smi(tmp_path: Path, body: str) -> str:
    """A directory holding an nvidia-smi that runs `body`; returns it as a PATH."""
    script = tmp_path / "nvidia-smi"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(tmp_path)


@pytest.fixture
def three(tmp_path: Path) -> str:
    return smi(tmp_path, f"cat <<'EOF'\n{LISTING}EOF")


def test_the_listing_is_read_as_indices_and_uuids() -> None:
    assert listed(LISTING + "No devices were found\n") == [
        (0, "GPU-aaaa1111-0000-0000-0000-000000000000"),
        (1, "GPU-bbbb2222-0000-0000-0000-000000000000"),
        (2, "GPU-cccc3333-0000-0000-0000-000000000000"),
    ]


def test_detected_gpus_are_declared_and_said(three: str) -> None:
    found = declare((("mem", 1 << 30),), {}, path=three)
    assert found.resources == (("gpu", 3), ("mem", 1 << 30))
    assert found.gpu_ids == (0, 1, 2)
    assert found.note is not None and "detected 3 GPUs with nvidia-smi -L" in found.note


def test_cuda_visible_devices_caps_detection_in_its_order_by_index_or_uuid(three: str) -> None:
    assert declare((), {"CUDA_VISIBLE_DEVICES": "2,0,7"}, path=three).gpu_ids == (2, 0)
    by_uuid = declare((), {"CUDA_VISIBLE_DEVICES": "GPU-bbbb2222,GPU-cccc"}, path=three)
    assert (by_uuid.resources, by_uuid.gpu_ids) == ((("gpu", 2),), (1, 2))
    hidden = declare((), {"CUDA_VISIBLE_DEVICES": ""}, path=three)
    assert hidden.resources == () and "none of them" in str(hidden.note)


def test_a_declared_amount_wins_and_gpu_0_turns_detection_off(three: str) -> None:
    assert declare((("gpu", 0),), {}, path=three) == declare((("gpu", 0),), {}, path="/nowhere")
    assert declare((("gpu", 0),), {}, path=three).gpu_ids == ()
    assert declare((("gpu", 2),), {}, path=three).gpu_ids == (0, 1)
    assert declare((("gpu", 1),), {"CUDA_VISIBLE_DEVICES": "5,6"}, path=three).gpu_ids == (5,)


def test_no_or_a_failing_nvidia_smi_declares_none(tmp_path: Path) -> None:
    assert declare((), {}, path=str(tmp_path / "empty")).resources == ()
    failing = smi(tmp_path, "echo 'NVIDIA-SMI has failed' >&2; exit 9")
    assert declare((), {}, path=failing) == declare((), {}, path=str(tmp_path / "empty"))


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"CUDA_VISIBLE_DEVICES": "0,1"}, "gpu=3, but CUDA_VISIBLE_DEVICES=0,1 lets this"),
        ({"CUDA_VISIBLE_DEVICES": "MIG-1234"}, "is not a device index, nor the UUID"),
    ],
)
def test_what_cannot_be_handed_out_is_refused(three: str, env: dict[str, str], says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        declare((("gpu", 3),), env, path=three)
