"""Everything the bot says, in English and Russian; the language follows the user's Telegram language_code."""
from __future__ import annotations

from aiogram.types import User

LANGS = ("en", "ru")

TASK_NAMES = {
    "tumor": {"en": "Brain tumor", "ru": "Опухоль мозга"},
    "dementia": {"en": "Dementia", "ru": "Деменция"},
}

# Class display names are not here: they come from the task registry (diseaseid/tasks.py) through GET /models,
# so the conclusion's label and its chart name a class alike (services.bot.views.ClassNames).

TEXTS: dict[str, dict[str, str]] = {
    "start": {
        "en": (
            "<b>diseaseid</b> looks at a brain MRI slice and suggests a finding, with the heatmaps that show "
            "which parts of the image drove the answer (Grad-CAM and LRP).\n\n"
            "<b>How to use it</b>\n"
            "1. Choose the task with /task: brain tumor type (default) or dementia stage.\n"
            "2. Send one slice as a photo, or as a file (JPEG, PNG or DICOM, up to 20 MB).\n"
            "3. For dementia, send several axial slices of one subject as an album: you get one "
            "subject-level conclusion.\n\n"
            "<b>Disclaimer.</b> This is a research tool, not a medical device. It can be wrong, and it "
            "must not be used to diagnose or treat anyone. Do not send images that identify a patient."
        ),
        "ru": (
            "<b>diseaseid</b> анализирует срез МРТ головного мозга и предлагает вывод, а тепловые карты "
            "(Grad-CAM и LRP) показывают, какие участки изображения повлияли на ответ.\n\n"
            "<b>Как пользоваться</b>\n"
            "1. Выберите задачу командой /task: тип опухоли мозга (по умолчанию) или стадия деменции.\n"
            "2. Пришлите один срез фотографией или файлом (JPEG, PNG или DICOM, до 20 МБ).\n"
            "3. Для деменции пришлите несколько аксиальных срезов одного пациента альбомом: вы получите "
            "один вывод по пациенту.\n\n"
            "<b>Важно.</b> Это исследовательский инструмент, а не медицинское изделие. Он может ошибаться; "
            "не используйте его для диагностики или лечения. Не присылайте изображения, по которым можно "
            "узнать пациента."
        ),
    },
    "help": {
        "en": (
            "/start: what this bot does\n/task: choose brain tumor or dementia\n/help: this message\n\n"
            "Send a slice as a photo or a file (JPEG, PNG, DICOM, up to 20 MB); an album of slices gives one "
            "conclusion for the whole study. You may send {limit} analyses per minute.\n"
            "Current task: <b>{task}</b>.\n\nResearch tool, not a medical device."
        ),
        "ru": (
            "/start: что умеет бот\n/task: выбрать опухоль мозга или деменцию\n/help: эта справка\n\n"
            "Пришлите срез фотографией или файлом (JPEG, PNG, DICOM, до 20 МБ); альбом срезов даёт один "
            "вывод по всему исследованию. Можно отправлять {limit} анализов в минуту.\n"
            "Текущая задача: <b>{task}</b>.\n\nИсследовательский инструмент, не медицинское изделие."
        ),
    },
    "task_prompt": {
        "en": "Which question should I answer? Current task: <b>{task}</b>.",
        "ru": "На какой вопрос отвечать? Текущая задача: <b>{task}</b>.",
    },
    "task_set": {
        "en": "Task: <b>{task}</b>. Now send a slice (or an album of slices).",
        "ru": "Задача: <b>{task}</b>. Теперь пришлите срез (или альбом срезов).",
    },
    "task_set_short": {"en": "Task: {task}", "ru": "Задача: {task}"},
    "task_unknown": {"en": "I do not know this task.", "ru": "Такой задачи нет."},
    "analysing": {
        "en": "Analysing the slice ({task})…",
        "ru": "Анализирую срез ({task})…",
    },
    "analysing_study": {
        "en": "Analysing {n} slices as one study ({task})…",
        "ru": "Анализирую исследование (срезов: {n}, {task})…",
    },
    "conclusion_title": {"en": "Conclusion: <b>{label}</b>", "ru": "Вывод: <b>{label}</b>"},
    "study_title": {
        "en": "Study of {n} slices. Conclusion: <b>{label}</b>",
        "ru": "Исследование (срезов: {n}). Вывод: <b>{label}</b>",
    },
    "not_mri_title": {
        "en": "⚠️ <b>This does not look like a brain MRI slice</b>{reasons}. No conclusion is given. "
              "Please send an MRI slice of the brain.",
        "ru": "⚠️ <b>Изображение не похоже на срез МРТ головного мозга</b>{reasons}. Вывода нет. "
              "Пришлите срез МРТ мозга.",
    },
    "not_mri_study_title": {
        "en": "⚠️ <b>None of the {n} images looks like a brain MRI slice</b>{reasons}. No conclusion is given "
              "for this study.",
        "ru": "⚠️ <b>Ни одно из изображений ({n}) не похоже на срез МРТ головного мозга</b>{reasons}. "
              "Вывода по исследованию нет.",
    },
    # A brain MRI slice, but not the kind the chosen task reads; {other}: the task it suits.
    "wrong_task_title": {
        "en": "⚠️ <b>This looks like a brain MRI slice, but not the kind the {task} task reads</b>{reasons}. "
              "It looks like one for the {other} task: choose it with /task and send the slice again. No "
              "conclusion is given.",
        "ru": "⚠️ <b>Похоже на срез МРТ мозга, но не того вида, который читает задача «{task}»</b>{reasons}. "
              "Он похож на срезы для задачи «{other}»: выберите её командой /task и пришлите срез снова. "
              "Вывода нет.",
    },
    "wrong_task_study_title": {
        "en": "⚠️ <b>The {n} images look like brain MRI slices, but not the kind the {task} task reads</b>"
              "{reasons}. They look like slices for the {other} task: choose it with /task and send them again. "
              "No conclusion is given for this study.",
        "ru": "⚠️ <b>Изображения ({n}) похожи на срезы МРТ мозга, но не того вида, который читает задача "
              "«{task}»</b>{reasons}. Они похожи на срезы для задачи «{other}»: выберите её командой /task и "
              "пришлите их снова. Вывода по исследованию нет.",
    },
    "study_excluded": {
        "en": "⚠️ {k} of {n} images did not look like the brain MRI slices this task reads and were left out of "
              "the conclusion: {which}.",
        "ru": "⚠️ Изображения, не похожие на срезы МРТ мозга для этой задачи ({k} из {n}), не учитывались в "
              "выводе: {which}.",
    },
    "slice_numbers": {"en": "no. {numbers}", "ru": "№ {numbers}"},
    "task_line": {"en": "Task: {task}", "ru": "Задача: {task}"},
    "screening_line": {
        "en": "Screening: <b>{answer}</b> (probability of impairment {p})",
        "ru": "Скрининг: <b>{answer}</b> (вероятность нарушения {p})",
    },
    "single_slice_weak": {
        "en": "One slice is weak evidence for dementia staging. For a real answer send the subject's whole "
              "axial study (all slices, lowest first) as an album.",
        "ru": "Один срез — слабое основание для оценки деменции. Для настоящего ответа пришлите всё аксиальное "
              "исследование пациента (все срезы, снизу вверх) одним альбомом.",
    },
    "model_line": {"en": "Model: {model}", "ru": "Модель: {model}"},
    "ood_warning": {
        "en": "⚠️ This image does not look like the MRI slices the model was trained on{reasons}. "
              "Treat the result with extra caution.",
        "ru": "⚠️ Изображение не похоже на срезы МРТ, на которых обучалась модель{reasons}. "
              "Относитесь к результату с особой осторожностью.",
    },
    "disclaimer_short": {
        "en": "<i>Research tool, not a medical device.</i>",
        "ru": "<i>Исследовательский инструмент, не медицинское изделие.</i>",
    },
    "caption_gradcam": {
        "en": "Grad-CAM: regions that most raised the score of “{label}”.",
        "ru": "Grad-CAM: области, сильнее всего повысившие оценку «{label}».",
    },
    "caption_lrp": {
        "en": "LRP: pixel relevance for “{label}” (red for, blue against).",
        "ru": "LRP: вклад пикселей в «{label}» (красный — за, синий — против).",
    },
    "caption_panel": {
        "en": "The slice, Grad-CAM and LRP side by side.",
        "ru": "Срез, Grad-CAM и LRP рядом.",
    },
    "key_slice": {
        "en": "Slice {k} of {n}: the one that weighed most in the study's conclusion.",
        "ru": "Срез {k} из {n}: он сильнее всего повлиял на вывод по исследованию.",
    },
    "heatmaps_failed": {
        "en": "I could not compute the heatmaps this time; the conclusion above still stands.",
        "ru": "Тепловые карты сейчас построить не удалось; вывод выше остаётся в силе.",
    },
    "service_down": {
        "en": "Sorry, the analysis service is not reachable right now. Please try again in a few minutes.",
        "ru": "Извините, сервис анализа сейчас недоступен. Попробуйте ещё раз через несколько минут.",
    },
    "service_slow": {
        "en": "Sorry, the analysis service is too busy to answer right now. Please try again in a minute.",
        "ru": "Извините, сервис анализа сейчас перегружен и не успел ответить. Попробуйте через минуту.",
    },
    "input_rejected": {
        "en": "I could not analyse this image: {reason}\n"
              "Please send a brain MRI slice as JPEG, PNG or DICOM.",
        "ru": "Не удалось проанализировать изображение: {reason}\n"
              "Пришлите срез МРТ мозга в формате JPEG, PNG или DICOM.",
    },
    "corrupt_image": {
        "en": "This file does not look like a readable JPEG, PNG or DICOM image (it may be damaged). "
              "Please send the slice again.",
        "ru": "Этот файл не похож на читаемое изображение JPEG, PNG или DICOM (возможно, он повреждён). "
              "Пришлите срез ещё раз.",
    },
    "too_large": {
        "en": "This file is {size} MB; I can download files up to {limit} MB. Please send a smaller export "
              "of the slice (a single JPEG or PNG is plenty).",
        "ru": "Размер файла {size} МБ, а я могу скачать не больше {limit} МБ. Пришлите срез поменьше "
              "(одного JPEG или PNG достаточно).",
    },
    "wrong_document": {
        "en": "I read JPEG, PNG and DICOM images, and this file is {kind}. "
              "Please send the slice as an image.",
        "ru": "Я читаю изображения JPEG, PNG и DICOM, а это {kind}. Пришлите срез как изображение.",
    },
    "text_reply": {
        "en": "I analyse images rather than text. Send a brain MRI slice as a photo or a file, or see /help.",
        "ru": "Я анализирую изображения, а не текст. Пришлите срез МРТ фотографией или файлом, или "
              "посмотрите /help.",
    },
    "sticker_reply": {
        "en": "Nice sticker! I only understand MRI slices, though: send one as a photo or a file.",
        "ru": "Хороший стикер! Но я понимаю только срезы МРТ: пришлите срез фотографией или файлом.",
    },
    "video_reply": {
        "en": "I cannot analyse videos. Please send single slices as photos (or several slices as an album).",
        "ru": "Видео я анализировать не умею. Пришлите отдельные срезы фотографиями (или альбомом).",
    },
    "audio_reply": {
        "en": "I cannot listen to audio. Please send an MRI slice as a photo or a file.",
        "ru": "Аудио я не понимаю. Пришлите срез МРТ фотографией или файлом.",
    },
    "other_reply": {
        "en": "I cannot use this kind of message. Send a brain MRI slice as a photo or a file, or see /help.",
        "ru": "С таким сообщением я работать не умею. Пришлите срез МРТ фотографией или файлом, или "
              "посмотрите /help.",
    },
    "album_trimmed": {
        "en": "The album has {n} items; I analyse at most {limit} of them together.",
        "ru": "В альбоме {n} элементов; вместе я анализирую не больше {limit}.",
    },
    "album_skipped": {
        "en": "{n} item(s) of the album were not usable images and were left out.",
        "ru": "Элементов альбома, не подошедших как изображения: {n}; они пропущены.",
    },
    "album_empty": {
        "en": "None of the album's items is an image I can read (JPEG, PNG or DICOM).",
        "ru": "В альбоме нет изображений, которые я могу прочитать (JPEG, PNG или DICOM).",
    },
    "rate_limited": {
        "en": "You can send {limit} analyses per minute. Please wait {seconds} s and try again.",
        "ru": "Можно отправлять {limit} анализов в минуту. Подождите {seconds} с и попробуйте снова.",
    },
    "not_allowed": {
        "en": "Sorry, this bot is private. Ask its operator to add your user id ({user_id}).",
        "ru": "Извините, это закрытый бот. Попросите администратора добавить ваш id ({user_id}).",
    },
    "error": {
        "en": "Something went wrong on my side. Please try again; if it keeps happening, tell the operator.",
        "ru": "Что-то пошло не так с моей стороны. Попробуйте ещё раз; если ошибка повторится, сообщите "
              "администратору.",
    },
    # A study refused because its slices cannot be one patient's series (POST /predict/study, 422 mixed_*):
    # "study_refused" with {why} from the "study_why_<code>" entry; {a} and {b} count the album's items from 1.
    "study_refused": {
        "en": "I cannot read these slices as one study: items {a} and {b} {why}. Send the slices of one "
              "patient's series, in order, as one album.",
        "ru": "Я не могу прочитать эти срезы как одно исследование: элементы {a} и {b} {why}. Пришлите "
              "альбомом срезы одной серии одного пациента, по порядку.",
    },
    "study_refused_generic": {
        "en": "I cannot read these slices as one study: they do not come from one patient's series. Send the "
              "slices of one series, in order, as one album.",
        "ru": "Я не могу прочитать эти срезы как одно исследование: они не из одной серии одного пациента. "
              "Пришлите альбомом срезы одной серии, по порядку.",
    },
    "study_why_mixed_patients": {
        "en": "belong to different patients (DICOM PatientID)",
        "ru": "относятся к разным пациентам (DICOM PatientID)",
    },
    "study_why_mixed_studies": {
        "en": "belong to different studies (DICOM StudyInstanceUID)",
        "ru": "относятся к разным исследованиям (DICOM StudyInstanceUID)",
    },
    "study_why_mixed_series": {
        "en": "belong to different series (DICOM SeriesInstanceUID)",
        "ru": "относятся к разным сериям (DICOM SeriesInstanceUID)",
    },
    "study_why_mixed_orientation": {
        "en": "were taken in different orientations (DICOM ImageOrientationPatient)",
        "ru": "сняты в разной ориентации (DICOM ImageOrientationPatient)",
    },
    "study_why_mixed_pixel_spacing": {
        "en": "have different pixel spacing (DICOM PixelSpacing)",
        "ru": "имеют разный размер пикселя (DICOM PixelSpacing)",
    },
    "study_why_mixed_sizes": {
        "en": "have different shapes",
        "ru": "имеют разную форму (пропорции)",
    },
    "study_why_mixed_formats": {
        "en": "mix DICOM with JPEG/PNG",
        "ru": "смешивают DICOM с JPEG/PNG",
    },
    # Warnings of a study that was answered (the response's "warnings"); items counted from 1.
    "study_warning_mixed_sizes": {
        "en": "⚠ Items {a} and {b} differ in size: were they exported from one series? Read the conclusion "
              "with care.",
        "ru": "⚠ Элементы {a} и {b} разного размера: они из одной серии? Относитесь к выводу осторожно.",
    },
    "study_warning_unlike_neighbours": {
        "en": "⚠ Items {a} and {b} look much less alike than neighbouring slices of one person do: are they "
              "one person's slices, in order? Read the conclusion with care.",
        "ru": "⚠ Элементы {a} и {b} похожи друг на друга гораздо меньше, чем соседние срезы одного человека: "
              "это срезы одного человека, по порядку? Относитесь к выводу осторожно.",
    },
    "study_warning_sudden_change": {
        "en": "⚠ Items {a} and {b} differ far more than the other neighbouring items: another person from "
              "here on, or slices missing in between? Read the conclusion with care.",
        "ru": "⚠ Элементы {a} и {b} различаются намного сильнее, чем остальные соседние: дальше срезы другого "
              "человека или между ними пропущены срезы? Относитесь к выводу осторожно.",
    },
    "study_warning_out_of_order": {
        "en": "⚠ Items {a} and {c} are more alike than either is to item {b}: slices of two people mixed, "
              "or not in order? Read the conclusion with care.",
        "ru": "⚠ Элементы {a} и {c} похожи друг на друга больше, чем каждый из них на элемент {b}: срезы "
              "двух людей перемешаны или идут не по порядку? Относитесь к выводу осторожно.",
    },
    "study_warning_other": {
        "en": "⚠ These slices may not be one person's stack: {message}",
        "ru": "⚠ Возможно, это не срезы одного человека по порядку: {message}",
    },
}


def lang_of(user: User | None) -> str:
    """'ru' for Russian-language Telegram clients, 'en' for everyone else."""
    code = (user.language_code or "") if user else ""
    return "ru" if code.lower().startswith("ru") else "en"


def t(key: str, lang: str, /, **values: object) -> str:
    entry = TEXTS[key]
    text = entry.get(lang) or entry["en"]
    return text.format(**values) if values else text


def task_name(task: str, lang: str) -> str:
    return TASK_NAMES.get(task, {}).get(lang, task)
