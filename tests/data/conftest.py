import json

import pytest


@pytest.fixture
def write_jsonl(tmp_path):
    """Write lines to a .jsonl file: dicts/lists are JSON-encoded, str is written as-is, bytes raw."""

    def write(lines, name="train.jsonl"):
        path = tmp_path / name
        with open(path, "wb") as out:
            for line in lines:
                if isinstance(line, bytes):
                    out.write(line + b"\n")
                elif isinstance(line, str):
                    out.write(line.encode("utf-8") + b"\n")
                else:
                    out.write(json.dumps(line).encode("utf-8") + b"\n")
        return path

    return write
