"""A small fake pipeline (tests only) with the shapes the real steps have: settings models, URIs between
steps, a `when` gate, GPU steps, a renamed (kebab-case) Argo parameter, numeric gate outputs, a mutex.

Its nodes are built in tests/compile/conftest.py; the compiler must treat it like the real pipeline.
No `from __future__ import annotations` in these modules: Hera's runner inspects their annotations.
"""
