"""Fly.io caveats: the exact answer and error class of each (spec 8; Go's flyio tests)."""

from __future__ import annotations

from typing import Any

import pytest
from authz_helpers import (
    ALL,
    NONE,
    T0,
    C,
    D,
    ForAct,
    ForRes,
    ForRole,
    R,
    Unspec,
    W,
    X,
    assert_denied,
    assert_prohibits,
    fly,
    validate_outcome,
)

from macaroons_authz import (
    AllowedRoles,
    AppFeatureSet,
    Apps,
    BadCaveatError,
    Caveat,
    Clusters,
    Command,
    Commands,
    ConfineGitHubOrg,
    ConfineGoogleHD,
    ConfineOrganization,
    ConfineUser,
    DischargeRequest,
    FeatureSet,
    FlySrc,
    FromMachineSource,
    IfPresent,
    InvalidAccessError,
    IsMember,
    IsUser,
    MachineFeatureSet,
    Machines,
    MaxValidity,
    Mutations,
    Organization,
    Role,
    StorageObjects,
    UnauthorizedError,
    ValidityWindow,
    Volumes,
)

Invalid = InvalidAccessError
Plain = UnauthorizedError

DR = DischargeRequest(at=T0)

# (caveat, access, exact expected class or None)
CASES: list[Any] = [
    # -- Organization
    pytest.param(Organization(123, R), fly(org_id=123, action=R), None, id="org-ok"),
    pytest.param(Organization(123, R), fly(org_id=123, action=NONE), None, id="org-none"),
    pytest.param(Organization(123, R), fly(org_id=123, action=W), ForAct, id="org-mask"),
    pytest.param(Organization(123, ALL), fly(org_id=234, action=R), ForRes, id="org-other"),
    pytest.param(Organization(123, ALL), fly(org_id=None), Unspec, id="org-unspecified"),
    pytest.param(Organization(123, ALL), fly(org_id=0), ForRes, id="org-zero-request"),
    pytest.param(Organization(0, R), fly(org_id=999, action=R), None, id="org-wildcard"),
    pytest.param(Organization(0, R), fly(org_id=999, action=W), ForAct, id="org-wildcard-mask"),
    pytest.param(Organization(0, ALL), fly(org_id=0, action=ALL), None, id="org-wildcard-zero"),
    pytest.param(Organization(123, NONE), fly(org_id=123, action=NONE), None, id="org-no-mask"),
    pytest.param(Organization(1, ALL), DR, Invalid, id="org-not-fly-access"),
    # -- Apps
    pytest.param(Apps({123: R}), fly(app_id=123, action=R), None, id="apps-ok"),
    pytest.param(Apps({123: R}), fly(app_id=123, action=W), ForAct, id="apps-mask"),
    pytest.param(Apps({123: R}), fly(app_id=234, action=R), ForRes, id="apps-other"),
    pytest.param(Apps({123: R}), fly(action=R), Unspec, id="apps-unspecified"),
    pytest.param(Apps({123: R}), fly(app_id=0, action=NONE), ForRes, id="apps-new-app"),
    pytest.param(Apps({0: C}), fly(app_id=0, action=C), None, id="apps-wildcard-new-app"),
    pytest.param(Apps({0: R}), fly(app_id=77, action=R), None, id="apps-wildcard"),
    pytest.param(Apps({0: R}), fly(app_id=77, action=D), ForAct, id="apps-wildcard-mask"),
    pytest.param(Apps({0: R, 1: R}), fly(app_id=1, action=R), BadCaveatError, id="apps-mixed"),
    pytest.param(Apps({}), fly(app_id=1, action=NONE), ForRes, id="apps-empty"),
    pytest.param(Apps(None), fly(app_id=1, action=NONE), ForRes, id="apps-nil"),
    pytest.param(Apps({1: R}), DR, Invalid, id="apps-not-fly-access"),
    # -- Volumes
    pytest.param(
        Volumes({"vol_1": R | W}), fly(app_id=1, volume="vol_1", action=W), None, id="vol"
    ),
    pytest.param(
        Volumes({"vol_1": R}), fly(app_id=1, volume="vol_1", action=D), ForAct, id="vol-m"
    ),
    pytest.param(Volumes({"vol_1": R}), fly(app_id=1, volume="vol_2"), ForRes, id="vol-other"),
    pytest.param(Volumes({"vol_1": R}), fly(app_id=1), Unspec, id="vol-unspecified"),
    # -- Machines
    pytest.param(Machines({"m1": X}), fly(app_id=1, machine="m1", action=X), None, id="machines"),
    pytest.param(Machines({"m1": X}), fly(app_id=1, machine="m1", action=W), ForAct, id="mach-m"),
    pytest.param(Machines({"m1": X}), fly(app_id=1, machine="m2"), ForRes, id="machines-other"),
    pytest.param(Machines({"m1": X}), fly(app_id=1), Unspec, id="machines-unspecified"),
    # -- FeatureSet (organization features)
    pytest.param(FeatureSet({"wg": ALL}), fly(feature="wg", action=ALL), None, id="feat"),
    pytest.param(FeatureSet({"wg": R}), fly(feature="wg", action=W), ForAct, id="feat-mask"),
    pytest.param(FeatureSet({"wg": ALL}), fly(feature="builder"), ForRes, id="feat-other"),
    pytest.param(FeatureSet({"wg": ALL}), fly(app_id=1), Unspec, id="feat-unspecified"),
    # -- AppFeatureSet
    pytest.param(AppFeatureSet({"images": R}), fly(app_id=1, app_feature="images"), None, id="af"),
    pytest.param(
        AppFeatureSet({"images": R}),
        fly(app_id=1, app_feature="images", action=W),
        ForAct,
        id="af-m",
    ),
    pytest.param(AppFeatureSet({"images": R}), fly(app_id=1, app_feature="x"), ForRes, id="af-o"),
    pytest.param(AppFeatureSet({"images": R}), fly(app_id=1), Unspec, id="af-unspecified"),
    # -- MachineFeatureSet
    pytest.param(
        MachineFeatureSet({"metadata": R}),
        fly(app_id=1, machine="m", machine_feature="metadata", action=R),
        None,
        id="mf",
    ),
    pytest.param(
        MachineFeatureSet({"metadata": R}),
        fly(app_id=1, machine="m", machine_feature="metadata", action=W),
        ForAct,
        id="mf-mask",
    ),
    pytest.param(
        MachineFeatureSet({"metadata": R}),
        fly(app_id=1, machine="m", machine_feature="exec"),
        ForRes,
        id="mf-other",
    ),
    pytest.param(
        MachineFeatureSet({"metadata": R}), fly(app_id=1, machine="m"), Unspec, id="mf-unspecified"
    ),
    # -- Clusters
    pytest.param(
        Clusters({"c1": R}), fly(feature="litefs-cloud", cluster="c1", action=R), None, id="cl"
    ),
    pytest.param(
        Clusters({"c1": R}), fly(feature="litefs-cloud", cluster="c1", action=W), ForAct, id="cl-m"
    ),
    pytest.param(
        Clusters({"c1": R}), fly(feature="litefs-cloud", cluster="c2"), ForRes, id="cl-other"
    ),
    pytest.param(Clusters({"c1": R}), fly(feature="litefs-cloud"), Unspec, id="cl-unspecified"),
    pytest.param(
        Clusters({"": R}), fly(feature="litefs-cloud", cluster="any", action=R), None, id="cl-wild"
    ),
    # -- StorageObjects (prefixes)
    pytest.param(
        StorageObjects({"https://storage.fly/bucket/": R | W}),
        fly(storage_object="https://storage.fly/bucket/file", action=W),
        None,
        id="so",
    ),
    pytest.param(
        StorageObjects({"https://storage.fly/bucket/": R | W}),
        fly(storage_object="https://storage.fly/other/file", action=R),
        ForRes,
        id="so-other",
    ),
    pytest.param(
        StorageObjects({"https://storage.fly/": ALL, "https://storage.fly/bucket/": R}),
        fly(storage_object="https://storage.fly/bucket/file", action=W),
        ForAct,
        id="so-intersect",
    ),
    pytest.param(
        StorageObjects({"https://storage.fly/": ALL, "https://storage.fly/bucket/": R}),
        fly(storage_object="https://storage.fly/elsewhere", action=W),
        None,
        id="so-outer-only",
    ),
    pytest.param(StorageObjects({"https://s/": R}), fly(app_id=1), Unspec, id="so-unspecified"),
    # -- Mutations
    pytest.param(
        Mutations(["addCertificate", "deleteApp"]), fly(mutation="deleteApp"), None, id="mut"
    ),
    pytest.param(Mutations(["addCertificate"]), fly(mutation="deleteApp"), ForRes, id="mut-other"),
    pytest.param(Mutations(["addCertificate"]), fly(), Unspec, id="mut-unspecified"),
    pytest.param(Mutations([]), fly(mutation="addCertificate"), ForRes, id="mut-empty"),
    pytest.param(Mutations(None), fly(mutation="addCertificate"), ForRes, id="mut-nil"),
    pytest.param(Mutations(["x"]), fly(mutation="x", action=ALL), None, id="mut-ignores-action"),
    # -- IsUser never prohibits
    pytest.param(IsUser(5), fly(), None, id="isuser"),
    pytest.param(IsUser(5), fly(org_id=None), None, id="isuser-empty-access"),
    pytest.param(IsUser(5), DR, None, id="isuser-discharge-request"),
    # -- FromMachineSource
    pytest.param(FromMachineSource("m1"), fly(source_machine="m1"), None, id="fms"),
    pytest.param(FromMachineSource("m1"), fly(source_machine="m2"), Plain, id="fms-other"),
    pytest.param(FromMachineSource("m1"), fly(), Invalid, id="fms-missing"),
    pytest.param(FromMachineSource("m1"), DR, Invalid, id="fms-not-fly-access"),
    # -- FlySrc: each non-empty field must match; empty fields are wildcards
    pytest.param(
        FlySrc("o", "a", "i"),
        fly(source_organization="o", source_app="a", source_machine="i"),
        None,
        id="flysrc",
    ),
    pytest.param(
        FlySrc("o", "a", "i"),
        fly(source_organization="x", source_app="a", source_machine="i"),
        Plain,
        id="flysrc-org-mismatch",
    ),
    pytest.param(
        FlySrc("o", "a", "i"),
        fly(source_organization="o", source_app="x", source_machine="i"),
        Plain,
        id="flysrc-app-mismatch",
    ),
    pytest.param(
        FlySrc("o", "a", "i"),
        fly(source_organization="o", source_app="a", source_machine="x"),
        Plain,
        id="flysrc-instance-mismatch",
    ),
    pytest.param(
        FlySrc("o", "a", "i"),
        fly(source_organization="o", source_machine="i"),
        Invalid,
        id="flysrc-app-missing",
    ),
    pytest.param(FlySrc(), fly(), None, id="flysrc-all-wildcards"),
    pytest.param(FlySrc(app="a"), fly(source_app="a"), None, id="flysrc-app-only"),
    pytest.param(FlySrc(instance="i"), fly(source_machine="i"), None, id="flysrc-instance-only"),
    pytest.param(FlySrc(instance="i"), fly(source_app="i"), Invalid, id="flysrc-instance-missing"),
    pytest.param(FlySrc(organization="o"), DR, Invalid, id="flysrc-not-fly-access"),
    # -- Commands (Go's TestCommands)
    pytest.param(
        Commands([Command(["cmd1", "arg1"]), Command(["cmd2", "arg1"], exact=True)]),
        fly(app_id=1, machine="m", command=["cmd1", "arg1"]),
        None,
        id="cmd-prefix-equal",
    ),
    pytest.param(
        Commands([Command(["cmd1", "arg1"]), Command(["cmd2", "arg1"], exact=True)]),
        fly(app_id=1, machine="m", command=["cmd1", "arg1", "arg2"], action=ALL),
        None,
        id="cmd-prefix-longer",
    ),
    pytest.param(
        Commands([Command(["cmd1", "arg1"]), Command(["cmd2", "arg1"], exact=True)]),
        fly(app_id=1, machine="m", command=["cmd1"]),
        ForRes,
        id="cmd-prefix-shorter",
    ),
    pytest.param(
        Commands([Command(["cmd1", "arg1"]), Command(["cmd2", "arg1"], exact=True)]),
        fly(app_id=1, machine="m", command=["cmd2", "arg1"], action=ALL),
        None,
        id="cmd-exact",
    ),
    pytest.param(
        Commands([Command(["cmd1", "arg1"]), Command(["cmd2", "arg1"], exact=True)]),
        fly(app_id=1, machine="m", command=["cmd2", "arg1", "arg2"]),
        ForRes,
        id="cmd-exact-longer",
    ),
    pytest.param(
        Commands([Command(["cmd1", "arg1"]), Command(["cmd2", "arg1"], exact=True)]),
        fly(app_id=1, machine="m", command=["cmd3", "arg1"]),
        ForRes,
        id="cmd-other",
    ),
    pytest.param(
        Commands([Command(["cmd1", "arg1"])]),
        fly(app_id=1, machine="m", command=["arg1", "cmd1"]),
        ForRes,
        id="cmd-order-matters",
    ),
    pytest.param(
        Commands([Command(["cmd1"])]), fly(app_id=1, machine="m"), Unspec, id="cmd-unspecified"
    ),
    pytest.param(
        Commands([]), fly(app_id=1, machine="m", command=["a", "b", "c"]), ForRes, id="cmd-empty"
    ),
    pytest.param(Commands([]), fly(app_id=1, machine="m"), Unspec, id="cmd-empty-unspecified"),
    pytest.param(Commands(None), fly(app_id=1, machine="m", command=["a"]), ForRes, id="cmd-nil"),
    pytest.param(
        Commands([Command(None)]),
        fly(app_id=1, machine="m", command=["a", "b"]),
        None,
        id="cmd-any",
    ),
    pytest.param(
        Commands([Command([])]), fly(app_id=1, machine="m", command=["a"]), None, id="cmd-any-empty"
    ),
    pytest.param(
        Commands([Command(None)]), fly(app_id=1, machine="m"), Unspec, id="cmd-any-unspec"
    ),
    pytest.param(
        Commands([Command([], exact=True)]),
        fly(app_id=1, machine="m", command=["a"]),
        ForRes,
        id="cmd-exact-empty",
    ),
    pytest.param(
        Commands([Command([], exact=True)]),
        fly(app_id=1, machine="m", command=[]),
        None,
        id="cmd-exact-empty-argv",
    ),
    # -- ValidityWindow edges (sub-second precision)
    pytest.param(ValidityWindow(100, 200), fly(at=100), None, id="vw-at-not-before"),
    pytest.param(ValidityWindow(100, 200), fly(at=150.25), None, id="vw-inside"),
    pytest.param(ValidityWindow(100, 200), fly(at=200), None, id="vw-at-not-after"),
    pytest.param(ValidityWindow(100, 200), fly(at=200.5), Plain, id="vw-half-second-late"),
    pytest.param(ValidityWindow(100, 200), fly(at=200.000001), Plain, id="vw-microsecond-late"),
    pytest.param(ValidityWindow(100, 200), fly(at=201), Plain, id="vw-late"),
    pytest.param(ValidityWindow(100, 200), fly(at=99.5), Plain, id="vw-half-second-early"),
    pytest.param(ValidityWindow(100, 200), fly(at=99.999999), Plain, id="vw-microsecond-early"),
    pytest.param(ValidityWindow(100, 200), fly(at=0), Plain, id="vw-early"),
    pytest.param(ValidityWindow(-5, 5), fly(at=-5), None, id="vw-negative"),
    pytest.param(ValidityWindow(100, 200), DischargeRequest(at=150), None, id="vw-any-access"),
    pytest.param(
        ValidityWindow(100, 200), DischargeRequest(at=250), Plain, id="vw-any-access-late"
    ),
    # -- Authentication caveats reject ordinary accesses
    pytest.param(ConfineUser(1), fly(), Invalid, id="confine-user"),
    pytest.param(ConfineOrganization(1), fly(), Invalid, id="confine-org"),
    pytest.param(ConfineGoogleHD("example.com"), fly(), Invalid, id="confine-google-hd"),
    pytest.param(ConfineGitHubOrg(1), fly(), Invalid, id="confine-github-org"),
    pytest.param(MaxValidity(60), fly(), Invalid, id="max-validity"),
]


