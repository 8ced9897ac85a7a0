"""The task registry: every task the library, server, client, training and benchmarks know of.

``TASKS`` lists the registered :class:`TaskSpec` s in registration order; ``get_task(name)`` finds one
by its config name, ``task_for_endpoint`` by its route's name. Adding a task is one module that
builds a spec and one ``register`` line below. Nothing here imports torch at import time.
"""

from __future__ import annotations

from elp.errors import ConfigError
from elp.tasks.base import (
    EnrolledReference,
    EnrolledVoice,
    ExtraClip,
    OpenAIAudio,
    PostProcessor,
    TaskOption,
    TaskRequest,
    TaskSpec,
)

TASKS: list[TaskSpec] = []


def register(spec: TaskSpec) -> TaskSpec:
    """Add ``spec`` to the registry (names and routes must be new); returns it."""
    for known in TASKS:
        if known.name == spec.name or known.route == spec.route:
            raise ConfigError(f"task {spec.name!r} ({spec.route}) clashes with {known.name!r} ({known.route})")
        if spec.openai_audio is not None and known.openai_audio is not None \
                and known.openai_audio.route == spec.openai_audio.route:
            raise ConfigError(f"tasks {spec.name!r} and {known.name!r} both answer /v1/audio/{spec.openai_audio.route}")
    TASKS.append(spec)
    return spec


def get_task(name: str) -> TaskSpec:
    """The task whose adapter configs say ``"task": name``; ``ConfigError`` if none."""
    for spec in TASKS:
        if spec.name == name:
            return spec
    raise ConfigError(f"task must be one of {task_names()}, got {name!r}")


def task_names() -> tuple[str, ...]:
    return tuple(spec.name for spec in TASKS)


def set_tasks() -> tuple[TaskSpec, ...]:
    """The tasks with adapter sets of their own that are trained, evaluated, made up for tests and benchmarks; not
    those that answer with another task's sets (``TaskSpec.answers_with``: diarization) nor those whose sets are only
    converted from a checkpoint (``TaskSpec.converted_only``: translation)."""
    return tuple(spec for spec in TASKS if not spec.answers_with and not spec.converted_only)


def set_task_names() -> tuple[str, ...]:
    """The ``task`` values a training manifest may hold (the tasks of :func:`set_tasks`)."""
    return tuple(spec.name for spec in set_tasks())


def task_for_endpoint(endpoint: str) -> TaskSpec:
    """The task served at ``/<endpoint>`` (``verify`` -> verification)."""
    for spec in TASKS:
        if spec.endpoint == endpoint:
            return spec
    raise ConfigError(f"no task is served at /{endpoint}")


def enrolment_task() -> TaskSpec | None:
    """The task whose requests may name an enrolled reference (speaker verification): enrolments use it."""
    return next((spec for spec in TASKS if spec.enrolled_reference is not None), None)


# One line per task, in the order routes, settings and listings show them.
from elp.tasks.asr import ASR  # noqa: E402
from elp.tasks.diarization import DIARIZATION  # noqa: E402
from elp.tasks.emotion import EMOTION  # noqa: E402
from elp.tasks.identification import IDENTIFICATION  # noqa: E402
from elp.tasks.intent import INTENT  # noqa: E402
from elp.tasks.language import LANGUAGE  # noqa: E402
from elp.tasks.translation import TRANSLATION  # noqa: E402
from elp.tasks.verification import VERIFICATION  # noqa: E402

register(ASR)
register(VERIFICATION)
register(EMOTION)
register(INTENT)
register(LANGUAGE)
register(DIARIZATION)
register(IDENTIFICATION)
register(TRANSLATION)

__all__ = [
    "TASKS",
    "EnrolledReference",
    "EnrolledVoice",
    "ExtraClip",
    "OpenAIAudio",
    "PostProcessor",
    "TaskOption",
    "TaskRequest",
    "TaskSpec",
    "enrolment_task",
    "get_task",
    "register",
    "set_task_names",
    "set_tasks",
    "task_for_endpoint",
    "task_names",
]
