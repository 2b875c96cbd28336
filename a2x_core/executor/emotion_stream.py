"""A face stream driven by an Audio2Emotion stream of the same audio: the streaming form of
``Animator(model, options, emotion_model)`` (``docs/streaming.md``).

The SDK's ``EmotionBinder`` feeds each Audio2Emotion frame to Audio2Face as an emotion key at
the frame's target sample, and Audio2Face reads its emotion input by interpolating those keys
at its own frame targets (spec §3, §5). A face frame is therefore final only once the emotion
key at or after its target exists. This stream holds the face's audio back until that is so
(``model.stream_audio_for_emotions``: no frame past the newest key can run), so its frames equal the
offline run's; the price is latency: the larger of the two models' look-aheads.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ..audio.accumulator import AudioAccumulator, StreamFrame
from ..errors import ParameterError
from ..models.emotion_input import EmotionCurve
from ..options import InferenceOptions
from ..timing import SAMPLE_RATE, frame_targets_of


class EmotionDrivenStream:
    """``push``/``close``/``cancel`` like a face model's stream; emotions come from
    ``emotion_model`` run on the same audio with ``options``' emotion settings
    (``emotion_window``, ``emotion_schedule()``, ``emotion_parameters``).

    Raises:
        ParameterError: a model without an emotion input, a stream of a model that cannot
            take keys as they come (the default model), or manual ``options.emotions`` (their
            "blend" with detected emotions runs inside Audio2Emotion's post-processing, which
            streams do not take yet: use ``a2x animate`` for that mix).
    """

    def __init__(self, model: Any, emotion_model: Any, options: InferenceOptions,
                 executor: Any = None) -> None:  # fmt: skip
        names = tuple(getattr(model, "emotion_names", ()) or ())
        if not names:
            raise ParameterError(f"an emotion model needs a model with an emotion input; the "
                                 f"{model.name} model takes none",
                                 hint="pass an Audio2Face-3D model (--model PATH/model.json)")  # fmt: skip
        if options.emotions:
            raise ParameterError(
                "manual emotions (--emotion/--emotion-file) with an emotion model are not "
                "mixed in streams", hint="drop --emotion, or animate the file with a2x animate",
            )  # fmt: skip
        emotion_fps, skip = options.emotion_schedule()
        self.emotion_stream = emotion_model.open_stream(
            emotion_fps, buffer_length=options.emotion_window, inferences_to_skip=skip,
            parameters=options.emotion_parameters,
        )  # fmt: skip
        self.face = model.open_stream(replace(options, emotions=()), executor)
        state = getattr(self.face.track, "state", None)
        self._audio_for_emotions = getattr(model, "stream_audio_for_emotions", None)
        if self._audio_for_emotions is None or not isinstance(getattr(state, "curve", None),
                                                               EmotionCurve):  # fmt: skip
            self.emotion_stream.cancel()
            self.face.cancel()
            raise ParameterError(f"the {model.name} model's stream takes no emotion keys")
        self._state = state
        self.fps = options.fps
        self._emotion_fps = emotion_fps
        # A2E frame values (A2F_EMOTIONS order) -> the face model's emotion order
        from ..models.audio2emotion import EmotionFrame

        default = np.asarray(model.package.network_info.default_emotion, dtype=np.float32)
        self._columns = [EmotionFrame.names.index(n) if n in EmotionFrame.names else -1
                         for n in names]  # fmt: skip
        self._default = default
        self._key_times: list[int] = []
        self._key_values: list[np.ndarray] = []
        self._audio = AudioAccumulator()  # one resampling for both streams
        self._sent = 0  # 16 kHz samples handed to the emotion stream
        self._face_sent = 0  # ... and to the face stream
        self.lookahead_samples = max(self.face.lookahead_samples,
                                     self.emotion_stream.lookahead_samples)  # fmt: skip

    # ------------------------------------------------------------------------- monitoring

    @property
    def lookahead_s(self) -> float:
        """Look-ahead before compute: the larger of the two streams'."""
        return self.lookahead_samples / SAMPLE_RATE

    @property
    def frames_returned(self) -> int:
        return self.face.frames_returned

    @property
    def samples_received(self) -> int:
        """16 kHz samples pushed so far (after resampling)."""
        return self._audio.received

    @property
    def buffered_samples(self) -> int:
        return (self._audio.buffered + self.face.buffered_samples
                + self.emotion_stream.buffered_samples)  # fmt: skip

    @property
    def closed(self) -> bool:
        return self.face.closed

    # ------------------------------------------------------------------------- audio in

    def push(self, samples: Any, sample_rate: int = SAMPLE_RATE) -> list[StreamFrame]:
        """Add audio (as a face stream's ``push``); returns the face frames now final."""
        self.face.track.life.check("push")
        self._audio.push(samples, sample_rate)
        return self._advance(final=False)

    def close(self) -> list[StreamFrame]:
        """End of audio: the emotion stream's last keys, then the face's tail frames."""
        if self.face.closed:
            return []
        self.face.track.life.check("close")
        self._audio.flush()
        return self._advance(final=True)

    def cancel(self) -> None:
        """Stop both streams now and drop what they hold."""
        self.emotion_stream.cancel()
        self.face.cancel()
        self._audio.clear()

    # ------------------------------------------------------------------------- the binding

    def _new_audio(self, start: int) -> np.ndarray:
        return self._audio.read(start, self._audio.received - start)

    def _advance(self, final: bool) -> list[StreamFrame]:
        received = self._audio.received
        if received > self._sent:
            emotion_frames = self.emotion_stream.push(self._new_audio(self._sent))
            self._sent = received
        else:
            emotion_frames = []
        if final:
            emotion_frames += self.emotion_stream.close()
        if emotion_frames:
            self._add_keys(emotion_frames)
            self._prune_keys()
            self._state.curve = EmotionCurve(np.array(self._key_times),
                                             np.stack(self._key_values))  # fmt: skip
        if final:
            frames = self._feed_face(received)
            frames += self.face.close()
        else:
            # before the first key the face reads nothing (its curve would be the default)
            allowed = self._audio_for_emotions(self._key_times[-1]) if self._key_times else 0
            frames = self._feed_face(min(received, allowed))
        self._audio.drop_before(self._face_sent)
        return frames

    def _feed_face(self, until: int) -> list[StreamFrame]:
        if until <= self._face_sent:
            return []
        samples = self._audio.read(self._face_sent, until - self._face_sent)
        self._face_sent = until
        return self.face.push(samples)

    def _add_keys(self, emotion_frames: list[Any]) -> None:
        """Each emotion frame becomes a key at its target sample, clipped to [0, 1] as the
        offline binding (``audio2emotion.emotion_keys``) clips it."""
        targets = frame_targets_of(np.array([f.index for f in emotion_frames]), self._emotion_fps)
        for target, frame in zip(targets.tolist(), emotion_frames, strict=True):
            row = self._default.copy()
            values = np.clip(frame.emotions, 0.0, 1.0).astype(np.float32)
            for column, source in enumerate(self._columns):
                if source >= 0:
                    row[column] = values[source]
            self._key_times.append(int(target))
            self._key_values.append(row)

    def _prune_keys(self) -> None:
        """Keep the keys the face's next frames can still read: from the last key at or
        before its next frame's target on (bounded memory on endless streams); run before the
        face is fed, so that target is the earliest any new frame reads."""
        if len(self._key_times) < 3:
            return
        next_target = int(frame_targets_of(np.array([self.face.frames_returned]), self.fps)[0])
        keep_from = int(np.searchsorted(self._key_times, next_target, side="right")) - 1
        if keep_from > 0:
            del self._key_times[:keep_from], self._key_values[:keep_from]
