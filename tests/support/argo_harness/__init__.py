"""Runs a compiled Argo WorkflowTemplate, read from its YAML, on this machine: the DAG walked as Argo's
controller walks it, each pod template run as Argo's executor runs it (workflow.py, pod.py)."""
