"""The fine-grained video–text dataset builder (paper §3.3, SPEC §5)."""
