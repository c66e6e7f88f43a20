"""What the grader knows of the sandbox's runner (graders.inside.run_notebook) without importing it,
and so nbclient and the kernel machinery: its exit statuses and the files it leaves per notebook."""

# the first notebook that fails stops the runner with one of these; 0: every notebook ran to the end
KERNEL_DIED, UNREADABLE, TIMED_OUT, NOT_RECHECKABLE, CHECKER_STOPPED = 3, 4, 5, 6, 7
PACK, PREVIOUS = ".exports.tar.xz", ".previous.ipynb"  # NAME + these: a notebook's kept exports, its last executed copy
