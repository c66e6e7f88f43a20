"""Tools for the graders of the onions course (Lesson 08): data, execution, grading."""
