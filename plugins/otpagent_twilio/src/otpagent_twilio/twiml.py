"""The TwiML a voice call plays: a code read digit by digit, repeated, or a message read aloud.

Text-to-speech reads ``482913`` as "four hundred eighty-two thousand...", so each character is
spoken on its own, separated by commas (a short pause in every Twilio voice), and the whole code
is repeated with a ``<Pause>`` in between so that someone who picked up late still hears it.
Built with the SDK's ``VoiceResponse`` so escaping is never our problem.
"""

from __future__ import annotations

from twilio.twiml.voice_response import VoiceResponse

__all__ = ["code_twiml", "message_twiml", "spell"]


def spell(code: str) -> str:
    """``"482913"`` -> ``"4, 8, 2, 9, 1, 3."``: one character at a time, with pauses."""
    return ", ".join(ch for ch in code if not ch.isspace()) + "."


def code_twiml(code: str, *, intro: str, voice: str, language: str, repeat: int, pause_seconds: int) -> str:
    """TwiML that says ``intro`` and the code spelled out, ``repeat`` times."""
    response = VoiceResponse()
    for i in range(repeat):
        lead = intro if i == 0 else f"Again, {intro[:1].lower()}{intro[1:]}"
        response.say(f"{lead}: {spell(code)}", voice=voice, language=language)
        if pause_seconds and i < repeat - 1:
            response.pause(length=pause_seconds)
    return str(response)


def message_twiml(text: str, *, voice: str, language: str, repeat: int, pause_seconds: int) -> str:
    """TwiML that reads ``text`` aloud ``repeat`` times."""
    response = VoiceResponse()
    for i in range(repeat):
        response.say(text, voice=voice, language=language)
        if pause_seconds and i < repeat - 1:
            response.pause(length=pause_seconds)
    return str(response)
