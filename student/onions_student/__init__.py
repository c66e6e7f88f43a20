"""The student side of the onions course (Lesson 08): the datasets as students see them, and the self-check.

Shipped to students in the student kit (``python -m graders student-kit``) and installed with
pip; it holds no answer, no hidden test and no grading label. The graders' side (``graders``)
imports it too, so both run the same code.
"""
