"""Regenerate the pizza-order demo data: `python examples/pizza/make_data.py` from the repo root."""

from hone.examples.pizza import write_dataset

if __name__ == "__main__":
    for path in write_dataset("examples/pizza"):
        print(f"wrote {path}")
