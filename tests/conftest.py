"""Shared fixtures live in tests/fixtures/; each module there registers its own."""

pytest_plugins = [
    "tests.fixtures.context",
    "tests.fixtures.s3",
    "tests.fixtures.models",
    "tests.fixtures.llm_servers",
    "tests.fixtures.mlflow",
    "tests.fixtures.serve",
    "tests.fixtures.demo_steps",
]
