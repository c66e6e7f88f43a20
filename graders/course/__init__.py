"""The course: its directory as nbgrader configures it (folders, gradebook, the batch's journal)
and the statuses a student can end with. Everything else stands on it; it imports no other room."""
