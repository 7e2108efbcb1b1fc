"""A toy step for runner tests: only runs when the summary says the corpus is large."""

from hera.workflows.io import Input, Output


class AnnounceInputs(Input):
    text: str


class AnnounceOutputs(Output):
    message: str


def run(inputs: AnnounceInputs) -> AnnounceOutputs:
    return AnnounceOutputs(message=f"large corpus ({inputs.text})")
