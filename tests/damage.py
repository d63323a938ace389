"""Ways a file on disk gets damaged (a kill mid-copy, a bad disk, a hand edit), for the tests
that check every damaged file is refused in one clear line."""

from pathlib import Path

DAMAGES = ("truncated", "garbled", "empty", "wrong shape")


def damage(path: Path, how: str) -> None:
    """Damage ``path`` in place: cut in half, 64 bytes flipped, emptied, or a JSON of the wrong
    shape (a list for a ``.json`` file, a JSON text for a binary one)."""
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbled":
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes(b ^ 0xFF for b in data[middle : middle + 64]))
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "wrong shape":
        path.write_text("[1, 2, 3]" if path.suffix == ".json" else '{"values": 1}')
    else:
        raise ValueError(f"unknown damage {how!r}; one of {DAMAGES}")
