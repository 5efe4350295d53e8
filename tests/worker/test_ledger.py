"""The ledger: which attempts an answer may start (pure, no processes)."""

from __future__ import annotations

from kickoff.worker.ledger import Ledger


def test_an_attempt_let_go_of_while_the_question_was_out_is_old_news() -> None:
    ledger = Ledger()
    before = ledger.ask()
    ledger.ended((1, 1))  # reported and acknowledged while the question was out
    after = ledger.ask()
    assert ledger.ended_since((1, 1), before)
    assert not ledger.ended_since((1, 1), after)  # asked later: the answer knows it ended
    assert not ledger.ended_since((2, 1), before)  # never heard of: a lost claim answer


def test_nothing_is_kept_while_no_question_is_out() -> None:
    ledger = Ledger()
    ledger.ended((1, 1))
    mark = ledger.ask()
    assert not ledger.ended_since((1, 1), mark)
    ledger.ended((2, 1))
    ledger.answered(mark)
    assert ledger._ended == {}


def test_what_only_answered_questions_needed_is_dropped() -> None:
    ledger = Ledger()
    long_poll = ledger.ask()
    for task_id in range(1, 101):  # a busy worker: many attempts end during a long-poll
        ledger.ended((task_id, 1))
    report = ledger.ask()
    ledger.ended((101, 1))
    ledger.answered(long_poll)
    assert ledger.ended_since((101, 1), report)
    assert list(ledger._ended) == [(101, 1)]  # the rest ended before `report` was asked
