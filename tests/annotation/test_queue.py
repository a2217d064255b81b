import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from annotation import services
from annotation.models import Assignment, AssignmentState, Task
from common.errors import Conflict


def _submit(assignment, user, payload=None, client_id=None):
    return services.annotation_submit(
        assignment=assignment,
        annotator=user,
        payload=payload or {"choice": "A", "strength": 2},
        client_id=client_id or uuid.uuid4(),
    )


@pytest.mark.django_db
def test_next_task_gives_highest_priority_first(project, member, make_task):
    low = make_task(priority=0)
    high = make_task(priority=5)
    user = member()
    assert services.task_next_for(annotator=user, project=project).task_id == high.pk
    _submit(services.task_next_for(annotator=user, project=project), user)
    assert services.task_next_for(annotator=user, project=project).task_id == low.pk


@pytest.mark.django_db
def test_next_task_returns_the_lease_already_held(project, member, make_task):
    make_task()
    make_task()
    user = member()
    first = services.task_next_for(annotator=user, project=project)
    again = services.task_next_for(annotator=user, project=project)
    assert first.pk == again.pk


@pytest.mark.django_db
def test_next_task_never_gives_same_task_twice_to_one_annotator(project, member, make_task):
    task = make_task()
    user = member()
    _submit(services.task_next_for(annotator=user, project=project), user)
    assert services.task_next_for(annotator=user, project=project) is None
    task.refresh_from_db()
    assert task.open_slots == 1 and task.submitted_count == 1


@pytest.mark.django_db
def test_task_goes_to_at_most_required_annotators(project, member, make_task):
    task = make_task(required=2)
    users = [member() for _ in range(3)]
    got = [services.task_next_for(annotator=u, project=project) for u in users]
    assert [a is not None for a in got] == [True, True, False]
    task.refresh_from_db()
    assert task.open_slots == 0


@pytest.mark.django_db
def test_expired_lease_frees_the_slot(project, member, make_task):
    make_task(required=1)
    first, second = member(), member()
    lease = services.task_next_for(annotator=first, project=project)
    assert services.task_next_for(annotator=second, project=project) is None
    later = timezone.now() + timedelta(seconds=project.lease_seconds + 1)
    taken = services.task_next_for(annotator=second, project=project, now=later)
    assert taken is not None and taken.task_id == lease.task_id
    lease.refresh_from_db()
    assert lease.state == AssignmentState.EXPIRED


@pytest.mark.django_db
def test_late_submit_is_accepted_while_the_slot_is_free(project, member, make_task):
    task = make_task(required=1)
    user = member()
    lease = services.task_next_for(annotator=user, project=project)
    services.leases_expire(project=project, now=timezone.now() + timedelta(days=1))
    annotation = _submit(lease, user)
    task.refresh_from_db()
    assert annotation.task_id == task.pk and task.open_slots == 0 and task.status == "complete"


@pytest.mark.django_db
def test_late_submit_is_refused_with_409_when_the_slot_was_taken(project, member, make_task):
    make_task(required=1)
    slow, fast = member(), member()
    lease = services.task_next_for(annotator=slow, project=project)
    later = timezone.now() + timedelta(days=1)
    taken = services.task_next_for(annotator=fast, project=project, now=later)
    _submit(taken, fast)
    with pytest.raises(Conflict) as err:
        _submit(lease, slow)
    assert err.value.code == "lease_expired"


@pytest.mark.django_db
def test_skip_frees_the_slot_and_never_returns_the_task(project, member, make_task):
    task = make_task(required=1)
    user, other = member(), member()
    lease = services.task_next_for(annotator=user, project=project)
    services.assignment_skip(assignment=lease, annotator=user, reason="content I do not want to see")
    assert services.task_next_for(annotator=user, project=project) is None
    assert services.task_next_for(annotator=other, project=project).task_id == task.pk
    assert Assignment.objects.get(pk=lease.pk).skip_reason == "content I do not want to see"


@pytest.mark.django_db
def test_pairwise_order_is_randomized_and_choice_stored_canonically(project, member, make_task):
    orders = set()
    for _ in range(12):
        task = make_task(required=1)
        user = member()
        lease = services.task_next_for(annotator=user, project=project)
        assert lease.task_id == task.pk
        orders.add(tuple(lease.shown_order))
        annotation = _submit(lease, user, {"choice": "A", "strength": 3})
        # "A" is what was shown first; canonical A is the task's first response.
        assert annotation.payload["choice"] == "AB"[lease.shown_order[0]]
        assert annotation.shown_order == lease.shown_order
    assert orders == {(0, 1), (1, 0)}


@pytest.mark.django_db
def test_task_completes_when_required_annotations_are_in(project, member, make_task):
    task = make_task(required=2)
    for _ in range(2):
        user = member()
        _submit(services.task_next_for(annotator=user, project=project), user)
    task = Task.objects.get(pk=task.pk)
    assert task.status == "complete" and task.submitted_count == 2 and task.open_slots == 0


@pytest.mark.django_db
def test_gold_tasks_are_mixed_in_at_the_configured_rate(project, member, make_task):
    services.project_update(project=project, settings={"gold_rate": 0.5}, required_annotations=1)
    regular = [make_task(required=1) for _ in range(40)]
    golds = [services.task_set_gold(task=make_task(), gold={"choice": "A", "strength": 1}) for _ in range(40)]
    user = member()
    seen = []
    for _ in range(40):
        lease = services.task_next_for(annotator=user, project=project)
        seen.append(lease.task_id)
        _submit(lease, user)
    gold_ids = {t.pk for t in golds}
    n_gold = sum(1 for t in seen if t in gold_ids)
    assert 8 <= n_gold <= 32  # about half, at rate 0.5 over 40 draws
    assert len(set(seen)) == 40 and set(seen) <= gold_ids | {t.pk for t in regular}


@pytest.mark.django_db
def test_gold_tasks_reach_every_annotator_beyond_the_overlap(project, member, make_task):
    services.project_update(project=project, settings={"gold_rate": 1.0})
    gold = services.task_set_gold(task=make_task(), gold={"choice": "B", "strength": 2})
    regular = make_task(required=1)
    annotators = [member() for _ in range(4)]  # more than the project's overlap of 2
    for user in annotators:
        lease = services.task_next_for(annotator=user, project=project)
        assert lease.task_id == gold.pk
        _submit(lease, user)
    # After gold, the regular work; it closes at its own overlap of 1.
    assert services.task_next_for(annotator=annotators[0], project=project).task_id == regular.pk
    assert services.task_next_for(annotator=annotators[1], project=project) is None


@pytest.mark.django_db
def test_gold_answer_is_validated_like_an_annotation(make_task):
    from common.errors import Invalid

    with pytest.raises(Invalid):
        services.task_set_gold(task=make_task("rating"), gold={"thumb": "sideways"})


@pytest.mark.django_db
def test_without_a_gold_rate_gold_tasks_are_ordinary_work(project, member, make_task):
    gold = services.task_set_gold(task=make_task(priority=1), gold={"choice": "A", "strength": 1})
    user = member()
    assert services.task_next_for(annotator=user, project=project).task_id == gold.pk
