"""A minimal ctypes binding to libespeak-ng from the `espeakng-loader` wheel (no system package).

Signatures follow espeak-ng's `speak_lib.h` (API revision 12).

libespeak-ng keeps its state in process globals, including function-local statics that no API
call resets (the pitch-flutter phase in wavegen.c, among others). With one long-lived handle the
same text renders slightly differently on every call. To make output a pure function of its
inputs, each synthesis loads the library afresh, initialises it, speaks, terminates and unloads
it (about 3 ms), all behind one process-wide lock. If something else in the process holds the
same library open the unload is a no-op: output stays correct but may not be bit-identical.
"""

from __future__ import annotations

import _ctypes
import ctypes
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from songbatch.errors import EngineError, EngineUnavailable

# espeak_AUDIO_OUTPUT: SYNCHRONOUS hands audio to our callback and returns only when synthesis is
# complete, on the calling thread; no background thread is involved.
AUDIO_OUTPUT_SYNCHRONOUS = 2
POS_CHARACTER = 1
ESPEAK_CHARS_UTF8 = 1
# espeakPHONEMES: text inside [[ ]] is espeak's phoneme mnemonics (a lexicon's `espeak:`).
ESPEAK_PHONEMES = 0x100
# espeak_TextToPhonemes' phonememode: IPA (UTF-8) rather than the ASCII mnemonics.
ESPEAK_PHONEMES_IPA = 0x02
EE_OK = 0
# espeak_PARAMETER
ESPEAK_RATE = 1
ESPEAK_VOLUME = 2
ESPEAK_PITCH = 3
RATE_MIN, RATE_MAX, RATE_NORMAL = 80, 450, 175
PITCH_MIN, PITCH_MAX, PITCH_NORMAL = 0, 99, 50
VOLUME_NORMAL = 100
# Length in ms of the buffers handed to the callback; it bounds progress granularity.
_BUFFER_MS = 100

# int SynthCallback(short *wav, int numsamples, espeak_EVENT *events); events are not used.
_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)

SamplesFn = Callable[[int], None]


@dataclass
class _Capture:
    """Where the callback puts the audio of the synthesis in progress."""

    on_samples: SamplesFn | None
    blocks: list[npt.NDArray[np.int16]] = field(default_factory=list)
    error: BaseException | None = None


_LOCK = threading.Lock()
_capture: _Capture | None = None
_sample_rate: int | None = None


def _on_synth(wav: ctypes._Pointer[ctypes.c_short], count: int, _events: int | None) -> int:
    # An exception escaping a ctypes callback is printed and swallowed: record it and abort the
    # synthesis (return 1) so that `synthesize` re-raises it.
    capture = _capture
    if capture is None:
        return 1
    try:
        if wav and count > 0:
            capture.blocks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
            if capture.on_samples is not None:
                capture.on_samples(count)
    except BaseException as exc:
        capture.error = exc
        return 1
    return 0


# One thunk for the life of the process: a loaded library holds its address.
_CALLBACK = _SynthCallback(_on_synth)


def _paths() -> tuple[str, bytes]:
    try:
        import espeakng_loader
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise EngineUnavailable("the offline engine needs the espeakng-loader package") from exc
    return str(espeakng_loader.get_library_path()), str(espeakng_loader.get_data_path()).encode()


class _Library:
    """One load of libespeak-ng, initialised for synchronous retrieval. Call `close()`."""

    def __init__(self) -> None:
        lib_path, data_path = _paths()
        try:
            self._lib = ctypes.CDLL(lib_path)
        except OSError as exc:
            raise EngineUnavailable(f"cannot load libespeak-ng: {exc}") from exc
        _declare(self._lib)
        rate = self._lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, data_path, 0)
        if rate <= 0:
            self._unload()
            raise EngineUnavailable("espeak_Initialize failed: espeak-ng-data not found")
        self.sample_rate: int = rate
        self._lib.espeak_SetSynthCallback(_CALLBACK)

    def set_voice(self, voice: str) -> None:
        if self._lib.espeak_SetVoiceByName(voice.encode("utf-8")) != EE_OK:
            raise EngineError(f"espeak voice {voice!r} not found", retryable=False)

    def set_param(self, parameter: int, value: int) -> None:
        if self._lib.espeak_SetParameter(parameter, value, 0) != EE_OK:
            raise EngineError(f"espeak_SetParameter({parameter}, {value}) failed")

    def speak(self, text: str, *, phonemes: bool = False) -> None:
        data = text.encode("utf-8") + b"\0"
        flags = ESPEAK_CHARS_UTF8 | (ESPEAK_PHONEMES if phonemes else 0)
        status = self._lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, flags, None, None)
        self._lib.espeak_Synchronize()
        if status != EE_OK:
            raise EngineError(f"espeak_Synth failed with status {status}")

    def transcribe(self, text: str, *, ipa: bool) -> str:
        """`text` as espeak-ng would speak it, in its mnemonics or IPA, words apart."""
        buffer = ctypes.create_string_buffer(text.encode("utf-8") + b"\0")
        pointer = ctypes.c_char_p(ctypes.addressof(buffer))
        mode = ESPEAK_PHONEMES_IPA if ipa else 0
        clauses = []
        while pointer.value:  # one clause per call; the pointer moves past it
            clause = self._lib.espeak_TextToPhonemes(ctypes.byref(pointer), ESPEAK_CHARS_UTF8, mode)
            clauses.append((clause or b"").decode("utf-8"))
        return " ".join(" ".join(clauses).split())

    def close(self) -> None:
        self._lib.espeak_Terminate()
        self._unload()

    def _unload(self) -> None:
        # Dropping the last handle lets the next load start from pristine statics.
        unload = getattr(_ctypes, "dlclose", None) or getattr(_ctypes, "FreeLibrary", None)
        if unload is not None:
            unload(self._lib._handle)


