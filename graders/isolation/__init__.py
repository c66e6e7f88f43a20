"""Host-side isolation: bubblewrap, cgroups, limits and the memory watchdog that run one command
(a student's notebooks) where it can read nothing of the course and reach no network."""
