"""Type stub of the C scanner ``_textscan.c`` (see its header for the rules it proves)."""

def scan(
    block: bytes, start: int, chars_per_token: int, tokens_per_turn: int, limit: int, /
) -> tuple[int, int, int, int, int, list[tuple[int, int]], int]:
    """(accepted lines, end offset, estimated tokens, turns, characters, too_long, format)."""
