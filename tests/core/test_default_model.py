"""The default-model rule: the most accurate shipped model unless the student is within 0.5 points."""
from diseaseid.serving import choose_default


def test_the_teacher_answers_when_the_student_is_far_behind():
    choice = choose_default({"student": 0.939, "teacher": 0.979})
    assert choice.role == "teacher"
    assert "97.9%" in choice.reason and "student 93.9%" in choice.reason


def test_the_student_answers_within_half_a_point_and_not_beyond():
    assert choose_default({"student": 0.975, "teacher": 0.979}).role == "student"
    assert choose_default({"student": 0.973, "teacher": 0.979}).role == "teacher"
    assert choose_default({"student": 0.990, "teacher": 0.979}).role == "student"


def test_missing_cards_fall_back_to_what_is_known():
    assert choose_default({"student": None, "teacher": 0.5}).role == "teacher"
    assert choose_default({"student": 0.4, "teacher": None}).role == "student"
    assert choose_default({"student": None, "teacher": None}).role == "student"
