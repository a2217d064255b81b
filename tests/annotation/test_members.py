"""A project keeps at least one admin: demoting or removing the last one is a 409 `last_admin` in the API and an
error on the members page, also when two admins demote or remove each other at the same moment."""

import threading

import pytest
from django.db import connection, transaction
from django.test import Client
from rest_framework.test import APIClient

from annotation import services
from annotation.models import Membership, Role
from common.errors import Conflict


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_the_api_refuses_to_demote_or_remove_the_last_admin(db, project, member):
    owner = project.memberships.get(role=Role.ADMIN).user
    engineer = member(Role.ENGINEER)
    api = _api(owner)
    base = f"/api/v1/projects/{project.slug}/members/"
    for role in (Role.ENGINEER, Role.REVIEWER, Role.ANNOTATOR):
        refused = api.patch(f"{base}{owner.pk}/", {"role": role}, format="json")
        assert refused.status_code == 409 and refused.data["code"] == "last_admin", refused.data
    removed = api.delete(f"{base}{owner.pk}/")
    assert removed.status_code == 409 and removed.data["code"] == "last_admin"
    assert project.memberships.get(user=owner).role == Role.ADMIN

    # With a second admin, either may step down; then the other is the last one again.
    assert api.patch(f"{base}{engineer.pk}/", {"role": Role.ADMIN}, format="json").status_code == 200
    assert api.patch(f"{base}{owner.pk}/", {"role": Role.ENGINEER}, format="json").status_code == 200
    refused = _api(engineer).patch(f"{base}{engineer.pk}/", {"role": Role.ANNOTATOR}, format="json")
    assert refused.status_code == 409 and refused.data["code"] == "last_admin"
    assert list(project.memberships.filter(role=Role.ADMIN).values_list("user", flat=True)) == [engineer.pk]


def test_the_members_page_refuses_to_demote_the_last_admin(db, project):
    owner = project.memberships.get(role=Role.ADMIN).user
    page = Client()
    page.force_login(owner)
    answer = page.post(f"/p/{project.slug}/members/set/", {"username": owner.username, "role": Role.ANNOTATOR},
                       follow=True)  # fmt: skip
    assert "at least one admin" in answer.content.decode()
    assert project.memberships.get(user=owner).role == Role.ADMIN


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("first,second", [("demote", "demote"), ("remove", "remove"), ("demote", "remove")])
def test_two_admins_stepping_down_at_once_leave_one_admin(project, member, first, second):
    """The first change holds its transaction open while the second is tried; on PostgreSQL a lock on the
    leaving member's row alone lets both through (each still sees the other as an admin)."""
    owner = project.memberships.get(role=Role.ADMIN).user
    other = member(Role.ADMIN)

    def change(what, user):
        if what == "demote":
            services.membership_set(project=project, user=user, role=Role.ENGINEER)
        else:
            services.membership_remove(project=project, user=user)

    changed, release, outcome = threading.Event(), threading.Event(), {}

    def hold_first():
        try:
            with transaction.atomic():
                change(first, owner)
                changed.set()
                release.wait(10)
        finally:
            connection.close()

    def try_second():
        try:
            change(second, other)
            outcome["second"] = "done"
        except Conflict as exc:
            outcome["second"] = exc.code
        finally:
            connection.close()

    holder = threading.Thread(target=hold_first)
    holder.start()
    assert changed.wait(10)
    challenger = threading.Thread(target=try_second)
    challenger.start()
    challenger.join(1.0)  # it waits for the first change (or, unguarded, goes through)
    release.set()
    holder.join(10)
    challenger.join(30)
    assert outcome == {"second": "last_admin"}
    assert list(Membership.objects.filter(project=project, role=Role.ADMIN).values_list("user", flat=True)) == [other.pk]
