import itertools

import pytest

from wsfinal import TRANSITIONS, ConnectionState, InvalidTransitionError, WsFinalError
from wsfinal.states import check_transition, is_legal

S = ConnectionState


def test_table_covers_every_state_and_closed_is_terminal():
    assert set(TRANSITIONS) == set(S)
    assert TRANSITIONS[S.CLOSED] == frozenset()
    for old, targets in TRANSITIONS.items():
        assert old not in targets


def test_usual_lifecycle_is_legal():
    path = [S.DISCONNECTED, S.CONNECTING, S.CONNECTED, S.RECONNECTING, S.CONNECTING, S.CONNECTED, S.DISCONNECTED]
    for old, new in itertools.pairwise(path):
        check_transition(old, new)


@pytest.mark.parametrize("old", list(S))
@pytest.mark.parametrize("new", list(S))
def test_illegal_transition_names_both_states(old, new):
    if is_legal(old, new):
        check_transition(old, new)
        return
    with pytest.raises(InvalidTransitionError) as info:
        check_transition(old, new)
    assert isinstance(info.value, WsFinalError)
    assert f"{old.value} -> {new.value}" in str(info.value)


def test_known_illegal_examples():
    assert not is_legal(S.DISCONNECTED, S.CONNECTED)  # must pass through connecting
    assert not is_legal(S.CLOSED, S.CONNECTING)
    assert not is_legal(S.RECONNECTING, S.CONNECTED)
