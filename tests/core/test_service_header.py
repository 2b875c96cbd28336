"""The NIM header's parameters as a2x reads them (``a2x_core/service/nim_header.py``): what is
not applied is named once, in the status a client prints."""

from __future__ import annotations

from a2x_core.lipsync.model import DefaultLipSyncModel
from a2x_core.names import ARKIT_52
from a2x_core.service.hub import Limits
from a2x_core.service.nim_header import plan_header
from a2x_core.service.nim_messages import AudioStreamHeader


def test_unknown_blendshape_names_are_named_once_and_known_ones_scale_the_output() -> None:
    """NVIDIA's Mark config sends multipliers *and* offsets for the 16 tongue poses; on the
    default model (no tongue, no solver) each unknown name appears once in the note, while an
    ARKit name's multiplier and offset become the output's scaling."""
    header = AudioStreamHeader()
    header.audio_header.audio_format = 0
    header.audio_header.channel_count = 1
    header.audio_header.samples_per_second = 16000
    header.audio_header.bits_per_sample = 16
    params = header.blendshape_params
    for name in ("TongueDown", "TongueIn"):
        params.bs_weight_multipliers[name] = 1.0
        params.bs_weight_offsets[name] = 0.0
    params.bs_weight_multipliers["JawOpen"] = 1.5
    params.bs_weight_offsets["JawOpen"] = 0.1
    plan = plan_header(header, DefaultLipSyncModel(), Limits())
    note = next(n for n in plan.notes if "blendshape_params" in n)
    assert note.count("TongueDown") == 1 and note.count("TongueIn") == 1
    assert "JawOpen" not in note
    jaw = ARKIT_52.index("jawOpen")
    assert plan.multipliers[jaw] == 1.5 and abs(plan.offsets[jaw] - 0.1) < 1e-7
