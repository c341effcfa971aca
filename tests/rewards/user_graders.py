"""Grader functions for the python grader's tests (imported by path, in a subprocess)."""

import time


def length_ratio(sample, item):
    return len(sample["output_text"]) / len(item["reference"])


def raises(sample, item):
    raise ValueError("the grader is broken")


def hangs(sample, item):
    if sample["output_text"] == "hang":
        time.sleep(60)
    return 1.0


def chatty(sample, item):
    print("debug output that must not break the protocol")
    return 0.5


def not_a_number(sample, item):
    return "high"


def exits(sample, item):
    if sample["output_text"] == "exit":
        import os

        os._exit(3)
    return 1.0
