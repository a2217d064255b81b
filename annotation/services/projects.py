"""Projects, members, and versioned guidelines and constitutions."""

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Max

from common.errors import Conflict, Invalid

from ..models import ConstitutionVersion, GuidelineVersion, Membership, Principle, Project, Role
from .suggestions import suggestion_rate_check

PROJECT_EDITABLE = ("name", "description", "required_annotations", "lease_seconds", "settings")


@transaction.atomic
def project_create(
    *,
    name: str,
    slug: str,
    created_by: AbstractBaseUser | None = None,
    description: str = "",
    required_annotations: int = 1,
    lease_seconds: int = 1800,
    settings: dict | None = None,
) -> Project:
    suggestion_rate_check(settings or {})
    if Project.objects.filter(slug=slug).exists():
        raise Conflict(f"a project with slug {slug!r} already exists", code="slug_taken", fields={"slug": ["already taken"]})
    project = Project.objects.create(
        name=name,
        slug=slug,
        description=description,
        required_annotations=required_annotations,
        lease_seconds=lease_seconds,
        settings=settings or {},
    )
    if created_by is not None:
        Membership.objects.create(user=created_by, project=project, role=Role.ADMIN)
    return project


@transaction.atomic
def project_update(*, project: Project, **changes) -> Project:
    unknown = set(changes) - set(PROJECT_EDITABLE)
    if unknown:
        raise Invalid(f"cannot change {', '.join(sorted(unknown))}")
    if "settings" in changes:
        suggestion_rate_check(changes["settings"])
    for field, value in changes.items():
        setattr(project, field, value)
    project.save(update_fields=list(changes))
    return project


def _keep_an_admin(*, project: Project, leaving: Membership) -> None:
    """Refuse (409 last_admin) a change that takes `leaving`, an admin, out of the admins when no other is left.

    Takes the project's row lock first: two such changes at once (two admins demoting or removing each other)
    then run one after the other, and the second sees the first; a lock on the leaving row alone would let
    each see the other still an admin.
    """
    Project.objects.select_for_update().filter(pk=project.pk).first()
    if not Membership.objects.filter(project=project, role=Role.ADMIN).exclude(pk=leaving.pk).exists():
        raise Conflict("a project keeps at least one admin", code="last_admin")


@transaction.atomic
def membership_set(*, project: Project, user: AbstractBaseUser, role: str) -> Membership:
    if role not in Role.values:
        raise Invalid(f"unknown role {role!r}", fields={"role": [f"must be one of {', '.join(Role.values)}"]})
    current = Membership.objects.filter(project=project, user=user).first()
    if current is not None and current.role == Role.ADMIN and role != Role.ADMIN:
        _keep_an_admin(project=project, leaving=current)
    membership, _ = Membership.objects.update_or_create(project=project, user=user, defaults={"role": role})
    return membership


@transaction.atomic
def membership_remove(*, project: Project, user: AbstractBaseUser) -> None:
    membership = Membership.objects.filter(project=project, user=user).first()
    if membership is None:
        return
    if membership.role == Role.ADMIN:
        _keep_an_admin(project=project, leaving=membership)
    Membership.objects.filter(pk=membership.pk).delete()


def _next_number(queryset) -> int:
    return (queryset.aggregate(n=Max("number"))["n"] or 0) + 1


@transaction.atomic
def guideline_version_create(
    *, project: Project, body: str, created_by: AbstractBaseUser | None = None, note: str = ""
) -> GuidelineVersion:
    """Save the guidelines as a new immutable version and make it the one in force."""
    project = Project.objects.select_for_update().get(pk=project.pk)
    if not body.strip():
        raise Invalid("guidelines cannot be empty", fields={"body": ["may not be blank"]})
    version = GuidelineVersion.objects.create(
        project=project,
        number=_next_number(project.guideline_versions),
        body=body,
        note=note,
        created_by=created_by,
    )
    project.current_guideline = version
    project.save(update_fields=["current_guideline"])
    return version


PRINCIPLE_FIELDS = ("key", "name", "critique_request", "revision_request", "comparison_question")


@transaction.atomic
def constitution_version_create(
    *, project: Project, principles: list[dict], created_by: AbstractBaseUser | None = None, note: str = ""
) -> ConstitutionVersion:
    """Save an ordered list of principles as a new immutable constitution version, now in force."""
    project = Project.objects.select_for_update().get(pk=project.pk)
    if not principles:
        raise Invalid("a constitution needs at least one principle", fields={"principles": ["may not be empty"]})
    keys = [p.get("key") for p in principles]
    if len(set(keys)) != len(keys):
        raise Invalid("principle keys must be unique", fields={"principles": ["duplicate key"]})
    for i, p in enumerate(principles):
        missing = [f for f in PRINCIPLE_FIELDS if not str(p.get(f, "")).strip()]
        if missing:
            raise Invalid(
                f"principle {i + 1} lacks {', '.join(missing)}",
                fields={"principles": [f"principle {i + 1}: {', '.join(missing)} required"]},
            )
    version = ConstitutionVersion.objects.create(
        project=project, number=_next_number(project.constitution_versions), note=note, created_by=created_by
    )
    Principle.objects.bulk_create(
        Principle(constitution=version, position=i, **{f: p[f] for f in PRINCIPLE_FIELDS})
        for i, p in enumerate(principles)
    )
    project.current_constitution = version
    project.save(update_fields=["current_constitution"])
    return version
