"""Audio input: formats, rates, channels, ranges, and every kind of bad input."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from a2x_core.audio.decode import audio_from_array, decode_audio
from a2x_core.errors import (
    A2XError,
    AudioDecodeError,
    AudioEmptyError,
    AudioInvalidSamplesError,
    AudioNotFoundError,
    ParameterError,
)
from tests.conftest import SAMPLE


def _tone(rate: int, seconds: float, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    mono = 0.3 * np.sin(2 * np.pi * 440 * t)
    return np.stack([mono] * channels, axis=1) if channels > 1 else mono


@pytest.mark.parametrize(
    ("fmt", "subtype", "rate", "channels"),
    [("WAV", "PCM_16", 16000, 1), ("WAV", "PCM_24", 48000, 2), ("FLAC", "PCM_16", 44100, 2),
     ("OGG", "VORBIS", 22050, 1), ("MP3", "MPEG_LAYER_III", 44100, 2), ("WAV", "FLOAT", 8000, 6)],
)  # fmt: skip
def test_formats_rates_and_channels_become_16k_mono(tmp_path: Path, fmt: str, subtype: str, rate: int, channels: int) -> None:
    path = tmp_path / f"tone.{fmt.lower()}"
    sf.write(path, _tone(rate, 1.0, channels), rate, format=fmt, subtype=subtype)
    audio = decode_audio(path)
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert audio.sample_rate == 16000 and audio.source_rate == rate and audio.source_channels == channels
    assert abs(audio.duration_s - 1.0) < 0.06  # mp3 adds encoder padding
    # a 440 Hz tone survives resampling: its spectrum peaks at 440 Hz
    spectrum = np.abs(np.fft.rfft(audio.samples[:16000]))
    assert abs(np.argmax(spectrum) * 16000 / 16000 - 440) <= 2


def test_resampling_is_high_quality(tmp_path: Path) -> None:
    """A 7 kHz tone keeps its level through 44.1k → 16k; an 11 kHz tone is filtered out."""
    rate = 44100
    t = np.arange(rate * 2) / rate
    for freq, keep in ((7000, True), (11000, False)):
        path = tmp_path / f"{freq}.wav"
        sf.write(path, 0.5 * np.sin(2 * np.pi * freq * t), rate, subtype="FLOAT")
        level = np.sqrt(np.mean(decode_audio(path).samples[4000:-4000] ** 2))
        if keep:
            assert level == pytest.approx(0.5 / np.sqrt(2), rel=0.01)
        else:
            assert level < 1e-4


def test_time_range(tmp_path: Path) -> None:
    audio = decode_audio(SAMPLE, start_s=2.0, end_s=3.5)
    assert audio.start_s == pytest.approx(2.0) and audio.duration_s == pytest.approx(1.5, abs=1e-3)
    with pytest.raises(ParameterError, match="past the end"):
        decode_audio(SAMPLE, start_s=60.0)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioNotFoundError, match="no such file") as caught:
        decode_audio(tmp_path / "nope.wav")
    assert "nope.wav" in str(caught.value)


@pytest.mark.parametrize("content", [b"", b"this is not audio at all\n" * 20, b"RIFF\x00\x00\x00\x00WAVEfmt "])
def test_corrupt_or_unreadable_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioDecodeError, match="not readable audio") as caught:
        decode_audio(path)
    assert str(path) in str(caught.value) and "convert" in str(caught.value)


def test_folder_is_not_audio(tmp_path: Path) -> None:
    with pytest.raises(AudioDecodeError, match="folder"):
        decode_audio(tmp_path)


def test_empty_and_too_short(tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0), 16000)
    with pytest.raises(AudioEmptyError, match="no audio samples"):
        decode_audio(empty)
    short = tmp_path / "short.wav"
    sf.write(short, np.full(100, 0.1), 16000)  # 6 ms < one 60 fps frame
    with pytest.raises(AudioEmptyError, match="shorter than one frame"):
        decode_audio(short)


def test_silence_warns_but_works(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(16000), 16000)
    with caplog.at_level(logging.WARNING, logger="a2x_core"):
        audio = decode_audio(path)
    assert audio.warnings and "silent" in audio.warnings[0]
    assert "silent" in caplog.text


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_samples(tmp_path: Path, bad: float) -> None:
    data = np.full(16000, 0.1, dtype=np.float32)
    data[5000] = bad
    path = tmp_path / "nan.wav"
    sf.write(path, data, 16000, subtype="FLOAT")
    with pytest.raises(AudioInvalidSamplesError, match="NaN or infinite"):
        decode_audio(path)


def test_every_audio_error_is_an_a2x_error() -> None:
    for kind in (AudioNotFoundError, AudioDecodeError, AudioEmptyError, AudioInvalidSamplesError):
        assert issubclass(kind, A2XError)


def test_audio_from_array_int16_stereo() -> None:
    pcm = (np.stack([_tone(48000, 0.5)] * 2, axis=1) * 32767).astype(np.int16)
    audio = audio_from_array(pcm, 48000)
    assert audio.samples.dtype == np.float32 and audio.duration_s == pytest.approx(0.5, abs=1e-3)
    assert 0.25 < np.max(np.abs(audio.samples)) < 0.35
