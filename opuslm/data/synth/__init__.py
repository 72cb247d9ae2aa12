"""The embedded corpus: multi-speaker English speech synthesised with eSpeak NG, with OSUM labels.

Every label is a synthesis parameter (voice variant, pitch, rate, prosody preset, inserted sound), so
the labels are proxies for the real phenomena; see data_recipes/espeak/README.md.
"""
