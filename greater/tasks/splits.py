"""The project's canonical splits (deterministic, file order, no shuffling).

=========================  ================  =====================  ====================
dataset                    train             dev                    test
=========================  ================  =====================  ====================
BBH task, N >= 250         examples[0:50]    examples[50:150]       examples[150:250]
BBH task, N < 250          examples[0:50]    next floor((N-50)/2)   the rest
GSM8K                      train[0:100]      train[100:200]         test (all)
FOLIO                      train[0:100]      train[100:200]         validation (all)
=========================  ================  =====================  ====================
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TypeVar

from greater.tasks.base import TaskError

logger = logging.getLogger(__name__)

__all__ = ["BBH_TRAIN", "HEAD_TRAIN", "HEAD_DEV", "bbh_split", "head_split"]

T = TypeVar("T")

BBH_TRAIN = 50
BBH_FULL = 250
HEAD_TRAIN = 100
HEAD_DEV = 100


def bbh_split(examples: Sequence[T], source: str) -> tuple[list[T], list[T], list[T]]:
    """Train/dev/test of a BBH task (see the module table).

    Raises:
        TaskError: too few examples to give each split at least one (``source`` names the file).
    """
    n = len(examples)
    if n < BBH_TRAIN + 2:
        raise TaskError(
            f"{source}: {n} examples; a BBH task needs at least {BBH_TRAIN + 2} for its splits"
        )
    if n >= BBH_FULL:
        return list(examples[:50]), list(examples[50:150]), list(examples[150:250])
    n_dev = (n - BBH_TRAIN) // 2
    return (list(examples[:BBH_TRAIN]), list(examples[BBH_TRAIN:BBH_TRAIN + n_dev]),
            list(examples[BBH_TRAIN + n_dev:]))


def head_split(
    train_file: Sequence[T], test_file: Sequence[T], source: str
) -> tuple[list[T], list[T], list[T]]:
    """GSM8K / FOLIO: train = first 100 of the training file, dev = the next 100, test = all of
    the test (validation) file.

    Raises:
        TaskError: the training file has fewer than 200 rows (``source`` names it).
    """
    need = HEAD_TRAIN + HEAD_DEV
    if len(train_file) < need:
        raise TaskError(
            f"{source}: {len(train_file)} rows; the canonical train/dev splits need at least {need}"
        )
    return list(train_file[:HEAD_TRAIN]), list(train_file[HEAD_TRAIN:need]), list(test_file)


def head_split_task(name: str, answer_type, extractor: str, make_example,
                    *, train, test):
    """A GSM8K/FOLIO-style task: examples from a training file and a test file, then
    :func:`head_split`. ``train``/``test`` are callables returning (records, source), read in
    that order; ``make_example`` turns a record into an :class:`Example`."""
    from greater.tasks.extractors import parser_for
    from greater.tasks.task import Task

    train_records, train_source = train()
    train_examples = [make_example(r) for r in train_records]
    test_records, test_source = test()
    tr, dev, te = head_split(train_examples, [make_example(r) for r in test_records],
                             train_source)
    logger.info("%s: %d/%d/%d examples (train/dev/test) from %s and %s",
                name, len(tr), len(dev), len(te), train_source, test_source)
    return Task(name=name, answer_type=answer_type, train=tr, dev=dev, test=te,
                extractor=extractor, parser=parser_for(answer_type))
