"""File suffixes read as audio: what ``audioseq predict`` looks for in folders and what the
``folder`` dataset reads (soundfile decodes each; the check is on the lower-cased suffix)."""

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".au", ".opus"})
