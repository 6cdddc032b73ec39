"""Raw records to one Arrow string array, and the checks that need no format."""

import codecs

import pyarrow as pa
import pyarrow.compute as pc


def _hex_escape(error: UnicodeDecodeError) -> tuple[str, int]:
    bad = error.object[error.start : error.end]
    return "".join(f"\\x{b:02X}" for b in bad), error.end


# Like "backslashreplace" but upper-case, as Apache writes escaped bytes (`\xE0`).
codecs.register_error("logstack_hex", _hex_escape)


def to_text(lines) -> pa.Array:
    """Records (bytes) to a string array without line endings.

    Bytes that are not UTF-8 become `\\xNN` text; the few records that need it are decoded
    one by one, the rest in one cast.
    """
    binary = pa.array(lines, pa.binary())
    try:
        text = binary.cast(pa.string())
    except pa.ArrowInvalid:
        decoded = [None if b is None else bytes(b).decode("utf-8", "logstack_hex") for b in lines]
        text = pa.array(decoded, pa.string())
    text = pc.utf8_rtrim(text, characters="\r\n")
    # A byte order mark (Windows tools write one at the head of a file) is no part of the
    # line: left in, it glued itself to the client address.
    if pc.any(pc.starts_with(text, "\ufeff")).as_py():
        text = pc.utf8_ltrim(text, characters="\ufeff")
    return text


def format_free_rejects(text: pa.Array, max_line_bytes: int) -> tuple[pa.Array, list]:
    """Mask of lines worth parsing, and rejects for empty and over-long ones."""
    lengths = pc.binary_length(text)
    blank = pc.equal(pc.binary_length(pc.utf8_trim_whitespace(text)), 0)
    too_long = pc.greater(lengths, max_line_bytes)
    keep = pc.fill_null(pc.invert(pc.or_(blank, too_long)), False)

    rejects = []
    if not pc.all(keep).as_py():
        # Only the few refused lines are looked at one by one.
        refused = pc.indices_nonzero(pc.invert(keep))
        flags = zip(refused.to_pylist(), pc.take(blank, refused).to_pylist(),
                    pc.take(lengths, refused).to_pylist())
        for i, is_blank, length in flags:
            if is_blank is None or is_blank:
                rejects.append((i, "empty", "line is empty or only white space"))
            else:
                rejects.append((i, "too_long", f"line is {length} bytes, over the limit of "
                                               f"{max_line_bytes} bytes"))
    return keep, rejects
