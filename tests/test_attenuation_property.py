"""Attenuation only narrows: adding a caveat never turns a denied access into an allowed one.

Checked over random caveat sets (every built-in restriction, nested
``IfPresent``, ``Action``, ``ValidityWindow``) and random accesses, both on
``CaveatSet.validate`` directly and through real tokens: mint, add, encode,
decode, attenuate without the key, verify, validate.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from authz_helpers import unique_caveats, validate_outcome
from hypothesis import given, settings
from hypothesis import strategies as st

from macaroons_authz import (
    ActionCaveat,
    AllowedRoles,
    AppFeatureSet,
    Apps,
    Caveat,
    CaveatSet,
    Clusters,
    Command,
    Commands,
    ConfineOrganization,
    ConfineUser,
    FeatureSet,
    FlyAccess,
    FlySrc,
    FromMachineSource,
    IfPresent,
    IsMember,
    IsUser,
    Macaroon,
    MachineFeatureSet,
    Machines,
    MaxValidity,
    Mutations,
    Organization,
    ResourceUnspecifiedError,
    Role,
    StorageObjects,
    ValidityWindow,
    Volumes,
    kid_for_key,
)

# Small pools, so that caveats and accesses often name the same things.
ACTIONS = st.sampled_from([0x00, 0x01, 0x02, 0x03, 0x04, 0x08, 0x10, 0x13, 0x1F, 0xFFFF])
ORG_IDS = st.sampled_from([0, 1, 2])
APP_IDS = st.sampled_from([0, 1, 2, 3])
NAMES = st.sampled_from(["", "a", "b"])
FEATURES = st.sampled_from(["", "wg", "membership", "deletion", "litefs-cloud", "other"])
OBJECTS = st.sampled_from(["", "s3://a/", "s3://a/b", "s3://a/b/c", "s3://c"])
MUTATIONS = st.sampled_from(["addCertificate", "deleteApp"])
ARGS = st.sampled_from(["ls", "-l", "uname"])
TIMES = st.integers(0, 20)
INSTANTS = st.sampled_from([0, 4.5, 5, 5.25, 10, 10.5, 15, 20, 20.001])


def resource_set(keys: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | st.dictionaries(keys, ACTIONS, max_size=3)


LEAVES: st.SearchStrategy[Caveat] = st.one_of(
    st.builds(Organization, ORG_IDS, ACTIONS),
    st.builds(Apps, resource_set(APP_IDS)),
    st.builds(Volumes, resource_set(NAMES)),
    st.builds(Machines, resource_set(NAMES)),
    st.builds(FeatureSet, resource_set(FEATURES)),
    st.builds(AppFeatureSet, resource_set(NAMES)),
    st.builds(MachineFeatureSet, resource_set(NAMES)),
    st.builds(Clusters, resource_set(NAMES)),
    st.builds(StorageObjects, resource_set(OBJECTS)),
    st.builds(Mutations, st.none() | st.lists(MUTATIONS, max_size=2)),
    st.builds(
        Commands,
        st.none()
        | st.lists(
            st.builds(Command, st.none() | st.lists(ARGS, max_size=2), st.booleans()), max_size=2
        ),
    ),
    st.builds(IsUser, st.integers(0, 3)),
    st.just(IsMember()),
    st.builds(AllowedRoles, st.sampled_from([0, Role.MEMBER, Role.BILLING_MANAGER, 3, Role.ADMIN])),
    st.builds(FromMachineSource, NAMES),
    st.builds(FlySrc, NAMES, NAMES, NAMES),
    st.builds(ActionCaveat, ACTIONS),
    st.builds(ValidityWindow, TIMES, TIMES),
    st.builds(ConfineUser, st.integers(0, 2)),
    st.builds(ConfineOrganization, st.integers(0, 2)),
    st.builds(MaxValidity, st.integers(0, 10)),
)

CAVEATS: st.SearchStrategy[Caveat] = st.recursive(
    LEAVES,
    lambda inner: st.builds(IfPresent, st.none() | st.lists(inner, max_size=3), ACTIONS),
    max_leaves=6,
)


@st.composite
def accesses(draw: st.DrawFn) -> FlyAccess:
    """Mostly well-formed accesses down one branch of the resource tree; some malformed."""
    fields: dict[str, Any] = {
        "action": draw(ACTIONS),
        "org_id": draw(ORG_IDS),
        "at": draw(INSTANTS),
    }
    level = draw(st.sampled_from(["org", "app", "feature", "storage"]))
    if level == "app":
        fields["app_id"] = draw(APP_IDS)
        child = draw(st.sampled_from([None, "machine", "volume", "app_feature"]))
        if child is not None:
            fields[child] = draw(NAMES)
        if child == "machine":
            leaf = draw(st.sampled_from([None, "command", "machine_feature"]))
            if leaf == "command":
                fields["command"] = draw(st.lists(ARGS, max_size=3))
            elif leaf == "machine_feature":
                fields["machine_feature"] = draw(NAMES)
    elif level == "feature":
        fields["feature"] = draw(FEATURES)
        if fields["feature"] == "litefs-cloud" and draw(st.booleans()):
            fields["cluster"] = draw(NAMES)
    elif level == "storage":
        fields["storage_object"] = draw(OBJECTS)
    for extra in ("mutation", "source_machine", "source_app", "source_organization"):
        if draw(st.booleans()):
            fields[extra] = draw(MUTATIONS if extra == "mutation" else NAMES)
    # Now and then, anything at all (usually malformed).
    if draw(st.integers(0, 9)) == 0:
        for name in ("org_id", "app_id", "feature", "machine", "cluster", "command"):
            if draw(st.booleans()):
                fields[name] = None if fields.get(name) is not None else draw(_ANY[name])
    return FlyAccess(**fields)


_ANY: dict[str, st.SearchStrategy[Any]] = {
    "org_id": ORG_IDS,
    "app_id": APP_IDS,
    "feature": FEATURES,
    "machine": NAMES,
    "cluster": NAMES,
    "command": st.lists(ARGS, max_size=2),
}


def _assert_narrower(before: list[Any], after: list[Any]) -> None:
    """*after* denies whatever *before* denied, for at least the same reasons."""
    if before:
        assert after, "attenuation turned a denied access into an allowed one"
    assert Counter(before) <= Counter(after)


@settings(max_examples=300, deadline=None)
@given(
    base=st.lists(CAVEATS, max_size=4),
    extra=CAVEATS,
    position=st.integers(0, 4),
    access=accesses(),
)
def test_adding_a_caveat_never_allows_more(
    base: list[Caveat], extra: Caveat, position: int, access: FlyAccess
) -> None:
    before = validate_outcome(base, access)
    after = validate_outcome([*base[:position], extra, *base[position:]], access)
    _assert_narrower(before, after)
    # Exactly AND: allowed iff the old set allows it and the new caveat alone does.
    alone = validate_outcome([extra], access)
    assert (after == []) is (before == [] and alone == [])


@settings(max_examples=100, deadline=None)
@given(caveats=st.lists(CAVEATS, max_size=4), batch=st.lists(accesses(), max_size=3))
def test_several_accesses_pass_only_if_each_does(
    caveats: list[Caveat], batch: list[FlyAccess]
) -> None:
    together = validate_outcome(caveats, *batch)
    separately = [validate_outcome(caveats, access) for access in batch]
    assert together == [cause for causes in separately for cause in causes]


KEY = bytes(range(32))
KID = kid_for_key(KEY)
LOCATION = "https://api.fly.io/v1"


@settings(max_examples=120, deadline=None)
@given(
    base=st.lists(CAVEATS, max_size=4),
    extra=st.lists(CAVEATS, min_size=1, max_size=2),
    access=accesses(),
)
def test_attenuating_a_token_never_allows_more(
    base: list[Caveat], extra: list[Caveat], access: FlyAccess
) -> None:
    token = Macaroon.new(KID, LOCATION, KEY)
    token.add(*base)
    encoded = token.encode()
    verified = Macaroon.decode(encoded).verify(KEY)
    assert list(verified) == unique_caveats(base)
    before = validate_outcome(verified, access)
    assert before == validate_outcome(unique_caveats(base), access)

    # Anyone may attenuate the encoded token, without the key.
    held = Macaroon.decode(encoded)
    held.add(*extra)
    narrowed = Macaroon.decode(held.encode()).verify(KEY)
    assert list(narrowed) == unique_caveats([*base, *extra])
    assert CaveatSet(list(narrowed)[: len(verified)]) == verified
    after = validate_outcome(narrowed, access)
    _assert_narrower(before, after)
    assert after == validate_outcome(unique_caveats([*base, *extra]), access)


class _OddAccess:
    """An access without the usual attributes, or with a non-integer action."""

    def __init__(self, action: Any, **attrs: Any) -> None:
        self.action = action
        self.__dict__.update(attrs)

    def now(self) -> float:
        return 10.0

    def validate(self) -> None:
        return None


ODD_ACCESSES = st.builds(
    _OddAccess,
    st.sampled_from([1, None, "r", True]),
    **{name: st.none() | APP_IDS for name in ("app_id",)},
    **{name: st.none() | NAMES for name in ("machine", "volume")},
)


@settings(max_examples=400, deadline=None)
@given(caveat=LEAVES, access=accesses() | ODD_ACCESSES)
def test_the_if_present_shortcut_agrees_with_prohibits(caveat: Caveat, access: Any) -> None:
    # IfPresent skips an inner caveat on _unspecified_by() without asking
    # prohibits(); that must be exactly the lone "resource unspecified" answer.
    err = caveat.prohibits(access)
    lone_unspecified = isinstance(err, ResourceUnspecifiedError) and not err.causes
    if caveat._unspecified_by(access):
        assert lone_unspecified
    elif hasattr(caveat, "_access_attr"):
        # Resource-set caveats answer exactly, not just safely.
        assert not lone_unspecified
