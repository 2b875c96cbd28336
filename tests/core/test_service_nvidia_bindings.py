"""a2x serve against NVIDIA's own published Python bindings of the NIM protocol (PyPI
``nvidia-audio2face-3d`` + ``nvidia-ace``, Apache-2.0, as pipecat uses them): every message a2x
declares has NVIDIA's field names, numbers, types, repetition and presence, and NVIDIA's stub
runs a stream against a real server.

The wheels pin grpcio <= 1.67.1, so they are not a dependency: the test runs where they are
importable, or where ``A2X_NVIDIA_BINDINGS`` names a folder holding them unpacked
(``pip download nvidia-audio2face-3d nvidia-ace --no-deps`` then unzip), and skips otherwise.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from a2x_core.audio.decode import decode_audio
from a2x_core.models.registry import load_model
from a2x_core.service import nim_messages as mine
from tests.a2f_folders import make_regression_folder
from tests.conftest import SAMPLE
from tests.core.service_support import running_server

if os.environ.get("A2X_NVIDIA_BINDINGS"):
    sys.path.insert(0, os.environ["A2X_NVIDIA_BINDINGS"])
nv = pytest.importorskip("nvidia_audio2face_3d.messages_pb2")
nvg = pytest.importorskip("nvidia_audio2face_3d.audio2face_pb2_grpc")
nva = pytest.importorskip("nvidia_ace.animation_pb2")
nvau = pytest.importorskip("nvidia_ace.audio_pb2")
nvs = pytest.importorskip("nvidia_ace.status_pb2")


def test_every_message_matches_nvidia_field_by_field() -> None:
    pairs = {
        "nvidia_ace.controller.v1.AudioStream": nv.AudioWithEmotionStream,
        "nvidia_ace.controller.v1.AudioStreamHeader": nv.AudioWithEmotionStreamHeader,
        "nvidia_ace.controller.v1.AnimationDataStream": nv.A2F3DAnimationDataStream,
        "nvidia_ace.controller.v1.AnimationDataStreamHeader": nv.A2F3DAnimationDataStreamHeader,
        "nvidia_ace.controller.v1.Event": nv.Event,
        "nvidia_ace.a2f.v1.AudioWithEmotion": nv.AudioWithEmotion,
        "nvidia_ace.a2f.v1.FaceParameters": nv.FaceParameters,
        "nvidia_ace.a2f.v1.BlendShapeParameters": nv.BlendShapeParameters,
        "nvidia_ace.a2f.v1.EmotionParameters": nv.EmotionParameters,
        "nvidia_ace.a2f.v1.EmotionPostProcessingParameters": nv.EmotionPostProcessingParameters,
        "nvidia_ace.emotion_with_timecode.v1.EmotionWithTimeCode": nv.EmotionWithTimeCode,
        "nvidia_ace.emotion_aggregate.v1.EmotionAggregate": nv.EmotionAggregate,
        "nvidia_ace.audio.v1.AudioHeader": nvau.AudioHeader,
        "nvidia_ace.status.v1.Status": nvs.Status,
        **{f"nvidia_ace.animation_data.v1.{n}": getattr(nva, n) for n in (
            "AnimationData", "SkelAnimationHeader", "SkelAnimation", "FloatArrayWithTimeCode",
            "AudioWithTimeCode")},
    }  # fmt: skip
    for name, theirs in pairs.items():
        by_number = {f.number: f for f in theirs.DESCRIPTOR.fields}
        for field in mine.POOL.FindMessageTypeByName(name).fields:
            other = by_number[field.number]
            assert (field.name, field.type, field.is_repeated, field.has_presence) == (
                other.name, other.type, other.is_repeated, other.has_presence), (name, field.name)


def test_nvidia_stub_runs_a_stream(tmp_path) -> None:  # noqa: ANN001
    import grpc

    folder = make_regression_folder(tmp_path / "model", seed=2)
    model = load_model(folder.model_json, backend="onnxruntime", threads=1)
    pcm = (decode_audio(SAMPLE, end_s=2.0).samples * 32767).astype("<i2")

    def requests():  # noqa: ANN202
        header = nv.AudioWithEmotionStreamHeader(audio_header=nvau.AudioHeader(
            audio_format=nvau.AudioHeader.AUDIO_FORMAT_PCM, channel_count=1,
            samples_per_second=16000, bits_per_sample=16))  # fmt: skip
        yield nv.AudioWithEmotionStream(audio_stream_header=header)
        for i in range(0, len(pcm), 16000):
            emotions = [nv.EmotionWithTimeCode(time_code=0.0, emotion={"joy": 0.5})] if i == 0 else []
            yield nv.AudioWithEmotionStream(audio_with_emotion=nv.AudioWithEmotion(
                audio_buffer=pcm[i:i + 16000].tobytes(), emotions=emotions))  # fmt: skip
        yield nv.AudioWithEmotionStream(end_of_audio=nv.AudioWithEmotionStream.EndOfAudio())

    with running_server(model) as server:
        stub = nvg.A2FControllerServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))
        replies = list(stub.ProcessAudioStream(requests(), timeout=60))
    kinds = [r.WhichOneof(r.DESCRIPTOR.oneofs[0].name) for r in replies]
    assert kinds[0] == "animation_data_stream_header" and kinds[-2:] == ["event", "status"]
    assert replies[-1].status.code == 0
    echo = b"".join(r.animation_data.audio.audio_buffer for r in replies[1:-2])
    assert echo == pcm.tobytes()
    assert np.all(np.diff([r.animation_data.skel_animation.blend_shape_weights[0].time_code
                           for r in replies[1:-2]]) > 0)  # fmt: skip
