"""Builders for test records."""

import copy
import json


def chat(*turns, **extra):
    """A chat record from (role, content) or (role, content, weight) tuples."""
    messages = []
    for turn in turns:
        message = {"role": turn[0], "content": turn[1]}
        if len(turn) > 2:
            message["weight"] = turn[2]
        messages.append(message)
    return {"messages": messages, **extra}


WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TIME_TOOL = {"type": "function", "function": {
    "name": "get_time", "description": "The local time in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def tool_call(name, arguments, call_id="call_1"):
    """An assistant's call in OpenAI's shape (arguments given as a dict, stored as a JSON string)."""
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


def weather_record(city="Paris", answer="It is 18C and sunny."):
    """A function-calling record: the user asks, the assistant calls get_weather, the tool answers, the
    assistant replies."""
    return {"tools": copy.deepcopy([WEATHER_TOOL, TIME_TOOL]), "messages": [
        {"role": "user", "content": f"What is the weather in {city}?"},
        {"role": "assistant", "content": None, "tool_calls": [tool_call("get_weather", {"city": city})]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
        {"role": "assistant", "content": answer}]}
