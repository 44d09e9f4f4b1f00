"""Everything the page says, in English and Russian. The language is the page's ``?lang=``, else the browser's
``Accept-Language``; the server renders the page and the answers in it, and hands the page's script the few
strings it shows itself (:data:`SCRIPT_TEXTS`).

Class display names are not here: they come from the task registry through ``GET /models``, as in the bot.
"""
from __future__ import annotations

LANGS = ("en", "ru")
DEFAULT_LANG = "en"

# The tasks the page offers when GET /models cannot be read (the service still loading, or down).
TASK_NAMES = {
    "tumor": {"en": "Brain tumour type", "ru": "Тип опухоли мозга"},
    "dementia": {"en": "Dementia stage", "ru": "Стадия деменции"},
}

TEXTS: dict[str, dict[str, str]] = {
    "title": {"en": "diseaseid: a second look at brain MRI", "ru": "diseaseid: второе мнение по МРТ мозга"},
    "lead": {
        "en": "Upload an MRI slice of the brain, or the slices of one study, and see what the model suggests, "
              "how sure it is, and which parts of the image drove the answer (Grad-CAM and LRP heatmaps).",
        "ru": "Загрузите срез МРТ головного мозга или срезы одного исследования: вы увидите, что предполагает "
              "модель, насколько она уверена и какие участки изображения повлияли на ответ (тепловые карты "
              "Grad-CAM и LRP).",
    },
    "notice": {
        "en": "Research tool, not a medical device. It has not been clinically validated and must not be used "
              "to diagnose, treat or triage anyone. Do not upload images that identify a patient.",
        "ru": "Исследовательский инструмент, не медицинское изделие. Он не прошёл клинической проверки; не "
              "используйте его для диагностики, лечения или сортировки пациентов. Не загружайте изображения, "
              "по которым можно узнать пациента.",
    },
    "notice_short": {"en": "Research tool, not a medical device.",
                     "ru": "Исследовательский инструмент, не медицинское изделие."},
    "task_label": {"en": "Task", "ru": "Задача"},
    "files_label": {"en": "MRI slice or study", "ru": "Срез МРТ или исследование"},
    "files_hint": {
        "en": "One slice (JPEG, PNG or DICOM), or the slices of one study: several files, one zip file, or a "
              "DICOM series. A study is read lowest slice first: files in name order, a DICOM series by "
              "instance number. Dementia is best judged from a whole axial study.",
        "ru": "Один срез (JPEG, PNG или DICOM) или срезы одного исследования: несколько файлов, один "
              "zip-архив или серия DICOM. Исследование читается снизу вверх: файлы по порядку имён, серия "
              "DICOM по номеру снимка. Деменцию лучше оценивать по всему аксиальному исследованию.",
    },
    "drop_here": {"en": "or drop files here", "ru": "или перетащите файлы сюда"},
    "submit": {"en": "Analyse", "ru": "Анализировать"},
    "language": {"en": "Language", "ru": "Язык"},
    "result_heading": {"en": "Result", "ru": "Результат"},
    "heatmaps_heading": {"en": "Why: heatmaps", "ru": "Почему: тепловые карты"},
    # Answers.
    "conclusion": {"en": "Conclusion: {label}", "ru": "Вывод: {label}"},
    "study_conclusion": {"en": "Study of {n} slices. Conclusion: {label}",
                         "ru": "Исследование (срезов: {n}). Вывод: {label}"},
    "probabilities": {"en": "Calibrated probabilities", "ru": "Калиброванные вероятности"},
    "screening": {"en": "Screening: {answer} (probability of impairment {p})",
                  "ru": "Скрининг: {answer} (вероятность нарушения {p})"},
    "single_slice_weak": {
        "en": "One slice is weak evidence for dementia staging: for a real answer upload the subject's whole "
              "axial study (all slices).",
        "ru": "Один срез — слабое основание для оценки деменции: для настоящего ответа загрузите всё "
              "аксиальное исследование пациента (все срезы).",
    },
    "excluded": {
        "en": "{k} of {n} images did not look like brain MRI slices and were left out of the conclusion: "
              "no. {which}.",
        "ru": "Изображения, не похожие на срезы МРТ мозга ({k} из {n}), не учитывались в выводе: № {which}.",
    },
    "slices_read": {"en": "Slices, in the order read", "ru": "Срезы в порядке чтения"},
    "left_out": {"en": "left out", "ru": "не учтён"},
    "model_line": {"en": "Model: {name}, version {version}", "ru": "Модель: {name}, версия {version}"},
    "task_line": {"en": "Task: {task}", "ru": "Задача: {task}"},
    "ood_warning": {
        "en": "This image does not look like the MRI slices the model was trained on: treat the result with "
              "extra caution.",
        "ru": "Изображение не похоже на срезы МРТ, на которых обучалась модель: относитесь к результату с "
              "особой осторожностью.",
    },
    # Refusals: an answer without a diagnosis. The service's own words come first; these follow.
    "refusal_title": {"en": "No conclusion for this upload", "ru": "Вывода по этой загрузке нет"},
    "refusal_not_a_brain_mri": {
        "en": "The image does not look like an MRI slice of the brain, so the model gives no conclusion. "
              "Please upload a brain MRI slice.",
        "ru": "Изображение не похоже на срез МРТ головного мозга, поэтому модель не даёт вывода. Загрузите "
              "срез МРТ мозга.",
    },
    "refusal_not_a_brain_mri_study": {
        "en": "None of the {n} images looks like an MRI slice of the brain, so there is no conclusion for "
              "this study.",
        "ru": "Ни одно из изображений ({n}) не похоже на срез МРТ головного мозга, поэтому вывода по "
              "исследованию нет.",
    },
    "refusal_wrong_task": {
        "en": "This looks like an MRI, but not the kind of MRI this task reads, so the model gives no "
              "conclusion. Check the task you chose, or upload the kind of slice the task expects.",
        "ru": "Это похоже на МРТ, но не на тот вид МРТ, который читает эта задача, поэтому модель не даёт "
              "вывода. Проверьте выбранную задачу или загрузите срез нужного вида.",
    },
    "refusal_other": {
        "en": "The model gives no conclusion for this upload.",
        "ru": "Модель не даёт вывода по этой загрузке.",
    },
    # Heatmaps.
    "caption_gradcam": {"en": "Grad-CAM: regions that most raised the score of “{label}”.",
                        "ru": "Grad-CAM: области, сильнее всего повысившие оценку «{label}»."},
    "caption_lrp": {"en": "LRP: pixel relevance for “{label}” (red for, blue against).",
                    "ru": "LRP: вклад пикселей в «{label}» (красный — за, синий — против)."},
    "key_slice": {"en": "Heatmaps of slice {k} of {n} ({name}): the one that weighed most in the conclusion.",
                  "ru": "Тепловые карты среза {k} из {n} ({name}): он сильнее всего повлиял на вывод."},
    "download_panel": {"en": "Download the panel (PNG)", "ru": "Скачать панель (PNG)"},
    # DICOM results (docs/dicom.md): for DICOM uploads only.
    "download_sr": {"en": "Download the result as DICOM (SR)", "ru": "Скачать результат в DICOM (SR)"},
    "download_sr_hint": {
        "en": "A DICOM Structured Report in the study of the uploaded images: the conclusion, its probability "
              "and the model, for a PACS or a DICOM viewer.",
        "ru": "Структурированный отчёт DICOM (SR) в исследовании загруженных снимков: вывод, его вероятность и "
              "модель — для PACS или программы просмотра DICOM.",
    },
    "sr_dicom_only": {
        "en": "No DICOM result (SR) for JPEG or PNG files: a DICOM result belongs to the study of its images, "
              "and these files name none. Upload the DICOM files to get one.",
        "ru": "Для файлов JPEG и PNG результата в DICOM (SR) нет: результат DICOM относится к исследованию "
              "своих снимков, а эти файлы его не указывают. Загрузите файлы DICOM, чтобы получить его.",
    },
    "sr_preparing": {"en": "Preparing the DICOM file…", "ru": "Готовим файл DICOM…"},
    "sr_failed": {
        "en": "The DICOM result could not be made this time; the conclusion above still stands.",
        "ru": "Результат в DICOM сейчас сделать не удалось; вывод выше остаётся в силе.",
    },
    "error_sr": {"en": "No DICOM result could be made for these files: {reason}",
                 "ru": "Сделать результат в DICOM для этих файлов не удалось: {reason}"},
    "heatmaps_dicom": {"en": "Heatmaps as DICOM, for a PACS or a DICOM viewer:",
                       "ru": "Тепловые карты в DICOM, для PACS или программы просмотра DICOM:"},
    "dicom_gradcam": {"en": "Grad-CAM image", "ru": "изображение Grad-CAM"},
    "dicom_lrp": {"en": "LRP image", "ru": "изображение LRP"},
    "dicom_panel": {"en": "panel", "ru": "панель"},
    "dicom_sr": {"en": "SR referencing them", "ru": "SR со ссылками на них"},
    "explain_queued": {"en": "Heatmaps: waiting in the queue…", "ru": "Тепловые карты: в очереди…"},
    "explain_queued_position": {"en": "Heatmaps: waiting in the queue ({n} ahead)…",
                                "ru": "Тепловые карты: в очереди (перед вами: {n})…"},
    "explain_started": {"en": "Heatmaps: computing…", "ru": "Тепловые карты: вычисляются…"},
    "explain_failed": {
        "en": "The heatmaps could not be computed this time; the conclusion above still stands.",
        "ru": "Тепловые карты сейчас построить не удалось; вывод выше остаётся в силе.",
    },
    "explain_unavailable": {
        "en": "The heatmap service is not reachable right now; the conclusion above still stands.",
        "ru": "Сервис тепловых карт сейчас недоступен; вывод выше остаётся в силе.",
    },
    # Errors, in words a clinician reads; {name} is the file's name as uploaded.
    "error_no_files": {"en": "Choose at least one file first.", "ru": "Сначала выберите хотя бы один файл."},
    "error_not_an_image": {
        "en": "“{name}” is not an image this tool can read. Upload MRI slices as JPEG, PNG or DICOM files "
              "(several at once, or one zip file of them).",
        "ru": "«{name}» — не изображение, которое умеет читать этот инструмент. Загрузите срезы МРТ в формате "
              "JPEG, PNG или DICOM (несколько сразу или одним zip-архивом).",
    },
    "error_unreadable": {
        "en": "“{name}” could not be read as an MRI slice: the file may be damaged, empty or too small, or a "
              "DICOM file without an image in it.",
        "ru": "Не удалось прочитать «{name}» как срез МРТ: файл может быть повреждён, пуст или слишком мал, "
              "либо это DICOM без изображения.",
    },
    "error_too_many_pixels": {
        "en": "“{name}” is far larger than an MRI slice (over 4096 × 4096 pixels). Export the slice at its "
              "usual size.",
        "ru": "«{name}» намного больше среза МРТ (свыше 4096 × 4096 точек). Сохраните срез в обычном размере.",
    },
    "error_file_too_large": {
        "en": "“{name}” is too large: a file may have at most {limit} MB.",
        "ru": "«{name}» слишком велик: размер файла — не больше {limit} МБ.",
    },
    "error_upload_too_large": {
        "en": "The upload is too large: at most {limit} MB at once.",
        "ru": "Загрузка слишком велика: не больше {limit} МБ за раз.",
    },
    "error_too_many_files": {
        "en": "A study may have at most {limit} slices, and this upload has {n}.",
        "ru": "В исследовании может быть не больше {limit} срезов, а в этой загрузке их {n}.",
    },
    "error_bad_zip": {
        "en": "“{name}” could not be opened as a zip file.",
        "ru": "Не удалось открыть «{name}» как zip-архив.",
    },
    "error_empty_zip": {
        "en": "“{name}” holds no files to read.",
        "ru": "В «{name}» нет файлов для чтения.",
    },
    "error_unknown_task": {"en": "Choose one of the tasks offered.", "ru": "Выберите одну из предложенных задач."},
    "error_busy": {
        "en": "The analysis service is busy or still starting. Please try again in a minute.",
        "ru": "Сервис анализа занят или ещё запускается. Попробуйте ещё раз через минуту.",
    },
    "error_unavailable": {
        "en": "The analysis service is not reachable right now. Please try again in a few minutes; if this "
              "persists, tell whoever runs this page.",
        "ru": "Сервис анализа сейчас недоступен. Попробуйте через несколько минут; если это повторяется, "
              "сообщите тому, кто обслуживает эту страницу.",
    },
    "error_timeout": {
        "en": "The analysis took too long and was stopped. Please try again, or upload fewer slices.",
        "ru": "Анализ занял слишком много времени и был остановлен. Попробуйте ещё раз или загрузите меньше "
              "срезов.",
    },
    "error_other": {
        "en": "The upload could not be analysed: {reason}",
        "ru": "Загрузку не удалось проанализировать: {reason}",
    },
    # Shown by the page's script.
    "uploading": {"en": "Uploading… {p}%", "ru": "Загрузка… {p}%"},
    "analysing": {"en": "Analysing…", "ru": "Анализ…"},
    "network_error": {
        "en": "The page lost its connection to the server. Please check it is still running and try again.",
        "ru": "Страница потеряла связь с сервером. Проверьте, что он работает, и попробуйте ещё раз.",
    },
    "files_chosen": {"en": "Files chosen: {n}", "ru": "Выбрано файлов: {n}"},
}

# The strings the page's script needs, handed to it inside the page (no second request, no inline script).
SCRIPT_TEXTS = ("uploading", "analysing", "network_error", "error_no_files", "files_chosen", "explain_queued",
                "explain_failed", "error_upload_too_large", "sr_preparing", "sr_failed")


def pick_lang(query: str | None, accept_language: str | None) -> str:
    """``?lang=`` when it names a language we have, else the first of ours in ``Accept-Language``, else
    English."""
    if query in LANGS:
        return query
    for part in (accept_language or "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGS:
            return code
    return DEFAULT_LANG


def t(key: str, lang: str, **values: object) -> str:
    """The text ``key`` in ``lang`` (English when ``lang`` is unknown), with ``values`` filled in."""
    text = TEXTS[key]
    return (text.get(lang) or text[DEFAULT_LANG]).format(**values)


def template(key: str, lang: str) -> str:
    """The text ``key`` with its ``{placeholders}`` left for the page's script to fill."""
    text = TEXTS[key]
    return text.get(lang) or text[DEFAULT_LANG]


def task_name(task: str, lang: str) -> str:
    names = TASK_NAMES.get(task)
    return (names.get(lang) or names["en"]) if names else task
