"""Builders for test records."""


def chat(*turns, **extra):
    """A chat record from (role, content) or (role, content, weight) tuples."""
    messages = []
    for turn in turns:
        message = {"role": turn[0], "content": turn[1]}
        if len(turn) > 2:
            message["weight"] = turn[2]
        messages.append(message)
    return {"messages": messages, **extra}
