"""What graders and students read: feedback without hidden tests, the class report, and the
students' self-check."""
