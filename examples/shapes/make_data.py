"""Regenerate the shape-counting demo data: `python examples/shapes/make_data.py` from the repo root."""

from hone.examples.shapes import write_dataset

if __name__ == "__main__":
    for path in write_dataset("examples/shapes"):
        print(f"wrote {path}")