@pytest.mark.parametrize(("caveat", "access", "expected"), CASES)
def test_caveat_outcome(
    caveat: Caveat, access: Any, expected: type[UnauthorizedError] | None
) -> None:
    err = assert_prohibits(caveat, access, expected)
    if err is not None:
        assert err.caveat is caveat
    # The same answer through a caveat set, when the access is well formed.
    try:
        access.validate()
    except UnauthorizedError:
        return
    assert validate_outcome([caveat], access) == ([] if expected is None else [expected])


# -- Commands inside IfPresent (Go's TestCommands, last block) -------------

CMD_IF = [IfPresent([Commands([Command(None)])], D)]


class _ResourcesWithoutAction:
    """An access of a kind of its own: resources, and no action attribute."""

    org_id = 1
    app_id = 2
    machine = None
    feature = None

    def now(self) -> float:
        return T0

    def validate(self) -> None:
        pass


class _ResourcesWithTextAction(_ResourcesWithoutAction):
    action = "r"


@pytest.mark.parametrize("access", [_ResourcesWithoutAction(), _ResourcesWithTextAction()])
@pytest.mark.parametrize(
    "caveat",
    [
        Organization(1, ALL),
        Apps({2: ALL}),
        IfPresent((FeatureSet({"wg": ALL}),), ALL),
        IfPresent((Machines({"m": ALL}),), ALL),
    ],
    ids=["org", "apps", "if-present-feature", "if-present-machine"],
)
def test_an_access_without_an_integer_action_is_invalid(caveat: Caveat, access: Any) -> None:
    # Caveats read the action as an attribute on their fast path; an access
    # that lacks one, or holds something else, still gets the plain answer.
    err = assert_prohibits(caveat, access, Invalid)
    assert str(err).endswith(f"{caveat.name} needs an action")


