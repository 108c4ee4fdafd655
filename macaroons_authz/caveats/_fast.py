"""The decoding fast path's part in the caveat classes (see ``macaroons_authz._decode``).

Each built-in caveat class has a ``from_canonical`` that builds it from a
decoded body already in canonical form; the registry keeps them by type
number (``CaveatRegistry.fast_builders``). The helpers here let them do so
cheaply: :func:`slot_setters` lets them set an attrs class's slots without
running its validators and converters, which the builder's own checks
replace, and :func:`canonical_set` builds the caveats nested in ``IfPresent``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._base import MAX_CAVEATS, MAX_NESTING, Caveat, attrs_fields

#: The fast builders of a registry by type number (:meth:`Caveat.from_canonical`).
FastBuilders = dict[int, "Callable[[Any, FastBuilders, int], Caveat | None]"]


#: ``object.__new__``: a builder's global read of it is cheaper than the
#: attribute read (about 200 instructions an object).
new_object = object.__new__


def slot_setters(cls: type, *names: str) -> tuple[Callable[[Any, Any], None], ...]:
    """The setters of the attrs class *cls*'s slots, for its fields in *names* order.

    A builder makes the object with :func:`new_object` and sets each
    slot with its setter: no validators, no converters, none of attrs'
    frozen ``__setattr__``, no call of a constructor of its own (each call
    layer costs as much as a slot). Only for decoders that checked the
    values themselves, and only for *cls* itself, never a subclass (whose
    own checks would be skipped); *names* must be every field of *cls*.
    """
    fields = [f.name for f in attrs_fields(cls)]
    if list(names) != fields:
        raise TypeError(f"slot_setters({cls.__name__}) needs every field in order: {fields}")
    return tuple(next(k.__dict__[n] for k in cls.__mro__ if n in k.__dict__).__set__ for n in names)


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
