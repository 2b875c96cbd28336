"""The Audio2Face-3D NIM's gRPC messages, declared from their field tables
(``../shared/docs/streaming_services.md`` §1.3) with protobuf's descriptor API.

Why not NVIDIA's bindings: the PyPI wheels pin grpcio <= 1.67.1, and copying the ``.proto``
files would add a build step. The wire format depends only on field numbers and types, and the
full names (packages, messages, service) are NVIDIA's, so NVIDIA's clients work unchanged and an
``Any`` packed here unpacks there. The messages live in a private descriptor pool: a process
that also imports NVIDIA's bindings keeps both.

Not declared (a2x never sends them; a client ignores absent fields): ``SkelAnimation``
translations/rotations/scales, ``AnimationData.camera``, ``SkelAnimationHeader.joints`` is.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto
#: field kinds of the tables -> descriptor types
_SCALARS = {
    "double": F.TYPE_DOUBLE, "float": F.TYPE_FLOAT, "int32": F.TYPE_INT32,
    "uint32": F.TYPE_UINT32, "bool": F.TYPE_BOOL, "string": F.TYPE_STRING, "bytes": F.TYPE_BYTES,
}  # fmt: skip

#: package -> file -> messages: (name, [(number, field, type, flags)], nested enums).
#: type: a scalar kind, ".pkg.Message", "enum:.pkg.Enum", or "map:<value type>";
#: flags: "repeated", "optional" (proto3 presence), "" (plain).
_FILES: list[dict[str, Any]] = [
    {
        "package": "nvidia_ace.audio.v1",
        "deps": [],
        "messages": [
            ("AudioHeader", [
                (1, "audio_format", "enum:.nvidia_ace.audio.v1.AudioHeader.AudioFormat", ""),
                (2, "channel_count", "uint32", ""),
                (3, "samples_per_second", "uint32", ""),
                (4, "bits_per_sample", "uint32", ""),
            ], {"AudioFormat": [("AUDIO_FORMAT_PCM", 0)]}),
        ],
    },
    {
        "package": "nvidia_ace.emotion_with_timecode.v1",
        "deps": [],
        "messages": [
            ("EmotionWithTimeCode", [
                (1, "time_code", "double", ""),
                (2, "emotion", "map:float", ""),
            ], {}),
        ],
    },
    {
        "package": "nvidia_ace.status.v1",
        "deps": [],
        "messages": [
            ("Status", [
                (1, "code", "enum:.nvidia_ace.status.v1.Status.Code", ""),
                (2, "message", "string", ""),
            ], {"Code": [("SUCCESS", 0), ("INFO", 1), ("WARNING", 2), ("ERROR", 3)]}),
        ],
    },
    {
        "package": "nvidia_ace.a2f.v1",
        "deps": ["nvidia_ace.emotion_with_timecode.v1"],
        "messages": [
            ("AudioWithEmotion", [
                (1, "audio_buffer", "bytes", ""),
                (2, "emotions", ".nvidia_ace.emotion_with_timecode.v1.EmotionWithTimeCode",
                 "repeated"),
            ], {}),
            ("FloatArray", [(1, "values", "float", "repeated")], {}),
            ("FaceParameters", [
                (1, "float_params", "map:float", ""),
                (2, "integer_params", "map:int32", ""),
                (3, "float_array_params", "map:.nvidia_ace.a2f.v1.FloatArray", ""),
            ], {}),
            ("BlendShapeParameters", [
                (1, "bs_weight_multipliers", "map:float", ""),
                (2, "bs_weight_offsets", "map:float", ""),
                (3, "enable_clamping_bs_weight", "bool", "optional"),
            ], {}),
            ("EmotionParameters", [
                (1, "live_transition_time", "float", "optional"),
                (2, "beginning_emotion", "map:float", ""),
            ], {}),
            ("EmotionPostProcessingParameters", [
                (1, "emotion_contrast", "float", "optional"),
                (2, "live_blend_coef", "float", "optional"),
                (3, "enable_preferred_emotion", "bool", "optional"),
                (4, "preferred_emotion_strength", "float", "optional"),
                (5, "emotion_strength", "float", "optional"),
                (6, "max_emotions", "int32", "optional"),
            ], {}),
        ],
    },
    {
        "package": "nvidia_ace.emotion_aggregate.v1",
        "deps": ["nvidia_ace.emotion_with_timecode.v1"],
        "messages": [
            ("EmotionAggregate", [
                (1, "input_emotions", ".nvidia_ace.emotion_with_timecode.v1.EmotionWithTimeCode",
                 "repeated"),
                (2, "a2e_output", ".nvidia_ace.emotion_with_timecode.v1.EmotionWithTimeCode",
                 "repeated"),
                (3, "a2f_smoothed_output",
                 ".nvidia_ace.emotion_with_timecode.v1.EmotionWithTimeCode", "repeated"),
            ], {}),
        ],
    },
    {
        "package": "nvidia_ace.animation_data.v1",
        "deps": ["google.protobuf"],
        "messages": [
            ("SkelAnimationHeader", [
                (1, "blend_shapes", "string", "repeated"),
                (2, "joints", "string", "repeated"),
            ], {}),
            ("FloatArrayWithTimeCode", [
                (1, "time_code", "double", ""),
                (2, "values", "float", "repeated"),
            ], {}),
            ("SkelAnimation", [
                (1, "blend_shape_weights", ".nvidia_ace.animation_data.v1.FloatArrayWithTimeCode",
                 "repeated"),
            ], {}),
            ("AudioWithTimeCode", [
                (1, "time_code", "double", ""),
                (2, "audio_buffer", "bytes", ""),
            ], {}),
            ("AnimationData", [
                (1, "skel_animation", ".nvidia_ace.animation_data.v1.SkelAnimation", "optional"),
                (2, "audio", ".nvidia_ace.animation_data.v1.AudioWithTimeCode", "optional"),
                (4, "metadata", "map:.google.protobuf.Any", ""),
            ], {}),
        ],
    },
    {
        "package": "nvidia_ace.controller.v1",
        "deps": ["nvidia_ace.audio.v1", "nvidia_ace.a2f.v1", "nvidia_ace.animation_data.v1",
                 "nvidia_ace.status.v1", "google.protobuf"],
        "enums": {"EventType": [("END_OF_A2F_AUDIO_PROCESSING", 0)]},
        "messages": [
            ("AudioStreamHeader", [
                (1, "audio_header", ".nvidia_ace.audio.v1.AudioHeader", ""),
                (2, "face_params", ".nvidia_ace.a2f.v1.FaceParameters", ""),
                (3, "emotion_post_processing_params",
                 ".nvidia_ace.a2f.v1.EmotionPostProcessingParameters", ""),
                (4, "blendshape_params", ".nvidia_ace.a2f.v1.BlendShapeParameters", ""),
                (5, "emotion_params", ".nvidia_ace.a2f.v1.EmotionParameters", ""),
            ], {}),
            ("AudioStream", [
                (1, "audio_stream_header", ".nvidia_ace.controller.v1.AudioStreamHeader",
                 "oneof:stream_part"),
                (2, "audio_with_emotion", ".nvidia_ace.a2f.v1.AudioWithEmotion",
                 "oneof:stream_part"),
                (3, "end_of_audio", ".nvidia_ace.controller.v1.AudioStream.EndOfAudio",
                 "oneof:stream_part"),
            ], {}),
            ("AudioStream.EndOfAudio", [], {}),
            ("AnimationDataStreamHeader", [
                (1, "audio_header", ".nvidia_ace.audio.v1.AudioHeader", "optional"),
                (2, "skel_animation_header", ".nvidia_ace.animation_data.v1.SkelAnimationHeader",
                 "optional"),
                (3, "start_time_code_since_epoch", "double", ""),
            ], {}),
            ("Event", [
                (1, "event_type", "enum:.nvidia_ace.controller.v1.EventType", ""),
                (2, "metadata", ".google.protobuf.Any", "optional"),
            ], {}),
            ("AnimationDataStream", [
                (1, "animation_data_stream_header",
                 ".nvidia_ace.controller.v1.AnimationDataStreamHeader", "oneof:stream_part"),
                (2, "animation_data", ".nvidia_ace.animation_data.v1.AnimationData",
                 "oneof:stream_part"),
                (3, "event", ".nvidia_ace.controller.v1.Event", "oneof:stream_part"),
                (4, "status", ".nvidia_ace.status.v1.Status", "oneof:stream_part"),
            ], {}),
        ],
    },
]  # fmt: skip

#: The service and method NIM clients call (the NIM's default port is 52000).
SERVICE_NAME = "nvidia_ace.services.a2f_controller.v1.A2FControllerService"
METHOD_NAME = "ProcessAudioStream"
METHOD_PATH = f"/{SERVICE_NAME}/{METHOD_NAME}"
#: The ``Any`` type URL of the emotion aggregate (NVIDIA's sample wheel's name).
EMOTION_AGGREGATE_TYPE_URL = "type.googleapis.com/nvidia_ace.emotion_aggregate.v1.EmotionAggregate"


def _file_name(package: str) -> str:
    return f"a2x_nim/{package}.proto"


def _add_field(message: Any, number: int, name: str, kind: str, flags: str,
               oneofs: dict[str, int]) -> None:  # fmt: skip
    """One field of ``message`` (a DescriptorProto); maps get their nested entry message."""
    field = message.field.add(name=name, number=number, label=F.LABEL_OPTIONAL)
    if kind.startswith("map:"):
        entry_name = "".join(part.capitalize() for part in name.split("_")) + "Entry"
        entry = message.nested_type.add(name=entry_name)
        entry.options.map_entry = True
        _add_field(entry, 1, "key", "string", "", {})
        _add_field(entry, 2, "value", kind[4:], "", {})
        field.label = F.LABEL_REPEATED
        field.type = F.TYPE_MESSAGE
        field.type_name = entry_name  # resolved relative to the message
        return
    if kind in _SCALARS:
        field.type = _SCALARS[kind]
    elif kind.startswith("enum:"):
        field.type, field.type_name = F.TYPE_ENUM, kind[5:]
    else:
        field.type, field.type_name = F.TYPE_MESSAGE, kind
    if flags == "repeated":
        field.label = F.LABEL_REPEATED
    elif flags.startswith("oneof:"):
        group = flags[6:]
        if group not in oneofs:
            oneofs[group] = len(message.oneof_decl)
            message.oneof_decl.add(name=group)
        field.oneof_index = oneofs[group]
    elif flags == "optional" and field.type != F.TYPE_MESSAGE:
        # proto3 `optional`: presence through a synthetic one-field oneof
        field.proto3_optional = True
        oneofs[f"_{name}"] = len(message.oneof_decl)
        message.oneof_decl.add(name=f"_{name}")
        field.oneof_index = oneofs[f"_{name}"]


def _build_pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(any_pb2.DESCRIPTOR.serialized_pb)
    for spec in _FILES:
        file = descriptor_pb2.FileDescriptorProto(
            name=_file_name(spec["package"]), package=spec["package"], syntax="proto3"
        )
        for dep in spec["deps"]:
            file.dependency.append(
                "google/protobuf/any.proto" if dep == "google.protobuf" else _file_name(dep)
            )
        for enum_name, values in spec.get("enums", {}).items():
            enum = file.enum_type.add(name=enum_name)
            for value_name, number in values:
                enum.value.add(name=value_name, number=number)
        by_name: dict[str, Any] = {}
        for name, fields, enums in spec["messages"]:
            parent, _, own = name.rpartition(".")
            holder = by_name[parent].nested_type if parent else file.message_type
            message = holder.add(name=own)
            by_name[name] = message
            for enum_name, values in enums.items():
                enum = message.enum_type.add(name=enum_name)
                for value_name, number in values:
                    enum.value.add(name=value_name, number=number)
            oneofs: dict[str, int] = {}
            for number, field_name, kind, flags in fields:
                _add_field(message, number, field_name, kind, flags, oneofs)
        _order_synthetic_oneofs(file)
        pool.Add(file)
    return pool


def _order_synthetic_oneofs(file: Any) -> None:
    """protoc puts synthetic (``optional``) oneofs after the real ones; the pool insists."""
    for message in [*file.message_type, *[n for m in file.message_type for n in m.nested_type]]:
        names = [o.name for o in message.oneof_decl]
        real = [n for n in names if not n.startswith("_")]
        order = real + [n for n in names if n.startswith("_")]
        if order == names:
            continue
        new_index = {names.index(n): i for i, n in enumerate(order)}
        del message.oneof_decl[:]
        for n in order:
            message.oneof_decl.add(name=n)
        for field in message.field:
            if field.HasField("oneof_index"):
                field.oneof_index = new_index[field.oneof_index]


POOL = _build_pool()


def message_class(full_name: str) -> Any:
    """The generated class of one NIM message, e.g. ``nvidia_ace.controller.v1.AudioStream``."""
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(full_name))


AudioStream = message_class("nvidia_ace.controller.v1.AudioStream")
AudioStreamHeader = message_class("nvidia_ace.controller.v1.AudioStreamHeader")
AnimationDataStream = message_class("nvidia_ace.controller.v1.AnimationDataStream")
AnimationDataStreamHeader = message_class("nvidia_ace.controller.v1.AnimationDataStreamHeader")
Event = message_class("nvidia_ace.controller.v1.Event")
AudioHeader = message_class("nvidia_ace.audio.v1.AudioHeader")
AudioWithEmotion = message_class("nvidia_ace.a2f.v1.AudioWithEmotion")
FaceParameters = message_class("nvidia_ace.a2f.v1.FaceParameters")
BlendShapeParameters = message_class("nvidia_ace.a2f.v1.BlendShapeParameters")
EmotionParameters = message_class("nvidia_ace.a2f.v1.EmotionParameters")
EmotionPostProcessingParameters = message_class(
    "nvidia_ace.a2f.v1.EmotionPostProcessingParameters"
)
EmotionWithTimeCode = message_class("nvidia_ace.emotion_with_timecode.v1.EmotionWithTimeCode")
EmotionAggregate = message_class("nvidia_ace.emotion_aggregate.v1.EmotionAggregate")
AnimationData = message_class("nvidia_ace.animation_data.v1.AnimationData")
SkelAnimationHeader = message_class("nvidia_ace.animation_data.v1.SkelAnimationHeader")
Status = message_class("nvidia_ace.status.v1.Status")

#: Status codes (``nvidia_ace.status.v1.Status.Code``).
SUCCESS, INFO, WARNING, ERROR = 0, 1, 2, 3
