"""Pretraining methods, one file each, behind a registry (``build_method(name, cfg)``)."""

from rcs.methods.base import METHODS, Method, StepOutput, build_method, register_method

__all__ = ["METHODS", "Method", "StepOutput", "build_method", "register_method"]