def _declare(lib: ctypes.CDLL) -> None:
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p,  # text
        ctypes.c_size_t,  # size in bytes, terminator included
        ctypes.c_uint,  # position
        ctypes.c_int,  # position_type
        ctypes.c_uint,  # end_position
        ctypes.c_uint,  # flags
        ctypes.POINTER(ctypes.c_uint),  # unique_identifier
        ctypes.c_void_p,  # user_data
    ]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.argtypes = []
    lib.espeak_Synchronize.restype = ctypes.c_int
    lib.espeak_TextToPhonemes.argtypes = [
        ctypes.POINTER(ctypes.c_char_p),  # textptr, moved past the clause transcribed
        ctypes.c_int,  # textmode
        ctypes.c_int,  # phonememode
    ]
    lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
    lib.espeak_Terminate.argtypes = []
    lib.espeak_Terminate.restype = ctypes.c_int


def _clamp(value: int | None, low: int, high: int, default: int) -> int:
    return default if value is None else max(low, min(high, int(value)))


def synthesize(
    text: str,
    *,
    voice: str,
    rate: int | None = None,
    pitch: int | None = None,
    on_samples: SamplesFn | None = None,
    phonemes: bool = False,
) -> npt.NDArray[np.int16]:
    """Speak `text`: int16 mono samples at `sample_rate()`. Thread-safe; deterministic.

    `phonemes`: read `[[...]]` as espeak phoneme mnemonics rather than as text.

    `on_samples(n)` is called from inside synthesis as each buffer of n samples arrives; an
    exception it raises aborts the synthesis and propagates.
    """
    global _capture, _sample_rate
    with _LOCK:
        lib = _Library()
        try:
            _sample_rate = lib.sample_rate
            lib.set_voice(voice)
            lib.set_param(ESPEAK_RATE, _clamp(rate, RATE_MIN, RATE_MAX, RATE_NORMAL))
            lib.set_param(ESPEAK_PITCH, _clamp(pitch, PITCH_MIN, PITCH_MAX, PITCH_NORMAL))
            lib.set_param(ESPEAK_VOLUME, VOLUME_NORMAL)
            _capture = capture = _Capture(on_samples=on_samples)
            try:
                lib.speak(text, phonemes=phonemes)
            finally:
                _capture = None
        finally:
            lib.close()
    if capture.error is not None:
        raise capture.error
    if not capture.blocks:
        return np.zeros(0, dtype=np.int16)
    return np.concatenate(capture.blocks)


def transcribe(text: str, *, voice: str, ipa: bool = False) -> str:
    """The phonemes espeak-ng speaks `text` with: its mnemonics (`espeak-ng -x`), or IPA
    (`espeak-ng -x --ipa`)."""
    with _LOCK:
        lib = _Library()
        try:
            lib.set_voice(voice)
            return lib.transcribe(text, ipa=ipa)
        finally:
            lib.close()


def sample_rate() -> int:
    """The rate libespeak-ng renders at (22050 Hz for the bundled build)."""
    global _sample_rate
    with _LOCK:
        if _sample_rate is None:
            lib = _Library()
            _sample_rate = lib.sample_rate
            lib.close()
        return _sample_rate


def check_voice(voice: str) -> None:
    """Raise EngineError(retryable=False) when espeak does not know `voice`."""
    with _LOCK:
        lib = _Library()
        try:
            lib.set_voice(voice)
        finally:
            lib.close()
