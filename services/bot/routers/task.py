"""/task: an inline keyboard to pick the task, remembered per chat."""
from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.keyboard import InlineKeyboardBuilder

from services.bot.settings import BotSettings
from services.bot.tasks import TASKS, TaskChoice, current_task, remember_task
from services.bot.texts import TASK_NAMES, t, task_name

router = Router(name="task")


class TaskCallback(CallbackData, prefix="task"):
    name: str


def task_keyboard(lang: str, current: str) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for task in TASKS:
        mark = "✓ " if task == current else ""
        builder.button(text=mark + task_name(task, lang), callback_data=TaskCallback(name=task))
    builder.adjust(len(TASKS))
    return builder.as_markup()


@router.message(Command("task"))
async def ask_task(message: Message, lang: str, state: FSMContext, settings: BotSettings) -> None:
    task = await current_task(state, settings.default_task)
    await state.set_state(TaskChoice.choosing)
    await message.answer(t("task_prompt", lang, task=task_name(task, lang)),
                         reply_markup=task_keyboard(lang, task))


@router.callback_query(TaskCallback.filter())
async def choose_task(query: CallbackQuery, callback_data: TaskCallback, lang: str,
                      state: FSMContext) -> None:
    if callback_data.name not in TASKS:
        await query.answer(t("task_unknown", lang), show_alert=True)
        return
    await remember_task(state, callback_data.name)
    name = task_name(callback_data.name, lang)
    await query.answer(t("task_set_short", lang, task=name))
    if query.message is not None and hasattr(query.message, "edit_text"):
        await query.message.edit_text(t("task_set", lang, task=name))


def _typed_task(text: str) -> str | None:
    """A task typed instead of pressed: its key or its name in either language."""
    wanted = text.strip().casefold()
    for task in TASKS:
        if wanted == task or wanted in (name.casefold() for name in TASK_NAMES.get(task, {}).values()):
            return task
    return None


@router.message(TaskChoice.choosing, F.text.func(_typed_task).as_("typed"))
async def type_task(message: Message, typed: str, lang: str, state: FSMContext) -> None:
    await remember_task(state, typed)
    await message.answer(t("task_set", lang, task=task_name(typed, lang)))
