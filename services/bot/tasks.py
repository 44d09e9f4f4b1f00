"""The task chosen per chat, kept in the FSM storage (Redis when REDIS_URL is set)."""
from __future__ import annotations

from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup

# The tasks the bot offers, in keyboard order; the inference service owns their definition.
TASKS = ("tumor", "dementia")


class TaskChoice(StatesGroup):
    choosing = State()  # the keyboard is open: a typed task name counts as a choice too


async def current_task(state: FSMContext, default: str) -> str:
    task = (await state.get_data()).get("task")
    return task if task in TASKS else default


async def remember_task(state: FSMContext, task: str) -> None:
    await state.update_data(task=task)
    await state.set_state(None)  # leave `choosing`, keep the data