@pytest.mark.parametrize(
    ("access", "causes"),
    [
        (fly(app_id=1, machine="m", command=["uname", "arg"], action=NONE), []),
        (fly(app_id=1, machine="m", command=["uname"], action=ALL), []),
        (fly(app_id=1, machine="m", action=D), []),
        (fly(app_id=1, machine="m", action=W), [ForAct]),
    ],
)
def test_commands_in_if_present(access: Any, causes: list[type[UnauthorizedError]]) -> None:
    assert validate_outcome(CMD_IF, access) == causes


def test_mutations_and_from_machine_source_in_if_present() -> None:
    # A missing mutation is "unspecified", so IfPresent falls through to Else...
    cs = [IfPresent([Mutations(["addCertificate"])], R)]
    assert validate_outcome(cs, fly(action=R)) == []
    assert validate_outcome(cs, fly(action=W)) == [ForAct]
    assert validate_outcome(cs, fly(mutation="other", action=W)) == [ForRes]
    # ...but a missing source machine is an invalid access, which is relevant.
    cs = [IfPresent([FromMachineSource("m1")], ALL)]
    assert validate_outcome(cs, fly(action=R)) == [Invalid]
    assert validate_outcome(cs, fly(source_machine="m1", action=W)) == []


# -- AllowedRoles and IsMember (Go's TestAllowedRoles) ---------------------

