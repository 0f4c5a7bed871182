"""Functions for ``call:`` jobs; each records what it received in ``calls.jsonl``."""

import json
from pathlib import Path

from pydantic import BaseModel

CALLS = Path(__file__).resolve().parent / "calls.jsonl"


class Model(BaseModel):
    depth: int = 1
    act: str = "relu"


class Config(BaseModel):
    lr: float = 0.1
    model: Model = Model()


def _record(kind, value):
    with CALLS.open("a") as out:
        out.write(json.dumps({"kind": kind, "value": value}) + "\n")


def with_list(args: list[str]) -> dict:
    _record("list", args)
    return {"n_args": len(args), "first_len": float(len(args[0]))}


def with_model(cfg: Config) -> dict:
    _record("model", {"type": type(cfg).__name__, "config": cfg.model_dump()})
    return {"loss": cfg.lr * cfg.model.depth, "depth_seen": cfg.model.depth, "note": "text"}
