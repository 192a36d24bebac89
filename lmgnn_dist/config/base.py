"""What every config section shares: the error type, the section decorator and the value rules.

A section is a ``pydantic.dataclasses.dataclass`` that forbids unknown keys; its fields carry
their rules in their type (``PosInt`` = an int > 0, ``Fraction`` = a float in ``[0, 1)``,
``Literal[...]`` = one of the listed values). Ints and bools are strict (``"10"`` or ``true``
is not an int, ``1`` is not a bool); floats also accept ``1e-4`` written without a dot, which
YAML 1.1 reads as a string.
"""
from __future__ import annotations

import functools
from typing import Annotated

import pydantic
from pydantic import ConfigDict, Field, Strict


class ConfigError(ValueError):
    """A config file or override is invalid; the (one-line) message names the key."""


#: decorator of a config section: a pydantic dataclass that rejects unknown keys
section = functools.partial(pydantic.dataclasses.dataclass, config=ConfigDict(extra="forbid"))

Int = Annotated[int, Strict()]
Bool = Annotated[bool, Strict()]
PosInt = Annotated[int, Strict(), Field(gt=0)]
NonNegInt = Annotated[int, Strict(), Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]
Port = Annotated[int, Strict(), Field(ge=1, le=65535)]
