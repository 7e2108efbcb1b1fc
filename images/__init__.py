"""Image families' Dockerfiles, lock files and the checks that build their environments without Docker."""