MEMBER_ONLY = [IsMember()]
ADMIN = [AllowedRoles(Role.ADMIN)]


@pytest.mark.parametrize(
    ("feature", "action", "member_ok"),
    [
        ("wg", ALL, True),
        ("membership", R, True),
        (None, ALL, True),  # no feature named: a member may (spec 8, pitfall 10)
        ("membership", W, False),
        ("unknown", R, False),
        ("", NONE, False),
        ("deletion", NONE, True),
        ("deletion", R, False),
        ("document_signing", NONE, True),
        ("document_signing", W, False),
        ("billing", R, True),
        ("billing", R | W, False),
        ("authentication", R, True),
        ("authentication", C, False),
        ("litefs-cloud", ALL, True),
        ("builder", ALL, True),
        ("domain", D, True),
        ("site", W, True),
        ("addon", C, True),
        ("checks", X, True),
    ],
)
def test_member_feature_table(feature: str | None, action: int, member_ok: bool) -> None:
    access = fly(feature=feature, action=action)
    assert access.permitted_roles() == ([Role.MEMBER] if member_ok else [Role.ADMIN])
    assert validate_outcome(MEMBER_ONLY, access) == ([] if member_ok else [ForRole])
    assert validate_outcome([AllowedRoles(Role.MEMBER)], access) == ([] if member_ok else [ForRole])
    assert validate_outcome(ADMIN, access) == []


