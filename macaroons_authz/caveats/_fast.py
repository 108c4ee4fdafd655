"""The decoding fast path's part in the caveat classes (see ``macaroons_authz._decode``).

Each built-in caveat class has a ``from_canonical`` that builds it from a
decoded body already in canonical form; the registry keeps them by type
number (``CaveatRegistry.fast_builders``). The helpers here let them do so
cheaply: :func:`fast_new` sets an attrs class's slots without running its
validators and converters, which the builder's own checks replace, and
:func:`canonical_set` builds the caveats nested in ``IfPresent``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ._base import MAX_CAVEATS, MAX_NESTING, Caveat, attrs_fields

T = TypeVar("T")

#: The fast builders of a registry by type number (:meth:`Caveat.from_canonical`).
FastBuilders = dict[int, "Callable[[Any, FastBuilders, int], Caveat | None]"]


def fast_new(cls: type[T], *names: str) -> Callable[..., T]:
    """A constructor of the attrs class *cls* from its fields' values, in *names* order.

    It sets the slots directly: no validators, no converters, none of
    attrs' frozen ``__setattr__``. Only for decoders that checked the
    values themselves; *names* must be every field of *cls*.
    """
    fields = [f.name for f in attrs_fields(cls)]
    if list(names) != fields:
        raise TypeError(f"fast_new({cls.__name__}) needs every field in order: {fields}")
    setters = [next(k.__dict__[n] for k in cls.__mro__ if n in k.__dict__).__set__ for n in names]
    new = object.__new__
    if len(setters) == 1:
        (set0,) = setters

        def one(a: Any) -> T:
            obj = new(cls)
            set0(obj, a)
            return obj

        return one
    if len(setters) == 2:
        set0, set1 = setters

        def two(a: Any, b: Any) -> T:
            obj = new(cls)
            set0(obj, a)
            set1(obj, b)
            return obj

        return two
    raise TypeError("fast_new builds classes of one or two fields")


def canonical_set(items: Any, builders: FastBuilders, depth: int) -> tuple[Caveat, ...] | None:
    """The caveats of a nested caveat set whose every body is canonical, or ``None``.

    ``None`` also for every set that :func:`decode_set_value` would refuse
    or decode otherwise, which then decides.
    """
    if depth > MAX_NESTING or type(items) is not list:
        return None
    n = len(items)
    if n % 2 or n > 2 * MAX_CAVEATS:
        return None
    out = []
    for i in range(0, n, 2):
        number = items[i]
        build = builders.get(number) if type(number) is int else None
        caveat = None if build is None else build(items[i + 1], builders, depth)
        if caveat is None:
            return None
        out.append(caveat)
    return tuple(out)
