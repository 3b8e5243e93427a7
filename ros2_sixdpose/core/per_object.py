"""Which method serves which object: the `per_object` section shared by the estimator, refiner and tracker configs.

A stage of `type: per_object` builds one instance of each method named here (each from its own section of the same
file) and hands every object's work to its method, so methods are mixed per object in configuration alone.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

PER_OBJECT = "per_object"


@dataclass
class PerObjectChoice:
    """`object_ids[i]` is served by `methods[i]`; every other object by `default` (a stage's method names)."""

    default: str = ""
    object_ids: list[int] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.object_ids) != len(self.methods):
            raise ValueError(f"per_object needs one method per object id, got {len(self.object_ids)} ids and "
                             f"{len(self.methods)} methods")
        if len(set(self.object_ids)) != len(self.object_ids):
            raise ValueError(f"per_object.object_ids has repeats: {self.object_ids}")
        if PER_OBJECT in [self.default, *self.methods]:
            raise ValueError("per_object cannot name itself as an object's method")

    def check_methods(self, known: Iterable[str]) -> None:
        """Raise ValueError if a method named here is not among `known`."""
        unknown = sorted(set(self.used_methods()) - set(known))
        if unknown:
            raise ValueError(f"per_object methods must be among {sorted(known)}, got {unknown}")

    def used_methods(self) -> list[str]:
        """Every method named (the default and each object's), sorted, once each."""
        return sorted({self.default, *self.methods})

    def method_of(self, object_id: int) -> str:
        """The method that serves `object_id`."""
        return dict(zip(self.object_ids, self.methods)).get(object_id, self.default)

    def group(self, object_ids: Iterable[int]) -> dict[str, list[int]]:
        """Method -> positions in `object_ids` it serves (in order), for methods that serve any."""
        listed = dict(zip(self.object_ids, self.methods))  # built once per call, not once per object
        groups: dict[str, list[int]] = defaultdict(list)
        for index, object_id in enumerate(object_ids):
            groups[listed.get(object_id, self.default)].append(index)
        return dict(groups)