@pytest.mark.parametrize(
    ("roles", "access", "expected"),
    [
        (Role.MEMBER | Role.BILLING_MANAGER, fly(feature="wg"), None),
        (Role.BILLING_MANAGER, fly(feature="wg"), ForRole),
        (Role.BILLING_MANAGER, fly(), ForRole),
        (0, fly(), ForRole),
        (Role.ADMIN, fly(feature="unknown", action=ALL), None),
        (Role.MEMBER, DR, Invalid),
    ],
)
def test_allowed_roles(roles: int, access: Any, expected: type[UnauthorizedError] | None) -> None:
    assert_prohibits(AllowedRoles(roles), access, expected)


def test_is_member_names_itself_as_the_denying_caveat() -> None:
    cav = IsMember()
    err = assert_prohibits(cav, fly(feature="unknown", action=R), ForRole)
    assert err is not None and err.caveat is cav
    assert_prohibits(cav, DR, Invalid)


@pytest.mark.parametrize(
    ("role", "label"),
    [
        (Role.ADMIN, "admin"),
        (Role.MEMBER, "member"),
        (Role.BILLING_MANAGER, "billing_manager"),
        (Role.MEMBER | Role.BILLING_MANAGER, "billing_manager+member"),
        (Role(0), "none"),
    ],
)
def test_role_labels(role: Role, label: str) -> None:
    assert role.label == label
    assert Role.from_label(label) == role


