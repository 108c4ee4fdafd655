"""Documented constructor calls that must type-check under ``mypy --strict``.

Not a test module (pytest does not collect it): ``.ci/run`` type-checks it,
so the plain dicts and lists the README and the docs build caveats from
stay acceptable to a user's type checker, as they are at run time.
"""

from __future__ import annotations

from typing import assert_type

from macaroons_authz import (
    Action,
    AppFeatureSet,
    Apps,
    Clusters,
    FeatureSet,
    IfPresent,
    MachineFeatureSet,
    Machines,
    Prefix,
    ResourceSet,
    StorageObjects,
    ValidityWindow,
    Volumes,
)

apps = Apps({42: Action.READ})
assert_type(apps.apps, ResourceSet[int] | None)
assert_type(Apps([(42, 1)]).apps, ResourceSet[int] | None)
assert_type(Apps(ResourceSet({42: Action.READ})).apps, ResourceSet[int] | None)
assert_type(Apps(None).apps, ResourceSet[int] | None)
assert_type(
    Machines({"e784079b449483": Action.READ | Action.CONTROL}).machines, ResourceSet[str] | None
)
assert_type(Volumes({"vol_1": Action.ALL}).volumes, ResourceSet[str] | None)
assert_type(FeatureSet({"wg": Action.ALL}).features, ResourceSet[str] | None)
assert_type(AppFeatureSet({"x": Action.READ}).features, ResourceSet[str] | None)
assert_type(MachineFeatureSet({"metadata": Action.READ}).features, ResourceSet[str] | None)
assert_type(Clusters({"c": Action.READ}).clusters, ResourceSet[str] | None)
objects = StorageObjects({"https://storage.example/bucket/": Action.READ})
assert_type(objects.storage_objects, ResourceSet[str] | None)
assert_type(
    StorageObjects({Prefix("https://s/"): Action.READ}).storage_objects, ResourceSet[str] | None
)
scoped = IfPresent([Apps({42: Action.ALL})], Action.READ)
window = ValidityWindow(1700000000, 1700003600)