@pytest.mark.parametrize(
    ("mask", "label"), [(4, "invalid(4)"), (5, "invalid(5)"), (7, "invalid(7)")]
)
def test_role_labels_of_unnamed_bits(mask: int, label: str) -> None:
    # Like Go's Role.String: a mask the named roles do not make up exactly.
    assert Role(mask).label == label


def test_role_subsets() -> None:
    assert Role.ADMIN & Role.ADMIN == Role.ADMIN
    assert Role.ADMIN & Role.MEMBER == Role.MEMBER
    assert Role.MEMBER & Role.ADMIN != Role.ADMIN
    assert Role.MEMBER & Role.BILLING_MANAGER != Role.BILLING_MANAGER
    with pytest.raises(ValueError, match="owner"):
        Role.from_label("owner")


# -- AND across several Fly caveats ------------------------------------------


def test_typical_app_token() -> None:
    cs = [
        Organization(7, R | W),
        Apps({42: ALL}),
        IfPresent([Machines({"m1": ALL})], R | W),
        ValidityWindow(int(T0) - 10, int(T0) + 10),
    ]
    assert validate_outcome(cs, fly(org_id=7, app_id=42, action=W)) == []
    assert validate_outcome(cs, fly(org_id=7, app_id=42, machine="m1", action=W)) == []
    assert validate_outcome(cs, fly(org_id=7, app_id=42, machine="m2", action=R)) == [ForRes]
    assert validate_outcome(cs, fly(org_id=7, app_id=42, action=D)) == [ForAct, ForAct]
    assert validate_outcome(cs, fly(org_id=7, app_id=43, action=R, at=T0 + 11)) == [
        ForRes,
        Plain,
    ]
    assert_denied(cs, fly(org_id=8), causes=[ForRes, Unspec])
